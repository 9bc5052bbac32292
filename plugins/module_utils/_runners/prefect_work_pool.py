# -*- coding: utf-8 -*-
# Copyright: (c) 2026, qhub.prefect contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""prefect_work_pool: options and logic, shared by the module and its controller-side action plugin."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import json
import os

from ansible.module_utils.basic import env_fallback

from ansible_collections.qhub.prefect.plugins.module_utils._prefect.v3 import (
    Prefect3Client, ensure_work_pool, reserved_name,
)
from ansible_collections.qhub.prefect.plugins.module_utils._runners.options import (
    http_client, prefect_api_argument_spec,
)
from ansible_collections.qhub.prefect.plugins.module_utils._runners.failure import fail_from_exception
from ansible_collections.qhub.prefect.plugins.module_utils._prefect.http import PrefectApiError
from ansible_collections.qhub.prefect.plugins.module_utils._kube.client import KubeClient, KubeError
from ansible_collections.qhub.prefect.plugins.module_utils._qhub.chart_values import check_base_job_template
from ansible_collections.qhub.prefect.plugins.module_utils._qhub.job_options import DNS_SUBDOMAIN, ENV_NAME
from ansible_collections.qhub.prefect.plugins.module_utils._qhub.errors import ConfigError
from ansible_collections.qhub.prefect.plugins.module_utils._qhub.images import validate_image
from ansible_collections.qhub.prefect.plugins.module_utils._qhub.names import validate_namespace
from ansible_collections.qhub.prefect.plugins.module_utils._qhub.overrides import parse_overrides
from ansible_collections.qhub.prefect.plugins.module_utils._render.work_pool_template import (
    build_base_job_template, server_default_template,
)

# Recorded in the template's variables schema ($comment, which JSON Schema ignores): a digest of the input
# it was built from. A rerun with the same input then needs neither the server's default template nor a write.
INPUT_MARK = "qhub.prefect input "

DERIVED = ("overrides", "secret_env_names", "secret_name", "job_namespace", "service_account_name", "job_image")


# The key of the chart's base job template ConfigMap (worker.config.baseJobTemplate.existingConfigMapName).
BASE_JOB_TEMPLATE_KEY = "baseJobTemplate.json"


def custom_base(job, read_config_map):
    """The user's own base job template (the chart's worker.config.baseJobTemplate), or None.

    ``read_config_map(name)``: the ConfigMap's data, read on every run so a change to it reaches the pool.
    """
    chart = job.chart
    if chart["worker.config.baseJobTemplate.configuration"] is not None:
        return chart["worker.config.baseJobTemplate.configuration"]
    name = chart["worker.config.baseJobTemplate.existingConfigMapName"]
    if not name:
        return None
    path = chart.paths["worker.config.baseJobTemplate.existingConfigMapName"]
    data = read_config_map(name)
    if data is None:
        raise ConfigError(path, "the ConfigMap %s does not exist" % name)
    if BASE_JOB_TEMPLATE_KEY not in data:
        raise ConfigError(path, "the ConfigMap %s has no key %s, where the chart keeps the template" % (
            name, BASE_JOB_TEMPLATE_KEY))
    return check_base_job_template(data[BASE_JOB_TEMPLATE_KEY], "%s (ConfigMap %s)" % (path, name))


def derived_template(params, base=None, read_config_map=None):
    """The kubernetes template from QHub's overrides; ConfigError names the option at fault.

    A custom base job template in the overrides takes the place of ``base``, and gets the overrides as
    variable defaults all the same.
    """
    overrides = params["overrides"] or {}
    if "secretEnvVars" in overrides:
        raise ConfigError("overrides.secretEnvVars", "secret values are not accepted by prefect_work_pool, since "
                          "they would be stored in the pool as plain text: give their names in secret_env_names "
                          "and the Secret that holds them in secret_name")
    job, referenced = parse_overrides(overrides, dict(os.environ), path="overrides")
    # An envVars value that is a QHUB_SECRET_ reference is a secret (parse_overrides): the pool gets its
    # name, as a secretKeyRef into the Secret, never the value.
    names = list(params["secret_env_names"] or []) + sorted(referenced)
    for index, name in enumerate(names):
        if not isinstance(name, str) or not ENV_NAME.match(name):
            raise ConfigError("secret_env_names[%d]" % index, "%r is not a valid environment variable name" % (name,))
        if name in job.env:
            raise ConfigError("secret_env_names[%d]" % index, "%s is also a plain variable in overrides.envVars" % name)
    secret_name = params["secret_name"]
    if names and not secret_name:
        raise ConfigError("secret_name", "required with secret_env_names or QHUB_SECRET_ references in "
                          "overrides.envVars: the Secret the flow runs read them from")
    if secret_name and (len(secret_name) > 253 or not DNS_SUBDOMAIN.match(secret_name)):
        raise ConfigError("secret_name", "%r is not a valid Secret name" % secret_name)
    if params["job_namespace"] is not None:
        validate_namespace(params["job_namespace"], "job_namespace")
    if params["service_account_name"] is not None and not DNS_SUBDOMAIN.match(params["service_account_name"]):
        raise ConfigError("service_account_name", "%r is not a valid ServiceAccount name"
                          % params["service_account_name"])
    if params["job_image"] is not None:
        validate_image(params["job_image"], "job_image")
    custom = custom_base(job, read_config_map or (lambda name: None))
    namespace = job.chart["worker.config.jobNamespace"] or params["job_namespace"]
    try:
        return build_base_job_template(job, namespace, params["service_account_name"],
                                       secret_env_names=sorted(set(names)), secret_name=secret_name if names else None,
                                       image=params["job_image"], base=custom or base)
    except (KeyError, IndexError, TypeError):
        if custom is None:
            raise
        raise ConfigError("overrides.worker.config.baseJobTemplate", "the template has no job_configuration."
                          "job_manifest.spec.template.spec.containers[0] or variables.properties to put the "
                          "overrides in")


