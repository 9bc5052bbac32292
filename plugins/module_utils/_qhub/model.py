# -*- coding: utf-8 -*-
# Copyright: (c) 2026, qhub.prefect contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The values of a QHub config's ``prefect:`` block: overrides, images, names. Pure.

No I/O besides reading the environment mapping it is given, so every rule here is unit-tested
without servers. Every error names the key path.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ast
import json
import re

from ansible_collections.qhub.prefect.plugins.module_utils._kube.quantity import quantity_value

SECRET_PREFIX = "QHUB_SECRET_"
DEFAULT_NAMESPACE = "dev"
DEFAULT_IMAGE = "prefecthq/prefect:3-python3.11-kubernetes"
PREFECT1 = "prefect1"
PREFECT3 = "prefect3"
GENERATIONS = (PREFECT1, PREFECT3)

MAX_VALUE_BYTES = 32 * 1024
MAX_SECRET_BYTES = 900 * 1024  # a Secret holds at most 1 MiB, object metadata included

PULL_POLICIES = ("Always", "IfNotPresent", "Never")

# One table for every accepted override. Flat keys are the Prefect Server chart's agent env;
# nested keys are QHub's chart values. Both forms land in the same field.
FLAT_OVERRIDES = {
    "IMAGE_PULL_SECRETS": "image_pull_secrets",
    "PREFECT__CLOUD__AGENT__LABELS": "labels",
    "JOB_MEM_REQUEST": "memory_request",
    "JOB_MEM_LIMIT": "memory_limit",
    "JOB_CPU_REQUEST": "cpu_request",
    "JOB_CPU_LIMIT": "cpu_limit",
    "IMAGE_PULL_POLICY": "image_pull_policy",
}
NESTED_OVERRIDES = {
    ("prefect_agent", "job", "resources", "limit", "cpu"): "cpu_limit",
    ("prefect_agent", "job", "resources", "limits", "cpu"): "cpu_limit",
    ("prefect_agent", "job", "resources", "limit", "memory"): "memory_limit",
    ("prefect_agent", "job", "resources", "limits", "memory"): "memory_limit",
    ("prefect_agent", "job", "resources", "request", "cpu"): "cpu_request",
    ("prefect_agent", "job", "resources", "requests", "cpu"): "cpu_request",
    ("prefect_agent", "job", "resources", "request", "memory"): "memory_request",
    ("prefect_agent", "job", "resources", "requests", "memory"): "memory_request",
    ("prefect_agent", "job", "imagePullPolicy"): "image_pull_policy",
    ("prefect_agent", "job", "imagePullSecrets"): "image_pull_secrets",
    # Where QHub's chart (values.yaml, 2021 to 2023) kept the agent labels; its default was the string '[]'.
    ("prefect_agent", "prefectLabels"): "labels",
    ("prefectLabels",): "labels",
}
ENV_OVERRIDES = ("envVars", "secretEnvVars")
ACCEPTED_OVERRIDES = tuple(sorted(FLAT_OVERRIDES)) + ENV_OVERRIDES + ("prefect_agent", "prefectLabels")

# Env the rendered agent or worker sets itself; a user value would be silently lost.
MANAGED_ENV = frozenset((
    "NAMESPACE", "SERVICE_ACCOUNT_NAME", "IMAGE_PULL_SECRETS", "IMAGE_PULL_POLICY",
    "JOB_MEM_REQUEST", "JOB_MEM_LIMIT", "JOB_CPU_REQUEST", "JOB_CPU_LIMIT",
    "PREFECT__BACKEND", "PREFECT__CLOUD__API", "PREFECT__CLOUD__API_KEY",
    "PREFECT__CLOUD__AGENT__AUTH_TOKEN", "PREFECT__CLOUD__AGENT__LABELS",
    "PREFECT__CLOUD__AGENT__AGENT_ADDRESS", "PREFECT_API_URL", "PREFECT_API_KEY",
    "PREFECT_KUBERNETES_CLUSTER_UID", "PREFECT_INTEGRATIONS_KUBERNETES_OBSERVER_NAMESPACES",
    "HOME", "PREFECT_API_AUTH_STRING", "POD_NAME",
    "PREFECT_INTEGRATIONS_KUBERNETES_WORKER_API_KEY_SECRET_NAME",
    "PREFECT_INTEGRATIONS_KUBERNETES_WORKER_API_KEY_SECRET_KEY",
    "PREFECT_INTEGRATIONS_KUBERNETES_WORKER_API_AUTH_STRING_SECRET_NAME",
    "PREFECT_INTEGRATIONS_KUBERNETES_WORKER_API_AUTH_STRING_SECRET_KEY",
))

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_IMAGE = re.compile(
    r"^(?P<repo>[a-z0-9]+(?:[._-]{1,2}[a-z0-9]+)*(?::[0-9]+)?(?:/[a-z0-9]+(?:[._-]{1,2}[a-z0-9]+)*)*)"
    r"(?::(?P<tag>[\w][\w.-]{0,127}))?(?:@(?P<digest>sha256:[a-f0-9]{64}))?$"
)


