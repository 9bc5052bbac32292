# -*- coding: utf-8 -*-
# Copyright: (c) 2026, qhub.prefect contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One run at a time per deployment: a lock on a coordination.k8s.io/v1 Lease, or on a ConfigMap.

Two runs for the same deployment (two AWX jobs, a job and a laptop) would otherwise interleave their
reads and writes. The lock is a Lease of a given name; its holder renews it from a daemon thread, so a run
that dies leaves a Lease that expires after leaseDurationSeconds and is then taken over.

The built-in ``admin`` ClusterRole, bound in one namespace, grants nothing on Leases (Kubernetes
v1.20 bootstrappolicy/policy.go: admin and edit list configmaps but no coordination.k8s.io), and such a
deployer must still be able to run. On a 403 for the Lease the lock is therefore a ConfigMap of the same
name, holding the leader record in the annotation client-go's former ConfigMapLock used. A deployer who
may use Leases also honours a live ConfigMap lock of that name.

Writes are guarded by resourceVersion, so of two runs racing for a free lock exactly one wins (the other
gets 409 and reads again). Expiry compares the holder's renewTime with this host's clock, and also counts
as expired a record seen unchanged for longer than its duration, which a clock running behind the
holder's cannot delay.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import calendar
import copy
import json
import math
import os
import re
import socket
import threading
import time

from ansible_collections.qhub.prefect.plugins.module_utils._kube.client import KubeError

LEASE_PREFIX = "qhub-prefect-"
LOCK_LABELS = {"app.kubernetes.io/managed-by": "qhub.prefect"}
LEADER_ANNOTATION = "control-plane.alpha.kubernetes.io/leader"
NAME_MAX = 253
# The API server does not bound holderIdentity, but the record is read in error messages and kubectl output.
HOLDER_MAX = 253
POLL_SECONDS = 1.0
# A conflict means the record just changed, so it is read again at once; a few in a row suggest a busy
# writer, and then the normal poll interval applies.
CONFLICTS_BEFORE_POLLING = 3

_monotonic = getattr(time, "monotonic", time.time)
_TIME = re.compile(r"^(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(\.\d+)?([Zz]|[+-]\d\d:?\d\d)?$")
_AGAIN = object()


class LockError(KubeError):
    """The lock could not be taken, or was lost; ``holder`` names the run holding it when one does."""

    def __init__(self, message, status=None, body=None, holder=None):
        super(LockError, self).__init__(message, status=status, body=body)
        self.holder = holder


def lease_name(instance):
    """``qhub-prefect-<instance>`` as a DNS-1123 subdomain, the rule for Lease and ConfigMap names."""
    raw = re.sub(r"[^a-z0-9.-]", "-", (LEASE_PREFIX + (instance or "")).lower())
    # Each dot-separated label must start and end with an alphanumeric; an empty label is dropped.
    name = ".".join(label.strip("-") for label in raw.split(".") if label.strip("-"))
    return name[:NAME_MAX].rstrip("-.")


def holder_identity(environ=None):
    """Who holds the lock, as an operator looking at a stuck run needs it: host, user, pid, AWX job."""
    environ = os.environ if environ is None else environ
    parts = [("host", socket.gethostname()), ("user", _user(environ)), ("pid", str(os.getpid()))]
    # AWX sets JOB_ID in a job's environment (awx/main/tasks/jobs.py, RunJob.build_env); its awx_job_id
    # and tower_job_id are extra vars, which a module does not see.
    if environ.get("JOB_ID"):
        parts.append(("awx_job", environ["JOB_ID"]))
    return " ".join("%s=%s" % (key, _word(value)) for key, value in parts)[:HOLDER_MAX]


def _user(environ):
    for key in ("USER", "LOGNAME", "USERNAME"):
        if environ.get(key):
            return environ[key]
    try:
        import pwd
        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError, AttributeError):
        # A container's arbitrary uid often has no passwd entry.
        return "uid-%s" % getattr(os, "getuid", lambda: "unknown")()


def _word(value):
    """Keeps ``key=value key=value`` readable: a value never contains a space."""
    return re.sub(r"\s+", "_", str(value).strip()) or "-"


