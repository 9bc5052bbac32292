# -*- coding: utf-8 -*-
# Copyright: (c) 2026, qhub.prefect contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A whole QHub config document as a validated model: the namespace, the instance, the ``prefect:`` block.

Pure: it parses text and mappings given to it; reading the file is the caller's (the config_info runner).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib

from ansible_collections.qhub.prefect.plugins.module_utils._common.errors import short
from ansible_collections.qhub.prefect.plugins.module_utils._qhub.chart_values import refuse_for_agent
from ansible_collections.qhub.prefect.plugins.module_utils._qhub.credentials import (
    Credentials, resolve as resolve_credentials, resolve_api_url,
)
from ansible_collections.qhub.prefect.plugins.module_utils._qhub.errors import ConfigError, type_name
from ansible_collections.qhub.prefect.plugins.module_utils._qhub.images import (
    DEFAULT_IMAGE, GENERATIONS, PREFECT1, check_image_version, generation_of_image, validate_image,
)
from ansible_collections.qhub.prefect.plugins.module_utils._qhub.names import (
    DEFAULT_NAMESPACE, validate_label_value, validate_namespace,
)
from ansible_collections.qhub.prefect.plugins.module_utils._qhub.overrides import (
    SECRET_PREFIX, is_secret_ref, parse_overrides,
)

PREFECT_BLOCK_KEYS = ("enabled", "image", "overrides", "token")


class PrefectConfig:
    """The validated ``prefect:`` block. ``public()`` holds no secret value."""

    def __init__(self, namespace, enabled, image, generation, job, secret_env, credentials, instance):
        self.namespace = namespace
        self.enabled = enabled
        self.image = image
        self.generation = generation
        self.job = job
        self.secret_env = secret_env
        self.credentials = credentials
        self.token = credentials.token
        self.token_source = credentials.token_source
        self.instance = instance

    def public(self):
        return dict(self.credentials.public(), **{
            "namespace": self.namespace,
            "enabled": self.enabled,
            "image": self.image,
            "generation": self.generation,
            # The secret env names beside the job settings as well, where this output has always had them.
            "job": dict(self.job.as_dict(), secret_env_names=sorted(self.secret_env)),
            "secret_env_names": sorted(self.secret_env),
            "instance": self.instance,
        })


class AnyVariable(dict):
    """An environment in which every variable is set (to its value, or to an empty string)."""

    def __contains__(self, name):
        return True

    def __missing__(self, name):
        return ""


def _no_credentials(generation, environ, api_url):
    try:
        url, source = resolve_api_url(generation, environ, api_url or None)
    except ConfigError:
        url, source = None, None
    return Credentials(url, source, None, None, None, None)


def prefect_block(doc):
    """The ``prefect:`` mapping of a config document with its keys checked; ``{enabled: false}`` when absent."""
    if not isinstance(doc, dict):
        raise ConfigError("(top level)", "the QHub config is %s, not a mapping" % type_name(doc))
    block = doc.get("prefect")
    if block is None:
        return {"enabled": False}
    if not isinstance(block, dict):
        raise ConfigError("prefect", "%s is not a mapping (want enabled, image, overrides)" % type_name(block))
    for key in block:
        if key not in PREFECT_BLOCK_KEYS:
            raise ConfigError("prefect.%s" % key, "unknown key; accepted keys: %s" % ", ".join(PREFECT_BLOCK_KEYS))
    return block


def _check_token(block):
    if "token" in block and block["token"] is None:
        raise ConfigError("prefect.token", "is set but empty: give the Prefect API key or leave the key out")


def config_secrets(doc, environ):
    """(secret env values, ``prefect.token`` as written) of a config document: what a run's tasks take from it.

    The values of ``secretEnvVars`` are resolved (QHUB_SECRET_ references against ``environ``); the token
    goes into the one credential rule (credentials.resolve) as its last source.
    """
    block = prefect_block(doc)
    _job, secret_env = parse_overrides(block.get("overrides"), environ)
    _check_token(block)
    return secret_env, block.get("token")


FALLBACK_SUFFIX = ".ns"


def fallback_instance(namespace):
    """The identity of a config without project_name: its namespace, marked so no project_name equals it.

    QHub's project_name holds letters, '-' and '_' only, so a dot can never collide with one; before
    this mark the fallback was the bare namespace, and a config without project_name in namespace
    ``dev`` was the same deployment as ``project_name: dev`` anywhere on the cluster.
    """
    value = namespace + FALLBACK_SUFFIX
    if len(value) <= 63:
        return value
    # A label value holds 63 characters: a long namespace keeps its start and a hash of the whole.
    return "%s-%s%s" % (namespace[:50], hashlib.sha256(namespace.encode("utf-8")).hexdigest()[:8], FALLBACK_SUFFIX)