class ConfigError(ValueError):
    """A config value at ``path`` is wrong; ``str()`` reads ``path: message``."""

    def __init__(self, path, message):
        super(ConfigError, self).__init__("%s: %s" % (path, message))
        self.path = path
        self.message = message


def _type_name(value):
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string",
            list: "a list", dict: "a mapping"}.get(type(value), type(value).__name__)


def _short(value, limit=60):
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "...'"


def parse_quantity(value, path):
    """A Kubernetes quantity as the string the API server will store for it."""
    if isinstance(value, bool) or value is None or isinstance(value, (list, dict)):
        raise ConfigError(path, "%s is not a Kubernetes quantity (want for example 500m, 2 or 4Gi)" % _type_name(value))
    text = str(value).strip() if not isinstance(value, float) else ("%f" % value).rstrip("0").rstrip(".")
    parsed = quantity_value(text)
    if parsed is None or parsed <= 0:
        raise ConfigError(path, "%s is not a Kubernetes quantity (want for example 500m, 2 or 4Gi)" % _short(value))
    return text


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


def split_image(image):
    """(repository, tag) of an image reference; the tag is None when absent."""
    match = _IMAGE.match(image)
    if not match:
        return None, None
    return match.group("repo"), match.group("tag")


def generation_of_image(image, path="prefect.image"):
    """Prefect 1 for 0.x and 1.x tags, Prefect 2/3 for 2.x, 3.x and latest-style tags."""
    _repo, tag = split_image(image)
    tag = tag or "latest"
    head = re.split(r"[.\-]", tag, 1)[0]
    if head in ("0", "1"):
        return PREFECT1
    if head in ("2", "3", "latest", "main", "nightly") or head.startswith("3") and head.isdigit():
        return PREFECT3
    raise ConfigError(path, "cannot tell the Prefect version from the tag %r: set the generation explicitly "
                      "(prefect1 for a Prefect 1 agent, prefect3 for a Prefect 2/3 worker)" % tag)


# The oldest images whose CLI has every flag the rendered command uses (checked in each release's prefect/cli).
MIN_IMAGE_VERSIONS = {
    PREFECT1: ((0, 13, 19), "prefect agent kubernetes start --job-template"),
    PREFECT3: ((2, 11, 0), "prefect worker start --install-policy --with-healthcheck"),
}


def image_version(image):
    """The Prefect version a tag names, as a tuple of ints, or None for floating tags (3-python3.11, latest)."""
    _repo, tag = split_image(image)
    parts = re.match(r"^(\d+)\.(\d+)\.(\d+)", tag or "")
    return tuple(int(part) for part in parts.groups()) if parts else None


def check_image_version(image, generation, path="prefect.image"):
    """Refuse an image whose Prefect CLI lacks a flag of the command the collection renders for it."""
    version = image_version(image)
    minimum, command = MIN_IMAGE_VERSIONS[generation]
    if version is not None and version < minimum:
        wanted = ".".join(map(str, minimum))
        component = "agent" if generation == PREFECT1 else "worker"
        found = ".".join(map(str, version))
        raise ConfigError(path, "the image's Prefect %s is older than %s, the first whose CLI has `%s`, which the "
                          "%s runs; use Prefect %s or newer" % (found, wanted, command, component, wanted))


class JobSettings:
    """What the overrides say about the flow-run Jobs and the agent's plain settings."""

    FIELDS = ("cpu_request", "cpu_limit", "memory_request", "memory_limit",
              "image_pull_policy", "image_pull_secrets", "labels")

    def __init__(self, **values):
        for field in self.FIELDS:
            setattr(self, field, values.get(field))
        self.env = values.get("env") or {}

    def as_dict(self):
        out = dict((field, getattr(self, field)) for field in self.FIELDS)
        out["env"] = dict(self.env)
        return out


def _string_list(value, path, what):
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except ValueError:
                try:
                    value = ast.literal_eval(text)
                except (ValueError, SyntaxError):
                    raise ConfigError(path, "%s is not a list of %s" % (_short(value), what))
        else:
            value = [item.strip() for item in text.split(",") if item.strip()]
    if not isinstance(value, list):
        raise ConfigError(path, "%s is not a list of %s" % (_type_name(value), what))
    out = []
    for index, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            raise ConfigError("%s[%d]" % (path, index), "%s is not a non-empty string" % _short(item))
        out.append(item.strip())
    return out


def _pull_secrets(value, path):
    names = _string_list(value, path, "Secret names")
    for index, name in enumerate(names):
        if len(name) > 253 or not _DNS_SUBDOMAIN.match(name):
            raise ConfigError("%s[%d]" % (path, index), "%s is not a valid Secret name" % _short(name))
    return names


def _labels(value, path):
    labels = _string_list(value, path, "labels")
    for index, label in enumerate(labels):
        if len(label) > 255:
            raise ConfigError("%s[%d]" % (path, index), "a label is at most 255 characters")
    return labels


