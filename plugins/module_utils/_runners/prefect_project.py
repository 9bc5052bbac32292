# -*- coding: utf-8 -*-
# Copyright: (c) 2026, qhub.prefect contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""prefect_project: one Prefect 1 project, by name, through the GraphQL API."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.module_utils.basic import env_fallback

from ansible_collections.qhub.prefect.plugins.module_utils._prefect.http import PrefectApiError
from ansible_collections.qhub.prefect.plugins.module_utils._prefect.v1 import Prefect1Client, ensure_project
from ansible_collections.qhub.prefect.plugins.module_utils._runners.options import (
    http_client, prefect_api_argument_spec,
)
from ansible_collections.qhub.prefect.plugins.module_utils._runners.failure import fail_from_exception


def argument_spec():
    """The options of prefect_project (its DOCUMENTATION says what each does)."""
    spec = prefect_api_argument_spec()
    spec.update(
        name=dict(type="str", required=True),
        description=dict(type="str"),
        state=dict(type="str", default="present", choices=["present", "absent"]),
        tenant_id=dict(type="str", fallback=(env_fallback, ["PREFECT__CLOUD__TENANT_ID"])),
    )
    return spec


def run(module):
    params = module.params
    if not params["name"].strip():
        module.fail_json(msg="name: a project needs a non-empty name")

    http = http_client(module, generation="prefect1")
    client = Prefect1Client(http, tenant_id=params["tenant_id"])
    try:
        outcome = ensure_project(client, params["name"], params["description"], params["state"], module.check_mode)
    except PrefectApiError as exc:
        fail_from_exception(module, exc, http, changed=False)

    result = dict(changed=outcome["changed"], project=outcome["project"], differences=outcome["differences"],
                  requests=http.requests)
    if module._diff:
        result["diff"] = dict(before=outcome["before"], after=outcome["after"])
    module.exit_json(**result)