def legacy_instance(instance, namespace):
    """The label an earlier version gave this deployment's objects, when it differs from ``instance``."""
    return namespace if instance == fallback_instance(namespace) else None


def config_secret_values(doc, environ):
    """Every secret value a config document holds or refers to, found without validating it: nothing raises.

    A task's ``qhub_config`` mapping is its argument, shown at -vvv, also when the config turns out to be
    invalid or its token loses to the environment's: so these are masked before anything is checked.
    ``prefect.token``, the values of ``secretEnvVars``, and what the QHUB_SECRET_ references among them and
    among ``envVars`` stand for (the references themselves are names, not secrets).
    """
    block = doc.get("prefect") if isinstance(doc, dict) else None
    if not isinstance(block, dict):
        return set()
    overrides = block.get("overrides") if isinstance(block.get("overrides"), dict) else {}
    values = [block.get("token")]
    for key in ("secretEnvVars", "envVars"):
        env = overrides.get(key)
        if isinstance(env, dict):
            values += [value for value in env.values() if key == "secretEnvVars" or is_secret_ref(value)]
    found = set()
    for value in values:
        if isinstance(value, str) and value.strip():
            value = value.strip()
            found.add(environ.get(value[len(SECRET_PREFIX):]) if is_secret_ref(value) else value)
    return set(value for value in found if value and value.strip())


def instance_of(doc, namespace, instance=None):
    """The stable identity ownership is keyed on: a given one, else project_name, else the namespace's."""
    if instance not in (None, ""):
        return validate_label_value(instance, "instance")
    if doc.get("project_name") is not None:
        return validate_label_value(doc["project_name"], "project_name")
    return fallback_instance(namespace)


def parse_qhub_config(doc, environ, generation="auto", require_token=True, api_url=None, instance=None,
                      credentials=True):
    """Validate a whole QHub config document; only its ``project_name``, ``namespace`` and ``prefect:`` are read.

    ``credentials=False`` leaves the API URL and token unresolved: for a reader without the run's environment.
    """
    if not isinstance(doc, dict):
        raise ConfigError("(top level)", "the QHub config is %s, not a mapping" % type_name(doc))
    namespace = validate_namespace(doc.get("namespace", DEFAULT_NAMESPACE))
    instance = instance_of(doc, namespace, instance)
    block = prefect_block(doc)
    enabled = block.get("enabled", False)
    if not isinstance(enabled, bool):
        raise ConfigError("prefect.enabled", "%s is not true or false" % short(enabled))
    image = block.get("image")
    image = DEFAULT_IMAGE if image is None else validate_image(image)
    if generation in (None, "auto"):
        generation = generation_of_image(image)
    elif generation not in GENERATIONS:
        raise ConfigError("generation", "%r is not one of auto, %s" % (generation, ", ".join(GENERATIONS)))
    if enabled:
        check_image_version(image, generation)
    # A disabled block is still validated, but its QHUB_SECRET_ references need not resolve: removing
    # the agent must not require the secrets it used to get.
    references = environ if enabled else AnyVariable(environ)
    job, secret_env = parse_overrides(block.get("overrides"), references)
    if generation == PREFECT1:
        refuse_for_agent(job.chart)
    _check_token(block)
    if not credentials:
        resolved = _no_credentials(generation, {}, api_url)
    elif enabled:
        resolved = resolve_credentials(generation, environ, api_url=api_url, config_token=block.get("token"),
                                       require=require_token)
    else:
        # Removing needs no Prefect API: nothing about the credentials may stop it.
        resolved = _no_credentials(generation, environ, api_url)
    return PrefectConfig(namespace, enabled, image, generation, job, secret_env, resolved, instance)


def load_yaml_strict(text, source="qhub-config.yml"):
    """Parse YAML, refusing duplicate keys (PyYAML keeps the last one silently)."""
    import yaml  # the modules list PyYAML in requirements; imported late so unit tests of the rest need none

    # libyaml's parser when PyYAML has it: the same documents, a config read in a tenth of the time.
    class StrictLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
        pass

    def construct_mapping(loader, node, deep=False):
        seen = set()
        for key_node, _value_node in node.value:
            key = loader.construct_object(key_node, deep=deep)
            if key in seen:
                raise ConfigError(source, "line %d: duplicate key %r" % (key_node.start_mark.line + 1, key))
            seen.add(key)
        return loader.construct_mapping(node, deep=deep)

    StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    try:
        return yaml.load(text, Loader=StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = "line %d, column %d: " % (mark.line + 1, mark.column + 1) if mark else ""
        raise ConfigError(source, "%snot valid YAML (%s)" % (where, getattr(exc, "problem", None) or exc))
