# -*- coding: utf-8 -*-
# Copyright: (c) 2026, qhub.prefect contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""QHub's ``prefect.overrides``: the flow-run settings, plain and secret env, and the chart's values. Pure.

No I/O besides reading the environment mapping it is given, so every rule here is unit-tested
without servers. Every error names the key path.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.qhub.prefect.plugins.module_utils._common.errors import short
from ansible_collections.qhub.prefect.plugins.module_utils._kube.quantity import quantity_value
from ansible_collections.qhub.prefect.plugins.module_utils._qhub.chart_values import (
    CHART_KEYS, empty_chart_values, parse_chart_values,
)
from ansible_collections.qhub.prefect.plugins.module_utils._qhub.errors import ConfigError, type_name
from ansible_collections.qhub.prefect.plugins.module_utils._qhub.job_options import (
    AGENT_ENV, ENV_NAME, FIELDS, FLAT_OVERRIDES, NESTED_OVERRIDES, OPTION_BY_FIELD, same_value,
)

SECRET_PREFIX = "QHUB_SECRET_"

MAX_VALUE_BYTES = 32 * 1024
MAX_SECRET_BYTES = 900 * 1024  # a Secret holds at most 1 MiB, object metadata included

ENV_OVERRIDES = ("envVars", "secretEnvVars")
CHART_SECTIONS = ("worker", "serviceAccount", "role")
ACCEPTED_OVERRIDES = (tuple(sorted(FLAT_OVERRIDES)) + ENV_OVERRIDES + ("prefect_agent", "prefectLabels")
                      + CHART_SECTIONS)

# Env the rendered agent or worker sets itself; a user value would be silently lost.
MANAGED_ENV = frozenset(tuple(name for name, _field in AGENT_ENV) + (
    "NAMESPACE", "SERVICE_ACCOUNT_NAME", "PREFECT__BACKEND", "PREFECT__CLOUD__API", "PREFECT__CLOUD__API_KEY",
    "PREFECT__CLOUD__AGENT__AUTH_TOKEN", "PREFECT__CLOUD__AGENT__AGENT_ADDRESS", "PREFECT_API_URL", "PREFECT_API_KEY",
    "PREFECT_KUBERNETES_CLUSTER_UID", "PREFECT_INTEGRATIONS_KUBERNETES_OBSERVER_NAMESPACES",
    "HOME", "PREFECT_API_AUTH_STRING", "POD_NAME",
    "PREFECT_INTEGRATIONS_KUBERNETES_WORKER_API_KEY_SECRET_NAME",
    "PREFECT_INTEGRATIONS_KUBERNETES_WORKER_API_KEY_SECRET_KEY",
    "PREFECT_INTEGRATIONS_KUBERNETES_WORKER_API_AUTH_STRING_SECRET_NAME",
    "PREFECT_INTEGRATIONS_KUBERNETES_WORKER_API_AUTH_STRING_SECRET_KEY",
))


def is_secret_ref(value):
    """True for QHub's ``QHUB_SECRET_<NAME>`` convention: the value stands for the environment variable NAME."""
    return isinstance(value, str) and value.startswith(SECRET_PREFIX)


def resolve_secret_ref(value, path, environ):
    """QHub's convention: the value ``QHUB_SECRET_<NAME>`` stands for the environment variable NAME."""
    if is_secret_ref(value):
        name = value[len(SECRET_PREFIX):]
        if not name:
            raise ConfigError(path, "%r names no environment variable" % value)
        if name not in environ:
            raise ConfigError(path, "refers to the environment variable %s (via %s), which is not set" % (name, value))
        return environ[name]
    return value


class JobSettings:
    """What the overrides say about the flow-run Jobs and the agent's plain settings."""

    FIELDS = FIELDS

    def __init__(self, **values):
        for field in self.FIELDS:
            setattr(self, field, values.get(field))
        self.env = values.get("env") or {}
        # The prefect-worker chart's values (chart_values.py): the agent's or worker's own pod.
        self.chart = values.get("chart") or empty_chart_values()

    def as_dict(self):
        out = dict((field, getattr(self, field)) for field in self.FIELDS)
        out["env"] = dict(self.env)
        return out


def _env_value(value, path, environ):
    if isinstance(value, bool):
        value = "true" if value else "false"
    elif isinstance(value, (int, float)):
        value = str(value)
    if not isinstance(value, str):
        raise ConfigError(path, "%s is not a string value" % type_name(value))
    value = resolve_secret_ref(value, path, environ)
    if len(value.encode("utf-8")) > MAX_VALUE_BYTES:
        raise ConfigError(path, "the value is longer than %d bytes" % MAX_VALUE_BYTES)
    return value


def _env_map(value, path, environ):
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(path, "%s is not a mapping of variable names to values" % type_name(value))
    out = {}
    for name, item in value.items():
        key_path = "%s.%s" % (path, name)
        if not isinstance(name, str) or not ENV_NAME.match(name):
            raise ConfigError(key_path, "%s is not a valid environment variable name "
                              "(letters, digits and _, not starting with a digit)" % short(name))
        if name in MANAGED_ENV:
            raise ConfigError(key_path, "%s is set by the collection itself; use the matching override instead" % name)
        out[name] = _env_value(item, key_path, environ)
    return out


