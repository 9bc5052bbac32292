# -*- coding: utf-8 -*-
# Copyright: (c) 2026, qhub.prefect contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A Kubernetes work pool's base job template with the QHub overrides applied. Pure."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy

from ansible_collections.qhub.prefect.plugins.module_utils._prefect.base_job_template import DEFAULT_BASE_JOB_TEMPLATE

RESOURCE_VARIABLES = {
    "cpu_request": ("requests", "cpu", "CPU Request", "The CPU request of the flow-run container (500m, 2)."),
    "cpu_limit": ("limits", "cpu", "CPU Limit", "The CPU limit of the flow-run container (500m, 2)."),
    "memory_request": ("requests", "memory", "Memory Request", "The memory request of the flow-run container (1Gi)."),
    "memory_limit": ("limits", "memory", "Memory Limit", "The memory limit of the flow-run container (4Gi)."),
}


def _job_container(template):
    return template["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]["containers"][0]


def _set_default(template, variable, value):
    if value is not None and variable in template["variables"]["properties"]:
        template["variables"]["properties"][variable]["default"] = value


def _string_variable(title, description):
    return {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None, "title": title,
            "description": description}


def server_default_template(view):
    """The kubernetes worker type's default template from the server's aggregate-worker-metadata view, or None."""
    try:
        template = view["prefect-kubernetes"]["kubernetes"]["default_base_job_configuration"]
        _job_container(template)
        template["variables"]["properties"]
    except (KeyError, IndexError, TypeError):
        return None
    return template


def build_base_job_template(job, namespace, service_account_name, secret_name=None, image=None, base=None):
    """The Kubernetes default template (``base``: the server's, else the shipped copy) with the overrides as defaults.

    Resources, pull policy and image stay variables whose defaults are the qhub-config's, so a
    deployment's ``job_variables`` can still change them for its runs. The variables are declared
    here when the base template predates them (prefect-kubernetes before 0.7.6): the worker fills
    placeholders from the pool's own schema, whatever its version. A resource left unset has no
    default, so Prefect drops the field instead of sending an empty quantity. Secret env vars are
    ``secretKeyRef`` entries, so their values never reach the pool or the flow run's manifest as plain
    text; the worker prepends its own env to that list.
    """
    template = copy.deepcopy(base or DEFAULT_BASE_JOB_TEMPLATE)
    properties = template["variables"]["properties"]
    container = _job_container(template)
    pod_spec = template["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]

    resources = {}
    for variable, (kind, resource, title, description) in sorted(RESOURCE_VARIABLES.items()):
        properties.setdefault(variable, _string_variable(title, description))
        properties[variable].pop("default", None)
        value = getattr(job, variable)
        if value is not None:
            properties[variable]["default"] = value
        resources.setdefault(kind, {})[resource] = "{{ %s }}" % variable
    container["resources"] = resources
    container["image"] = "{{ image }}"
    container["imagePullPolicy"] = "{{ image_pull_policy }}"

    _set_default(template, "namespace", namespace)
    _set_default(template, "service_account_name", service_account_name)
    _set_default(template, "image_pull_policy", job.image_pull_policy)
    _set_default(template, "image", image)
    if job.env:
        _set_default(template, "env", dict(job.env))
    if job.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": name} for name in job.image_pull_secrets]
    if job.secret_env_names:
        if not secret_name:
            raise ValueError("secret_name is required when there are secret env vars")
        container["env"] = [
            {"name": name, "valueFrom": {"secretKeyRef": {"name": secret_name, "key": name}}}
            for name in sorted(job.secret_env_names)
        ]
    return template
