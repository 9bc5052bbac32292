# -*- coding: utf-8 -*-
# Copyright: (c) 2026, qhub.prefect contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the prefect_agent_config module does, kept apart from its documentation."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import json
import os

from ansible_collections.qhub.prefect.plugins.module_utils._qhub.credentials import resolve as resolve_credentials
from ansible_collections.qhub.prefect.plugins.module_utils._kube.apply import (
    Applier, OWNER_LABEL, describe, object_path,
)
from ansible_collections.qhub.prefect.plugins.module_utils._kube.client import HAS_URLLIB3, KubeError
from ansible_collections.qhub.prefect.plugins.module_utils._kube.lock import (
    LockError, RunLock, holder_identity, lease_name,
)
from ansible_collections.qhub.prefect.plugins.module_utils._prefect.http import (
    PREFECT3_API, PrefectApiError, PrefectHttpClient,
)
from ansible_collections.qhub.prefect.plugins.module_utils._prefect.v3 import Prefect3Client
from ansible_collections.qhub.prefect.plugins.module_utils._runners.options import (
    kube_auth_argument_spec, kube_client, mask_values, task_config_secrets, task_secret_values,
)
from ansible_collections.qhub.prefect.plugins.module_utils._runners.ownership import (
    RBAC_KINDS, Ownership, object_key, owned_in, refuse_elsewhere, refuse_takeover, search_elsewhere,
)
from ansible_collections.qhub.prefect.plugins.module_utils._qhub.chart_values import refuse_for_agent
from ansible_collections.qhub.prefect.plugins.module_utils._qhub.model import (
    ConfigError, DEFAULT_IMAGE, PREFECT1, check_image_version, generation_of_image, needs_cluster_uid, parse_overrides,
    validate_image, validate_label_value, validate_namespace, validate_object_name,
)
from ansible_collections.qhub.prefect.plugins.module_utils._render.objects import (
    AgentSpec, DIGEST_SALT_KEY, PREFECT_OBJECTS_ANNOTATION, key_reaches_flow_runs_as_text, needs_digest_salt,
    owned_object_stubs, prefect_objects, render_objects, secret_data,
)
from ansible_collections.qhub.prefect.plugins.module_utils._kube.rollout import wait_for_rollout

KUBE_SYSTEM = "/api/v1/namespaces/kube-system"
# urllib3 comes with the kubernetes client; a controller without it launches the module instead.
HAS_REQUIREMENTS = HAS_URLLIB3


def _yaml_dump(value):
    import yaml

    class BlockDumper(yaml.SafeDumper):
        pass

    def text(dumper, data):
        # Multi-line values (the Prefect 1 job template) read best, and diff line by line, as blocks.
        style = "|" if "\n" in data else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)

    BlockDumper.add_representer(str, text)
    return yaml.dump(value, Dumper=BlockDumper, default_flow_style=False, sort_keys=False)


