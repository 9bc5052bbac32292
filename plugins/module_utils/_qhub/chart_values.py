# -*- coding: utf-8 -*-
# Copyright: (c) 2026, qhub.prefect contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The prefect-worker Helm chart's values under ``prefect.overrides``, each key declared once. Pure.

QHub's ``overrides`` were values handed to a Helm chart, so PrefectHQ/prefect-helm's ``prefect-worker``
chart's vocabulary is accepted there as its users write it: ``worker.nodeSelector``,
``worker.config.limit``, ``serviceAccount.annotations``, ``role.extraPermissions``. ``CHART_KEYS`` says for
each key how it is checked, what it defaults to, which generations take it and where it is rendered;
parsing, the error messages and docs/configuration.md's table derive from it.

Merging follows Helm: the user's values merge over the defaults (today's restricted profile), mapping
into mapping, and a ``null`` deletes the default it lands on (OpenShift's ``runAsUser: null``).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import difflib
import json

from ansible_collections.qhub.prefect.plugins.module_utils._common.errors import short
from ansible_collections.qhub.prefect.plugins.module_utils._qhub.errors import ConfigError, type_name
from ansible_collections.qhub.prefect.plugins.module_utils._qhub.job_options import (
    DNS_LABEL, DNS_SUBDOMAIN, ENV_NAME, parse_quantity, pull_policy,
)

UID = 1001  # the prefect-helm charts' non-root user; Prefect's images run as root by default
DNS_POLICIES = ("ClusterFirst", "ClusterFirstWithHostNet", "Default", "None")
# The key the chart reads a self-hosted server's basic auth string from, in basicAuth.existingSecret.
AUTH_STRING_SECRET_KEY = "auth-string"


# --- checks: (value, path) -> the value to use ------------------------------------------------------------

def _mapping(value, path):
    if not isinstance(value, dict):
        raise ConfigError(path, "%s is not a mapping" % type_name(value))
    return value


def _string_map(value, path):
    for key, item in _mapping(value, path).items():
        if not isinstance(key, str) or not isinstance(item, str):
            raise ConfigError("%s.%s" % (path, key), "%s is not a string (quote it in YAML)" % short(item))
    return dict(value)


def _mapping_list(value, path):
    if not isinstance(value, list):
        raise ConfigError(path, "%s is not a list" % type_name(value))
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise ConfigError("%s[%d]" % (path, index), "%s is not a mapping" % type_name(item))
    return list(value)


# What the collection's own pod already has: an extra entry of the same name or path would be refused by the API
# server, after the Secret and RBAC were applied, so it is refused here.
OWN_VOLUMES = ("home", "tmp", "job-template")
OWN_CONTAINERS = ("prefect-worker", "prefect-agent")
OWN_MOUNT_PATHS = ("/home/prefect", "/tmp", "/etc/prefect-agent")
# The pod template's labels and annotations the collection sets (the selector, the owner, the rollout digests).
OWN_POD_LABELS = ("app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/component",
                  "app.kubernetes.io/part-of", "app.kubernetes.io/managed-by")
OWN_PREFIX = "qhub.prefect/"


def _named_list(value, path):
    """A list of mappings each with a unique ``name`` (volumes, mounts' volumes, containers)."""
    seen = set()
    mounts = path.endswith("extraVolumeMounts")
    own = () if mounts else OWN_CONTAINERS if path.endswith("extraContainers") else OWN_VOLUMES
    for index, item in enumerate(_mapping_list(value, path)):
        name = item.get("name")
        here = "%s[%d]" % (path, index)
        if not isinstance(name, str) or not name:
            raise ConfigError(here + ".name", "each entry needs a name")
        if name in seen and not mounts:
            raise ConfigError(here + ".name", "%s is listed twice" % name)
        if name in own:
            raise ConfigError(here + ".name", "%s is the name of one of the collection's own; choose another" % name)
        if mounts and item.get("mountPath") in OWN_MOUNT_PATHS + tuple(seen):
            raise ConfigError(here + ".mountPath", "%s is mounted already" % item.get("mountPath"))
        seen.add(item.get("mountPath") if mounts else name)
    return list(value)


def _pod_metadata(value, path):
    for key in _string_map(value, path):
        if key in OWN_POD_LABELS or key.startswith(OWN_PREFIX):
            raise ConfigError(path, "%s is set by the collection itself (the Deployment's selector, its owner and "
                              "its rollout digests depend on it)" % key)
    return dict(value)


def _string(value, path):
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(path, "%s is not a non-empty string" % short(value))
    return value


def _object_name(value, path):
    if not isinstance(value, str) or len(value) > 253 or not DNS_SUBDOMAIN.match(value):
        raise ConfigError(path, "%s is not a valid Kubernetes object name" % short(value))
    return value


def _namespace(value, path):
    if not isinstance(value, str) or len(value) > 63 or not DNS_LABEL.match(value):
        raise ConfigError(path, "%s is not a valid Kubernetes namespace" % short(value))
    return value


def _name_list(value, path):
    if not isinstance(value, list):
        raise ConfigError(path, "%s is not a list of names" % type_name(value))
    return [_object_name(item, "%s[%d]" % (path, index)) for index, item in enumerate(value)]


def _string_list(value, path):
    if not isinstance(value, list):
        raise ConfigError(path, "%s is not a list of strings" % type_name(value))
    for index, item in enumerate(value):
        if not isinstance(item, str):
            raise ConfigError("%s[%d]" % (path, index), "%s is not a string" % short(item))
    return list(value)


def _integer(minimum):
    def check(value, path):
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ConfigError(path, "%s is not a whole number of at least %d" % (short(value), minimum))
        return value
    return check


def _seconds(value, path):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigError(path, "%s is not a number of seconds above 0" % short(value))
    return value


def _boolean(value, path):
    if not isinstance(value, bool):
        raise ConfigError(path, "%s is not true or false" % short(value))
    return value


def _dns_policy(value, path):
    if value not in DNS_POLICIES:
        raise ConfigError(path, "%s is not a DNS policy (one of %s)" % (short(value), ", ".join(DNS_POLICIES)))
    return value


def _resources(value, path):
    for part, quantities in _mapping(value, path).items():
        if part not in ("requests", "limits"):
            raise ConfigError("%s.%s" % (path, part), "unknown key; accepted here: limits, requests")
        if quantities is None:
            continue
        for name, quantity in _mapping(quantities, "%s.%s" % (path, part)).items():
            if quantity is not None:
                parse_quantity(quantity, "%s.%s.%s" % (path, part, name))
    return value


def _env_list(value, path):
    for index, item in enumerate(_mapping_list(value, path)):
        here = "%s[%d]" % (path, index)
        name = item.get("name")
        if not isinstance(name, str) or not ENV_NAME.match(name):
            raise ConfigError(here + ".name", "%s is not a valid environment variable name" % short(name))
        if ("value" in item) == ("valueFrom" in item) or set(item) - {"name", "value", "valueFrom"}:
            raise ConfigError(here, "give name and either value or valueFrom")
        if "value" in item and not isinstance(item["value"], str):
            raise ConfigError(here + ".value", "%s is not a string (quote it in YAML)" % short(item["value"]))
        if isinstance(item.get("value"), str) and item["value"].startswith("QHUB_SECRET_"):
            raise ConfigError(here + ".value", "a QHUB_SECRET_ reference is a secret: put it under "
                              "prefect.overrides.secretEnvVars, which keeps it in a Secret")
    return list(value)


def _secret_key_ref(value, path):
    _mapping(value, path)
    for key in value:
        if key not in ("name", "key"):
            raise ConfigError("%s.%s" % (path, key), "unknown key; accepted here: key, name")
    return {"name": _object_name(value.get("name"), path + ".name"), "key": _string(value.get("key"), path + ".key")}


def _rules(value, path):
    for index, rule in enumerate(_mapping_list(value, path)):
        here = "%s[%d]" % (path, index)
        for field in ("apiGroups", "resources", "verbs"):
            if not isinstance(rule.get(field), list) or not all(isinstance(item, str) for item in rule[field]):
                raise ConfigError("%s.%s" % (here, field), "each rule needs %s: a list of strings" % field)
    return list(value)


def check_base_job_template(value, path):
    """The chart takes it as a JSON string (``--set-file``); a mapping is accepted too."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise ConfigError(path, "not valid JSON (%s)" % exc)
    _mapping(value, path)
    for key in ("job_configuration", "variables"):
        if not isinstance(value.get(key), dict):
            raise ConfigError("%s.%s" % (path, key), "a base job template needs job_configuration and variables")
    return value


def _disruption_budget(value, path):
    """As the chart: a mapping of PodDisruptionBudget spec fields; a non-empty one makes the budget."""
    _mapping(value, path)
    for key, item in value.items():
        if key not in ("minAvailable", "maxUnavailable"):
            raise ConfigError("%s.%s" % (path, key), "unknown key; accepted here: maxUnavailable, minAvailable")
        if isinstance(item, bool) or not isinstance(item, (int, str)):
            raise ConfigError("%s.%s" % (path, key), "%s is not a number or a percentage" % short(item))
    if len(value) > 1:
        raise ConfigError(path, "give one of minAvailable and maxUnavailable, not both")
    return value


def _liveness(value, path):
    _mapping(value, path)
    for key in value:
        if key not in ("enabled", "config"):
            raise ConfigError("%s.%s" % (path, key), "unknown key; accepted here: config, enabled")
    return value


# --- the table ---------------------------------------------------------------------------------------------

# Today's restricted profile, in the chart's keys: what a key set to nothing renders.
POD_SECURITY_CONTEXT = {"runAsNonRoot": True, "runAsUser": UID, "runAsGroup": UID, "fsGroup": UID,
                        "seccompProfile": {"type": "RuntimeDefault"}}
CONTAINER_SECURITY_CONTEXT = {"runAsNonRoot": True, "runAsUser": UID, "runAsGroup": UID,
                              "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                              "capabilities": {"drop": ["ALL"]}}
RESOURCES = {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}}
# On by default here (the chart's is off): a worker that stopped polling is restarted.
LIVENESS = {"enabled": True, "config": {"periodSeconds": 30, "timeoutSeconds": 5, "failureThreshold": 3}}


class ChartKey:
    """One prefect-worker chart value.

    ``target``: where it is rendered, as (place, field); the places are read by _render/objects.py and
    described for the docs in TARGET_DOCS. ``default``: what it is when not set (merged into when set, as
    Helm merges values). ``worker_only``: refused on a Prefect 1 agent.
    """

    def __init__(self, path, check, target, default=None, worker_only=False):
        self.path = path
        self.check = check
        self.target = target
        self.default = default
        self.worker_only = worker_only

    @property
    def merges(self):
        return isinstance(self.default, dict)


CHART_KEYS = (
    ChartKey("worker.nodeSelector", _string_map, ("pod", "nodeSelector")),
    ChartKey("worker.tolerations", _mapping_list, ("pod", "tolerations")),
    ChartKey("worker.affinity", _mapping, ("pod", "affinity")),
    ChartKey("worker.priorityClassName", _string, ("pod", "priorityClassName")),
    ChartKey("worker.dnsPolicy", _dns_policy, ("pod", "dnsPolicy")),
    ChartKey("worker.dnsConfig", _mapping, ("pod", "dnsConfig")),
    ChartKey("worker.podSecurityContext", _mapping, ("pod", "securityContext"), POD_SECURITY_CONTEXT),
    ChartKey("worker.image.pullSecrets", _name_list, ("pod", "imagePullSecrets")),
    ChartKey("worker.extraVolumes", _named_list, ("pod", "volumes")),
    ChartKey("worker.extraContainers", _named_list, ("pod", "containers")),
    ChartKey("worker.resources", _resources, ("container", "resources"), RESOURCES),
    ChartKey("worker.containerSecurityContext", _mapping, ("container", "securityContext"),
             CONTAINER_SECURITY_CONTEXT),
    ChartKey("worker.image.pullPolicy", pull_policy, ("container", "imagePullPolicy"), "IfNotPresent"),
    ChartKey("worker.livenessProbe", _liveness, ("container", "livenessProbe"), LIVENESS),
    ChartKey("worker.extraVolumeMounts", _named_list, ("container", "volumeMounts")),
    ChartKey("worker.extraEnvVars", _env_list, ("container", "env")),
    ChartKey("worker.extraEnvVarsCM", _object_name, ("container", "envFrom")),
    ChartKey("worker.extraEnvVarsCMs", _name_list, ("container", "envFrom")),
    ChartKey("worker.extraEnvVarsSecret", _object_name, ("container", "envFrom")),
    ChartKey("worker.extraEnvVarsSecrets", _name_list, ("container", "envFrom")),
    ChartKey("worker.extraArgs", _string_list, ("container", "args")),
    ChartKey("worker.podLabels", _pod_metadata, ("template", "labels")),
    ChartKey("worker.podAnnotations", _pod_metadata, ("template", "annotations")),
    ChartKey("worker.replicaCount", _integer(1), ("deployment", "replicas")),
    ChartKey("worker.revisionHistoryLimit", _integer(0), ("deployment", "revisionHistoryLimit")),
    ChartKey("worker.podDisruptionBudget", _disruption_budget, ("object", "PodDisruptionBudget")),
    ChartKey("worker.clusterUid", _string, ("env", "PREFECT_KUBERNETES_CLUSTER_UID"), worker_only=True),
    ChartKey("worker.config.queryInterval", _seconds, ("env", "PREFECT_WORKER_QUERY_SECONDS"), worker_only=True),
    ChartKey("worker.config.prefetchSeconds", _seconds, ("env", "PREFECT_WORKER_PREFETCH_SECONDS"),
             worker_only=True),
    ChartKey("worker.config.http2", _boolean, ("env", "PREFECT_API_ENABLE_HTTP2"), worker_only=True),
    ChartKey("worker.config.limit", _integer(1), ("flag", "--limit"), worker_only=True),
    ChartKey("worker.config.name", _string, ("flag", "--name"), worker_only=True),
    # The same field as the labels (job_options.JOB_OPTIONS): the queues the worker polls.
    ChartKey("worker.config.workQueues", None, ("flag", "--work-queue"), worker_only=True),
    ChartKey("worker.config.jobNamespace", _namespace, ("work_pool", "namespace"), worker_only=True),
    ChartKey("worker.config.baseJobTemplate.configuration", check_base_job_template, ("work_pool", "base_job_template"),
             worker_only=True),
    ChartKey("worker.config.baseJobTemplate.existingConfigMapName", _object_name,
             ("work_pool", "base_job_template"), worker_only=True),
    ChartKey("worker.cloudApiConfig.apiKeySecret", _secret_key_ref, ("secret_ref", "PREFECT_API_KEY"),
             worker_only=True),
    ChartKey("worker.selfHostedServerApiConfig.basicAuth.existingSecret", _object_name,
             ("secret_ref", "PREFECT_API_AUTH_STRING"), worker_only=True),
    ChartKey("serviceAccount.create", _boolean, ("service_account", "create"), True),
    ChartKey("serviceAccount.name", _object_name, ("service_account", "name")),
    ChartKey("serviceAccount.annotations", _string_map, ("service_account", "annotations")),
    ChartKey("role.extraPermissions", _rules, ("role", "rules")),
)
KEY_BY_PATH = dict((key.path, key) for key in CHART_KEYS)

# What each place means, for the docs' table (tests/unit/collection/test_declarations.py holds the docs to it).
TARGET_DOCS = {
    "pod": "the agent's or worker's pod spec `%s`",
    "container": "the agent's or worker's container `%s`",
    "template": "the pod template's metadata `%s` (beside the collection's own)",
    "deployment": "the Deployment's `spec.%s`",
    "object": "a `%s` of the agent's or worker's pods, owned and removed with the rest",
    "env": "the worker's env `%s`",
    "flag": "`prefect worker start %s`",
    "work_pool": "the work pool's base job template (`%s`)",
    "secret_ref": "`%s` read from the user's Secret (`secretKeyRef`), by the worker and its flow runs; the "
                  "collection's Secret does not hold it",
    "service_account": "the ServiceAccount (`%s`)",
    "role": "the Role's `%s`, after the collection's own",
}

# Keys of the chart whose setting the QHub config already holds elsewhere: where it lives.
OWNED_ELSEWHERE = {
    "worker.image.repository": "prefect.image",
    "worker.image.prefectTag": "prefect.image",
    "worker.image.debug": "prefect.image",
    "worker.config.workPool": "qhub_prefect_work_pool (the role variable; the module option work_pool)",
    "worker.config.type": "the collection (always kubernetes)",
    "worker.config.installPolicy": "the collection (never: the image must ship prefect-kubernetes)",
    "worker.apiConfig": "the credential rule (docs/configuration.md, The API token)",
    "worker.cloudApiConfig.accountId": "the credential rule (the API URL: qhub_prefect_api_url or PREFECT_API_URL)",
    "worker.cloudApiConfig.workspaceId": "the credential rule (the API URL: qhub_prefect_api_url or PREFECT_API_URL)",
    "worker.cloudApiConfig.cloudUrl": "the credential rule (the API URL: qhub_prefect_api_url or PREFECT_API_URL)",
    "worker.selfHostedServerApiConfig.apiUrl": "the credential rule (the API URL: qhub_prefect_api_url or "
                                               "PREFECT_API_URL)",
    "worker.selfHostedServerApiConfig.uiUrl": "nothing: the worker does not use it",
    "worker.selfHostedServerApiConfig.basicAuth.enabled": "the credential rule (PREFECT_API_AUTH_STRING, or "
                                                          "basicAuth.existingSecret)",
    "worker.selfHostedServerApiConfig.basicAuth.authString": "the credential rule (PREFECT_API_AUTH_STRING in "
                                                             "the environment, never in the config file)",
    "worker.serverApiConfig": "the credential rule (docs/configuration.md, The API token)",
    "worker.autoscaling": "worker.replicaCount (a HorizontalPodAutoscaler is not made; enabled: false is accepted)",
    "worker.command": "the collection (the worker's command; add arguments with worker.extraArgs)",
    "worker.args": "the collection (the worker's arguments; add some with worker.extraArgs)",
    "worker.config.observerClusterWide": "the collection (namespaced RBAC only: the worker watches its job namespace)",
    "worker.cloudApiConfig.jobApiKeyPropagation": "the collection (flow runs read the key from its Secret: secretRef)",
    "worker.customerManagedCloudApiConfig": "the credential rule (the API URL: qhub_prefect_api_url or "
                                            "PREFECT_API_URL)",
    "role.create": "the collection (the Role is always made; add rules with role.extraPermissions)",
    "role.namespace": "worker.config.jobNamespace (the Role there is made with the rest)",
}


# Chart keys accepted and ignored, with why: a pasted values.yaml keeps them.
IGNORED = {
    # The chart's init container copies the base job template into the pool; the collection writes the pool.
    "worker.initContainer": "the collection writes the base job template to the work pool itself",
}

# Values of those keys that say what the collection does anyway: a pasted values.yaml may keep them.
SAME_AS_OURS = {
    "worker.config.type": ("kubernetes",),
    # A pod has no terminal, so prompt installs nothing, as never.
    "worker.config.installPolicy": ("never", "prompt"),
    "worker.autoscaling": lambda value: isinstance(value, dict) and not value.get("enabled"),
    "worker.cloudApiConfig.jobApiKeyPropagation": ("secretRef",),
    # The chart reads basicAuth.existingSecret only with enabled: true; the collection, whenever it is given.
    "worker.selfHostedServerApiConfig.basicAuth.enabled": (True,),
    "role.create": (True,),
}


def _unset(value):
    """The chart's empty values ("", [], {}, false): its templates render nothing for them, so they are unset."""
    return value is None or value is False or (isinstance(value, (str, list, dict)) and not value)


def _prefixes():
    out = set()
    for path in list(KEY_BY_PATH) + list(OWNED_ELSEWHERE) + list(IGNORED):
        parts = path.split(".")
        out.update(".".join(parts[:index]) for index in range(1, len(parts)))
    return out


PREFIXES = _prefixes()


class ChartValues:
    """The chart values a config gives, merged over the defaults: ``values[path]`` for every key."""

    def __init__(self, values, given, paths):
        self.values = values
        self.given = given  # the keys the config sets
        self.paths = paths  # each given key's path in the config, for errors raised later

    def __getitem__(self, path):
        return self.values.get(path)

    def is_set(self, path):
        return path in self.given


def merge(default, value):
    """Helm's merge of user values over defaults: mappings key by key; ``None`` deletes what it lands on."""
    if value is None:
        return None
    if isinstance(default, dict) and isinstance(value, dict):
        out = copy.deepcopy(default)
        for key, item in value.items():
            merged = merge(out.get(key), item)
            if merged is None:
                out.pop(key, None)
            else:
                out[key] = merged
        return out
    return copy.deepcopy(value)


def _nearest(path):
    known = sorted(set(KEY_BY_PATH) | PREFIXES | set(OWNED_ELSEWHERE))
    close = difflib.get_close_matches(path, known, n=1, cutoff=0.6)
    if close:
        return "did you mean %s?" % close[0]
    parent = path.rsplit(".", 1)[0]
    here = sorted(set(item.split(".")[parent.count(".") + 1] for item in known
                      if item.startswith(parent + ".")))
    return "accepted here: %s" % ", ".join(here) if here else "see docs/configuration.md, Worker pod"


def _walk(value, dotted, base, found):
    for key, item in value.items():
        here = "%s.%s" % (dotted, key) if dotted else str(key)
        path = "%s.%s" % (base, here)
        if here in KEY_BY_PATH:
            found[here] = (path, item)
        elif here in IGNORED:
            continue
        elif here in OWNED_ELSEWHERE:
            same = SAME_AS_OURS.get(here, ())
            if not _unset(item) and not (same(item) if callable(same) else item in same):
                raise ConfigError(path, "the QHub config sets this elsewhere: %s" % OWNED_ELSEWHERE[here])
        elif here in PREFIXES:
            if item is not None:
                _walk(_mapping(item, path), here, base, found)
        else:
            raise ConfigError(path, "unknown key of the prefect-worker chart's values; %s" % _nearest(here))


def parse_chart_values(overrides, path="prefect.overrides"):
    """ChartValues from the ``worker``, ``serviceAccount`` and ``role`` keys of ``overrides``."""
    found = {}
    sections = dict((key, overrides[key]) for key in ("worker", "serviceAccount", "role") if key in overrides)
    _walk(sections, "", path, found)
    values, given, paths = {}, set(), {}
    for key in CHART_KEYS:
        if key.path not in found:
            values[key.path] = copy.deepcopy(key.default)
            continue
        key_path, raw = found[key.path]
        paths[key.path] = key_path
        if raw is not None and raw is not False and _unset(raw):
            # A pasted values.yaml carries the chart's empty defaults ("", [], {}): they set nothing.
            values[key.path] = copy.deepcopy(key.default)
            continue
        if raw is None:
            # Helm: a null deletes the default.
            values[key.path] = None
            given.add(key.path)
            continue
        if key.check is not None:
            raw = key.check(raw, key_path)
        values[key.path] = merge(key.default, raw) if key.merges else raw
        given.add(key.path)
    return ChartValues(values, given, paths), found.get("worker.config.workQueues")


def refuse_for_agent(chart, generation_name="a Prefect 1 agent"):
    """A worker-only key set for a Prefect 1 agent: a ConfigError naming it."""
    for key in CHART_KEYS:
        # A null (the chart's own default for several) sets nothing.
        if key.worker_only and chart.is_set(key.path) and chart[key.path] is not None:
            raise ConfigError(chart.paths[key.path], "a Prefect 2/3 worker setting, and the image runs %s; "
                              "remove it or use a Prefect 2/3 image" % generation_name)


def empty_chart_values():
    return ChartValues(dict((key.path, copy.deepcopy(key.default)) for key in CHART_KEYS), set(), {})
