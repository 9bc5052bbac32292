# -*- coding: utf-8 -*-
# Copyright: (c) 2026, qhub.prefect contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The AgentSpec, and what both generations' objects share: labels, env entries, the Secret's data, probes. Pure."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import hashlib
import hmac
import json

from ansible_collections.qhub.prefect.plugins.module_utils._qhub.credentials import url_userinfo
from ansible_collections.qhub.prefect.plugins.module_utils._kube.apply import (
    FIELD_MANAGER, INSTANCE_LABEL, MANAGED_BY_LABEL, OWNER_LABEL,
)
from ansible_collections.qhub.prefect.plugins.module_utils._qhub.chart_values import (
    AUTH_STRING_SECRET_KEY, empty_chart_values,
)
from ansible_collections.qhub.prefect.plugins.module_utils._qhub.images import PREFECT1
from ansible_collections.qhub.prefect.plugins.module_utils._render.flow_run import secret_env_ref

AUTH_STRING_KEY = "PREFECT_API_AUTH_STRING"

# A random key for the secret digest when there is neither token nor auth string to key it with (a
# self-hosted server without auth); kept in the Secret, which only the collection and admins read.
DIGEST_SALT_KEY = "qhub-prefect-digest-salt"
PROBE_PORT = 8080


class AgentSpec:
    """Everything the objects are rendered from; secret values stay in ``secret_env``/``token``.

    Immutable: what a run reads from the cluster (the digest salt, the cluster UID) makes a new spec
    (``with_live_values``), so the objects are rendered once, from a spec that cannot change under them.
    """

    # The values a run learns from the cluster, after the spec is built from the options.
    LIVE_VALUES = ("digest_salt", "cluster_uid")

    def __init__(self, name, namespace, generation, image, job, secret_env=None, token=None,
                 api_url=None, work_pool=None, work_queues=None, cluster_uid=None, replicas=1,
                 job_service_account=None, auth_string=None, instance=None, project=None, digest_salt=None):
        self.name = name
        self.namespace = namespace
        self.generation = generation
        self.image = image
        self.job = job
        self.secret_env = dict(secret_env or {})
        self.token = token
        self.api_url = api_url
        self.work_pool = work_pool
        self.work_queues = list(work_queues or [])
        self.cluster_uid = cluster_uid
        self.replicas = replicas
        self.job_service_account = job_service_account
        self.auth_string = auth_string
        # The stable identity ownership is keyed on (project_name); without one, only this name is owned.
        self.instance_given = instance is not None
        self.instance = instance or name
        self.project = project
        self.digest_salt = digest_salt
        self._frozen = True

    def __setattr__(self, name, value):
        if getattr(self, "_frozen", False):
            raise AttributeError("an AgentSpec does not change: make a new one with with_live_values()")
        object.__setattr__(self, name, value)

    def with_live_values(self, **values):
        """A copy with what the run read from the cluster (LIVE_VALUES); this spec stays as it is."""
        unknown = sorted(set(values) - set(self.LIVE_VALUES))
        if unknown:
            raise TypeError("not a live value of an AgentSpec: %s" % ", ".join(unknown))
        other = copy.copy(self)
        for name, value in values.items():
            object.__setattr__(other, name, value)
        return other

    @property
    def is_agent(self):
        return self.generation == PREFECT1

    @property
    def component(self):
        return "agent" if self.is_agent else "worker"

    @property
    def secret_name(self):
        return self.name

    @property
    def chart(self):
        """The prefect-worker chart's values the config gives (defaults where it gives none)."""
        return self.job.chart if self.job is not None else empty_chart_values()

    @property
    def creates_service_account(self):
        return self.chart["serviceAccount.create"] is not False

    @property
    def service_account_name(self):
        """As the chart names it: serviceAccount.name, else ours when created, else the namespace's default."""
        return self.chart["serviceAccount.name"] or (self.name if self.creates_service_account else "default")

    @property
    def job_namespace(self):
        """Where the flow-run Jobs run: the chart's worker.config.jobNamespace, else the worker's namespace."""
        return (None if self.is_agent else self.chart["worker.config.jobNamespace"]) or self.namespace

    @property
    def worker_name(self):
        return self.chart["worker.config.name"] or self.name

    @property
    def api_key_ref(self):
        """(Secret, key) the API key is read from: the user's existing Secret, else the collection's."""
        given = self.chart["worker.cloudApiConfig.apiKeySecret"]
        if given and not self.is_agent:
            return given["name"], given["key"]
        return self.secret_name, "PREFECT_API_KEY"

    @property
    def auth_string_ref(self):
        given = self.chart["worker.selfHostedServerApiConfig.basicAuth.existingSecret"]
        if given and not self.is_agent:
            return given, AUTH_STRING_SECRET_KEY
        return self.secret_name, AUTH_STRING_KEY

    @property
    def uses_own_key_secret(self):
        return self.api_key_ref[0] == self.secret_name

    @property
    def job_template_name(self):
        return self.name + "-job-template"