def build_spec(params, environ, config_secret_env=None, config_token=None):
    """An AgentSpec from module parameters; every ConfigError names the key at fault.

    ``config_secret_env`` and ``config_token`` are what task_config_secrets read from ``qhub_config``.
    """
    namespace = validate_namespace(params["namespace"], "namespace")
    image = validate_image(params["image"] or DEFAULT_IMAGE, "image")
    generation = params["generation"]
    if generation == "auto":
        generation = generation_of_image(image, "image")
    overrides = params["overrides"] or {}
    if "secretEnvVars" in overrides:
        raise ConfigError("overrides.secretEnvVars", "pass secret env vars in the no_log option secret_env, "
                          "so their values stay out of logs")
    job, referenced = parse_overrides(overrides, environ, path="overrides")
    if config_secret_env is not None:
        secret_env, secret_path = dict(config_secret_env), "prefect.overrides.secretEnvVars"
    else:
        dummy, secret_env = parse_overrides({"secretEnvVars": params["secret_env"] or {}}, environ, path="secret_env")
        secret_path = "secret_env"
    # An envVars value that is a QHUB_SECRET_ reference is a secret (parse_overrides): it joins the Secret.
    for name, value in referenced.items():
        secret_env.setdefault(name, value)
    for name in secret_env:
        if name in job.env:
            raise ConfigError("%s.%s" % (secret_path, name), "shadows the plain variable overrides.envVars.%s" % name)
    if generation == PREFECT1:
        refuse_for_agent(job.chart)
    replicas = params["replicas"]
    if job.chart.is_set("worker.replicaCount"):
        if replicas not in (1, job.chart["worker.replicaCount"]):
            raise ConfigError(job.chart.paths["worker.replicaCount"], "conflicts with the option replicas=%d; set "
                              "one of them" % replicas)
        replicas = job.chart["worker.replicaCount"]
    if replicas > 1 and job.chart["worker.config.name"]:
        raise ConfigError(job.chart.paths["worker.config.name"], "one name for %d workers would make them one "
                          "worker to Prefect: leave it unset (each worker is named after its pod)" % replicas)
    instance = params["instance"]
    if instance is not None:
        validate_label_value(instance, "instance")
    token = api_url = auth_string = None
    if params["state"] == "present":
        # The one credential rule (_qhub/credentials.py), as qhub_config_info and the other modules apply it.
        credentials = resolve_credentials(generation, environ, api_url=params["api_url"], api_key=params["api_key"],
                                          api_auth_string=params["api_auth_string"], config_token=config_token)
        token, api_url, auth_string = credentials.token, credentials.api_url, credentials.auth_string
        if generation != PREFECT1 and not api_url:
            raise ConfigError("api_url", "a Prefect 2/3 worker needs the API URL: set api_url or PREFECT_API_URL")
    name = params["name"] or ("prefect-agent" if generation == PREFECT1 else "prefect-worker")
    validate_object_name(name, "name")
    queues = job.labels if generation != PREFECT1 else []
    spec = AgentSpec(name=name, namespace=namespace, generation=generation, image=image, job=job,
                     secret_env=secret_env, token=token, api_url=api_url, auth_string=auth_string,
                     work_pool=params["work_pool"] or name, work_queues=queues, instance=instance,
                     project=params["project"], replicas=replicas,
                     job_service_account=params["job_service_account"])
    if params["state"] == "present":
        check_image_version(image, generation, "image")
    return spec


def _namespace_exists(applier, spec, create, namespace=None):
    """True when the namespace is there; creates it if ``create`` (None: only say whether it is there)."""
    namespace = namespace or spec.namespace
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


def _cluster_uid(client, spec, live_deployment):
    """(the cluster UID for PREFECT_KUBERNETES_CLUSTER_UID or None, a note or None).

    The chart's ``worker.clusterUid`` when given. Otherwise only images whose prefect-kubernetes reads the
    UID at every flow-run submission need it (model.needs_cluster_uid): for them, the live Deployment's value
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


def _disruption_budget_api(client):
    """policy/v1 where the cluster serves it (Kubernetes 1.21 and later), else policy/v1beta1."""
    try:
        return "policy/v1" if client.get("/apis/policy/v1") is not None else "policy/v1beta1"
    except KubeError as exc:
        if exc.status != 403:
            raise
        return "policy/v1"


def _digest_salt(live_secrets):
    """The Secret's salt when it has one (so the digest stays put from run to run), else a new random one."""
    for secret in live_secrets:
        value = (secret.get("data") or {}).get(DIGEST_SALT_KEY)
        if value:
            try:
                return base64.b64decode(value).decode("ascii")
            except (ValueError, UnicodeDecodeError):
                pass
    return base64.b64encode(os.urandom(32)).decode("ascii")


def _prefect_side(obj):
    """The Prefect objects an owned Deployment says it used (its annotation), or {}."""
    text = ((obj.get("metadata") or {}).get("annotations") or {}).get(PREFECT_OBJECTS_ANNOTATION)
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def left_in_place(owned_deployments, spec):
    """Prefect objects an earlier run of this QHub deployment used that the config no longer describes.

    Reported, never deleted: a work pool, queue or project holds flow runs and deployments of users.
    """
    now = prefect_objects(spec)
    out = []
    for deployment in owned_deployments:
        before = _prefect_side(deployment)
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


