# -*- coding: utf-8 -*-
# Copyright: (c) 2026, qhub.prefect contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What prefect_agent_config reads from the cluster before it renders: owned objects, the cluster UID, the PDB API.

Every function here reads; none writes except ``namespace_exists`` (which creates the namespace when told
to). The run builds its AgentSpec's live values (``live_values``) from these reads, then renders once.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import json
import os

from ansible_collections.qhub.prefect.plugins.module_utils._kube.apply import object_path
from ansible_collections.qhub.prefect.plugins.module_utils._kube.client import KubeError
from ansible_collections.qhub.prefect.plugins.module_utils._qhub.errors import ConfigError
from ansible_collections.qhub.prefect.plugins.module_utils._qhub.images import needs_cluster_uid
from ansible_collections.qhub.prefect.plugins.module_utils._render.objects import (
    PREFECT_OBJECTS_ANNOTATION, prefect_objects,
)
from ansible_collections.qhub.prefect.plugins.module_utils._render.spec import DIGEST_SALT_KEY, needs_digest_salt
from ansible_collections.qhub.prefect.plugins.module_utils._runners.ownership import (
    RBAC_KINDS, object_key, owned_in,
)

KUBE_SYSTEM = "/api/v1/namespaces/kube-system"


def namespace_exists(applier, namespace, create):
    """True when the namespace is there; creates it if ``create`` (None: only say whether it is there)."""
    path = "/api/v1/namespaces/" + namespace
    try:
        if applier.client.get(path) is not None:
            return True
    except KubeError as exc:
        # A deployer bound to a role in this namespace only may read it; one who may not is told by the writes.
        if exc.status != 403:
            raise
        return True
    if create is None:
        return False
    if not create:
        raise KubeError("namespace %s does not exist (set create_namespace: true to create it)" % namespace)
    # Created, not owned: state=absent never deletes a namespace.
    applier.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}, read=False)
    return not applier.check_mode


def cluster_uid(client, spec, live_deployment):
    """(the cluster UID for PREFECT_KUBERNETES_CLUSTER_UID or None, a note or None).

    The chart's ``worker.clusterUid`` when given. Otherwise only images whose prefect-kubernetes reads the
    UID at every flow-run submission need it (images.needs_cluster_uid): for them, the live Deployment's value
    or kube-system's UID, and a ConfigError naming worker.clusterUid when it cannot be read, since without
    it their flow-run submissions fail. Newer images never read it: no lookup, no permission.
    """
    given = spec.chart["worker.clusterUid"]
    if given:
        return given, None
    if not needs_cluster_uid(spec.image):
        return None, None
    for container in (((live_deployment or {}).get("spec") or {}).get("template") or {}).get("spec", {}).get(
            "containers") or []:
        for item in container.get("env") or []:
            if item.get("name") == "PREFECT_KUBERNETES_CLUSTER_UID" and item.get("value"):
                return item["value"], None
    try:
        kube_system = client.get(KUBE_SYSTEM)
    except KubeError as exc:
        if exc.status != 403:
            raise
        raise ConfigError("prefect.overrides.worker.clusterUid", "the image's prefect-kubernetes reads the cluster's "
                          "UID at every flow-run submission (Prefect 2.9 to 3.4.0), and the deployer may not read "
                          "the namespace kube-system (403), so every flow run would fail: set worker.clusterUid "
                          "(kubectl get namespace kube-system -o jsonpath='{.metadata.uid}'), or use Prefect 3.4.1 "
                          "or newer")
    return (kube_system or {}).get("metadata", {}).get("uid"), None


def disruption_budget_api(client):
    """policy/v1 where the cluster serves it (Kubernetes 1.21 and later), else policy/v1beta1."""
    try:
        return "policy/v1" if client.get("/apis/policy/v1") is not None else "policy/v1beta1"
    except KubeError as exc:
        if exc.status != 403:
            raise
        return "policy/v1"


def digest_salt(live_secrets):
    """The Secret's salt when it has one (so the digest stays put from run to run), else a new random one."""
    for secret in live_secrets:
        value = (secret.get("data") or {}).get(DIGEST_SALT_KEY)
        if value:
            try:
                return base64.b64decode(value).decode("ascii")
            except (ValueError, UnicodeDecodeError):
                pass
    return base64.b64encode(os.urandom(32)).decode("ascii")


def live_values(client, spec, live):
    """(the keyword arguments of spec.with_live_values, a cluster UID note or None) from the live objects.

    ``live``: the live objects at the spec's object stubs, in their order (None where there is none).
    """
    values, note = {}, None
    if needs_digest_salt(spec):
        values["digest_salt"] = digest_salt([obj for obj in live if obj is not None and obj["kind"] == "Secret"])
    if not spec.is_agent:
        values["cluster_uid"], note = cluster_uid(client, spec, live[-1])
    return values, note


def read_live(client, here, stubs):
    """The live object at each stub: the one listed as owned, else read at its name (None where there is none).

    Objects from before the instance label, or at our names with another's label, are not in ``here``.
    """
    live = [here.get(object_key(stub)) for stub in stubs]
    return [obj if obj is not None else client.get(object_path(stub)) for obj, stub in zip(live, stubs)]


def prefect_side(obj):
    """The Prefect objects an owned Deployment says it used (its annotation), or {}."""
    text = ((obj.get("metadata") or {}).get("annotations") or {}).get(PREFECT_OBJECTS_ANNOTATION)
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def owned_objects(client, ownership, spec, move_from, present, budget_api):
    """(objects here by key, objects in the namespaces moved from) of this QHub deployment.

    Beyond the usual kinds, what the owned Deployments say they made (RBAC where the flow runs went, a
    budget), and what this run makes (``present``: RBAC in the job namespace; ``budget_api``: a budget).
    """
    here = owned_in(client, ownership, spec.namespace)
    moved = []
    for namespace in move_from:
        moved += list(owned_in(client, ownership, namespace).values())
    recorded = [prefect_side(obj) for obj in list(here.values()) + moved if obj["kind"] == "Deployment"]
    job_namespaces = set(item["job_namespace"] for item in recorded if item.get("job_namespace"))
    budgets = set(item["disruption_budget"] for item in recorded if item.get("disruption_budget"))
    if spec.job_namespace != spec.namespace and present:
        job_namespaces.add(spec.job_namespace)
    if budget_api:
        budgets.add(budget_api)
    for namespace in sorted(job_namespaces):
        here.update(owned_in(client, ownership, namespace, kinds=RBAC_KINDS))
    for api_version in sorted(budgets):
        here.update(owned_in(client, ownership, spec.namespace,
                             kinds=[(api_version, "PodDisruptionBudget", "poddisruptionbudgets.policy")]))
    return here, moved


def left_in_place(owned_deployments, spec):
    """Prefect objects an earlier run of this QHub deployment used that the config no longer describes.

    Reported, never deleted: a work pool, queue or project holds flow runs and deployments of users.
    """
    now = prefect_objects(spec)
    out = []
    for deployment in owned_deployments:
        before = prefect_side(deployment)
        if before.get("work_pool") and before["work_pool"] != now.get("work_pool"):
            out.append({"kind": "work_pool", "name": before["work_pool"]})
        elif before.get("work_pool"):
            out += [{"kind": "work_queue", "work_pool": before["work_pool"], "name": queue}
                    for queue in before.get("work_queues") or [] if queue not in (now.get("work_queues") or [])]
        if before.get("project") and before["project"] != now.get("project"):
            out.append({"kind": "project", "name": before["project"]})
    unique = []
    for item in out:
        if item not in unique:
            unique.append(item)
    return unique
