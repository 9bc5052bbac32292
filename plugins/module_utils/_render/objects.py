# -*- coding: utf-8 -*-
# Copyright: (c) 2026, qhub.prefect contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Desired Kubernetes objects for a Prefect 1 agent or a Prefect 2/3 worker. Pure: no I/O."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import copy
import hashlib
import hmac
import json

from ansible_collections.qhub.prefect.plugins.module_utils._qhub.credentials import (
    PREFECT_CLOUD1_API, is_prefect_cloud, url_userinfo,
)
from ansible_collections.qhub.prefect.plugins.module_utils._kube.apply import (
    FIELD_MANAGER, INSTANCE_LABEL, MANAGED_BY_LABEL, OWNER_LABEL, digest,
)
from ansible_collections.qhub.prefect.plugins.module_utils._qhub.chart_values import (
    AUTH_STRING_SECRET_KEY, CHART_KEYS, empty_chart_values,
)
from ansible_collections.qhub.prefect.plugins.module_utils._qhub.job_options import AGENT_ENV
from ansible_collections.qhub.prefect.plugins.module_utils._qhub.model import ConfigError, PREFECT1, image_version
from ansible_collections.qhub.prefect.plugins.module_utils._render.flow_run import FlowRun, literal_job, secret_env_ref

SECRET_DIGEST_ANNOTATION = "qhub.prefect/secret-digest"
# What this deployment uses on the Prefect side, so a later run can report what it no longer describes.
PREFECT_OBJECTS_ANNOTATION = "qhub.prefect/prefect-objects"
AUTH_STRING_KEY = "PREFECT_API_AUTH_STRING"
# A random key for the secret digest when there is neither token nor auth string to key it with (a
# self-hosted server without auth); kept in the Secret, which only the collection and admins read.
DIGEST_SALT_KEY = "qhub-prefect-digest-salt"
# prefect-kubernetes 0.5.3 (it needs Prefect 3.1) added the setting that keeps the API key out of flow-run Jobs.
MIN_KEY_BY_REFERENCE_VERSION = (3, 1, 0)

JOB_TEMPLATE_DIGEST_ANNOTATION = "qhub.prefect/job-template-digest"
JOB_TEMPLATE_DIR = "/etc/prefect-agent"
JOB_TEMPLATE_FILE = "job_template.yaml"
PROBE_PORT = 8080

