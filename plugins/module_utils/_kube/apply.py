# -*- coding: utf-8 -*-
# Copyright: (c) 2026, qhub.prefect contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Server-side apply of a fixed set of kinds, with dry run, drift detection and owned deletes."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import hashlib
import json
import re

from ansible_collections.qhub.prefect.plugins.module_utils._kube.client import KubeError
from ansible_collections.qhub.prefect.plugins.module_utils._kube.quantity import quantity_value

FIELD_MANAGER = "qhub.prefect"
DIGEST_ANNOTATION = "qhub.prefect/applied-digest"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
INSTANCE_LABEL = "app.kubernetes.io/instance"
# The QHub deployment an object belongs to (project_name): stable across names, generations and namespaces.
# app.kubernetes.io/instance keeps the object name, as it is in every Deployment's immutable selector.
OWNER_LABEL = "qhub.prefect/instance"
MASK = "********"

# Only these kinds are ever managed; their paths are fixed, so no discovery is needed.
COLLECTIONS = {
    ("v1", "Namespace"): "/api/v1/namespaces",
    ("v1", "ServiceAccount"): "/api/v1/namespaces/{namespace}/serviceaccounts",
    ("v1", "Secret"): "/api/v1/namespaces/{namespace}/secrets",
    ("v1", "ConfigMap"): "/api/v1/namespaces/{namespace}/configmaps",
    ("rbac.authorization.k8s.io/v1", "Role"): "/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/roles",
    ("rbac.authorization.k8s.io/v1", "RoleBinding"):
        "/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/rolebindings",
    ("apps/v1", "Deployment"): "/apis/apps/v1/namespaces/{namespace}/deployments",
    ("policy/v1", "PodDisruptionBudget"): "/apis/policy/v1/namespaces/{namespace}/poddisruptionbudgets",
    ("policy/v1beta1", "PodDisruptionBudget"): "/apis/policy/v1beta1/namespaces/{namespace}/poddisruptionbudgets",
}
# Server-set metadata that says nothing about the desired state.
VOLATILE_METADATA = ("managedFields", "resourceVersion", "uid", "creationTimestamp", "generation", "selfLink")


def object_path(manifest, with_name=True):
    key = (manifest["apiVersion"], manifest["kind"])
    if key not in COLLECTIONS:
        raise KubeError("kind %s/%s is not managed by this collection" % key)
    path = COLLECTIONS[key].format(namespace=manifest["metadata"].get("namespace", ""))
    return path + "/" + manifest["metadata"]["name"] if with_name else path


def describe(manifest):
    meta = manifest["metadata"]
    where = meta.get("namespace")
    return "%s %s/%s" % (manifest["kind"], where, meta["name"]) if where else "%s %s" % (manifest["kind"], meta["name"])


def digest(value):
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode("utf-8")).hexdigest()


def with_digest(manifest):
    """The manifest annotated with a digest of itself, so a removed field is noticed as a change."""
    out = copy.deepcopy(manifest)
    out["metadata"].setdefault("annotations", {})[DIGEST_ANNOTATION] = digest(manifest)
    return out


def _is_empty(value):
    return value in ("", None) or value == [] or value == {}


def matches(desired, actual, quantities=False):
    """True when every field of ``desired`` has the same value in ``actual``.

    Lists of named items (containers, env, volumes) are matched by name, other lists by
    position. Quantities under ``resources`` compare by value, as the server rewrites them.
    """
    if isinstance(desired, dict):
        if not isinstance(actual, dict):
            return _is_empty(desired) and _is_empty(actual)
        for key, value in desired.items():
            inner = quantities or key in ("limits", "requests")
            if key not in actual:
                if not _is_empty(value):
                    return False
            elif not matches(value, actual[key], inner):
                return False
        return True
    if isinstance(desired, list):
        if not isinstance(actual, list):
            return _is_empty(desired) and _is_empty(actual)
        if all(isinstance(item, dict) and "name" in item for item in desired):
            by_name = dict((item.get("name"), item) for item in actual if isinstance(item, dict))
            return len(desired) <= len(actual) and all(
                item["name"] in by_name and matches(item, by_name[item["name"]], quantities) for item in desired)
        return len(desired) == len(actual) and all(matches(d, a, quantities) for d, a in zip(desired, actual))
    if quantities and isinstance(desired, str) and isinstance(actual, str) and desired != actual:
        left, right = quantity_value(desired), quantity_value(actual)
        return left is not None and left == right
    if isinstance(desired, bool) or isinstance(actual, bool):
        return desired is actual
    return desired == actual