class Run:
    """One run of the module against one cluster: the reads it made and what it did, in the order it must."""

    def __init__(self, module, spec, applier, notes):
        self.module = module
        self.params = module.params
        self.spec = spec
        self.applier = applier
        self.client = applier.client
        self.notes = notes
        self.ownership = Ownership(spec.instance, spec.namespace) if spec.instance_given else None
        self.move_from = [name for name in self.params["move_from"] or [] if name != spec.namespace]
        self.lock = None
        self.budget_api = None

    def check_elsewhere(self):
        """Stop before writing when this instance runs in a namespace the run was not told it moves from."""
        if self.ownership is None:
            return
        found, note = search_elsewhere(self.client, self.ownership, self.spec.namespace, self.move_from)
        if note:
            self.notes["other_namespaces"] = note
            self.module.warn("other namespaces " + note)
        if found:
            raise refuse_elsewhere(self.spec.instance, self.spec.namespace, found)

    def owned(self):
        """(objects here by key, objects in the namespaces moved from): read under the lock."""
        if self.ownership is None:
            return {}, []
        here = owned_in(self.client, self.ownership, self.spec.namespace)
        moved = []
        for namespace in self.move_from:
            moved += list(owned_in(self.client, self.ownership, namespace).values())
        # What the Deployments say they made beyond the usual kinds: RBAC where the flow runs went, a budget.
        recorded = [_prefect_side(obj) for obj in list(here.values()) + moved if obj["kind"] == "Deployment"]
        extra = dict(job_namespaces=set(item["job_namespace"] for item in recorded if item.get("job_namespace")),
                     budgets=set(item["disruption_budget"] for item in recorded if item.get("disruption_budget")))
        if self.spec.job_namespace != self.spec.namespace and self.params["state"] == "present":
            extra["job_namespaces"].add(self.spec.job_namespace)
        if self.budget_api:
            extra["budgets"].add(self.budget_api)
        for namespace in sorted(extra["job_namespaces"]):
            here.update(owned_in(self.client, self.ownership, namespace, kinds=RBAC_KINDS))
        for api_version in sorted(extra["budgets"]):
            here.update(owned_in(self.client, self.ownership, self.spec.namespace,
                                 kinds=[(api_version, "PodDisruptionBudget", "poddisruptionbudgets.policy")]))
        return here, moved

    def present(self):
        """Apply the objects, then remove what this QHub deployment no longer uses.

        The old agent or worker (another generation's Deployment here, or the one in the namespace moved
        from) goes only once the new one is applied and, with the wait on, Ready and ONLINE: anything
        that fails on the way leaves it running.
        """
        spec, client = self.spec, self.client
        self.budget_api = _disruption_budget_api(client) if spec.chart["worker.podDisruptionBudget"] else None
        objects = render_objects(spec, self.budget_api)
        here, moved = self.owned()
        live = [here.get(object_key(manifest)) for manifest in objects]
        # Objects from before the instance label, or at our names with another's: read those few directly.
        live = [obj if obj is not None else client.get(object_path(manifest)) for obj, manifest in zip(live, objects)]
        if self.ownership is not None and not self.params["force"]:
            refused = refuse_takeover(live, self.ownership)
            if refused:
                raise refused
        wanted = set(object_key(manifest) for manifest in objects)
        stale = [obj for key, obj in here.items() if key not in wanted] + moved
        if self.ownership is not None:
            self.notes["prefect_left_in_place"] = left_in_place(
                [obj for obj in list(here.values()) + moved if obj["kind"] == "Deployment"], spec)
        if needs_digest_salt(spec):
            spec.digest_salt = _digest_salt([obj for obj in live if obj is not None and obj["kind"] == "Secret"])
        if not spec.is_agent:
            spec.cluster_uid, note = _cluster_uid(client, spec, live[-1])
            if note:
                self.notes["cluster_uid"] = note
        objects = render_objects(spec, self.budget_api)
        old = [obj for obj in stale if obj["kind"] == "Deployment"]
        if spec.job_namespace != spec.namespace:
            # Where the flow runs go (worker.config.jobNamespace): its Role and RoleBinding need it to exist.
            _namespace_exists(self.applier, spec, self.params["create_namespace"], spec.job_namespace)
        try:
            applied = [self.applier.apply(manifest, existing=existing, read=False)
                       for manifest, existing in zip(objects, live)]
            if self.params["wait"] and not self.module.check_mode:
                # The Deployment as the apply left it: an unchanged, available one needs no further read.
                # The Secret's values are masked in whatever the pods say (their logs above all).
                wait_for_rollout(client, objects[-1], self.params["wait_timeout"], current=applied[-1],
                                 secrets=secret_data(spec).values())
                if not spec.is_agent and (old or self.params["wait_online"]):
                    self._wait_online()
        except (KubeError, PrefectApiError) as exc:
            if old:
                raise KubeError("%s. Nothing old was deleted: the old %s still runs (%s)" % (
                    str(exc).rstrip("."), "agent or worker", ", ".join(describe(obj) for obj in old)),
                    getattr(exc, "status", None), getattr(exc, "body", None))
            raise
        self.remove(stale)
        return objects, applied

    def _wait_online(self):
        """Before the old poller goes, a worker of this name polls the pool."""
        spec = self.spec
        http = PrefectHttpClient(spec.api_url, api_key=spec.token, auth_string=spec.auth_string, api=PREFECT3_API)
        try:
            online, _workers, waited = Prefect3Client(http).wait_for_online_worker(
                spec.work_pool or spec.name, name_prefix=spec.worker_name if spec.replicas == 1 else spec.name,
                timeout=self.params["wait_online_timeout"])
            self.notes["workers_online"] = sorted(worker.get("name") for worker in online)
            self.notes["waited_online"] = waited
        finally:
            self.notes["prefect_requests"] = http.requests

    def remove(self, stale):
        """Delete ``stale`` (Deployments first, so no pod runs on without its Secret and RBAC)."""
        if stale and self.lock is not None:
            # A lock lost while waiting (a renewal refused) means another run may have written since our reads.
            self.lock.check()
        deployments = [obj for obj in stale if obj["kind"] == "Deployment"]
        rest = [obj for obj in stale if obj["kind"] != "Deployment"]
        deleted = [self.applier.delete_owned(obj, self.spec.instance, existing=obj, label=OWNER_LABEL,
                                             owners=self.ownership.values) for obj in deployments]
        if self.params["wait"] and not self.module.check_mode:
            # Foreground: the Deployment is gone once its pods are, so the run ends with one poller.
            for obj in deleted:
                if obj is not None:
                    self.applier.wait_gone(obj, self.params["wait_timeout"])
        for obj in rest:
            self.applier.delete_owned(obj, self.spec.instance, existing=obj, label=OWNER_LABEL,
                                      owners=self.ownership.values)

    def absent(self, namespace_exists):
        """Remove this deployment's objects here (and in the namespaces moved from)."""
        spec = self.spec
        if self.ownership is not None:
            here, moved = self.owned()
            self.remove(list(here.values()) + moved)
        if not namespace_exists:
            return
        done = set((item["kind"], item["namespace"], item["name"]) for item in self.applier.results)
        for stub in owned_object_stubs(spec.name, spec.namespace):
            if object_key(stub) in done:
                continue
            existing = self.client.get(object_path(stub))
            if existing is None:
                continue
            if self.ownership is not None and self.ownership.claimant(existing):
                # Another QHub deployment's object at this name: never ours to remove.
                self.applier.skip(stub, existing)
                continue
            self.applier.delete_owned(stub, spec.name, existing=existing)