# prefect-helm's worker Role, which the Prefect 1 agent's needs fit in as well: it creates and
# cleans up flow-run Jobs and watches their pods and events. Nothing cluster-wide, no Secrets.
ROLE_RULES = [
    {"apiGroups": [""], "resources": ["events", "pods", "pods/log", "pods/status"],
     "verbs": ["get", "list", "watch"]},
    {"apiGroups": ["batch"], "resources": ["jobs"],
     "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
]


class AgentSpec:
    """Everything the objects are rendered from; secret values stay in ``secret_env``/``token``."""

    def __init__(self, name, namespace, generation, image, job, secret_env=None, token=None,
                 api_url=None, work_pool=None, work_queues=None, cluster_uid=None, replicas=1,
                 job_service_account=None, auth_string=None, instance=None, project=None):
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
        self.digest_salt = None

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


def _meta(spec, name, kind, api_version):
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


def render_secret(spec):
    secret = _meta(spec, spec.secret_name, "Secret", "v1")
    secret["type"] = "Opaque"
    data = secret_data(spec)
    secret["data"] = dict((key, base64.b64encode(value.encode("utf-8")).decode("ascii"))
                          for key, value in sorted(data.items()))
    return secret


def render_service_account(spec):
    account = _meta(spec, spec.service_account_name, "ServiceAccount", "v1")
    if spec.chart["serviceAccount.annotations"]:
        # IRSA, Workload Identity: what the cloud's identity webhook reads.
        account["metadata"]["annotations"] = dict(spec.chart["serviceAccount.annotations"])
    return account


def render_role(spec):
    role = _meta(spec, spec.name, "Role", "rbac.authorization.k8s.io/v1")
    role["rules"] = ROLE_RULES + list(spec.chart["role.extraPermissions"] or [])
    return role


def render_role_binding(spec):
    binding = _meta(spec, spec.name, "RoleBinding", "rbac.authorization.k8s.io/v1")
    binding["roleRef"] = {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": spec.name}
    binding["subjects"] = [{"kind": "ServiceAccount", "name": spec.service_account_name, "namespace": spec.namespace}]
    return binding


def _secret_ref(spec, name):
    return secret_env_ref(spec.secret_name, name)


def _plain(name, value):
    return {"name": name, "value": value}


def _named_secret_ref(name, secret, key):
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def _api_url_env(spec, url):
    """The API URL's env entry: a reference to the Secret when the URL holds user:password, else the URL."""
    if api_url_is_secret(spec):
        return _secret_ref(spec, api_url_key(spec))
    return _plain(api_url_key(spec), url)


def flow_run(spec):
    """What the agent's flow-run pods get: the same builder as the Prefect 2/3 work pool's template."""
    return FlowRun(spec.job, sorted(spec.secret_env), secret_name=spec.secret_name,
                   service_account=spec.job_service_account)


def prefect1_job_template(spec):
    """The Job template the Prefect 1 agent merges into every flow-run Job."""
    return literal_job(flow_run(spec))


def render_job_template(spec):
    import yaml  # late, as in _qhub_config: module_utils import with the standard library and ansible only

    config_map = _meta(spec, spec.job_template_name, "ConfigMap", "v1")
    config_map["data"] = {JOB_TEMPLATE_FILE: yaml.safe_dump(prefect1_job_template(spec), default_flow_style=False,
                                                            sort_keys=True)}
    return config_map


def key_reaches_flow_runs_as_text(spec):
    """True when the flow-run Jobs get the API key as a plain env value whatever this collection sets.

    Prefect 1 agents copy their key into every flow-run Job; prefect-kubernetes workers before 0.5.3
    (Prefect 2.x and 3.0 images) do too. Floating tags are taken to be recent.
    """
    if not spec.token:
        return False
    if spec.is_agent:
        return True
    version = image_version(spec.image)
    return version is not None and version < MIN_KEY_BY_REFERENCE_VERSION


# The env 0.x agents read the flow-run settings from (job_options.JOB_OPTIONS), in the order agents always had.
AGENT_0X_ENV = tuple((name, field) for field in ("memory_request", "memory_limit", "cpu_request", "cpu_limit",
                                                 "image_pull_policy")
                     for name, declared in AGENT_ENV if declared == field) + (
    ("SERVICE_ACCOUNT_NAME", "service_account_name"),)


def agent_env(spec):
    job = spec.job
    api_url = spec.api_url or PREFECT_CLOUD1_API
    env = [
        _api_url_env(spec, api_url),
        _plain("PREFECT__BACKEND", "cloud" if is_prefect_cloud(api_url) else "server"),
        _plain("NAMESPACE", spec.namespace),
        _plain("PREFECT__CLOUD__AGENT__AGENT_ADDRESS", "http://0.0.0.0:%d" % PROBE_PORT),
    ]
    if job.labels:
        env.append(_plain("PREFECT__CLOUD__AGENT__LABELS", json.dumps(job.labels)))
    pod = flow_run(spec)
    if pod.image_pull_secrets:
        env.append(_plain("IMAGE_PULL_SECRETS", ",".join(item["name"] for item in pod.image_pull_secrets)))
    # 0.x agents read these; 1.x takes the same values from the job template.
    for name, variable in AGENT_0X_ENV:
        if pod.values[variable]:
            env.append(_plain(name, pod.values[variable]))
    if spec.token:
        env += [_secret_ref(spec, key) for key in token_keys(spec)]
    return env


def worker_env(spec):
    env = [
        _plain("HOME", "/home/prefect"),
        _api_url_env(spec, spec.api_url or ""),
        # Where the flow-run pods are, whose events the worker watches (the chart sets it to jobNamespace).
        _plain("PREFECT_INTEGRATIONS_KUBERNETES_OBSERVER_NAMESPACES", spec.job_namespace),
        _plain("PREFECT_WORKER_WEBSERVER_HOST", "0.0.0.0"),
        _plain("PREFECT_WORKER_WEBSERVER_PORT", str(PROBE_PORT)),
    ]
    if spec.cluster_uid:
        env.append(_plain("PREFECT_KUBERNETES_CLUSTER_UID", spec.cluster_uid))
    for key in CHART_KEYS:
        if key.target[0] == "env" and key.target[1] != "PREFECT_KUBERNETES_CLUSTER_UID" and \
                spec.chart[key.path] is not None:
            value = spec.chart[key.path]
            env.append(_plain(key.target[1], ("true" if value else "false") if isinstance(value, bool) else str(value)))
    key_secret, key = spec.api_key_ref
    if spec.token or not spec.uses_own_key_secret:
        env.append(_named_secret_ref("PREFECT_API_KEY", key_secret, key))
        # Otherwise the worker copies its API key into every flow-run Job's env as plain text.
        env += [_plain("PREFECT_INTEGRATIONS_KUBERNETES_WORKER_API_KEY_SECRET_NAME", key_secret),
                _plain("PREFECT_INTEGRATIONS_KUBERNETES_WORKER_API_KEY_SECRET_KEY", key)]
    auth_secret, auth_key = spec.auth_string_ref
    if spec.auth_string or auth_secret != spec.secret_name:
        # The same for a self-hosted server's basic auth: the worker reads it, flow runs get a reference.
        env += [_named_secret_ref(AUTH_STRING_KEY, auth_secret, auth_key),
                _plain("PREFECT_INTEGRATIONS_KUBERNETES_WORKER_API_AUTH_STRING_SECRET_NAME", auth_secret),
                _plain("PREFECT_INTEGRATIONS_KUBERNETES_WORKER_API_AUTH_STRING_SECRET_KEY", auth_key)]
    if spec.replicas > 1:
        # Each pod its own worker name (its pod name); one shared name would make them one worker to Prefect.
        env.append({"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}})
    return env


# The same for every agent: what differs between agents is in the env and the mounted job template.
AGENT_ARGS = ("prefect", "agent", "kubernetes", "start",
              "--job-template", "%s/%s" % (JOB_TEMPLATE_DIR, JOB_TEMPLATE_FILE))


# prefect worker start's --install-policy appeared in Prefect 2.10.18 (src/prefect/cli/worker.py at the tags);
# older workers only install what their pool type lacks, which a -kubernetes image never does.
MIN_INSTALL_POLICY_VERSION = (2, 10, 18)


def worker_args(spec):
    chart = spec.chart
    name = "$(POD_NAME)" if spec.replicas > 1 else spec.worker_name
    args = ["prefect", "worker", "start", "--type", "kubernetes", "--pool", spec.work_pool or spec.name,
            "--name", name]
    version = image_version(spec.image)
    if version is None or version >= MIN_INSTALL_POLICY_VERSION:
        args += ["--install-policy", "never"]
    args.append("--with-healthcheck")
    for queue in spec.work_queues:
        args += ["--work-queue", queue]
    if chart["worker.config.limit"] is not None:
        args += ["--limit", str(chart["worker.config.limit"])]
    return args


def probes(path, liveness=None):
    """Startup, readiness and liveness checks of the agent's or worker's health endpoint.

    Importing Prefect and reaching the API takes 20 to 40 s on a small (2-core) node, more while flow-run
    pods start beside it: the startup probe allows 3 minutes before liveness takes over, so a slow start
    is not killed and restarted into a crash loop. Readiness is what the role's rollout wait waits for.
    ``liveness``: the chart's ``worker.livenessProbe`` ({enabled, config}); off drops the liveness check only.
    """
    check = {"httpGet": {"path": path, "port": PROBE_PORT}, "timeoutSeconds": 5}
    out = {
        "startupProbe": dict(check, periodSeconds=5, failureThreshold=36),
        "readinessProbe": dict(check, periodSeconds=10, failureThreshold=3),
    }
    liveness = {"enabled": True, "config": {"periodSeconds": 30, "failureThreshold": 3}} if liveness is None \
        else liveness
    if liveness and liveness.get("enabled") is not False:
        out["livenessProbe"] = dict(check, **(liveness.get("config") or {}))
    return out


# The pod template's own labels and annotations: a chart value may add to them, never replace one.
def _add_metadata(own, extra, path):
    for key in sorted(extra or {}):
        if key in own:
            raise ConfigError(path, "%s is set by the collection itself (the Deployment's selector and its "
                              "rollout digests depend on it)" % key)
        own[key] = extra[key]


def _set_or_drop(target, field, value):
    if value is None:
        target.pop(field, None)
    else:
        target[field] = copy.deepcopy(value)


def _env_from(chart):
    out = []
    for path, kind in (("worker.extraEnvVarsCM", "configMapRef"), ("worker.extraEnvVarsCMs", "configMapRef"),
                       ("worker.extraEnvVarsSecret", "secretRef"), ("worker.extraEnvVarsSecrets", "secretRef")):
        value = chart[path]
        for name in ([value] if isinstance(value, str) else value or []):
            out.append({kind: {"name": name}})
    return out


def apply_chart_values(spec, deployment_spec, container):
    """The prefect-worker chart's values (chart_values.CHART_KEYS) on the Deployment, as the chart renders them."""
    chart = spec.chart
    template = deployment_spec["template"]
    pod = template["spec"]
    for key in CHART_KEYS:
        place, field = key.target
        value = chart[key.path]
        if place == "pod" and field in ("volumes", "containers"):
            pod[field] += copy.deepcopy(value or [])
        elif place == "pod" and field == "imagePullSecrets":
            if value:
                pod[field] = [{"name": name} for name in value]
        elif place == "pod" and (value is not None or key.default is not None):
            _set_or_drop(pod, field, value)
        elif place == "container" and field in ("resources", "securityContext", "imagePullPolicy"):
            _set_or_drop(container, field, value)
        elif place == "container" and field in ("volumeMounts", "env", "args"):
            container[field] += copy.deepcopy(value or [])
        elif place == "template" and value:
            _add_metadata(template["metadata"][field], value, chart.paths[key.path])
        elif place == "deployment" and field != "replicas" and value is not None:
            deployment_spec[field] = value
    env_from = _env_from(chart)
    if env_from:
        container["envFrom"] = env_from


def render_deployment(spec, disruption_budget_api=None):
    deployment = _meta(spec, spec.name, "Deployment", "apps/v1")
    env = agent_env(spec) if spec.is_agent else worker_env(spec)
    env += [_plain(name, value) for name, value in sorted(spec.job.env.items())]
    env += [_secret_ref(spec, name) for name in sorted(spec.secret_env)]
    container = {
        "name": "prefect-" + spec.component,
        "image": spec.image,
        "env": env,
        "volumeMounts": [{"name": "home", "mountPath": "/home/prefect"}, {"name": "tmp", "mountPath": "/tmp"}],
    }
    volumes = [{"name": "home", "emptyDir": {}}, {"name": "tmp", "emptyDir": {}}]
    annotations = {SECRET_DIGEST_ANNOTATION: secret_digest(spec)}
    deployment["metadata"]["annotations"] = {PREFECT_OBJECTS_ANNOTATION: json.dumps(
        prefect_objects(spec, disruption_budget_api), sort_keys=True)}
    liveness = spec.chart["worker.livenessProbe"]
    if spec.is_agent:
        container["args"] = list(AGENT_ARGS)
        # The agent's own health server (PREFECT__CLOUD__AGENT__AGENT_ADDRESS), up once it has reached the API.
        container.update(probes("/api/health", liveness))
        container["volumeMounts"].append({"name": "job-template", "mountPath": JOB_TEMPLATE_DIR, "readOnly": True})
        volumes.append({"name": "job-template", "configMap": {"name": spec.job_template_name}})
        annotations[JOB_TEMPLATE_DIGEST_ANNOTATION] = digest(prefect1_job_template(spec))
    else:
        container["command"] = ["/usr/bin/tini", "-g", "--", "/opt/prefect/entrypoint.sh"]
        container["args"] = worker_args(spec)
        # --with-healthcheck: 200 while the worker polls its pool, 503 once it has stopped polling.
        container.update(probes("/health", liveness))
    deployment["spec"] = {
        "replicas": spec.replicas,
        # One agent at a time: two would both poll for the same flow runs during a rollout.
        "strategy": {"type": "Recreate"},
        "selector": {"matchLabels": selector(spec)},
        "template": {
            "metadata": {"labels": labels(spec), "annotations": annotations},
            "spec": {
                "serviceAccountName": spec.service_account_name,
                "containers": [container],
                "volumes": volumes,
            },
        },
    }
    apply_chart_values(spec, deployment["spec"], container)
    return deployment


def prefect_objects(spec, disruption_budget_api=None):
    """The Prefect-side objects this deployment uses (and the role creates when missing), and where it put
    objects beyond the usual kinds (RBAC in the job namespace, a PodDisruptionBudget), so a later run finds them."""
    if spec.is_agent:
        out = {"project": spec.project} if spec.project else {}
    else:
        out = {"work_pool": spec.work_pool or spec.name, "work_queues": sorted(spec.work_queues)}
    if spec.job_namespace != spec.namespace:
        out["job_namespace"] = spec.job_namespace
    if spec.chart["worker.podDisruptionBudget"] and disruption_budget_api:
        out["disruption_budget"] = disruption_budget_api
    return out


def render_job_namespace_rbac(spec):
    """The worker's rights where its flow runs go (worker.config.jobNamespace): the same Role, bound there."""
    role = render_role(spec)
    binding = render_role_binding(spec)
    for obj in (role, binding):
        obj["metadata"]["namespace"] = spec.job_namespace
    return [role, binding]


def render_disruption_budget(spec, api_version):
    """The chart's worker.podDisruptionBudget: a PodDisruptionBudget of the worker's pods with its values."""
    budget = _meta(spec, spec.name, "PodDisruptionBudget", api_version)
    budget["spec"] = dict(spec.chart["worker.podDisruptionBudget"], selector={"matchLabels": selector(spec)})
    return budget


def render_objects(spec, disruption_budget_api="policy/v1"):
    """All objects in apply order (the Deployment last, so its Secret and RBAC exist first).

    ``disruption_budget_api``: the PodDisruptionBudget version the cluster serves (policy/v1 since 1.21).
    """
    objects = []
    if spec.creates_service_account:
        objects.append(render_service_account(spec))
    objects += [render_role(spec), render_role_binding(spec)]
    if spec.job_namespace != spec.namespace:
        objects += render_job_namespace_rbac(spec)
    objects.append(render_secret(spec))
    if spec.is_agent:
        objects.append(render_job_template(spec))
    if spec.chart["worker.podDisruptionBudget"]:
        objects.append(render_disruption_budget(spec, disruption_budget_api))
    objects.append(render_deployment(spec, disruption_budget_api))
    return objects


def owned_object_stubs(name, namespace):
    """Every object a deployment named ``name`` may own, of either generation, for deletion."""
    stub = AgentSpec(name, namespace, PREFECT1, "", None)
    kinds = [("v1", "ServiceAccount", name), ("rbac.authorization.k8s.io/v1", "Role", name),
             ("rbac.authorization.k8s.io/v1", "RoleBinding", name), ("v1", "Secret", name),
             ("v1", "ConfigMap", stub.job_template_name), ("apps/v1", "Deployment", name)]
    # The Deployment first, so no pod runs on while its Secret and RBAC are gone.
    return [{"apiVersion": api, "kind": kind, "metadata": {"name": object_name, "namespace": namespace}}
            for api, kind, object_name in reversed(kinds)]
