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
  api_url:
    description:
      - The Prefect 2/3 API. Self-hosted C(http://HOST:4200/api); Prefect Cloud
        C(https://api.prefect.cloud/api/accounts/ACCOUNT_ID/workspaces/WORKSPACE_ID).
      - Defaults to the environment variable E(PREFECT_API_URL).
    type: str
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: Reads only, and reports the change a real run would make.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
    details: Before and after of the pool's fields, its base job template and its queue names.
  idempotent:
    description: When run twice in a row outside check mode, with the same arguments, the second invocation
      indicates no change.
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

import os
import re

from ansible.module_utils.basic import AnsibleModule

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


def main():
    argument_spec = prefect_api_argument_spec()
    argument_spec.update(
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
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           mutually_exclusive=[("base_job_template", option) for option in DERIVED])
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


if __name__ == "__main__":
    main()