def micro_time(seconds):
    """A Lease's MicroTime, ``2006-01-02T15:04:05.000000Z``."""
    whole = int(seconds)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + ".%06dZ" % int((seconds - whole) * 1e6)


def rfc3339(seconds):
    """metav1.Time as client-go writes it into the ConfigMap leader record: whole seconds."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(seconds)))


def parse_time(text):
    """Seconds since the epoch of an RFC 3339 time (with or without fraction or offset); None if unreadable."""
    try:
        match = _TIME.match(text or "")
    except TypeError:
        return None
    if not match:
        return None
    year, month, day, hour, minute, second = (int(group) for group in match.groups()[:6])
    value = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0)) + float(match.group(7) or 0)
    offset = match.group(8)
    if offset and offset not in ("Z", "z"):
        sign = -1 if offset[0] == "-" else 1
        digits = offset[1:].replace(":", "")
        value -= sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)
    return value


class _Record:
    """The leader record both kinds hold, in the Lease's field names."""

    def __init__(self, holder, duration, acquire_time, renew_time, transitions):
        self.holder = holder or ""
        self.duration = duration
        self.acquire_time = acquire_time
        self.renew_time = renew_time
        self.transitions = transitions or 0


class _LeaseStore:
    kind = "Lease"

    def __init__(self, namespace, name):
        self.collection = "/apis/coordination.k8s.io/v1/namespaces/%s/leases" % namespace
        self.path = "%s/%s" % (self.collection, name)
        self.namespace, self.name = namespace, name

    @staticmethod
    def record(obj):
        spec = obj.get("spec") or {}
        return _Record(spec.get("holderIdentity"), spec.get("leaseDurationSeconds"), spec.get("acquireTime"),
                       spec.get("renewTime"), spec.get("leaseTransitions"))

    def new(self, record):
        return self.write(None, record)

    def write(self, obj, record):
        obj = copy.deepcopy(obj) if obj else {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {
            "name": self.name, "namespace": self.namespace, "labels": dict(LOCK_LABELS)}}
        obj["metadata"]["labels"] = dict(obj["metadata"].get("labels") or {}, **LOCK_LABELS)
        obj["spec"] = {"holderIdentity": record.holder, "leaseDurationSeconds": record.duration,
                       "acquireTime": record.acquire_time, "renewTime": record.renew_time,
                       "leaseTransitions": record.transitions}
        return obj

    @staticmethod
    def format_time(seconds):
        return micro_time(seconds)

    @staticmethod
    def is_lock(obj):
        return True


class _ConfigMapStore:
    kind = "ConfigMap"

    def __init__(self, namespace, name):
        self.collection = "/api/v1/namespaces/%s/configmaps" % namespace
        self.path = "%s/%s" % (self.collection, name)
        self.namespace, self.name = namespace, name

    @staticmethod
    def record(obj):
        text = ((obj.get("metadata") or {}).get("annotations") or {}).get(LEADER_ANNOTATION)
        try:
            data = json.loads(text) if text else {}
        except ValueError:
            data = {}
        if not isinstance(data, dict):
            data = {}
        return _Record(data.get("holderIdentity"), data.get("leaseDurationSeconds"), data.get("acquireTime"),
                       data.get("renewTime"), data.get("leaderTransitions"))

    def new(self, record):
        return self.write(None, record)

    def write(self, obj, record):
        obj = copy.deepcopy(obj) if obj else {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
            "name": self.name, "namespace": self.namespace, "labels": dict(LOCK_LABELS)}}
        annotations = dict(obj["metadata"].get("annotations") or {})
        annotations[LEADER_ANNOTATION] = json.dumps({
            "holderIdentity": record.holder, "leaseDurationSeconds": record.duration,
            "acquireTime": record.acquire_time, "renewTime": record.renew_time,
            "leaderTransitions": record.transitions}, sort_keys=True)
        obj["metadata"]["annotations"] = annotations
        obj["metadata"]["labels"] = dict(obj["metadata"].get("labels") or {}, **LOCK_LABELS)
        return obj

    @staticmethod
    def format_time(seconds):
        return rfc3339(seconds)

    @staticmethod
    def is_lock(obj):
        """Ours, or any ConfigMap with a leader record; a user's ConfigMap of that name is never taken or deleted."""
        meta = obj.get("metadata") or {}
        return (LEADER_ANNOTATION in (meta.get("annotations") or {})
                or (meta.get("labels") or {}).get("app.kubernetes.io/managed-by") == LOCK_LABELS[
                    "app.kubernetes.io/managed-by"])