def clean(obj):
    """An object as a user wants to read it in a diff: no status, no server bookkeeping."""
    if obj is None:
        return None
    out = copy.deepcopy(obj)
    out.pop("status", None)
    meta = out.get("metadata", {})
    for key in VOLATILE_METADATA:
        meta.pop(key, None)
    return out


def mask_secret(obj):
    if obj and obj.get("kind") == "Secret":
        obj = copy.deepcopy(obj)
        for field in ("data", "stringData"):
            if isinstance(obj.get(field), dict):
                obj[field] = dict((key, MASK) for key in obj[field])
        annotations = obj.get("metadata", {}).get("annotations", {})
        annotations.pop("kubectl.kubernetes.io/last-applied-configuration", None)
    return obj


_MANAGER_IN_CAUSE = re.compile(r'conflict with "([^"]+)"')


def conflicting_managers(exc):
    causes = (exc.body.get("details") or {}).get("causes") or []
    return sorted(set(m for cause in causes for m in _MANAGER_IN_CAUSE.findall(cause.get("message", ""))))


def only_drift(managers, existing):
    """True when every conflicting manager changed fields imperatively (kubectl edit, set image, a PUT).

    That is drift from what this collection declares, and the next run restores it. A manager that
    owns fields through its own apply is another declarative owner: that needs ``force``.
    """
    if not managers or existing is None:
        return False
    operations = {}
    for entry in existing.get("metadata", {}).get("managedFields") or []:
        operations.setdefault(entry.get("manager"), set()).add(entry.get("operation"))
    return all(operations.get(manager) == {"Update"} for manager in managers)


def conflict_message(exc, manifest):
    causes = (exc.body.get("details") or {}).get("causes") or []
    lines = ["%s (%s)" % (cause.get("field"), cause.get("message")) if cause.get("field") else cause.get("message", "")
             for cause in causes]
    detail = "; ".join(lines) or str(exc)
    return ("%s: fields are owned by another field manager (%s). Set force: true to take them over "
            "for %s." % (describe(manifest), detail, FIELD_MANAGER))


def _live_matches(desired, existing):
    """Whether ``existing`` already is ``desired`` (with its digest): its digest annotation and its fields."""
    if existing is None:
        return False
    annotations = (existing.get("metadata") or {}).get("annotations") or {}
    return annotations.get(DIGEST_ANNOTATION) == desired["metadata"]["annotations"][DIGEST_ANNOTATION] \
        and matches(desired, existing)


