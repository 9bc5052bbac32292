#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, qhub.prefect contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: qhub_deployment
short_description: Converge the Prefect agent or worker of one QHub deployment, in one task
version_added: 0.2.0
author: qhub.prefect contributors (@qhub-prefect)
description:
  - Does what the role C(qhub.prefect.prefect_agent) does, step by step, in one task, which saves Ansible's cost of
    up to four more tasks per deployment. C(playbooks/deploy.yml) converges every deployment with it.
  - The steps, each with the module the role's task of that step runs and the same arguments, are these. Read and
    validate the QHub config (M(qhub.prefect.qhub_config_info)); check the kubeconfig context
    (M(qhub.prefect.kube_context_info)); then with C(prefect.enabled=true) the Prefect 1 project
    (M(qhub.prefect.prefect_project)) or the work pool (M(qhub.prefect.prefect_work_pool)), the agent or worker
    (M(qhub.prefect.prefect_agent_config)) and, when the apply did not wait for it, whether the worker is online
    (M(qhub.prefect.prefect_worker_status)); with C(prefect.enabled=false), the removal of what the collection
    deployed (M(qhub.prefect.prefect_agent_config) with C(state=absent)).
  - A failing step ends the task, and its message starts with the name of the role's task of that step. Nothing is
    written before the config and the context are checked. A worker status that cannot be read fails nothing; the
    result says why.
  - The options are the role's variables without their C(qhub_prefect_) prefix, with the same defaults, so an
    error naming an option names the variable.
  - Always runs on the controller, where the QHub config is.
extends_documentation_fragment:
  - qhub.prefect.attributes
options:
  config_file:
    description:
      - Path of the QHub config file on the controller; relative to the directory C(ansible-playbook) runs in.
      - One of O(config_file) and O(config) is required.
    type: path
  config:
    description: The QHub config as a mapping, for example an AWX extra var.
    type: dict
  name:
    description: Name of the agent's or worker's objects. Default C(prefect-agent) (Prefect 1) or C(prefect-worker).
    type: str
  generation:
    description: C(prefect1) or C(prefect3), or C(auto) to tell from the image tag.
    type: str
    choices: [auto, prefect1, prefect3]
    default: auto
  api_url:
    description:
      - The Prefect API URL. Without it E(PREFECT_API_URL) for Prefect 2/3; for Prefect 1 E(PREFECT__CLOUD__API),
        then E(PREFECT_API_URL), then Prefect Cloud 1.
    type: str
  api_key:
    description:
      - This deployment's Prefect API key. Without it the key comes from E(QHUB_SECRET_PREFECT_TOKEN), then
        E(TF_VAR_prefect_token), then E(PREFECT_API_KEY), then C(prefect.token) in the config.
      - Never returned or logged.
    type: str
  instance:
    description:
      - The identity of this QHub deployment, which its objects are labelled with and ownership is keyed on.
      - Defaults to the config's C(project_name), or else its namespace.
    type: str
  work_pool:
    description: The Prefect 2/3 work pool the worker polls.
    type: str
    default: qhub
  project:
    description: The Prefect 1 project the flows are registered in.
    type: str
    default: qhub
  wait:
    description: Wait until the agent or worker Deployment has rolled out (and, removing it, until it is gone).
    type: bool
    default: true
  wait_timeout:
    description: Seconds to wait for the rollout.
    type: int
    default: 120
  wait_for_worker:
    description: With O(wait), also wait until a Prefect 2/3 worker is C(ONLINE) in its work pool.
    type: bool
    default: true
  worker_timeout:
    description: Seconds to wait for the worker to come online.
    type: int
    default: 120
  force:
    description:
      - Take over fields another field manager owns, and objects at this deployment's names that another QHub
        deployment labelled as its own, instead of failing with their names.
    type: bool
    default: false
  move_from:
    description:
      - The namespaces this deployment moves from (a comma-separated string is split). Its agent or worker there is
        removed once the new one runs.
    type: list
    elements: str
    default: []
  lock_timeout:
    description: Seconds to wait for another run of the same deployment to finish.
    type: int
    default: 60
  kubeconfig:
    description: Path of the kubeconfig; without it E(K8S_AUTH_KUBECONFIG), E(KUBECONFIG), then C(~/.kube/config).
    type: path
  kube_context:
    description: The kubeconfig context; without it E(K8S_AUTH_CONTEXT), then the current context.
    type: str
  check_only:
    description:
      - Only read and check the config and the kubeconfig context, and return them; change nothing.
      - C(playbooks/deploy.yml) checks every deployment of a fleet this way before any of them writes.
    type: bool
    default: false
  from_role_variables:
    description:
      - Take each option this task does not set from the role variable of its name, C(qhub_prefect_) and the
        option (O(work_pool) from C(qhub_prefect_work_pool)), as the role's C(converge) and C(fleet_check) entry
        points do. As the role passes them, a variable that is empty (C("") or C({})) or null is an option not
        set, and O(config) is not taken from its variable when O(config_file) is set. O(check_only) is never taken
        from a variable.
      - The same as passing each variable as its option, without Ansible templating eighteen arguments each task.
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    details: Each step runs in check mode, as its module does (the apply as a server-side dry run).
  diff_mode:
    support: full
    details: The diffs of the steps that change something, one after the other; Secret values are masked.
  idempotent:
    support: full
    details: A rerun with the same input writes nothing and reports no change.
seealso:
  - module: qhub.prefect.prefect_agent_config
  - module: qhub.prefect.prefect_work_pool
  - module: qhub.prefect.qhub_config_info
'''

EXAMPLES = r'''
- name: Converge the Prefect worker of a QHub deployment
  qhub.prefect.qhub_deployment:
    config_file: qhub-config.yml
    work_pool: prod
    kube_context: prod-cluster
  register: deployment

- name: Show whether a worker is online
  ansible.builtin.debug:
    msg: "{{ deployment.agent.workers_online | default(deployment.worker_status.online | default([])) }}"
'''

RETURN = r'''
changed:
  description: Whether any step changed something.
  returned: always
  type: bool
settings:
  description: What M(qhub.prefect.qhub_config_info) returned (C(namespace), C(prefect), C(path)).
  returned: always
  type: dict
cluster:
  description: What M(qhub.prefect.kube_context_info) returned (C(server), C(context), ...).
  returned: after the config was read
  type: dict
project:
  description: What M(qhub.prefect.prefect_project) returned.
  returned: Prefect 1, enabled
  type: dict
work_pool:
  description: What M(qhub.prefect.prefect_work_pool) returned.
  returned: Prefect 2/3, enabled
  type: dict
agent:
  description: What M(qhub.prefect.prefect_agent_config) returned.
  returned: enabled
  type: dict
removal:
  description: What M(qhub.prefect.prefect_agent_config) with C(state=absent) returned.
  returned: disabled
  type: dict
worker_status:
  description: What M(qhub.prefect.prefect_worker_status) returned; C(failed) and C(msg) when it could not be read.
  returned: Prefect 2/3, enabled, when the apply did not wait until a worker was online
  type: dict
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.qhub.prefect.plugins.module_utils._runners import qhub_deployment as runner
from ansible_collections.qhub.prefect.plugins.module_utils._runners.options import module_spec


def main():
    # plugins/action/qhub_deployment.py runs the same runner inside the controller, where the QHub config is.
    runner.run(AnsibleModule(**module_spec(runner)))


if __name__ == "__main__":
    main()
