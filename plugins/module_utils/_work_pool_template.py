# -*- coding: utf-8 -*-
# Copyright: (c) 2026, qhub.prefect contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A Kubernetes work pool's base job template with the QHub overrides applied. Pure."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy

from ansible_collections.qhub.prefect.plugins.module_utils._kubernetes_job_template import (
    DEFAULT_BASE_JOB_TEMPLATE,
)

RESOURCE_VARIABLES = ("cpu_request", "cpu_limit", "memory_request", "memory_limit")


def _job_container(template):
    return template["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]["containers"][0]


def _set_default(template, variable, value):
    if value is not None and variable in template["variables"]["properties"]:
        template["variables"]["properties"][variable]["default"] = value


def build_base_job_template(job, namespace, service_account_name, secret_name=None, image=None):
    """The default Kubernetes template, with the overrides as defaults or literal manifest fields.

    Resources are written into the Job manifest itself rather than left to the cpu/memory
    variables, which only exist from prefect-kubernetes 0.7.6 on: older workers would drop them.
    Secret env vars are ``secretKeyRef`` entries, so their values never reach the pool or the
    flow run's manifest as plain text; the worker prepends its own env to that list.
    """
    template = copy.deepcopy(DEFAULT_BASE_JOB_TEMPLATE)
    properties = template["variables"]["properties"]
    container = _job_container(template)
    pod_spec = template["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]

    for variable in RESOURCE_VARIABLES:
        properties.pop(variable, None)
    resources = job.resources()
    if resources:
        container["resources"] = resources
    else:
        container.pop("resources", None)

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
