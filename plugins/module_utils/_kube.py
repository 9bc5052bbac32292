# -*- coding: utf-8 -*-
# Copyright: (c) 2026, qhub.prefect contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Server-side apply of a fixed set of kinds, with dry run, drift detection and owned deletes.

Requests go over urllib3 to fixed API paths. That skips API discovery, which costs kubernetes.core
about 2 s a task, and keeps us independent of the client's generated API, which changed shape
between client versions. Credentials come from _kubeconfig; the kubernetes client is imported only
for kubeconfigs that need it (exec plugins, auth providers, merged files).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import hashlib
import json
import os
import re
import ssl

try:
    import urllib3
    HAS_URLLIB3 = True
    URLLIB3_IMPORT_ERROR = None
except ImportError as exc:  # pragma: no cover - reported by the module with missing_required_lib
    HAS_URLLIB3 = False
    URLLIB3_IMPORT_ERROR = exc

from ansible_collections.qhub.prefect.plugins.module_utils._kubeconfig import (
    Credentials, KubeconfigError, load_incluster, load_kubeconfig,
)
from ansible_collections.qhub.prefect.plugins.module_utils._qhub_config import quantity_value

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
}
# Server-set metadata that says nothing about the desired state.
VOLATILE_METADATA = ("managedFields", "resourceVersion", "uid", "creationTimestamp", "generation", "selfLink")


class KubeError(Exception):
    def __init__(self, message, status=None, body=None):
        super(KubeError, self).__init__(message)
        self.status = status
        self.body = body or {}


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


class KubeClient:
    """Authenticated JSON requests to one API server; counts requests for the benchmarks."""

    def __init__(self, kubeconfig=None, context=None, host=None, token=None, ca_cert=None,
                 validate_certs=None, timeout=30):
        credentials = _credentials(kubeconfig, context, host, token)
        if host:
            credentials.host = host
        if token:
            credentials.token = token
        if ca_cert:
            credentials.ca_file, credentials.ca_data = ca_cert, None
        if validate_certs is not None:
            credentials.verify = validate_certs
        self.credentials = credentials
        self.host = credentials.host.rstrip("/")
        self.timeout = timeout
        self.requests = 0
        pool_args = {"maxsize": 4, "timeout": urllib3.Timeout(connect=10, read=timeout), "retries": False}
        if self.host.startswith("https:"):
            try:
                pool_args["ssl_context"] = credentials.ssl_context()
            except (ssl.SSLError, IOError, OSError) as exc:
                raise KubeError("cannot set up TLS for %s (CA or client certificate): %s" % (self.host, exc))
            if not credentials.verify:
                pool_args["cert_reqs"] = "CERT_NONE"
        if credentials.proxy:
            self.pool = urllib3.ProxyManager(credentials.proxy, **pool_args)
        else:
            self.pool = urllib3.PoolManager(**pool_args)

    def request(self, method, path, query=None, body=None, content_type="application/json", accept="application/json"):
        """(status, decoded JSON or None); raises KubeError for transport errors and HTTP >= 400."""
        headers = {"Accept": accept, "User-Agent": "qhub.prefect"}
        headers.update(self.credentials.auth_headers())
        payload = None
        if body is not None:
            headers["Content-Type"] = content_type
            payload = json.dumps(body).encode("utf-8")
        url = self.host + path
        if query:
            url += "?" + "&".join("%s=%s" % (key, value) for key, value in query)
        self.requests += 1
        try:
            response = self.pool.request(method, url, body=payload, headers=headers)
        except urllib3.exceptions.HTTPError as exc:
            raise KubeError("cannot reach the Kubernetes API server at %s: %s" % (self.host, exc))
        data = None
        if accept != "application/json" and response.status < 400:
            return response.status, response.data.decode("utf-8", "replace")
        if response.data:
            try:
                data = json.loads(response.data.decode("utf-8"))
            except ValueError:
                data = {"message": response.data.decode("utf-8", "replace")[:500]}
        if response.status >= 400:
            message = (data or {}).get("message") or "HTTP %d" % response.status
            raise KubeError(message, status=response.status, body=data)
        return response.status, data

    def text(self, path, query=None):
        """A plain-text resource (a pod's log) as a string."""
        # The 1.20 apiserver refuses Accept: text/plain for pods/log (406) though it answers in plain text.
        return self.request("GET", path, query=query, accept="*/*")[1]

    def get(self, path):
        try:
            return self.request("GET", path)[1]
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise


def _credentials(kubeconfig, context, host, token):
    """Credentials from, in order: host and token, the kubeconfig, the pod's ServiceAccount."""
    if host and token:
        return Credentials(host)
    path = kubeconfig or os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
    if kubeconfig or os.environ.get("KUBECONFIG") or os.path.exists(path):
        try:
            credentials = load_kubeconfig(path, context)
        except (KubeconfigError, IOError, OSError) as exc:
            raise KubeError("cannot load the kubeconfig %s: %s" % (path, exc))
        return credentials or _client_credentials(path, context)
    credentials = load_incluster()
    if credentials is None:
        raise KubeError("no kubeconfig given, KUBECONFIG unset and not running in a cluster")
    return credentials


def _client_credentials(path, context):
    """Credentials the kubernetes client works out (exec plugins, auth providers, merged KUBECONFIG)."""
    try:
        from kubernetes import config as kube_config
        from kubernetes.client import Configuration
    except ImportError:
        raise KubeError("the kubeconfig %s needs the kubernetes Python client (exec or auth-provider credentials, "
                        "or several files), which is not installed" % path)
    configuration = Configuration()
    try:
        kube_config.load_kube_config(config_file=path if os.pathsep not in path else None, context=context,
                                     client_configuration=configuration, persist_config=False)
    except Exception as exc:
        raise KubeError("cannot load the kubeconfig %s: %s" % (path, exc))
    # The key's name changed between client versions; auth_settings() reads whichever it uses.
    authorization = None
    for setting in configuration.auth_settings().values():
        if setting.get("in") == "header" and setting.get("key", "").lower() == "authorization" and setting.get("value"):
            authorization = setting["value"]
    return Credentials(configuration.host, authorization=authorization, ca_file=configuration.ssl_ca_cert,
                       cert_file=configuration.cert_file, key_file=configuration.key_file,
                       verify=configuration.verify_ssl, proxy=configuration.proxy)


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

    def apply(self, manifest, existing=None, read=True):
        """Apply one manifest unless the live object already matches it; returns the live object."""
        desired = with_digest(manifest)
        if read:
            existing = self.client.get(object_path(desired))
        annotations = ((existing or {}).get("metadata") or {}).get("annotations") or {}
        wanted_digest = desired["metadata"]["annotations"][DIGEST_ANNOTATION]
        if existing is not None and annotations.get(DIGEST_ANNOTATION) == wanted_digest and matches(desired, existing):
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

    def delete_owned(self, manifest, instance, existing=None, label=INSTANCE_LABEL):
        """Delete the object only if it carries this collection's labels for ``instance`` (``label``'s value)."""
        path = object_path(manifest)
        if existing is None:
            existing = self.client.get(path)
        if existing is None:
            return None
        labels = existing["metadata"].get("labels") or {}
        if labels.get(MANAGED_BY_LABEL) != FIELD_MANAGER or labels.get(label) != instance:
            self._record(manifest, "skipped", existing, existing)
            return None
        query = [("propagationPolicy", "Background")]
        if self.check_mode:
            query.append(("dryRun", "All"))
        try:
            self.client.request("DELETE", path, query=query)
        except KubeError as exc:
            if exc.status != 404:
                raise KubeError("%s: cannot delete it: %s" % (describe(manifest), exc), exc.status, exc.body)
        self._record(manifest, "deleted", existing, None)
        return existing

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


def list_labelled(client, selector, kinds=OWNED_KINDS):
    """Every object of ``kinds`` in any namespace matching the label ``selector``, Deployments first.

    One list request per kind. A 403 names the permission that is missing, since the deployer may
    well have rights in its namespaces only.
    """
    from urllib.parse import quote

    found = []
    for api_version, kind, resource in kinds:
        path = COLLECTIONS[(api_version, kind)].replace("/namespaces/{namespace}", "")
        try:
            body = client.request("GET", path, query=[("labelSelector", quote(selector, safe=""))])[1] or {}
        except KubeError as exc:
            if exc.status == 403:
                raise KubeError("listing %s in all namespaces (label %s) was refused (403): the deployer needs the "
                                "permission `list` on `%s` at cluster scope (a ClusterRole) to find this QHub "
                                "deployment's objects after a namespace move; see docs/configuration.md, "
                                "Permissions" % (resource, selector, resource), status=403, body=exc.body)
            raise
        for item in body.get("items") or []:
            # Items of a list carry no apiVersion and kind of their own.
            item["apiVersion"], item["kind"] = api_version, kind
            found.append(item)
    return found
