#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, qhub.prefect contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: prefect_work_pool
short_description: Create, update or delete a Prefect 2/3 work pool and its work queues
version_added: 0.1.0
author: qhub.prefect contributors (@qhub-prefect)
description:
  - Makes sure a work pool of a Prefect 2/3 API exists with the given type, base job template, description,
    pause state and concurrency limit, and that it has the given work queues; or that it does not exist.
  - Reads the pool first and sends only the fields that differ (C(PATCH /work_pools/NAME)).
  - "This module owns the pool's base job template: for a C(kubernetes) pool it is derived from QHub's overrides
    (prefect-kubernetes' default template, with resources, pull policy and pull secrets written into the Job
    manifest and secret env vars as C(secretKeyRef)), so a change of the overrides reaches the pool on the next
    run. A worker's C(--base-job-template) only applies when the worker creates the pool."
  - Give O(base_job_template) to set a template of your own instead. A pool of another type without
    O(base_job_template) keeps whatever template it has.
  - Pool names starting with C(prefect) (any case) are reserved by Prefect and refused before any request.
extends_documentation_fragment:
  - qhub.prefect.attributes
  - qhub.prefect.prefect_api
options:
  name:
    description: Name of the work pool.
    type: str
    required: true
  type:
    description:
      - Worker type of the pool. Fixed once the pool exists; a pool of another type makes the module fail.
    type: str
    default: kubernetes
  state:
    description: C(present) creates or updates the pool; C(absent) deletes it with its queues.
    type: str
    choices: [present, absent]
    default: present
  base_job_template:
    description:
      - The whole base job template (C(job_configuration) and C(variables)), as C(prefect work-pool
        get-default-base-job-template) prints it.
      - Mutually exclusive with O(overrides), O(secret_env_names), O(secret_name), O(job_namespace),
        O(service_account_name) and O(job_image).
      - Prefect's C({{ placeholders }}) must reach the module as they are, while Ansible templates the strings of a
        task's arguments. Load the template from a file with the C(ansible.builtin.file) lookup and the C(from_json)
        filter, as in the examples, or mark it C(!unsafe).
    type: dict
  overrides:
    description:
      - QHub's C(prefect.overrides) mapping, from which the template of a C(kubernetes) pool is derived
        (C(JOB_CPU_REQUEST), C(JOB_CPU_LIMIT), C(JOB_MEM_REQUEST), C(JOB_MEM_LIMIT), C(IMAGE_PULL_POLICY),
        C(IMAGE_PULL_SECRETS), C(envVars) and their nested forms under C(prefect_agent.job)).
      - The labels (C(PREFECT__CLOUD__AGENT__LABELS), C(prefectLabels)) are validated but not used here; pass them
        as O(work_queues).
      - C(secretEnvVars) is refused, since its values would end up in the pool as plain text. Give their names in
        O(secret_env_names) instead.
      - Of the prefect-worker chart's values, C(worker.config.jobNamespace) becomes the pool's default namespace
        (over O(job_namespace)), and C(worker.config.baseJobTemplate.configuration) (a JSON string or a mapping)
        or C(worker.config.baseJobTemplate.existingConfigMapName) replaces the server's default template; the
        overrides still become its variables' defaults.
    type: dict
  secret_env_names:
    description:
      - Names of the secret env vars; the flow-run container gets each from the key of the same name in the
        Secret O(secret_name) (C(secretKeyRef)).
    type: list
    elements: str
  secret_name:
    description:
      - Name of the Kubernetes Secret holding O(secret_env_names) in the flow runs' namespace
        (M(qhub.prefect.prefect_agent_config) creates it under the agent's name). Required with O(secret_env_names).
    type: str
  job_namespace:
    description: Namespace the flow-run Jobs are created in (the template's C(namespace) default).
    type: str
  service_account_name:
    description: ServiceAccount of the flow-run Jobs (the template's C(service_account_name) default).
    type: str
  job_image:
    description: Image of the flow-run Jobs (the template's C(image) default). Deployments can still set their own.
    type: str
  work_queues:
    description:
      - Work queues the pool must have (QHub's C(PREFECT__CLOUD__AGENT__LABELS)). Missing ones are created; queues
        not listed are left alone, never deleted. Every pool has a C(default) queue.
    type: list
    elements: str
  description:
    description: Description of the pool. Left as it is when not given.
    type: str
  concurrency_limit:
    description: Most flow runs the pool runs at once. Left as it is when not given.
    type: int
  paused:
    description: Whether the pool is paused. Left as it is when not given.
    type: bool
  config_map_namespace:
    description:
      - The namespace of the ConfigMap named by the overrides' C(worker.config.baseJobTemplate.existingConfigMapName)
        (the prefect-worker chart's key; the template is its C(baseJobTemplate.json)). Defaults to O(job_namespace).
      - The ConfigMap is read on every run, so a change to it reaches the pool.
    type: str
  kubeconfig:
    description:
      - The kubeconfig to read that ConfigMap with. Defaults to E(K8S_AUTH_KUBECONFIG), then E(KUBECONFIG) and
        C(~/.kube/config). Not used otherwise.
    type: path
  context:
    description: The kubeconfig context to read that ConfigMap with. Defaults to E(K8S_AUTH_CONTEXT).
    type: str
  api_url:
    description:
      - The Prefect 2/3 API. Self-hosted C(http://HOST:4200/api); Prefect Cloud
        C(https://api.prefect.cloud/api/accounts/ACCOUNT_ID/workspaces/WORKSPACE_ID).
      - Defaults to the environment variable E(PREFECT_API_URL).
    type: str
attributes:
  check_mode:
    support: full
    details: Reads only, and reports the change a real run would make.
  diff_mode:
    support: full
    details: Before and after of the pool's fields, its base job template and its queue names.
  idempotent:
    support: full
    details: A rerun with the same input sends no write and reports no change.
seealso:
  - module: qhub.prefect.prefect_agent_config
  - module: qhub.prefect.prefect_worker_status
'''

EXAMPLES = r'''
- name: The pool a QHub worker polls, with the job resources of the QHub config
  qhub.prefect.prefect_work_pool:
    name: qhub
    api_url: http://prefect-server.prefect:4200/api
    job_namespace: dev
    overrides:
      IMAGE_PULL_POLICY: IfNotPresent
      prefect_agent:
        job:
          resources:
            limit: {cpu: 4, memory: 8Gi}
            request: {cpu: 500m, memory: 1Gi}
      envVars:
        DASK_GATEWAY__ADDRESS: http://dask-gateway.dev
    secret_env_names: [DATABASE_PASSWORD]
    secret_name: prefect-worker
    work_queues: [dev]

- name: A process pool with a template of its own, in Prefect Cloud
  qhub.prefect.prefect_work_pool:
    name: local
    type: process
    base_job_template: "{{ lookup('ansible.builtin.file', 'process-template.json') | from_json }}"
    api_url: https://api.prefect.cloud/api/accounts/{{ account_id }}/workspaces/{{ workspace_id }}
    api_key: "{{ prefect_cloud_key }}"

- name: Remove the pool
  qhub.prefect.prefect_work_pool:
    name: qhub
    state: absent
'''

RETURN = r'''
work_pool:
  description: The pool after the run (predicted in check mode, where a new pool has no id); empty when absent.
  returned: always
  type: dict
  contains:
    id:
      description: The pool's id.
      type: str
    name:
      description: Its name.
      type: str
    type:
      description: Its worker type.
      type: str
    description:
      description: Its description.
      type: str
    is_paused:
      description: Whether it is paused.
      type: bool
    concurrency_limit:
      description: Its concurrency limit, null for none.
      type: int
    base_job_template:
      description: Its base job template.
      type: dict
    status:
      description: C(READY) when a worker polls it, else C(NOT_READY) or C(PAUSED).
      type: str
  sample: {name: qhub, type: kubernetes, description: null, is_paused: false, concurrency_limit: null,
           base_job_template: {job_configuration: {}, variables: {}}, status: NOT_READY}
work_queues:
  description: Names of the pool's work queues after the run; empty when absent.
  returned: always
  type: list
  elements: str
  sample: [default, dev]
differences:
  description: What differed and was (or in check mode would be) changed, C(work_pool) for a creation or deletion,
    a field name (C(description), C(is_paused), C(base_job_template), C(concurrency_limit)) for an update,
    C(work_queue:NAME) for a queue created.
  returned: always
  type: list
  elements: str
  sample: [base_job_template, "work_queue:dev"]
requests:
  description: HTTP requests sent to the Prefect API, retries included.
  returned: always
  type: int
  sample: 2
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.qhub.prefect.plugins.module_utils._runners import prefect_work_pool as runner
from ansible_collections.qhub.prefect.plugins.module_utils._runners.options import module_spec


def main():
    # plugins/action/prefect_work_pool.py runs the same runner inside the controller when the task runs there.
    runner.run(AnsibleModule(**module_spec(runner)))


if __name__ == "__main__":
    main()
