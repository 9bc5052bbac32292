#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, qhub.prefect contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: kube_context_info
short_description: The API server a kubeconfig context points at, checked without contacting it
version_added: 0.2.0
author: qhub.prefect contributors (@qhub-prefect)
description:
  - Reads the kubeconfig the other modules of this collection would read with the same options, and returns the
    context, cluster, API server URL and default namespace it selects.
  - Fails, naming the kubeconfig and the contexts it holds, when the context does not exist, when no context is
    given and none is current, when the context names a cluster or user the kubeconfig does not hold, or when the
    kubeconfig is missing or unreadable.
  - The kubeconfig is read by the same code the other modules connect with, so this module and they agree on the
    server and refuse the same kubeconfigs with the same message.
  - C(playbooks/deploy.yml) runs it for every deployment of an inventory before anything is written, and tells
    deployments on the same cluster apart by the server URL.
  - Never contacts the API server, and never reads or returns the credentials in the kubeconfig.
extends_documentation_fragment:
  - qhub.prefect.attributes
  - qhub.prefect.attributes.info_module
options:
  kubeconfig:
    description:
      - Path of the kubeconfig. Without it, E(KUBECONFIG) (which may list several files, merged as C(kubectl)
        merges them; the first file to name a context, cluster or user wins), then C(~/.kube/config), then the
        in-cluster ServiceAccount.
      - Can also be set with the environment variable E(K8S_AUTH_KUBECONFIG).
    type: path
  context:
    description:
      - The context to use; without it, the kubeconfig's C(current-context).
      - Can also be set with the environment variable E(K8S_AUTH_CONTEXT).
    type: str
  host:
    description:
      - URL of the Kubernetes API server, which overrides the kubeconfig as it does in the other modules.
      - Can also be set with the environment variable E(K8S_AUTH_HOST).
    type: str
  kube_token:
    description:
      - Bearer token for the API server, as in the other modules. With O(host), no kubeconfig is read; without it,
        the kubeconfig (or the in-cluster ServiceAccount) must hold the credentials, and is checked.
      - Never returned.
      - Can also be set with the environment variable E(K8S_AUTH_API_KEY).
    type: str
seealso:
  - module: qhub.prefect.prefect_agent_config
'''

EXAMPLES = r'''
- name: Check the context exists before anything is written
  qhub.prefect.kube_context_info:
    kubeconfig: ~/.kube/config
    context: prod
  register: kube_target

- name: Show where the deployment goes
  ansible.builtin.debug:
    msg: "{{ kube_target.server }} ({{ kube_target.context }})"
'''

RETURN = r'''
server:
  description: URL of the API server, without a trailing slash.
  returned: always
  type: str
  sample: https://127.0.0.1:6443
context:
  description: Name of the context used; null with O(host) or in a cluster.
  returned: always
  type: str
  sample: prod
cluster:
  description: Name of the kubeconfig's cluster entry the context names; null with O(host) or in a cluster.
  returned: always
  type: str
  sample: prod-cluster
namespace:
  description: The context's default namespace, if it sets one.
  returned: always
  type: str
  sample: default
kubeconfig:
  description: The kubeconfig file (or files, separated by C(:)) that was read; null with O(host) or in a cluster.
  returned: always
  type: str
  sample: /home/ops/.kube/config
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.qhub.prefect.plugins.module_utils._runners import kube_context_info as runner
from ansible_collections.qhub.prefect.plugins.module_utils._runners.options import module_spec


def main():
    # plugins/action/kube_context_info.py runs the same runner inside the controller when the task runs there.
    runner.run(AnsibleModule(**module_spec(runner)))


if __name__ == "__main__":
    main()