def argument_spec():
    """The options of prefect_agent_config (its DOCUMENTATION says what each does)."""
    spec = dict(
        name=dict(type="str"),
        namespace=dict(type="str", required=True),
        state=dict(type="str", default="present", choices=["present", "absent"]),
        image=dict(type="str"),
        generation=dict(type="str", default="auto", choices=["auto", "prefect1", "prefect3"]),
        overrides=dict(type="dict"),
        secret_env=dict(type="dict", no_log=True),
        api_url=dict(type="str"),
        api_key=dict(type="str", no_log=True),
        api_auth_string=dict(type="str", no_log=True),
        instance=dict(type="str"),
        project=dict(type="str"),
        work_pool=dict(type="str"),
        job_service_account=dict(type="str"),
        replicas=dict(type="int", default=1),
        create_namespace=dict(type="bool", default=True),
        wait=dict(type="bool", default=False),
        wait_timeout=dict(type="int", default=120),
        wait_online=dict(type="bool", default=True),
        wait_online_timeout=dict(type="int", default=120),
        force=dict(type="bool", default=False),
        move_from=dict(type="list", elements="str"),
        lock_timeout=dict(type="int", default=60),
        qhub_config=dict(type="raw"),
    )
    spec.update(kube_auth_argument_spec())
    return spec


