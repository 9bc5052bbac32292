#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, qhub.prefect contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: prefect_project
short_description: Create, update or delete a Prefect 1 project
version_added: 0.1.0
author: qhub.prefect contributors (@qhub-prefect)
description:
  - Makes sure a project of a Prefect 1 API (the GraphQL API of Prefect Server 1 or Prefect Cloud 1) exists with
    the given description, or does not exist. Prefect 1 agents run the flows registered in projects.
  - Reads the project by name first and writes only what differs.
  - Prefect Cloud 1 (U(https://api.prefect.io)) was frozen for all plans in October 2023, so today this module
    serves a self-hosted Prefect Server 1, whose API is at C(http://HOST:4200/graphql).
  - A new project is created in O(tenant_id), or else in the API key's tenant (Prefect Cloud 1, C(auth_info)),
    or else in the server's first tenant (Prefect Server 1, C(tenant)).
extends_documentation_fragment:
  - qhub.prefect.attributes
  - qhub.prefect.prefect_api
options:
  name:
    description: Name of the project.
    type: str
    required: true
  description:
    description:
      - Description of the project. Left as it is when not given.
    type: str
  state:
    description: C(present) creates or updates the project; C(absent) deletes it (and the flows registered in it).
    type: str
    choices: [present, absent]
    default: present
  tenant_id:
    description:
      - Tenant of the project, sent as the C(X-PREFECT-TENANT-ID) header and used to find and create the project.
      - Needed only when several tenants hold a project of that name.
      - Defaults to the environment variable E(PREFECT__CLOUD__TENANT_ID).
    type: str
  api_url:
    description:
      - The Prefect 1 GraphQL API. Prefect Server 1 C(http://HOST:4200/graphql); Prefect Cloud 1
        C(https://api.prefect.io) (frozen since October 2023).
      - Defaults to the environment variable E(PREFECT__CLOUD__API), then E(PREFECT_API_URL) (the same two, in
        the same order, that M(qhub.prefect.prefect_agent_config) gives a Prefect 1 agent), then
        C(https://api.prefect.io).
      - An API key is required for Prefect Cloud and optional for a self-hosted Prefect Server 1.
    type: str
  api_auth_string:
    description: Not used by Prefect 1.
    type: str
attributes:
  check_mode:
    support: full
    details: Reads only, and reports the change a real run would make.
  diff_mode:
    support: full
    details: Before and after of the project's name and description.
  idempotent:
    support: full
    details: A rerun with the same input sends no write and reports no change.
seealso:
  - module: qhub.prefect.prefect_agent_config
  - module: qhub.prefect.prefect_work_pool
'''

EXAMPLES = r'''
- name: The project QHub's Prefect 1 flows are registered in, on a self-hosted Prefect Server 1
  qhub.prefect.prefect_project:
    name: qhub
    description: Flows of the dev QHub
    api_url: http://prefect-apollo.prefect:4200/graphql

- name: Remove it
  qhub.prefect.prefect_project:
    name: qhub
    api_url: http://prefect-apollo.prefect:4200/graphql
    state: absent
'''

RETURN = r'''
project:
  description: The project after the run (predicted in check mode, where a new project has no id yet); empty when
    absent.
  returned: always
  type: dict
  sample: {id: 0f5d2b7e-3a51-4c1e-9d3a-8b1e6f1c2a77, name: qhub, description: Flows of the dev QHub}
  contains:
    id:
      description: The project's id.
      type: str
    name:
      description: Its name.
      type: str
    description:
      description: Its description.
      type: str
differences:
  description: What differed and was (or in check mode would be) changed, C(project) for a creation or deletion,
    C(description) for an update.
  returned: always
  type: list
  elements: str
  sample: [description]
requests:
  description: HTTP requests sent to the Prefect API, retries included.
  returned: always
  type: int
  sample: 1
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.qhub.prefect.plugins.module_utils._runners import prefect_project as runner
from ansible_collections.qhub.prefect.plugins.module_utils._runners.options import module_spec


def main():
    # plugins/action/prefect_project.py runs the same runner inside the controller when the task runs there.
    runner.run(AnsibleModule(**module_spec(runner)))


if __name__ == "__main__":
    main()