def _walk_nested(value, prefix, path, found):
    """Collect nested override leaves into ``found`` as {field: (path, value)}; reject unknown keys."""
    if not isinstance(value, dict):
        raise ConfigError(path, "%s is not a mapping" % type_name(value))
    children = set(key[len(prefix)] for key in NESTED_OVERRIDES
                   if key[:len(prefix)] == prefix and len(key) > len(prefix))
    for key, item in value.items():
        key_path = "%s.%s" % (path, key)
        if key not in children:
            raise ConfigError(key_path, "unknown key; accepted here: %s" % ", ".join(sorted(children)))
        here = prefix + (key,)
        if here in NESTED_OVERRIDES:
            _record(found, NESTED_OVERRIDES[here], key_path, item)
        elif item is not None:
            _walk_nested(item, here, key_path, found)


def _unset(raw):
    """QHub's chart values.yaml defaulted every prefect_agent leaf to '' (and the labels to '[]'): unset."""
    return raw is None or (isinstance(raw, str) and raw.strip() in ("", "[]")) or raw == []


def _record(found, field, path, raw):
    if _unset(raw):
        return
    value = OPTION_BY_FIELD[field].check(raw, path)
    if field in found and not same_value(field, found[field][1], value):
        raise ConfigError(path, "%s conflicts with %s = %s; both set the same field: set one of them" % (
            short(value), found[field][0], short(found[field][1])))
    found[field] = (path, value)


def parse_overrides(overrides, environ, path="prefect.overrides"):
    """(JobSettings, secret_env) from QHub's ``overrides`` mapping; secret values resolved, never logged."""
    if overrides is None:
        overrides = {}
    if not isinstance(overrides, dict):
        raise ConfigError(path, "%s is not a mapping" % type_name(overrides))
    found = {}
    for key, value in overrides.items():
        key_path = "%s.%s" % (path, key)
        if key in FLAT_OVERRIDES:
            _record(found, FLAT_OVERRIDES[key], key_path, value)
        elif key == "prefect_agent":
            _walk_nested(value, ("prefect_agent",), key_path, found)
        elif key == "prefectLabels":
            _record(found, "labels", key_path, value)
        elif key not in ENV_OVERRIDES + CHART_SECTIONS:
            raise ConfigError(key_path, "unknown override; accepted keys: %s" % ", ".join(ACCEPTED_OVERRIDES))
    chart, work_queues = parse_chart_values(overrides, path)
    if work_queues is not None:
        _record(found, "labels", *work_queues)
    env = _env_map(overrides.get("envVars"), path + ".envVars", environ)
    secret_env = _env_map(overrides.get("secretEnvVars"), path + ".secretEnvVars", environ)
    _check_chart_env(chart, env, secret_env, path)
    for name in secret_env:
        if name in env:
            raise ConfigError("%s.secretEnvVars.%s" % (path, name),
                              "shadows the plain variable %s.envVars.%s" % (path, name))
    # QHub substitutes QHUB_SECRET_ references in envVars too, so what such a reference stands for is a
    # secret all the same: it goes where secretEnvVars go (the Secret, secretKeyRef), never into plain env.
    secret_env.update((name, env.pop(name)) for name in referenced_env_names(overrides))
    if sum(len(k) + len(v.encode("utf-8")) for k, v in secret_env.items()) > MAX_SECRET_BYTES:
        raise ConfigError(path + ".secretEnvVars", "the values add up to more than a Kubernetes Secret holds")
    values = dict((field, value) for field, (_path, value) in found.items())
    _check_request_within_limit(values, found)
    settings = JobSettings(env=env, chart=chart, **values)
    return settings, secret_env


def _check_chart_env(chart, env, secret_env, path):
    """An env var set both by a chart value and by envVars, secretEnvVars or the collection: one would be lost."""
    for key in CHART_KEYS:
        if key.target[0] == "env" and chart.is_set(key.path):
            for section, names in (("envVars", env), ("secretEnvVars", secret_env)):
                if key.target[1] in names:
                    raise ConfigError("%s.%s.%s" % (path, section, key.target[1]), "also set by %s; set one of them"
                                      % chart.paths[key.path])
    for index, item in enumerate(chart["worker.extraEnvVars"] or []):
        name = item["name"]
        where = "%s[%d].name" % (chart.paths.get("worker.extraEnvVars"), index)
        if name in MANAGED_ENV or name in set(key.target[1] for key in CHART_KEYS if key.target[0] == "env"):
            raise ConfigError(where, "%s is set by the collection itself; use the matching override instead" % name)
        if name in env or name in secret_env:
            raise ConfigError(where, "%s is also in envVars or secretEnvVars; set it once" % name)


def referenced_env_names(overrides):
    """The names in ``overrides.envVars`` whose value is a QHUB_SECRET_ reference: secrets, not plain env."""
    env = overrides.get("envVars") if isinstance(overrides, dict) else None
    if not isinstance(env, dict):
        return []
    return sorted(name for name, value in env.items() if is_secret_ref(value))


def public_overrides(overrides):
    """``overrides`` as a task may pass it on: no secretEnvVars, and no envVars entry holding a QHUB_SECRET_ reference.

    What a reference stands for is a secret (parse_overrides): a module finds it in the config itself, by
    its name in secret_env_names, and a copy of the reference in a plain option would make it plain env again.
    """
    out = dict(overrides or {})
    out.pop("secretEnvVars", None)
    referenced = referenced_env_names(out)
    if referenced:
        out["envVars"] = dict((name, value) for name, value in out["envVars"].items() if name not in referenced)
    return out


def _check_request_within_limit(values, found):
    for request, limit in (("cpu_request", "cpu_limit"), ("memory_request", "memory_limit")):
        if values.get(request) and values.get(limit):
            if quantity_value(values[request]) > quantity_value(values[limit]):
                raise ConfigError(found[request][0], "the request %s is above the limit %s (%s)" % (
                    values[request], values[limit], found[limit][0]))