def _pull_policy(value, path):
    if value not in PULL_POLICIES:
        raise ConfigError(path, "%s is not an image pull policy (one of %s)"
                          % (_short(value), ", ".join(PULL_POLICIES)))
    return value


_FIELD_PARSERS = {
    "cpu_request": parse_quantity, "cpu_limit": parse_quantity,
    "memory_request": parse_quantity, "memory_limit": parse_quantity,
    "image_pull_policy": _pull_policy, "image_pull_secrets": _pull_secrets, "labels": _labels,
}


def _env_value(value, path, environ):
    if isinstance(value, bool):
        value = "true" if value else "false"
    elif isinstance(value, (int, float)):
        value = str(value)
    if not isinstance(value, str):
        raise ConfigError(path, "%s is not a string value" % _type_name(value))
    value = resolve_secret_ref(value, path, environ)
    if len(value.encode("utf-8")) > MAX_VALUE_BYTES:
        raise ConfigError(path, "the value is longer than %d bytes" % MAX_VALUE_BYTES)
    return value


def _env_map(value, path, environ):
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(path, "%s is not a mapping of variable names to values" % _type_name(value))
    out = {}
    for name, item in value.items():
        key_path = "%s.%s" % (path, name)
        if not isinstance(name, str) or not _ENV_NAME.match(name):
            raise ConfigError(key_path, "%s is not a valid environment variable name "
                              "(letters, digits and _, not starting with a digit)" % _short(name))
        if name in MANAGED_ENV:
            raise ConfigError(key_path, "%s is set by the collection itself; use the matching override instead" % name)
        out[name] = _env_value(item, key_path, environ)
    return out


def _walk_nested(value, prefix, path, found):
    """Collect nested override leaves into ``found`` as {field: (path, value)}; reject unknown keys."""
    if not isinstance(value, dict):
        raise ConfigError(path, "%s is not a mapping" % _type_name(value))
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


def _same(field, left, right):
    if field in ("cpu_request", "cpu_limit", "memory_request", "memory_limit"):
        return quantity_value(left) == quantity_value(right)
    return left == right


def _record(found, field, path, raw):
    if _unset(raw):
        return
    value = _FIELD_PARSERS[field](raw, path)
    if field in found and not _same(field, found[field][1], value):
        raise ConfigError(path, "%s conflicts with %s = %s; both set the same field: set one of them" % (
            _short(value), found[field][0], _short(found[field][1])))
    found[field] = (path, value)


def parse_overrides(overrides, environ, path="prefect.overrides"):
    """(JobSettings, secret_env) from QHub's ``overrides`` mapping; secret values resolved, never logged."""
    if overrides is None:
        overrides = {}
    if not isinstance(overrides, dict):
        raise ConfigError(path, "%s is not a mapping" % _type_name(overrides))
    found = {}
    for key, value in overrides.items():
        key_path = "%s.%s" % (path, key)
        if key in FLAT_OVERRIDES:
            _record(found, FLAT_OVERRIDES[key], key_path, value)
        elif key == "prefect_agent":
            _walk_nested(value, ("prefect_agent",), key_path, found)
        elif key == "prefectLabels":
            _record(found, "labels", key_path, value)
        elif key not in ENV_OVERRIDES:
            raise ConfigError(key_path, "unknown override; accepted keys: %s" % ", ".join(ACCEPTED_OVERRIDES))
    env = _env_map(overrides.get("envVars"), path + ".envVars", environ)
    secret_env = _env_map(overrides.get("secretEnvVars"), path + ".secretEnvVars", environ)
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
    settings = JobSettings(env=env, **values)
    return settings, secret_env


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


def validate_namespace(value, path="namespace"):
    if not isinstance(value, str) or len(value) > 63 or not _DNS_LABEL.match(value):
        raise ConfigError(path, "%s is not a valid Kubernetes namespace (a DNS label: lower-case letters, "
                          "digits and '-', at most 63 characters)" % _short(value))
    return value


def validate_object_name(value, path="name"):
    """The name of the objects an agent or worker owns. A DNS label, not just any object name (a DNS
    subdomain): it is also their app.kubernetes.io/instance label value, at most 63 characters."""
    if not isinstance(value, str) or len(value) > 63 or not _DNS_LABEL.match(value):
        raise ConfigError(path, "%s is not a valid name for the agent's or worker's objects (a DNS label: "
                          "lower-case letters, digits and '-', at most 63 characters)" % _short(value))
    return value


def validate_image(value, path="prefect.image"):
    if not isinstance(value, str) or not value or len(value) > 512 or not _IMAGE.match(value):
        raise ConfigError(path, "%s is not a container image reference" % _short(value))
    return value


def validate_label_value(value, path):
    """A Kubernetes label value: at most 63 characters, alphanumerics with -, _ and . inside."""
    if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
        raise ConfigError(path, "%s is not a valid Kubernetes label value (at most 63 letters, digits, '-', '_' "
                          "and '.', starting and ending with a letter or digit)" % _short(value))
    return value