class RunLock:
    """The run lock ``name`` in ``namespace``; ``with RunLock(...) as lock:`` holds it for the block.

    ``clock`` (monotonic seconds) and ``sleep`` time the wait, ``now`` (seconds since the epoch) stamps and
    judges the record; the renewer thread waits on an Event, so that release() stops it at once.
    After acquire(): ``kind`` is "Lease" or "ConfigMap", ``waited`` the seconds spent waiting. While held:
    ``lost`` turns True (and check() raises) if a renewal finds the lock deleted or taken over.
    """

    def __init__(self, client, namespace, name, holder, duration=30, timeout=60, clock=None, sleep=None, now=None):
        self.client = client
        self.namespace = namespace
        self.name = name
        self.holder = holder[:HOLDER_MAX]
        self.duration = duration
        self.timeout = timeout
        self.clock = clock or _monotonic
        self.sleep = sleep or time.sleep
        self.now = now or time.time
        self.kind = _LeaseStore.kind
        self.fallback_reason = None
        self.held = False
        self.lost = False
        self.lost_reason = None
        self.waited = 0
        self.release_error = None
        self._store = _LeaseStore(namespace, name)
        self._object = None
        self._renewed_at = None
        # (kind, uid, resourceVersion) of another holder's record -> when this run first saw it.
        self._observed = {}
        self._stop = threading.Event()
        self._thread = None
        self._mutex = threading.Lock()

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, exc_type, exc_value, traceback):
        self.release()
        return False

    def idle(self):
        """Whether no run holds this lock or left it behind: no Lease and no ConfigMap of it. Reads only.

        A run that would write nothing needs no lock while no other run is under way (its reads can only
        see a state another run has finished making, or one it then finds to differ). A store it may not
        read (403) says nothing: when neither can be read the lock is not idle, and acquire() reports why.
        """
        readable = False
        for store in (_LeaseStore(self.namespace, self.name), _ConfigMapStore(self.namespace, self.name)):
            try:
                obj = self.client.get(store.path)
            except KubeError as exc:
                if exc.status == 403:
                    continue
                raise self._api_error("read", exc, store)
            if obj is not None:
                return False
            readable = True
        return readable

    # Taking the lock.

    def acquire(self):
        if self.held:
            return self
        start = self.clock()
        conflicts, holding = 0, None
        while True:
            other = self._attempt()
            if other is None:
                break
            self.waited = self.clock() - start
            if other is _AGAIN:
                conflicts += 1
                if conflicts < CONFLICTS_BEFORE_POLLING and self.waited < self.timeout:
                    continue
            else:
                holding = other
            remaining = self.timeout - self.waited
            if remaining <= 0:
                raise self._held_error(holding)
            conflicts = 0
            self.sleep(min(POLL_SECONDS, remaining))
        self.waited = self.clock() - start
        self.held, self.lost, self.lost_reason, self.release_error = True, False, None, None
        self._renewed_at = self.clock()
        self._stop.clear()
        self._thread = threading.Thread(target=self._renew_loop, name="qhub-prefect-lock %s" % self.name)
        self._thread.daemon = True
        self._thread.start()
        return self

    def _attempt(self):
        """None when taken; _AGAIN after a write conflict; else (object, record, store) of the run holding it."""
        store = self._store
        try:
            obj = self.client.get(store.path)
        except KubeError as exc:
            if exc.status == 403 and store.kind == "Lease":
                return self._fall_back(exc)
            raise self._api_error("read", exc)
        if obj is None:
            taken = self._create()
        elif not store.is_lock(obj):
            raise LockError("a %s %s exists in namespace %s and is not a run lock (no %s annotation, not labelled "
                            "app.kubernetes.io/managed-by=qhub.prefect); this collection will not take it over. "
                            "Rename or delete it." % (store.kind, self.name, self.namespace, LEADER_ANNOTATION))
        else:
            record = store.record(obj)
            if self._is_live(obj, record):
                return obj, record, store
            taken = self._take_over(obj, record)
        if taken is not None or store.kind != "Lease" or self._store is not store:
            return taken
        return self._respect_config_map()

    def _create(self):
        store = self._store
        stamp = store.format_time(self.now())
        body = store.new(_Record(self.holder, self._record_duration(), stamp, stamp, 0))
        try:
            self._object = self.client.request("POST", store.collection, body=body)[1]
        except KubeError as exc:
            if exc.status == 409:
                return _AGAIN
            if exc.status == 404 and ((exc.body or {}).get("details") or {}).get("kind") == "namespaces":
                raise LockError("cannot take the run lock %s: the namespace %s does not exist (%s)"
                                % (self.name, self.namespace, exc), status=404, body=exc.body)
            # 404 without a missing namespace: this API server does not serve coordination.k8s.io/v1.
            if exc.status in (403, 404) and store.kind == "Lease":
                return self._fall_back(exc)
            raise self._api_error("create", exc)
        return None

    def _take_over(self, obj, record):
        store = self._store
        stamp = store.format_time(self.now())
        # The read resourceVersion travels in obj's metadata: of two runs taking over, one gets 409.
        body = store.write(obj, _Record(self.holder, self._record_duration(), stamp, stamp, record.transitions + 1))
        try:
            self._object = self.client.request("PUT", store.path, body=body)[1]
        except KubeError as exc:
            if exc.status in (404, 409):
                return _AGAIN
            raise self._api_error("take over", exc)
        return None

    def _record_duration(self):
        # leaseDurationSeconds is a positive integer.
        return max(1, int(math.ceil(self.duration)))

    def _fall_back(self, exc):
        self.fallback_reason = str(exc)
        self.kind = _ConfigMapStore.kind
        self._store = _ConfigMapStore(self.namespace, self.name)
        return self._attempt()

    def _respect_config_map(self):
        """A run allowed only ConfigMaps may hold this deployment's lock; then the Lease is given back."""
        configmaps = _ConfigMapStore(self.namespace, self.name)
        try:
            obj = self.client.get(configmaps.path)
        except KubeError as exc:
            if exc.status == 403:
                # Unreadable to this run, so a ConfigMap lock cannot be honoured; the Lease alone must do.
                return None
            self._delete(self._store)
            raise self._api_error("read", exc, configmaps)
        if obj is None or not configmaps.is_lock(obj):
            return None
        record = configmaps.record(obj)
        if not self._is_live(obj, record, configmaps):
            return None
        self._delete(self._store)
        self._object = None
        return obj, record, configmaps

    def _is_live(self, obj, record, store=None):
        store = store or self._store
        if not record.holder:
            return False
        duration = record.duration if isinstance(record.duration, (int, float)) and record.duration > 0 \
            else self.duration
        renewed = parse_time(record.renew_time)
        if renewed is None:
            renewed = parse_time(record.acquire_time)
        if renewed is None or renewed + duration < self.now():
            return False
        meta = obj.get("metadata") or {}
        key = (store.kind, meta.get("uid"), meta.get("resourceVersion"))
        first_seen = self._observed.setdefault(key, self.clock())
        return self.clock() - first_seen <= duration

    def _held_error(self, other):
        if other is None:
            return LockError("cannot take the run lock %s in namespace %s: every attempt in %s s conflicted with "
                             "another writer" % (self.name, self.namespace, _seconds(self.timeout)))
        record, store = other[1], other[2]
        duration = record.duration or self.duration
        kind = "Lease" if store.kind == "Lease" else "ConfigMap"
        message = ("another run holds the lock %s in namespace %s: %s, since %s (renewed %s); waited %s s. "
                   "Wait for it to finish and run again. If that run is dead, its %s expires %s s after its last "
                   "renewal and the next run takes it over (or, once sure it is dead: kubectl -n %s delete %s %s)."
                   % (self.name, self.namespace, record.holder, record.acquire_time or "an unknown time",
                      record.renew_time or "never", _seconds(self.timeout), kind, _seconds(duration),
                      self.namespace, kind.lower(), self.name))
        return LockError(message, holder=record.holder)

    def _api_error(self, action, exc, store=None):
        store = store or self._store
        return LockError("cannot %s the run lock %s %s in namespace %s: %s"
                         % (action, store.kind, self.name, self.namespace, exc), status=exc.status, body=exc.body)

    # Holding it.

    def check(self):
        """Raises LockError if the lock was lost: another run may have written since, so nothing more may be."""
        if self.lost:
            raise LockError("lost the run lock %s %s in namespace %s: %s. Another run may be writing; this one "
                            "stops before writing more." % (self.kind, self.name, self.namespace, self.lost_reason))

    def _renew_loop(self):
        interval = self.duration / 3.0
        wait = interval
        while not self._stop.wait(wait):
            renewed = self.renew()
            if self.lost:
                return
            # After a failed renewal, retry sooner: the record must be renewed before it expires.
            wait = interval if renewed else min(POLL_SECONDS, interval)

    def renew(self):
        """One renewal; False when it failed (and the lock is lost once it may have expired)."""
        with self._mutex:
            if not self.held or self.lost or self._object is None:
                return False
            try:
                self._put_renewal()
            except KubeError as exc:
                if exc.status == 409:
                    return self._renew_after_conflict()
                if exc.status == 404:
                    return self._lose("the %s was deleted" % self.kind)
                if self.clock() - self._renewed_at >= self.duration:
                    return self._lose("not renewed for %s s, so it may have expired (%s)"
                                      % (_seconds(self.duration), exc))
                return False
            self._renewed_at = self.clock()
            return True

    def _put_renewal(self):
        store = self._store
        record = store.record(self._object)
        record.renew_time = store.format_time(self.now())
        self._object = self.client.request("PUT", store.path, body=store.write(self._object, record))[1]

    def _renew_after_conflict(self):
        """Someone wrote the record since our renewal: still ours (a label edit) or taken over."""
        try:
            current = self.client.get(self._store.path)
        except KubeError as exc:
            return self._lose("cannot read it after a conflicting write (%s)" % exc)
        if current is None:
            return self._lose("the %s was deleted" % self.kind)
        if not self._is_ours(current):
            return self._lose("it is now held by %s" % (self._store.record(current).holder or "no one"))
        self._object = current
        try:
            self._put_renewal()
        except KubeError as exc:
            return self._lose("cannot renew it after a conflicting write (%s)" % exc)
        self._renewed_at = self.clock()
        return True

    def _is_ours(self, obj):
        uid = ((self._object or {}).get("metadata") or {}).get("uid")
        return ((obj.get("metadata") or {}).get("uid") == uid
                and self._store.record(obj).holder == self.holder)

    def _lose(self, reason):
        self.lost, self.lost_reason = True, reason
        return False

    # Giving it back.

    def release(self):
        """Stops the renewer and deletes the record, unless it is no longer ours; never raises."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if not self.held:
            return
        self.held = False
        if not self.lost:
            self._delete(self._store)
        self._object = None

    def _delete(self, store):
        """Deletes the record this run wrote, but not one recreated (uid) or taken over (resourceVersion) since."""
        for _attempt in range(2):
            meta = (self._object or {}).get("metadata") or {}
            body = {"apiVersion": "v1", "kind": "DeleteOptions",
                    "preconditions": {"uid": meta.get("uid"), "resourceVersion": meta.get("resourceVersion")}}
            try:
                self.client.request("DELETE", store.path, body=body)
                return
            except KubeError as exc:
                if exc.status == 404:
                    return
                if exc.status != 409:
                    # The record stays until it expires; the run itself succeeded or failed on its own.
                    self.release_error = ("cannot delete the run lock %s %s in namespace %s (%s); it expires %s s "
                                          "after its last renewal" % (store.kind, self.name, self.namespace, exc,
                                                                      _seconds(self.duration)))
                    return
            # 409: changed since our last write; delete it only if still ours (someone edited a label).
            try:
                current = self.client.get(store.path)
            except KubeError:
                return
            if current is None or not self._is_ours(current):
                return
            self._object = current


def _seconds(value):
    return "%g" % value
