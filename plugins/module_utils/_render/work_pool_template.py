# -*- coding: utf-8 -*-
# Copyright: (c) 2026, qhub.prefect contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A Kubernetes work pool's base job template with the QHub overrides applied. Pure."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy

from ansible_collections.qhub.prefect.plugins.module_utils._prefect.base_job_template import DEFAULT_BASE_JOB_TEMPLATE
from ansible_collections.qhub.prefect.plugins.module_utils._render.flow_run import FlowRun, apply_to_base_template


def _job_container(template):
    return template["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]["containers"][0]


def server_default_template(view):
    """The kubernetes worker type's default template from the server's aggregate-worker-metadata view, or None."""
    try:
        template = view["prefect-kubernetes"]["kubernetes"]["default_base_job_configuration"]
        _job_container(template)
        template["variables"]["properties"]
    except (KeyError, IndexError, TypeError):
        return None
    return template


def build_base_job_template(job, namespace, service_account_name, secret_env_names=(), secret_name=None, image=None,
                            base=None):
    """The Kubernetes default template (``base``: the server's, else the shipped copy) with the overrides as defaults.

    Resources, pull policy and image stay variables whose defaults are the qhub-config's, so a
    deployment's ``job_variables`` can still change them for its runs. The variables are declared
    here when the base template predates them (prefect-kubernetes before 0.7.6): the worker fills
    placeholders from the pool's own schema, whatever its version. A resource left unset has no
    default, so Prefect drops the field instead of sending an empty quantity. Secret env vars
    (``secret_env_names``, in the Secret ``secret_name``) are ``secretKeyRef`` entries, so their values
    never reach the pool or the flow run's manifest as plain text; the worker prepends its own env
    to that list. The flow-run pod's values come from the builder Prefect 1 uses too (flow_run.py).
    """
    flow_run = FlowRun(job, secret_env_names, secret_name=secret_name, service_account=service_account_name,
                       image=image)
    template = apply_to_base_template(flow_run, copy.deepcopy(base or DEFAULT_BASE_JOB_TEMPLATE))
    properties = template["variables"]["properties"]
    if namespace is not None and "namespace" in properties:
        properties["namespace"]["default"] = namespace
    return template