class Applier:
    """Applies manifests and records what happened to each, for ``changed`` and the diff."""

    def __init__(self, client, check_mode=False, force=False, field_manager=FIELD_MANAGER):
        self.client = client
        self.check_mode = check_mode
        self.force = force
        self.field_manager = field_manager
        self.results = []

    def _record(self, manifest, action, before, after):
        shown_after = mask_secret(clean(after))
        if manifest["kind"] == "Secret" and before and after:
            # Masked values all look alike: say which ones change, never what to.
            old = before.get("data") or {}
            for key, value in (after.get("data") or {}).items():
                if old.get(key) != value:
                    shown_after["data"][key] = MASK + " (changed)"
        self.results.append({
            "kind": manifest["kind"], "name": manifest["metadata"]["name"],
            "namespace": manifest["metadata"].get("namespace"), "action": action,
            "before": mask_secret(clean(before)), "after": shown_after,
        })

    @staticmethod
    def unchanged(manifest, existing):
        """Whether applying ``manifest`` over ``existing`` (the live object, or None) would send nothing."""
        return _live_matches(with_digest(manifest), existing)

    def apply(self, manifest, existing=None, read=True):
        """Apply one manifest unless the live object already matches it; returns the live object."""
        desired = with_digest(manifest)
        if read:
            existing = self.client.get(object_path(desired))
        if _live_matches(desired, existing):
            self._record(desired, "unchanged", existing, existing)
            return existing
        try:
            try:
                result = self._patch(desired, self.force)
            except KubeError as exc:
                if exc.status != 409 or not only_drift(conflicting_managers(exc), existing):
                    raise
                result = self._patch(desired, True)
        except KubeError as exc:
            if exc.status == 409:
                raise KubeError(conflict_message(exc, desired), status=409, body=exc.body)
            if self.check_mode and exc.status == 404 and existing is None:
                # The namespace itself would only be created by this run: nothing to dry-run against.
                self._record(desired, "created", None, desired)
                return desired
            raise KubeError("%s: the API server refused it: %s" % (describe(desired), exc), exc.status, exc.body)
        if existing is None:
            action = "created"
        elif self.check_mode:
            action = "updated" if clean(result) != clean(existing) else "unchanged"
        else:
            before_rv = existing["metadata"].get("resourceVersion")
            action = "updated" if result["metadata"].get("resourceVersion") != before_rv else "unchanged"
        self._record(desired, action, existing, result)
        return result

    def _patch(self, desired, force):
        query = [("fieldManager", self.field_manager)]
        if force:
            query.append(("force", "true"))
        if self.check_mode:
            query.append(("dryRun", "All"))
        return self.client.request("PATCH", object_path(desired), query=query, body=desired,
                                   content_type="application/apply-patch+yaml")[1]

    def delete_owned(self, manifest, instance, existing=None, label=INSTANCE_LABEL, owners=None):
        """Delete the object only if it carries this collection's labels for ``instance`` (``label``'s value).

        ``owners`` widens ``instance`` to the label values that count as this deployment's (an earlier
        version's label). The delete carries the uid that was read, so an object another run has
        replaced since is never deleted on an old read. A Deployment's is Foreground: the call returns once the
        server has accepted it, and the object stays until its pods are gone (``wait_gone``).
        """
        path = object_path(manifest)
        if existing is None:
            existing = self.client.get(path)
        if existing is None or existing["metadata"].get("deletionTimestamp"):
            # Already on its way out (a Foreground delete waits for its pods): nothing left to do.
            return None
        labels = existing["metadata"].get("labels") or {}
        if labels.get(MANAGED_BY_LABEL) != FIELD_MANAGER or labels.get(label) not in (owners or (instance,)):
            self.skip(manifest, existing)
            return None
        # Foreground only where there are dependents to wait for (a Deployment's ReplicaSets and pods):
        # anything else would keep a finalizer until the garbage collector got round to it, so a removed
        # Role could still be read, and still grant, after the run said it was gone.
        policy = "Foreground" if manifest["kind"] == "Deployment" else "Background"
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": policy,
                "preconditions": {"uid": existing["metadata"].get("uid")}}
        if self.check_mode:
            # In the body: with DeleteOptions in the body, the API server ignores them in the query.
            body["dryRun"] = ["All"]
        try:
            self.client.request("DELETE", path, body=body)
        except KubeError as exc:
            if exc.status == 409:
                raise KubeError("%s: not deleted: it was replaced since this run read it (another run?); "
                                "rerun to see it as it is now" % describe(manifest), exc.status, exc.body)
            if exc.status != 404:
                raise KubeError("%s: cannot delete it: %s" % (describe(manifest), exc), exc.status, exc.body)
        self._record(manifest, "deleted", existing, None)
        return existing

    def skip(self, manifest, existing):
        """Record an object left alone (not this run's to change)."""
        self._record(manifest, "skipped", existing, existing)

    def wait_gone(self, obj, timeout, interval=1.0, clock=None, sleep=None):
        """Wait until ``obj`` (as read before its delete) is gone: for a Deployment, its pods too."""
        import time

        clock = clock or time.monotonic
        sleep = sleep or time.sleep
        deadline = clock() + timeout
        path = object_path(obj)
        uid = obj["metadata"].get("uid")
        while True:
            live = self.client.get(path)
            if live is None or live["metadata"].get("uid") != uid:
                return
            if clock() + interval > deadline:
                raise KubeError("%s: deleted, but still there after %s s (its pods are still terminating); "
                                "it goes on its own" % (describe(obj), timeout))
            sleep(interval)

    @property
    def changed(self):
        return any(result["action"] in ("created", "updated", "deleted") for result in self.results)

    def diffs(self, dump):
        """One Ansible diff per object that changes, rendered with ``dump`` (YAML text)."""
        out = []
        for result in self.results:
            if result["action"] in ("unchanged", "skipped"):
                continue
            label = "%s %s/%s" % (result["kind"], result["namespace"], result["name"])
            out.append({
                "before_header": label if result["before"] else "%s (absent)" % label,
                "after_header": label if result["after"] else "%s (absent)" % label,
                "before": dump(result["before"]) if result["before"] else "",
                "after": dump(result["after"]) if result["after"] else "",
            })
        return out


