# -*- coding: utf-8 -*-
# Copyright: (c) 2026, qhub.prefect contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""QHub's own override keys, each flow-run and agent setting declared once. Pure.

A ``JobOption`` names every key that sets it (the Prefect Server chart's flat agent env, QHub's nested
chart values, the prefect-worker chart's key), how its value is checked, and where it lands: the
Prefect 1 agent's env, the flow-run pod (as a Prefect 2/3 work-pool variable or literally), the worker's
command line. Parsing (overrides.py), rendering (_render/flow_run.py, _render/objects.py) and the key
lists in docs/configuration.md are all derived from ``JOB_OPTIONS``; tests/unit/collection/test_declarations.py
holds the docs equal to it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ast
import json
import re

from ansible_collections.qhub.prefect.plugins.module_utils._kube.quantity import quantity_value
from ansible_collections.qhub.prefect.plugins.module_utils._common.errors import short
from ansible_collections.qhub.prefect.plugins.module_utils._qhub.errors import ConfigError, type_name

PULL_POLICIES = ("Always", "IfNotPresent", "Never")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def parse_quantity(value, path):
    """A Kubernetes quantity as the string the API server will store for it."""
    if isinstance(value, bool) or value is None or isinstance(value, (list, dict)):
        raise ConfigError(path, "%s is not a Kubernetes quantity (want for example 500m, 2 or 4Gi)" % type_name(value))
    text = str(value).strip() if not isinstance(value, float) else ("%f" % value).rstrip("0").rstrip(".")
    parsed = quantity_value(text)
    if parsed is None or parsed <= 0:
        raise ConfigError(path, "%s is not a Kubernetes quantity (want for example 500m, 2 or 4Gi)" % short(value))
    return text


def string_list(value, path, what):
    """A YAML list, or a string holding a JSON or Python list, or comma-separated items (QHub's docs' forms)."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except ValueError:
                try:
                    value = ast.literal_eval(text)
                except (ValueError, SyntaxError):
                    raise ConfigError(path, "%s is not a list of %s" % (short(value), what))
        else:
            value = [item.strip() for item in text.split(",") if item.strip()]
    if not isinstance(value, list):
        raise ConfigError(path, "%s is not a list of %s" % (type_name(value), what))
    out = []
    for index, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            raise ConfigError("%s[%d]" % (path, index), "%s is not a non-empty string" % short(item))
        out.append(item.strip())
    return out


def pull_secrets(value, path):
    names = string_list(value, path, "Secret names")
    for index, name in enumerate(names):
        if len(name) > 253 or not DNS_SUBDOMAIN.match(name):
            raise ConfigError("%s[%d]" % (path, index), "%s is not a valid Secret name" % short(name))
    return names


def labels(value, path):
    found = string_list(value, path, "labels")
    for index, label in enumerate(found):
        if len(label) > 255:
            raise ConfigError("%s[%d]" % (path, index), "a label is at most 255 characters")
    return found


def pull_policy(value, path):
    if value not in PULL_POLICIES:
        raise ConfigError(path, "%s is not an image pull policy (one of %s)" % (short(value), ", ".join(PULL_POLICIES)))
    return value


def _string_variable(title, description):
    return {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None, "title": title,
            "description": description}


class FlowRunTarget:
    """Where a setting goes in the flow-run pod.

    ``where``: "container" (the flow-run container) or "pod" (its pod spec); ``path``: the field there.
    ``variable``: the Prefect 2/3 work-pool variable whose default it becomes (None: written literally).
    ``declaration``: set for the variables this collection declares itself on base templates that
    predate them (the resources, before prefect-kubernetes 0.7.6). Those are ours entirely: left unset,
    they have no default, so Prefect drops the field instead of sending an empty quantity.
    """

    def __init__(self, where, path, variable=None, declaration=None):
        self.where = where
        self.path = path
        self.variable = variable
        self.declaration = declaration


class JobOption:
    """One setting of the flow runs (or of which flow runs the agent or worker takes).

    ``flat``: the Prefect Server chart's agent env key; ``nested``: QHub's chart value paths; ``chart``:
    the prefect-worker chart's key (worker only); ``agent_env``: the env var a Prefect 0.x agent reads it
    from; ``flow_run``: where it lands in the flow-run pod (None: not a pod setting); ``worker_flag``: the
    ``prefect worker start`` option it becomes; ``title``/``kind``: the docs' row.
    """

    def __init__(self, field, check, title, kind, flat, nested=(), chart=None, agent_env=None, flow_run=None,
                 worker_flag=None):
        self.field = field
        self.check = check
        self.title = title
        self.kind = kind
        self.flat = flat
        self.nested = tuple(nested)
        self.chart = chart
        self.agent_env = agent_env
        self.flow_run = flow_run
        self.worker_flag = worker_flag

    @property
    def is_quantity(self):
        return self.check is parse_quantity


def _resources(kind, singular, plural):
    return [("prefect_agent", "job", "resources", singular, kind), ("prefect_agent", "job", "resources", plural, kind)]


# Sorted by field: the order Prefect 2/3's template variables have always been written in.
JOB_OPTIONS = (
    JobOption("cpu_limit", parse_quantity, "CPU limit", "Kubernetes quantity", "JOB_CPU_LIMIT",
              _resources("cpu", "limit", "limits"), agent_env="JOB_CPU_LIMIT",
              flow_run=FlowRunTarget("container", ("resources", "limits", "cpu"), "cpu_limit", _string_variable(
                  "CPU Limit", "The CPU limit of the flow-run container (500m, 2)."))),
    JobOption("cpu_request", parse_quantity, "CPU request", "Kubernetes quantity", "JOB_CPU_REQUEST",
              _resources("cpu", "request", "requests"), agent_env="JOB_CPU_REQUEST",
              flow_run=FlowRunTarget("container", ("resources", "requests", "cpu"), "cpu_request", _string_variable(
                  "CPU Request", "The CPU request of the flow-run container (500m, 2)."))),
    JobOption("image_pull_policy", pull_policy, "Image pull policy", "`Always`, `IfNotPresent` or `Never`",
              "IMAGE_PULL_POLICY", [("prefect_agent", "job", "imagePullPolicy")], agent_env="IMAGE_PULL_POLICY",
              flow_run=FlowRunTarget("container", ("imagePullPolicy",), "image_pull_policy")),
    JobOption("image_pull_secrets", pull_secrets, "Image pull secrets", "list of Secret names", "IMAGE_PULL_SECRETS",
              [("prefect_agent", "job", "imagePullSecrets")], agent_env="IMAGE_PULL_SECRETS",
              flow_run=FlowRunTarget("pod", ("imagePullSecrets",))),
    # Where QHub's chart (values.yaml, 2021 to 2023) kept the agent labels; its default was the string '[]'.
    JobOption("labels", labels, "Labels", "list of strings", "PREFECT__CLOUD__AGENT__LABELS",
              [("prefect_agent", "prefectLabels"), ("prefectLabels",)], chart="worker.config.workQueues",
              agent_env="PREFECT__CLOUD__AGENT__LABELS", worker_flag="--work-queue"),
    JobOption("memory_limit", parse_quantity, "Memory limit", "Kubernetes quantity", "JOB_MEM_LIMIT",
              _resources("memory", "limit", "limits"), agent_env="JOB_MEM_LIMIT",
              flow_run=FlowRunTarget("container", ("resources", "limits", "memory"), "memory_limit", _string_variable(
                  "Memory Limit", "The memory limit of the flow-run container (4Gi)."))),
    JobOption("memory_request", parse_quantity, "Memory request", "Kubernetes quantity", "JOB_MEM_REQUEST",
              _resources("memory", "request", "requests"), agent_env="JOB_MEM_REQUEST",
              flow_run=FlowRunTarget("container", ("resources", "requests", "memory"), "memory_request",
                                     _string_variable("Memory Request",
                                                      "The memory request of the flow-run container (1Gi)."))),
)
OPTION_BY_FIELD = dict((option.field, option) for option in JOB_OPTIONS)

# Derived: every spelling and the field it sets.
FLAT_OVERRIDES = dict((option.flat, option.field) for option in JOB_OPTIONS)
NESTED_OVERRIDES = dict((path, option.field) for option in JOB_OPTIONS for path in option.nested)
FIELDS = tuple(sorted(OPTION_BY_FIELD))
# The fields a flow-run pod takes (the others say which flow runs are taken: labels).
FLOW_RUN_FIELDS = tuple(option.field for option in JOB_OPTIONS if option.flow_run is not None)
AGENT_ENV = tuple((option.agent_env, option.field) for option in JOB_OPTIONS if option.agent_env)


def same_value(field, left, right):
    if OPTION_BY_FIELD[field].is_quantity:
        return quantity_value(left) == quantity_value(right)
    return left == right
