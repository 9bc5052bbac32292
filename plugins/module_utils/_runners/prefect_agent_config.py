# -*- coding: utf-8 -*-
# Copyright: (c) 2026, qhub.prefect contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the prefect_agent_config module does, kept apart from its documentation."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import collections
import os

from ansible_collections.qhub.prefect.plugins.module_utils._common.errors import QhubPrefectError
from ansible_collections.qhub.prefect.plugins.module_utils._qhub.credentials import resolve as resolve_credentials
from ansible_collections.qhub.prefect.plugins.module_utils._kube.apply import (
    Applier, OWNER_LABEL, describe, object_path,
)
from ansible_collections.qhub.prefect.plugins.module_utils._kube.client import KubeError
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
from ansible_collections.qhub.prefect.plugins.module_utils._runners.failure import fail_from_exception
from ansible_collections.qhub.prefect.plugins.module_utils._runners.ownership import (
    Ownership, object_key, refuse_elsewhere, refuse_takeover, search_elsewhere,
)
from ansible_collections.qhub.prefect.plugins.module_utils._qhub.chart_values import refuse_for_agent
from ansible_collections.qhub.prefect.plugins.module_utils._qhub.errors import ConfigError
from ansible_collections.qhub.prefect.plugins.module_utils._qhub.images import (
    DEFAULT_IMAGE, PREFECT1, check_image_version, generation_of_image, validate_image,
)
from ansible_collections.qhub.prefect.plugins.module_utils._qhub.names import (
    default_object_name, validate_label_value, validate_namespace, validate_object_name,
)
from ansible_collections.qhub.prefect.plugins.module_utils._qhub.overrides import parse_overrides
from ansible_collections.qhub.prefect.plugins.module_utils._render.objects import (
    key_reaches_flow_runs_as_text, object_stubs, owned_object_stubs, render_objects,
)
from ansible_collections.qhub.prefect.plugins.module_utils._render.spec import AgentSpec, secret_data
from ansible_collections.qhub.prefect.plugins.module_utils._runners.agent_cluster import (
    disruption_budget_api, left_in_place, live_values, namespace_exists, owned_objects, read_live,
)
from ansible_collections.qhub.prefect.plugins.module_utils._kube.rollout import wait_for_rollout


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
    name = params["name"] or default_object_name(generation)
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


# What present() applies and removes: the rendered objects, the live object at each (or None), the stale ones.
Plan = collections.namedtuple("Plan", "objects live stale")


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
        # What the run was asked for; plan() adds what it read (the digest salt, the cluster UID) to a copy.
        self.base_spec = spec

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
        return owned_objects(self.client, self.ownership, self.spec, self.move_from,
                             self.params["state"] == "present", self.budget_api)

    def plan(self):
        """What present() would do, from reads only: the objects rendered, the live ones, what goes."""
        client = self.client
        self.spec = self.base_spec
        self.budget_api = disruption_budget_api(client) if self.spec.chart["worker.podDisruptionBudget"] else None
        stubs = object_stubs(self.spec, self.budget_api)
        here, moved = self.owned()
        live = read_live(client, here, stubs)
        if self.ownership is not None and not self.params["force"]:
            refused = refuse_takeover(live, self.ownership)
            if refused:
                raise refused
        wanted = set(object_key(stub) for stub in stubs)
        stale = [obj for key, obj in here.items() if key not in wanted] + moved
        if self.ownership is not None:
            self.notes["prefect_left_in_place"] = left_in_place(
                [obj for obj in list(here.values()) + moved if obj["kind"] == "Deployment"], self.spec)
        values, note = live_values(client, self.spec, live)
        if note:
            self.notes["cluster_uid"] = note
        # The one spec the objects, the wait and the result are made from from here on.
        self.spec = self.spec.with_live_values(**values)
        return Plan(render_objects(self.spec, self.budget_api), live, stale)

    def settled(self, plan):
        """Whether ``plan`` writes nothing: every object as rendered, nothing to remove."""
        return not plan.stale and all(Applier.unchanged(manifest, existing)
                                      for manifest, existing in zip(plan.objects, plan.live))

    def present(self, plan):
        """Apply the objects, then remove what this QHub deployment no longer uses.

        The old agent or worker (another generation's Deployment here, or the one in the namespace moved
        from) goes only once the new one is applied and, with the wait on, Ready and ONLINE: anything
        that fails on the way leaves it running.
        """
        client, spec = self.client, self.spec
        objects, live, stale = plan
        old = [obj for obj in stale if obj["kind"] == "Deployment"]
        if spec.job_namespace != spec.namespace:
            # Where the flow runs go (worker.config.jobNamespace): its Role and RoleBinding need it to exist.
            namespace_exists(self.applier, spec.job_namespace, self.params["create_namespace"])
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
        return None, namespace_exists(applier, spec.namespace, create)
    lock = RunLock(applier.client, spec.namespace, lease_name(spec.instance), holder_identity(os.environ),
                   timeout=module.params["lock_timeout"])
    try:
        lock.acquire()
    except LockError as exc:
        if exc.status != 404:
            raise
        if not namespace_exists(applier, spec.namespace, create):
            return None, False
        lock.acquire()
    return lock, True


def _settled_plan(module, spec, this_run):
    """The plan of a run that would write nothing while no other run holds the lock, else None.

    Check mode takes no lock anyway; a removal always takes it. A plan that would write is read again
    under the lock, so what it applies is what the cluster holds once no other run can change it.
    """
    if module.params["state"] != "present" or module.check_mode:
        return None
    lock = RunLock(this_run.client, spec.namespace, lease_name(spec.instance), holder_identity(os.environ))
    if not lock.idle():
        return None
    plan = this_run.plan()
    return plan if this_run.settled(plan) else None


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
        fail_from_exception(module, exc)
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
        settled = _settled_plan(module, spec, this_run)
        # Up to here only reads. qhub_deployment runs its work pool step meanwhile and holds what follows until
        # that has ended (the stand-in module's after_reads; AnsibleModule has none).
        after_reads = getattr(module, "after_reads", None)
        if after_reads is not None:
            after_reads()
        if settled is not None:
            # Nothing to write, and no other run under way: a no-op writes nothing, not even a lock.
            this_run.present(settled)
        else:
            lock, exists = _take_lock(module, spec, applier)
            try:
                if lock is not None:
                    notes["lock"] = {"kind": lock.kind, "name": lock.name, "namespace": spec.namespace}
                this_run.lock = lock
                if params["state"] == "absent":
                    this_run.absent(exists)
                else:
                    this_run.present(this_run.plan())
            finally:
                if lock is not None:
                    lock.release()
    except QhubPrefectError as exc:
        # A Prefect API error while waiting for the worker to come online ends here too, not as a traceback.
        fail_from_exception(module, exc, objects=_summary(applier), requests=client.requests, **result)
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
