# -*- coding: utf-8 -*-
# Copyright: (c) 2026, qhub.prefect contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Desired Kubernetes objects for a Prefect 1 agent or a Prefect 2/3 worker. Pure: no I/O.

Which objects, and what both generations' objects hold; agent.py and worker.py hold what only one has.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import copy
import json

from ansible_collections.qhub.prefect.plugins.module_utils._qhub.chart_values import CHART_KEYS
from ansible_collections.qhub.prefect.plugins.module_utils._qhub.errors import ConfigError
from ansible_collections.qhub.prefect.plugins.module_utils._qhub.images import PREFECT1
from ansible_collections.qhub.prefect.plugins.module_utils._render import agent, worker
from ansible_collections.qhub.prefect.plugins.module_utils._render.spec import (
    AgentSpec, labels, object_meta, plain, secret_data, secret_digest, secret_ref, selector,
)

SECRET_DIGEST_ANNOTATION = "qhub.prefect/secret-digest"

# What this deployment uses on the Prefect side, so a later run can report what it no longer describes.
PREFECT_OBJECTS_ANNOTATION = "qhub.prefect/prefect-objects"

RBAC_API = "rbac.authorization.k8s.io/v1"

# prefect-helm's worker Role, which the Prefect 1 agent's needs fit in as well: it creates and
# cleans up flow-run Jobs and watches their pods and events. Nothing cluster-wide, no Secrets.
ROLE_RULES = [
    {"apiGroups": [""], "resources": ["events", "pods", "pods/log", "pods/status"],
     "verbs": ["get", "list", "watch"]},
    {"apiGroups": ["batch"], "resources": ["jobs"],
     "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
]


def render_secret(spec):
    secret = object_meta(spec, spec.secret_name, "Secret", "v1")
    secret["type"] = "Opaque"
    data = secret_data(spec)
    secret["data"] = dict((key, base64.b64encode(value.encode("utf-8")).decode("ascii"))
                          for key, value in sorted(data.items()))
    return secret


def render_service_account(spec):
    account = object_meta(spec, spec.service_account_name, "ServiceAccount", "v1")
    if spec.chart["serviceAccount.annotations"]:
        # IRSA, Workload Identity: what the cloud's identity webhook reads.
        account["metadata"]["annotations"] = dict(spec.chart["serviceAccount.annotations"])
    return account


def render_role(spec):
    role = object_meta(spec, spec.name, "Role", RBAC_API)
    role["rules"] = ROLE_RULES + list(spec.chart["role.extraPermissions"] or [])
    return role


def render_role_binding(spec):
    binding = object_meta(spec, spec.name, "RoleBinding", RBAC_API)
    binding["roleRef"] = {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": spec.name}
    binding["subjects"] = [{"kind": "ServiceAccount", "name": spec.service_account_name, "namespace": spec.namespace}]
    return binding


def key_reaches_flow_runs_as_text(spec):
    """True when the flow-run Jobs get the API key as a plain env value whatever this collection sets.

    Prefect 1 agents copy their key into every flow-run Job; prefect-kubernetes workers before 0.5.3
    (Prefect 2.x and 3.0 images) do too. Floating tags are taken to be recent.
    """
    return bool(spec.token) and generation_of(spec).copies_key_to_flow_runs(spec)


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


def generation_of(spec):
    """The module that renders what only this spec's generation has: agent.py (Prefect 1) or worker.py."""
    return agent if spec.generation == PREFECT1 else worker


def render_deployment(spec, disruption_budget_api=None):
    deployment = object_meta(spec, spec.name, "Deployment", "apps/v1")
    env = generation_of(spec).own_env(spec)
    env += [plain(name, value) for name, value in sorted(spec.job.env.items())]
    env += [secret_ref(spec, name) for name in sorted(spec.secret_env)]
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
    generation_of(spec).configure_container(spec, container, volumes, annotations)
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
    out = generation_of(spec).prefect_objects(spec)
    if spec.job_namespace != spec.namespace:
        out["job_namespace"] = spec.job_namespace
    if spec.chart["worker.podDisruptionBudget"] and disruption_budget_api:
        out["disruption_budget"] = disruption_budget_api
    return out


def render_disruption_budget(spec, api_version):
    """The chart's worker.podDisruptionBudget: a PodDisruptionBudget of the worker's pods with its values."""
    budget = object_meta(spec, spec.name, "PodDisruptionBudget", api_version)
    budget["spec"] = dict(spec.chart["worker.podDisruptionBudget"], selector={"matchLabels": selector(spec)})
    return budget


def object_stubs(spec, disruption_budget_api="policy/v1"):
    """The objects render_objects makes, in its order, as stubs (apiVersion, kind, name, namespace).

    What a run reads before it renders: the stubs depend on nothing it reads, the rendered objects do.
    """
    def stub(api_version, kind, name, namespace=spec.namespace):
        return {"apiVersion": api_version, "kind": kind, "metadata": {"name": name, "namespace": namespace}}

    stubs = []
    if spec.creates_service_account:
        stubs.append(stub("v1", "ServiceAccount", spec.service_account_name))
    stubs += [stub(RBAC_API, "Role", spec.name), stub(RBAC_API, "RoleBinding", spec.name)]
    if spec.job_namespace != spec.namespace:
        stubs += [stub(RBAC_API, "Role", spec.name, spec.job_namespace),
                  stub(RBAC_API, "RoleBinding", spec.name, spec.job_namespace)]
    stubs.append(stub("v1", "Secret", spec.secret_name))
    stubs += [stub(*item) for item in generation_of(spec).own_objects(spec)]
    if spec.chart["worker.podDisruptionBudget"]:
        stubs.append(stub(disruption_budget_api, "PodDisruptionBudget", spec.name))
    stubs.append(stub("apps/v1", "Deployment", spec.name))
    return stubs


def render_objects(spec, disruption_budget_api="policy/v1"):
    """All objects in apply order (the Deployment last, so its Secret and RBAC exist first): object_stubs, rendered.

    ``disruption_budget_api``: the PodDisruptionBudget version the cluster serves (policy/v1 since 1.21).
    """
    renderers = {
        "ServiceAccount": render_service_account, "Role": render_role, "RoleBinding": render_role_binding,
        "Secret": render_secret, "ConfigMap": agent.render_job_template,
        "PodDisruptionBudget": lambda spec: render_disruption_budget(spec, disruption_budget_api),
        "Deployment": lambda spec: render_deployment(spec, disruption_budget_api),
    }
    objects = []
    for stub in object_stubs(spec, disruption_budget_api):
        rendered = renderers[stub["kind"]](spec)
        # The same Role and RoleBinding where the flow runs go (worker.config.jobNamespace).
        rendered["metadata"]["namespace"] = stub["metadata"]["namespace"]
        objects.append(rendered)
    return objects


def owned_object_stubs(name, namespace):
    """Every object a deployment named ``name`` may own, of either generation, for deletion."""
    stub = AgentSpec(name, namespace, PREFECT1, "", None)
    kinds = [("v1", "ServiceAccount", name), (RBAC_API, "Role", name),
             (RBAC_API, "RoleBinding", name), ("v1", "Secret", name),
             ("v1", "ConfigMap", stub.job_template_name), ("apps/v1", "Deployment", name)]
    # The Deployment first, so no pod runs on while its Secret and RBAC are gone.
    return [{"apiVersion": api, "kind": kind, "metadata": {"name": object_name, "namespace": namespace}}
            for api, kind, object_name in reversed(kinds)]