MUTUALLY_EXCLUSIVE = [("qhub_config", "secret_env")]


def _take_lock(module, spec, applier):
    """(the run lock of this QHub deployment, held, or None; whether the namespace exists).

    The lock lives in the namespace, so its creation also says whether the namespace exists: only a
    first run (or a removal where nothing is left) pays a read of the namespace. Check mode takes no lock.
    """
    create = module.params["create_namespace"] if module.params["state"] == "present" else None
    if module.check_mode:
        return None, _namespace_exists(applier, spec, create)
    lock = RunLock(applier.client, spec.namespace, lease_name(spec.instance), holder_identity(os.environ),
                   timeout=module.params["lock_timeout"])
    try:
        lock.acquire()
    except LockError as exc:
        if exc.status != 404:
            raise
        if not _namespace_exists(applier, spec, create):
            return None, False
        lock.acquire()
    return lock, True


def run(module):
    params = module.params
    # Every candidate secret is masked before anything can fail and print the invocation.
    mask_values(module, sorted(task_secret_values(params, os.environ)))
    try:
        config_secret_env, config_token = None, None
        if params["state"] == "present" and params["qhub_config"] is not None:
            config_secret_env, config_token = task_config_secrets(module, os.environ)
        spec = build_spec(params, os.environ, config_secret_env, config_token)
    except ConfigError as exc:
        module.fail_json(msg=str(exc), key=exc.path)
    # Whatever the source (an option, the config, the environment), no secret value may reach the output.
    mask_values(module, list(secret_data(spec).values()))
    client = kube_client(module)
    applier = Applier(client, check_mode=module.check_mode, force=params["force"])
    result = {"name": spec.name, "namespace": spec.namespace, "generation": spec.generation}
    notes = {}
    this_run = Run(module, spec, applier, notes)
    try:
        # Read-only, before anything is written: a refusal leaves the cluster as it was.
        this_run.check_elsewhere()
        lock, exists = _take_lock(module, spec, applier)
        try:
            if lock is not None:
                notes["lock"] = {"kind": lock.kind, "name": lock.name, "namespace": spec.namespace}
            this_run.lock = lock
            if params["state"] == "absent":
                this_run.absent(exists)
            else:
                this_run.present()
        finally:
            if lock is not None:
                lock.release()
    except ConfigError as exc:
        module.fail_json(msg=str(exc), key=exc.path, objects=_summary(applier), requests=client.requests, **result)
    except KubeError as exc:
        module.fail_json(msg=str(exc), objects=_summary(applier), requests=client.requests, **result)
    result.update(changed=applier.changed, objects=_summary(applier), requests=client.requests)
    result.update(notes)
    result["removed"] = [item for item in _summary(applier) if item["action"] == "deleted"]
    if params["state"] == "present":
        result["api_key_in_flow_run_env"] = key_reaches_flow_runs_as_text(spec)
    for item in notes.get("prefect_left_in_place", []):
        module.warn("%s %s%s is no longer described by the config; it was left in place (it may hold flow runs or "
                    "deployments): delete it in Prefect if nothing needs it" % (
                        item["kind"].replace("_", " "), item["name"],
                        " of work pool %s" % item["work_pool"] if item.get("work_pool") else ""))
    if module._diff:
        result["diff"] = applier.diffs(_yaml_dump)
    module.exit_json(**result)


def _summary(applier):
    return [dict((key, item[key]) for key in ("kind", "namespace", "name", "action")) for item in applier.results]
