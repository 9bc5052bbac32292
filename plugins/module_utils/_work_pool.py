# -*- coding: utf-8 -*-
# Copyright: (c) 2026, qhub.prefect contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""prefect_work_pool: options and logic, shared by the module and its controller-side action plugin."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re

from ansible_collections.qhub.prefect.plugins.module_utils._prefect3 import (
    Prefect3Client, ensure_work_pool, reserved_name,
)
from ansible_collections.qhub.prefect.plugins.module_utils._prefect_common import (
    fail_api, http_client, prefect_api_argument_spec,
)
from ansible_collections.qhub.prefect.plugins.module_utils._prefect_http import PrefectApiError
from ansible_collections.qhub.prefect.plugins.module_utils._qhub_config import (
    ConfigError, parse_overrides, validate_image, validate_namespace,
)
from ansible_collections.qhub.prefect.plugins.module_utils._work_pool_template import build_base_job_template

DERIVED = ("overrides", "secret_env_names", "secret_name", "job_namespace", "service_account_name", "job_image")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def derived_template(params):
    """The kubernetes template from QHub's overrides; ConfigError names the option at fault."""
    overrides = params["overrides"] or {}
    if "secretEnvVars" in overrides:
        raise ConfigError("overrides.secretEnvVars", "secret values are not accepted by prefect_work_pool, since "
                          "they would be stored in the pool as plain text: give their names in secret_env_names "
                          "and the Secret that holds them in secret_name")
    job, _secret_env = parse_overrides(overrides, dict(os.environ), path="overrides")
    names = params["secret_env_names"] or []
    for index, name in enumerate(names):
        if not isinstance(name, str) or not _ENV_NAME.match(name):
            raise ConfigError("secret_env_names[%d]" % index, "%r is not a valid environment variable name" % (name,))
        if name in job.env:
            raise ConfigError("secret_env_names[%d]" % index, "%s is also a plain variable in overrides.envVars" % name)
    secret_name = params["secret_name"]
    if names and not secret_name:
        raise ConfigError("secret_name", "required with secret_env_names: the Secret the flow runs read them from")
    if secret_name and (len(secret_name) > 253 or not _DNS_SUBDOMAIN.match(secret_name)):
        raise ConfigError("secret_name", "%r is not a valid Secret name" % secret_name)
    if params["job_namespace"] is not None:
        validate_namespace(params["job_namespace"], "job_namespace")
    if params["service_account_name"] is not None and not _DNS_SUBDOMAIN.match(params["service_account_name"]):
        raise ConfigError("service_account_name", "%r is not a valid ServiceAccount name"
                          % params["service_account_name"])
    if params["job_image"] is not None:
        validate_image(params["job_image"], "job_image")
    job.secret_env_names = sorted(set(names))
    return build_base_job_template(job, params["job_namespace"], params["service_account_name"],
                                   secret_name=secret_name if names else None, image=params["job_image"])


MUTUALLY_EXCLUSIVE = [("base_job_template", option) for option in DERIVED]


def argument_spec():
    """The options of prefect_work_pool (its DOCUMENTATION says what each does)."""
    spec = prefect_api_argument_spec()
    spec.update(
        name=dict(type="str", required=True),
        type=dict(type="str", default="kubernetes"),
        state=dict(type="str", default="present", choices=["present", "absent"]),
        base_job_template=dict(type="dict"),
        overrides=dict(type="dict"),
        secret_env_names=dict(type="list", elements="str", no_log=False),
        secret_name=dict(type="str"),
        job_namespace=dict(type="str"),
        service_account_name=dict(type="str"),
        job_image=dict(type="str"),
        work_queues=dict(type="list", elements="str"),
        description=dict(type="str"),
        concurrency_limit=dict(type="int"),
        paused=dict(type="bool"),
    )
    return spec


def run(module):
    """prefect_work_pool on an AnsibleModule, or on the controller's stand-in for one."""
    params = module.params
    name = params["name"]
    if not name or not name.strip():
        module.fail_json(msg="name: a work pool needs a non-empty name")
    if reserved_name(name):
        module.fail_json(msg="name: work pool names starting with 'prefect' are reserved by Prefect, which refuses "
                             "to create, change or delete them (%r); choose another name" % name)

    desired = dict(description=params["description"], is_paused=params["paused"],
                   concurrency_limit=params["concurrency_limit"], base_job_template=params["base_job_template"])
    if params["state"] == "present":
        derived_given = [option for option in DERIVED if params[option] not in (None, [], {}, "")]
        if params["base_job_template"] is None and params["type"] == "kubernetes":
            try:
                desired["base_job_template"] = derived_template(params)
            except ConfigError as exc:
                module.fail_json(msg=str(exc))
        elif derived_given and params["type"] != "kubernetes":
            module.fail_json(msg="%s: derive a base job template only for a kubernetes pool; for a %s pool give "
                                 "base_job_template" % (derived_given[0], params["type"]))
        queues = params["work_queues"] or []
        for index, queue in enumerate(queues):
            if not queue or not queue.strip():
                module.fail_json(msg="work_queues[%d]: a work queue needs a non-empty name" % index)

    http = http_client(module, generation="prefect3")
    client = Prefect3Client(http)
    try:
        outcome = ensure_work_pool(client, name, params["type"], desired, params["work_queues"],
                                   params["state"], module.check_mode)
    except PrefectApiError as exc:
        fail_api(module, exc, http)

    result = dict(changed=outcome["changed"], work_pool=outcome["work_pool"], work_queues=outcome["work_queues"],
                  differences=outcome["differences"], requests=http.requests)
    if module._diff:
        result["diff"] = dict(before=outcome["before"], after=outcome["after"])
    module.exit_json(**result)
