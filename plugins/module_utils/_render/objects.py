# -*- coding: utf-8 -*-
# Copyright: (c) 2026, qhub.prefect contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Desired Kubernetes objects for a Prefect 1 agent or a Prefect 2/3 worker. Pure: no I/O."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import hashlib
import hmac
import json

from ansible_collections.qhub.prefect.plugins.module_utils._qhub.credentials import (
    PREFECT_CLOUD1_API, is_prefect_cloud, url_userinfo,
)
from ansible_collections.qhub.prefect.plugins.module_utils._kube.apply import (
    FIELD_MANAGER, INSTANCE_LABEL, MANAGED_BY_LABEL, OWNER_LABEL, digest,
)
from ansible_collections.qhub.prefect.plugins.module_utils._qhub.model import PREFECT1, image_version
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
UID = 1001  # the prefect-helm charts' non-root user; Prefect's images run as root by default
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
    if spec.token:
        for key in token_keys(spec):
            data[key] = spec.token
    if spec.auth_string and not spec.is_agent:
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
    return _meta(spec, spec.name, "ServiceAccount", "v1")


def render_role(spec):
    role = _meta(spec, spec.name, "Role", "rbac.authorization.k8s.io/v1")
    role["rules"] = ROLE_RULES
    return role


def render_role_binding(spec):
    binding = _meta(spec, spec.name, "RoleBinding", "rbac.authorization.k8s.io/v1")
    binding["roleRef"] = {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": spec.name}
    binding["subjects"] = [{"kind": "ServiceAccount", "name": spec.name, "namespace": spec.namespace}]
    return binding


def _secret_ref(spec, name):
    return secret_env_ref(spec.secret_name, name)


def _plain(name, value):
    return {"name": name, "value": value}


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


AGENT_0X_ENV = (("JOB_MEM_REQUEST", "memory_request"), ("JOB_MEM_LIMIT", "memory_limit"),
                ("JOB_CPU_REQUEST", "cpu_request"), ("JOB_CPU_LIMIT", "cpu_limit"),
                ("IMAGE_PULL_POLICY", "image_pull_policy"), ("SERVICE_ACCOUNT_NAME", "service_account_name"))


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
        _plain("PREFECT_INTEGRATIONS_KUBERNETES_OBSERVER_NAMESPACES", spec.namespace),
        _plain("PREFECT_WORKER_WEBSERVER_HOST", "0.0.0.0"),
        _plain("PREFECT_WORKER_WEBSERVER_PORT", str(PROBE_PORT)),
    ]
    if spec.cluster_uid:
        env.append(_plain("PREFECT_KUBERNETES_CLUSTER_UID", spec.cluster_uid))
    if spec.token:
        env += [_secret_ref(spec, key) for key in token_keys(spec)]
        # Otherwise the worker copies its API key into every flow-run Job's env as plain text.
        env += [_plain("PREFECT_INTEGRATIONS_KUBERNETES_WORKER_API_KEY_SECRET_NAME", spec.secret_name),
                _plain("PREFECT_INTEGRATIONS_KUBERNETES_WORKER_API_KEY_SECRET_KEY", "PREFECT_API_KEY")]
    if spec.auth_string:
        # The same for a self-hosted server's basic auth: the worker reads it, flow runs get a reference.
        env += [_secret_ref(spec, AUTH_STRING_KEY),
                _plain("PREFECT_INTEGRATIONS_KUBERNETES_WORKER_API_AUTH_STRING_SECRET_NAME", spec.secret_name),
                _plain("PREFECT_INTEGRATIONS_KUBERNETES_WORKER_API_AUTH_STRING_SECRET_KEY", AUTH_STRING_KEY)]
    if spec.replicas > 1:
        # Each pod its own worker name (its pod name); one shared name would make them one worker to Prefect.
        env.append({"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}})
    return env


# The same for every agent: what differs between agents is in the env and the mounted job template.
AGENT_ARGS = ("prefect", "agent", "kubernetes", "start",
              "--job-template", "%s/%s" % (JOB_TEMPLATE_DIR, JOB_TEMPLATE_FILE))


def worker_args(spec):
    name = "$(POD_NAME)" if spec.replicas > 1 else spec.name
    args = ["prefect", "worker", "start", "--type", "kubernetes", "--pool", spec.work_pool or spec.name,
            "--name", name, "--install-policy", "never", "--with-healthcheck"]
    for queue in spec.work_queues:
        args += ["--work-queue", queue]
    return args


def probes(path):
    """Startup, readiness and liveness checks of the agent's or worker's health endpoint.

    Importing Prefect and reaching the API takes 20 to 40 s on a small (2-core) node, more while flow-run
    pods start beside it: the startup probe allows 3 minutes before liveness takes over, so a slow start
    is not killed and restarted into a crash loop. Readiness is what the role's rollout wait waits for.
    """
    check = {"httpGet": {"path": path, "port": PROBE_PORT}, "timeoutSeconds": 5}
    return {
        "startupProbe": dict(check, periodSeconds=5, failureThreshold=36),
        "readinessProbe": dict(check, periodSeconds=10, failureThreshold=3),
        "livenessProbe": dict(check, periodSeconds=30, failureThreshold=3),
    }


def render_deployment(spec):
    deployment = _meta(spec, spec.name, "Deployment", "apps/v1")
    env = agent_env(spec) if spec.is_agent else worker_env(spec)
    env += [_plain(name, value) for name, value in sorted(spec.job.env.items())]
    env += [_secret_ref(spec, name) for name in sorted(spec.secret_env)]
    container = {
        "name": "prefect-" + spec.component,
        "image": spec.image,
        "imagePullPolicy": "IfNotPresent",
        "env": env,
        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}},
        "securityContext": {
            "runAsNonRoot": True, "runAsUser": UID, "runAsGroup": UID, "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": "home", "mountPath": "/home/prefect"}, {"name": "tmp", "mountPath": "/tmp"}],
    }
    volumes = [{"name": "home", "emptyDir": {}}, {"name": "tmp", "emptyDir": {}}]
    annotations = {SECRET_DIGEST_ANNOTATION: secret_digest(spec)}
    deployment["metadata"]["annotations"] = {PREFECT_OBJECTS_ANNOTATION: json.dumps(prefect_objects(spec),
                                                                                    sort_keys=True)}
    if spec.is_agent:
        container["args"] = list(AGENT_ARGS)
        # The agent's own health server (PREFECT__CLOUD__AGENT__AGENT_ADDRESS), up once it has reached the API.
        container.update(probes("/api/health"))
        container["volumeMounts"].append({"name": "job-template", "mountPath": JOB_TEMPLATE_DIR, "readOnly": True})
        volumes.append({"name": "job-template", "configMap": {"name": spec.job_template_name}})
        annotations[JOB_TEMPLATE_DIGEST_ANNOTATION] = digest(prefect1_job_template(spec))
    else:
        container["command"] = ["/usr/bin/tini", "-g", "--", "/opt/prefect/entrypoint.sh"]
        container["args"] = worker_args(spec)
        # --with-healthcheck: 200 while the worker polls its pool, 503 once it has stopped polling.
        container.update(probes("/health"))
    deployment["spec"] = {
        "replicas": spec.replicas,
        # One agent at a time: two would both poll for the same flow runs during a rollout.
        "strategy": {"type": "Recreate"},
        "selector": {"matchLabels": selector(spec)},
        "template": {
            "metadata": {"labels": labels(spec), "annotations": annotations},
            "spec": {
                "serviceAccountName": spec.name,
                "securityContext": {"runAsNonRoot": True, "runAsUser": UID, "runAsGroup": UID, "fsGroup": UID,
                                    "seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [container],
                "volumes": volumes,
            },
        },
    }
    return deployment


def prefect_objects(spec):
    """The Prefect-side objects this deployment uses (and the role creates when missing)."""
    if spec.is_agent:
        return {"project": spec.project} if spec.project else {}
    return {"work_pool": spec.work_pool or spec.name, "work_queues": sorted(spec.work_queues)}


def render_objects(spec):
    """All objects in apply order (the Deployment last, so its Secret and RBAC exist first)."""
    objects = [render_service_account(spec), render_role(spec), render_role_binding(spec), render_secret(spec)]
    if spec.is_agent:
        objects.append(render_job_template(spec))
    objects.append(render_deployment(spec))
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