# Kinds listed across namespaces to find a QHub deployment's objects wherever an earlier run put them.
OWNED_KINDS = (
    ("apps/v1", "Deployment", "deployments.apps"),
    ("v1", "ConfigMap", "configmaps"),
    ("v1", "Secret", "secrets"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding", "rolebindings.rbac.authorization.k8s.io"),
    ("rbac.authorization.k8s.io/v1", "Role", "roles.rbac.authorization.k8s.io"),
    ("v1", "ServiceAccount", "serviceaccounts"),
)


def list_labelled(client, selector, namespace, kinds=OWNED_KINDS):
    """Every object of ``kinds`` in ``namespace`` matching the label ``selector``, Deployments first.

    One list request per kind, in one namespace: what a deployer with rights in that namespace only
    may do.
    """
    from urllib.parse import quote

    found = []
    for api_version, kind, resource in kinds:
        path = COLLECTIONS[(api_version, kind)].format(namespace=namespace)
        try:
            body = client.request("GET", path, query=[("labelSelector", quote(selector, safe=""))])[1] or {}
        except KubeError as exc:
            raise KubeError("listing %s in the namespace %s (label %s) failed: %s" % (
                resource, namespace, selector, exc), status=exc.status, body=exc.body)
        for item in body.get("items") or []:
            # Items of a list carry no apiVersion and kind of their own.
            item["apiVersion"], item["kind"] = api_version, kind
            found.append(item)
    return found


# Metadata is all a search across namespaces needs; the server sends no pod templates or env.
METADATA_ONLY = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"


def list_deployments_everywhere(client, selector):
    """(namespace, name) of the Deployments in any namespace matching ``selector``, or None when refused (403).

    Deployments only, metadata only: what a deployer needs to find this QHub deployment in another
    namespace, never a Secret.
    """
    from urllib.parse import quote

    path = COLLECTIONS[("apps/v1", "Deployment")].replace("/namespaces/{namespace}", "")
    try:
        body = client.request("GET", path, query=[("labelSelector", quote(selector, safe=""))],
                              accept=METADATA_ONLY)[1] or {}
    except KubeError as exc:
        if exc.status == 403:
            return None
        raise
    # One being deleted (a move's old Deployment while its pods stop) is no longer there for this question.
    return sorted((item["metadata"].get("namespace"), item["metadata"]["name"]) for item in body.get("items") or []
                  if not item["metadata"].get("deletionTimestamp"))