def input_mark(shipped_template):
    """Digest of the template built on the shipped copy: it changes with every input (env references included)."""
    return INPUT_MARK + hashlib.sha256(json.dumps(shipped_template, sort_keys=True).encode("utf-8")).hexdigest()


def _marked(template, mark):
    template["variables"]["$comment"] = mark
    return template


def _current_mark(pool):
    return (((pool or {}).get("base_job_template") or {}).get("variables") or {}).get("$comment")


def custom_base_given(params):
    chart_values = ((params["overrides"] or {}).get("worker") or {}).get("config") or {}
    return bool((chart_values.get("baseJobTemplate") or {}) if isinstance(chart_values, dict) else None)


def derived_template_wanted(params):
    return params["state"] == "present" and params["base_job_template"] is None and params["type"] == "kubernetes"


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
        # Where worker.config.baseJobTemplate.existingConfigMapName is read (the worker's namespace).
        config_map_namespace=dict(type="str"),
        kubeconfig=dict(type="path", fallback=(env_fallback, ["K8S_AUTH_KUBECONFIG"])),
        context=dict(type="str", fallback=(env_fallback, ["K8S_AUTH_CONTEXT"])),
    )
    return spec


def _config_map_reader(module):
    """read(name) -> the ConfigMap's data in config_map_namespace (else job_namespace), or None if absent."""
    params = module.params

    def read(name):
        namespace = params["config_map_namespace"] or params["job_namespace"]
        if not namespace:
            raise ConfigError("config_map_namespace", "needed to read the ConfigMap %s" % name)
        try:
            client = KubeClient(kubeconfig=params["kubeconfig"], context=params["context"])
            found = client.get("/api/v1/namespaces/%s/configmaps/%s" % (namespace, name))
        except KubeError as exc:
            raise ConfigError("overrides.worker.config.baseJobTemplate.existingConfigMapName",
                              "reading the ConfigMap %s/%s failed: %s" % (namespace, name, exc))
        return None if found is None else (found.get("data") or {})
    return read


def run(module):
    """prefect_work_pool on an AnsibleModule, or on the controller's stand-in for one."""
    params = module.params
    name = params["name"]
    shipped = None
    if not name or not name.strip():
        module.fail_json(msg="name: a work pool needs a non-empty name")
    if reserved_name(name):
        module.fail_json(msg="name: work pool names starting with 'prefect' are reserved by Prefect, which refuses "
                             "to create, change or delete them (%r); choose another name" % name)

    desired = dict(description=params["description"], is_paused=params["paused"],
                   concurrency_limit=params["concurrency_limit"], base_job_template=params["base_job_template"])
    if params["state"] == "present":
        derived_given = [option for option in DERIVED if params[option] not in (None, [], {}, "")]
        if derived_template_wanted(params):
            try:
                read_config_map = _config_map_reader(module)
                shipped = derived_template(params, read_config_map=read_config_map)  # validates before any request
            except ConfigError as exc:
                fail_from_exception(module, exc, report_key=False)
        elif derived_given and params["type"] != "kubernetes":
            module.fail_json(msg="%s: derive a base job template only for a kubernetes pool; for a %s pool give "
                                 "base_job_template" % (derived_given[0], params["type"]))
        queues = params["work_queues"] or []
        for index, queue in enumerate(queues):
            if not queue or not queue.strip():
                module.fail_json(msg="work_queues[%d]: a work queue needs a non-empty name" % index)

    http = http_client(module, generation="prefect3")
    client = Prefect3Client(http)
    template_source = None
    try:
        current = client.read_work_pool(name)
        if derived_template_wanted(params):
            mark = input_mark(shipped)
            if _current_mark(current) == mark:
                desired["base_job_template"] = current["base_job_template"]
                template_source = "unchanged input"
            elif custom_base_given(params):
                # The user's own template, already read and built on: the server's default plays no part.
                desired["base_job_template"] = _marked(shipped, mark)
                template_source = "overrides"
            else:
                base = server_default_template(client.worker_metadata_view() or {})
                template_source = "server" if base else "shipped copy"
                try:
                    desired["base_job_template"] = _marked(derived_template(params, base), mark)
                except (KeyError, IndexError, TypeError):
                    # A server template of a shape this collection does not know: the shipped copy.
                    desired["base_job_template"] = _marked(shipped, mark)
                    template_source = "shipped copy"
        outcome = ensure_work_pool(client, name, params["type"], desired, params["work_queues"],
                                   params["state"], module.check_mode, current=current)
    except PrefectApiError as exc:
        fail_from_exception(module, exc, http, changed=False)

    result = dict(changed=outcome["changed"], work_pool=outcome["work_pool"], work_queues=outcome["work_queues"],
                  differences=outcome["differences"], requests=http.requests)
    if template_source:
        result["base_job_template_source"] = template_source
    if module._diff:
        result["diff"] = dict(before=outcome["before"], after=outcome["after"])
    module.exit_json(**result)
