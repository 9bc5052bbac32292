#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, qhub.prefect contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: prefect_worker_status
short_description: List the workers of a Prefect 2/3 work pool, or wait until one is online
version_added: 0.1.0
author: qhub.prefect contributors (@qhub-prefect)
description:
  - Lists the workers that have sent heartbeats to a work pool, with their status (C(ONLINE), or C(OFFLINE) after
    three missed heartbeats).
  - With O(wait_online=true), waits until a worker (whose name starts with O(name_prefix), when given) is
    C(ONLINE), and fails otherwise. A rollout alone does not prove a worker works, since a worker with a bad API
    key keeps running and looks healthy to Kubernetes; this proves it reached the Prefect API.
  - Never changes anything.
extends_documentation_fragment:
  - qhub.prefect.attributes
  - qhub.prefect.prefect_api
options:
  work_pool:
    description: Name of the work pool.
    type: str
    required: true
  name_prefix:
    description:
      - Only workers whose name starts with this. Workers deployed by M(qhub.prefect.prefect_agent_config) are named
        after the Deployment.
    type: str
  wait_online:
    description: Wait until a matching worker is C(ONLINE); fail after O(timeout) seconds otherwise.
    type: bool
    default: false
  timeout:
    description:
      - With O(wait_online), the seconds to wait for a worker to come online.
      - Also the longest any one HTTP request may take (at most 30 s).
    type: int
    default: 120
  poll_interval:
    description: Seconds between two looks at the pool's workers while waiting.
    type: int
    default: 5
  api_url:
    description:
      - The Prefect 2/3 API. Self-hosted C(http://HOST:4200/api); Prefect Cloud
        C(https://api.prefect.cloud/api/accounts/ACCOUNT_ID/workspaces/WORKSPACE_ID).
      - Defaults to the environment variable E(PREFECT_API_URL).
    type: str
attributes:
  check_mode:
    support: full
    details: Reads only, so it runs (and waits) the same in check mode.
  diff_mode:
    support: none
  idempotent:
    support: full
    details: Never changes anything.
seealso:
  - module: qhub.prefect.prefect_agent_config
  - module: qhub.prefect.prefect_work_pool
'''

EXAMPLES = r'''
- name: Wait until the worker just rolled out is online in the pool
  qhub.prefect.prefect_worker_status:
    work_pool: qhub
    name_prefix: prefect-worker
    wait_online: true
    timeout: 180

- name: List the workers of the pool
  qhub.prefect.prefect_worker_status:
    work_pool: qhub
  register: pool_workers
'''

RETURN = r'''
workers:
  description: The pool's workers that match O(name_prefix), as the API lists them.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The worker's name.
      type: str
    status:
      description: C(ONLINE) or C(OFFLINE).
      type: str
    last_heartbeat_time:
      description: When it last sent a heartbeat.
      type: str
    heartbeat_interval_seconds:
      description: Seconds between its heartbeats.
      type: int
  sample: [{name: prefect-worker, status: ONLINE, last_heartbeat_time: "2026-01-01T00:00:00Z",
            heartbeat_interval_seconds: 30}]
online:
  description: Names of the matching workers that are C(ONLINE).
  returned: always
  type: list
  elements: str
  sample: [prefect-worker]
waited:
  description: Seconds spent waiting for an online worker (0 without O(wait_online)).
  returned: always
  type: float
  sample: 12.5
requests:
  description: HTTP requests sent to the Prefect API, retries included.
  returned: always
  type: int
  sample: 3
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.qhub.prefect.plugins.module_utils._runners import prefect_worker_status as runner
from ansible_collections.qhub.prefect.plugins.module_utils._runners.options import module_spec


def main():
    # plugins/action/prefect_worker_status.py runs the same runner inside the controller when the task runs there.
    runner.run(AnsibleModule(**module_spec(runner)))


if __name__ == "__main__":
    main()