def labels(spec):
    out = {
        "app.kubernetes.io/name": "prefect-" + spec.component,
        INSTANCE_LABEL: spec.name,
        "app.kubernetes.io/component": spec.component,
        "app.kubernetes.io/part-of": "prefect",
        MANAGED_BY_LABEL: FIELD_MANAGER,
    }
    if spec.instance_given:
        out[OWNER_LABEL] = spec.instance
    return out


def selector(spec):
    # Stable across generations, since a Deployment's selector cannot change.
    return {INSTANCE_LABEL: spec.name, MANAGED_BY_LABEL: FIELD_MANAGER}


def object_meta(spec, name, kind, api_version):
    return {"apiVersion": api_version, "kind": kind,
            "metadata": {"name": name, "namespace": spec.namespace, "labels": labels(spec)}}


def token_keys(spec):
    """Secret keys holding the API token: both names the Prefect 1 agents read, or Prefect 3's."""
    if spec.is_agent:
        return ("PREFECT__CLOUD__AGENT__AUTH_TOKEN", "PREFECT__CLOUD__API_KEY")
    return ("PREFECT_API_KEY",)


def api_url_key(spec):
    """The env var (and Secret key) of the API URL: the one the agent's or the worker's Prefect reads."""
    return "PREFECT__CLOUD__API" if spec.is_agent else "PREFECT_API_URL"


def api_url_is_secret(spec):
    """True when the API URL holds user:password: then it is kept in the Secret, never in plain env."""
    return bool(spec.api_url) and url_userinfo(spec.api_url) is not None


def secret_data(spec):
    data = dict(spec.secret_env)
    if api_url_is_secret(spec):
        data[api_url_key(spec)] = spec.api_url
    if spec.token and spec.uses_own_key_secret:
        for key in token_keys(spec):
            data[key] = spec.token
    if spec.auth_string and not spec.is_agent and spec.auth_string_ref[0] == spec.secret_name:
        data[AUTH_STRING_KEY] = spec.auth_string
    if spec.digest_salt:
        data[DIGEST_SALT_KEY] = spec.digest_salt
    return data


def needs_digest_salt(spec):
    """True when secret values would otherwise be digested with no secret key at all."""
    return (bool(spec.secret_env) or api_url_is_secret(spec)) and not spec.token and \
        not (spec.auth_string and not spec.is_agent)


def secret_digest(spec):
    """A digest of the secret data for the pod template, so a rotation rolls the pods.

    Keyed with the API token (a long random key), so the annotation, which anyone who can read
    Deployments sees, cannot be used to guess a short secret value. It stays the same from run to
    run, and from concurrent run to concurrent run, as it depends on nothing but the input.
    """
    payload = json.dumps(secret_data(spec), sort_keys=True).encode("utf-8")
    key = spec.token or spec.auth_string or spec.digest_salt or ""
    return hmac.new(key.encode("utf-8"), payload, hashlib.sha256).hexdigest()


def secret_ref(spec, name):
    return secret_env_ref(spec.secret_name, name)


def plain(name, value):
    return {"name": name, "value": value}


def named_secret_ref(name, secret, key):
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def api_url_env(spec, url):
    """The API URL's env entry: a reference to the Secret when the URL holds user:password, else the URL."""
    if api_url_is_secret(spec):
        return secret_ref(spec, api_url_key(spec))
    return plain(api_url_key(spec), url)


def probes(path, liveness=None):
    """Startup, readiness and liveness checks of the agent's or worker's health endpoint.

    Importing Prefect and reaching the API takes 20 to 40 s on a small (2-core) node, more while flow-run
    pods start beside it: the startup probe allows 3 minutes before liveness takes over, so a slow start
    is not killed and restarted into a crash loop. Readiness is what the role's rollout wait waits for, and
    the kubelet probes it only on its own period once startup has passed: short periods let the run end
    seconds, not a period, after the worker answers.
    ``liveness``: the chart's ``worker.livenessProbe`` ({enabled, config}); off drops the liveness check only.
    """
    check = {"httpGet": {"path": path, "port": PROBE_PORT}, "timeoutSeconds": 5}
    out = {
        "startupProbe": dict(check, periodSeconds=2, failureThreshold=90),
        "readinessProbe": dict(check, periodSeconds=3, failureThreshold=4),
    }
    liveness = {"enabled": True, "config": {"periodSeconds": 30, "failureThreshold": 3}} if liveness is None \
        else liveness
    if liveness and liveness.get("enabled") is not False:
        out["livenessProbe"] = dict(check, **(liveness.get("config") or {}))
    return out
