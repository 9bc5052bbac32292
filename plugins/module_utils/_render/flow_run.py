# -*- coding: utf-8 -*-
# Copyright: (c) 2026, qhub.prefect contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What every flow-run container and pod gets from the QHub config, for both generations. Pure.

``FlowRun`` decides the values once. The generations differ only in how they express them:
Prefect 1 writes them into the agent's Job template (``literal_job``); Prefect 2/3 writes a
``{{ variable }}`` placeholder where the value goes and makes the value that variable's default
(``apply_to_base_template``), so a deployment's ``job_variables`` can still change it per run.
An override reaches both generations by reaching ``FlowRun``:
tests/unit/plugins/module_utils/_render/test_flow_run.py walks every accepted override through both outputs.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy

from ansible_collections.qhub.prefect.plugins.module_utils._qhub.job_options import JOB_OPTIONS


class Setting:
    """One value of the flow-run pod: its work-pool variable, where it goes, and how Prefect 2/3 declares it."""

    def __init__(self, variable, where, path, declaration=None):
        self.variable = variable
        self.where = where  # "container" (the flow-run container) or "pod" (its pod spec)
        self.path = path
        self.declaration = declaration


# The overrides' variables as their declarations say (job_options.JOB_OPTIONS), and the two that come from
# options of their own; sorted by variable, the order Prefect 2/3's template has always been built in.
SETTINGS = tuple(sorted(
    [Setting(option.flow_run.variable, option.flow_run.where, option.flow_run.path, option.flow_run.declaration)
     for option in JOB_OPTIONS if option.flow_run is not None and option.flow_run.variable]
    + [Setting("image", "container", ("image",)), Setting("service_account_name", "pod", ("serviceAccountName",))],
    key=lambda setting: setting.variable))
# The JobSettings fields the flow-run pod takes as work-pool variables (image_pull_secrets is written literally).
JOB_FIELDS = tuple(option.field for option in JOB_OPTIONS if option.flow_run is not None and option.flow_run.variable)


def secret_env_ref(secret_name, name):
    """An env entry that reads ``name`` from the Secret, so the value never appears in a manifest."""
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret_name, "key": name}}}


class FlowRun:
    """Every value a flow-run container and its pod get, whatever the generation.

    ``job``: the parsed overrides (JobSettings); ``secret_env_names``: the secret env vars, read from
    the Secret ``secret_name``; ``service_account``: the pods' ServiceAccount; ``image``: the flow-run
    image (Prefect 2/3 only: a Prefect 1 flow's run config names its image).
    """

    def __init__(self, job, secret_env_names=(), secret_name=None, service_account=None, image=None):
        names = sorted(secret_env_names or ())
        if names and not secret_name:
            raise ValueError("secret_name is required when there are secret env vars")
        self.values = dict((field, getattr(job, field)) for field in JOB_FIELDS)
        self.values["image"] = image
        self.values["service_account_name"] = service_account
        # Plain values as given, secret ones only as references: the worker (Prefect 2/3) puts the plain
        # ones before the references, as the Prefect 1 template lists them.
        self.env = dict(job.env)
        self.secret_env = [secret_env_ref(secret_name, name) for name in names]
        self.image_pull_secrets = [{"name": name} for name in job.image_pull_secrets or []]

    def plain_env(self):
        return [{"name": name, "value": value} for name, value in sorted(self.env.items())]


def _put(target, path, value):
    for key in path[:-1]:
        target = target.setdefault(key, {})
    target[path[-1]] = value


def literal_job(flow_run):
    """Prefect 1: the Job template the agent merges into every flow-run Job, values written as they are.

    Prefect 1.x agents ignore the JOB_* env vars (0.x read them), and QHub's chart never read
    ``prefect_agent.job`` at all: the template carries the overrides on every version.
    """
    container = {"name": "flow"}
    pod_spec = {"containers": [container]}
    for setting in SETTINGS:
        value = flow_run.values[setting.variable]
        if value:
            _put(container if setting.where == "container" else pod_spec, setting.path, value)
    env = flow_run.plain_env() + flow_run.secret_env
    if env:
        container["env"] = env
    if flow_run.image_pull_secrets:
        pod_spec["imagePullSecrets"] = list(flow_run.image_pull_secrets)
    return {"apiVersion": "batch/v1", "kind": "Job", "spec": {"template": {"spec": pod_spec}}}


def _set_default(properties, variable, value):
    if value is not None and variable in properties:
        properties[variable]["default"] = value


def apply_to_base_template(flow_run, template):
    """Prefect 2/3: ``template`` (a Kubernetes base job template, changed in place) with the values as defaults.

    Plain env goes into the ``env`` variable, which the worker turns into the container's env ahead of
    the ``secretKeyRef`` entries written here (and of its own settings).
    """
    properties = template["variables"]["properties"]
    pod_spec = template["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]
    container = pod_spec["containers"][0]
    # Every quantity a variable of its own, whatever the base's resources held.
    container["resources"] = {}
    for setting in SETTINGS:
        value = flow_run.values[setting.variable]
        if setting.declaration:
            properties.setdefault(setting.variable, copy.deepcopy(setting.declaration))
            properties[setting.variable].pop("default", None)
            if value is not None:
                properties[setting.variable]["default"] = value
        else:
            _set_default(properties, setting.variable, value)
        _put(container if setting.where == "container" else pod_spec, setting.path, "{{ %s }}" % setting.variable)
    if flow_run.env:
        _set_default(properties, "env", dict(flow_run.env))
    if flow_run.image_pull_secrets:
        pod_spec["imagePullSecrets"] = list(flow_run.image_pull_secrets)
    if flow_run.secret_env:
        container["env"] = list(flow_run.secret_env)
    return template
