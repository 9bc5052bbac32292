# -*- coding: utf-8 -*-
# Copyright: (c) 2026, qhub.prefect contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Prefect 2/3 REST: work pools, their work queues and workers.

Private to the collection. ``base_url`` is the API root: ``http://host:4200/api`` for a self-hosted
server, ``https://api.prefect.cloud/api/accounts/{account}/workspaces/{workspace}`` for Prefect Cloud.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import time

from ansible_collections.qhub.prefect.plugins.module_utils._prefect.http import (
    PrefectApiError, public_url, quote_segment,
)

# The fields PATCH /work_pools/{name} accepts; name and type are fixed at creation.
POOL_UPDATE_FIELDS = ("description", "is_paused", "base_job_template", "concurrency_limit")
POOL_VIEW_FIELDS = ("name", "type", "description", "is_paused", "concurrency_limit", "base_job_template")
RESERVED_PREFIX = "prefect"


def reserved_name(name):
    """Prefect refuses to create, change or delete pools whose name starts with 'prefect' (any case)."""
    return name.lower().startswith(RESERVED_PREFIX)


# The queue the Prefect server creates with every work pool.
DEFAULT_QUEUE = "default"


class Prefect3Client:
    def __init__(self, http):
        self.http = http

    def _pool_path(self, pool, *rest):
        return "/work_pools/" + "/".join([quote_segment(pool)] + list(rest))

    def _expect(self, value, kind, url_path, keys=()):
        ok = isinstance(value, dict) if kind == "object" else isinstance(value, list)
        if ok and kind == "object":
            ok = all(key in value for key in keys)
        if not ok:
            raise self.http.not_this_api(self.http.url_for(url_path), "JSON that is not a %s" % (
                "work pool" if "name" in keys else "list" if kind == "list" else "Prefect object"))
        return value

    # -- work pools ---------------------------------------------------------------------------
    def read_work_pool(self, name):
        path = self._pool_path(name)
        status, body = self.http.request("GET", path, allow=(404,))
        if status == 404:
            return None
        return self._expect(body, "object", path, ("name", "type"))

    def create_work_pool(self, name, pool_type, description=None, base_job_template=None, is_paused=None,
                         concurrency_limit=None):
        """(the pool, whether this request created it). A 409 (another run created it meanwhile) returns the pool
        as it is, not created."""
        body = {"name": name, "type": pool_type}  # type defaults to prefect-agent on the server: always send it
        for key, value in (("description", description), ("base_job_template", base_job_template),
                           ("is_paused", is_paused), ("concurrency_limit", concurrency_limit)):
            if value is not None:
                body[key] = value
        status, created = self.http.request("POST", "/work_pools/", body, allow=(409,))
        if status == 409:
            existing = self.read_work_pool(name)
            if existing is None:
                raise PrefectApiError("the Prefect API said the work pool %r exists but then could not find it" % name)
            return existing, False
        return self._expect(created, "object", "/work_pools/", ("name", "type")), True

    def update_work_pool(self, name, changes):
        unknown = set(changes) - set(POOL_UPDATE_FIELDS)
        if unknown:
            raise ValueError("cannot update %s of a work pool" % ", ".join(sorted(unknown)))
        self.http.request("PATCH", self._pool_path(name), changes)

    def delete_work_pool(self, name):
        """True when deleted, False when there was no such pool."""
        status, _body = self.http.request("DELETE", self._pool_path(name), allow=(404,))
        return status != 404

    def worker_metadata_view(self):
        """The server's aggregate-worker-metadata view (worker types and their default templates), or None.

        The server serves it from the collection registry, or from its own bundled copy when offline.
        """
        path = "/collections/views/aggregate-worker-metadata"
        status, body = self.http.request("GET", path, allow=(404, 405, 422))
        return body if status == 200 and isinstance(body, dict) else None

    # -- work queues --------------------------------------------------------------------------
    def list_work_queues(self, pool):
        path = self._pool_path(pool, "queues", "filter")
        _status, body = self.http.request("POST", path, {})
        return self._expect(body, "list", path)

    def read_work_queue(self, pool, name):
        path = self._pool_path(pool, "queues", quote_segment(name))
        status, body = self.http.request("GET", path, allow=(404,))
        return None if status == 404 else self._expect(body, "object", path, ("name",))

    def create_work_queue(self, pool, name, description=None, is_paused=None, concurrency_limit=None,
                          priority=None):
        body = {"name": name}
        for key, value in (("description", description), ("is_paused", is_paused),
                           ("concurrency_limit", concurrency_limit), ("priority", priority)):
            if value is not None:
                body[key] = value
        path = self._pool_path(pool, "queues")
        status, created = self.http.request("POST", path, body, allow=(409,))
        if status == 409:
            return self.read_work_queue(pool, name)
        return self._expect(created, "object", path, ("name",))

    # -- workers ------------------------------------------------------------------------------
    def list_workers(self, pool, statuses=None, timeout=None):
        """Workers of the pool ({name, status, last_heartbeat_time, heartbeat_interval_seconds, ...})."""
        body = {"workers": {"status": {"any_": list(statuses)}}} if statuses else {}
        path = self._pool_path(pool, "workers", "filter")
        status, workers = self.http.request("POST", path, body, allow=(404,), timeout=timeout)
        if status == 404:
            raise PrefectApiError("the work pool %r does not exist at %s" % (pool, public_url(self.http.base_url)),
                                  status=404)
        return self._expect(workers, "list", path)

    def wait_for_online_worker(self, pool, name_prefix=None, timeout=120, interval=2.0, clock=None, sleep=None):
        """(online workers matching, all workers last seen, seconds waited); raises on timeout."""
        clock = clock or time.monotonic
        sleep = sleep or time.sleep
        started = clock()
        deadline = started + timeout
        missing = False
        while True:
            remaining = max(1.0, deadline - clock())
            try:
                workers = self.list_workers(pool, timeout=min(self.http.timeout, remaining))
                missing = False
            except PrefectApiError as exc:
                # A worker creates its pool when it first polls: until then there is no pool, and no worker yet.
                if exc.status != 404:
                    raise
                workers, missing = [], True
            matching = [w for w in workers if not name_prefix or str(w.get("name", "")).startswith(name_prefix)]
            online = [w for w in matching if w.get("status") == "ONLINE"]
            if online:
                return online, workers, round(clock() - started, 1)
            if clock() + interval > deadline:
                seen = ", ".join("%s (%s)" % (w.get("name"), w.get("status")) for w in matching) or "none"
                raise PrefectApiError(
                    "no worker of pool %s came ONLINE within %s s%s; a worker with a bad API key looks healthy "
                    "to Kubernetes: check its log. Workers %sseen: %s" % (
                        pool, timeout, " (the pool does not exist at %s: no worker ever polled it)"
                        % public_url(self.http.base_url) if missing else "",
                        "named %s* " % name_prefix if name_prefix else "", seen))
            sleep(interval)


# -- work pool convergence ------------------------------------------------------------------------
def pool_view(pool, queues=None):
    """The user-facing part of a pool (what diff mode shows and the module returns)."""
    if not pool:
        return {}
    view = {field: copy.deepcopy(pool.get(field)) for field in POOL_VIEW_FIELDS}
    if pool.get("id") is not None or "id" in pool:
        view["id"] = pool.get("id")
    if "status" in pool:
        view["status"] = pool.get("status")
    if queues is not None:
        view["work_queues"] = list(queues)
    return view


def pool_differences(current, desired):
    """The fields of ``desired`` (None = not managed) that differ from ``current``, in a fixed order."""
    return [field for field in POOL_UPDATE_FIELDS
            if desired.get(field) is not None and current.get(field) != desired[field]]


_UNREAD = object()


def ensure_work_pool(client, name, pool_type, desired, work_queues=None, state="present", check_mode=False,
                     current=_UNREAD):
    """Converge one pool. ``desired`` maps POOL_UPDATE_FIELDS to values (None = leave as is).

    ``current`` is the pool as the caller already read it (None: absent). Returns a dict: changed,
    differences, work_pool, work_queues, before, after.
    """
    if current is _UNREAD:
        current = client.read_work_pool(name)
    result = {"changed": False, "differences": [], "work_pool": {}, "work_queues": [], "before": {}, "after": {}}
    if state == "absent":
        if current is None:
            return result
        result.update(changed=True, differences=["work_pool"], before=pool_view(current))
        if not check_mode:
            client.delete_work_pool(name)
        return result

    if current is not None and current.get("type") != pool_type:
        raise PrefectApiError(
            "the work pool %r exists with type %r, not %r; a pool's type cannot change: delete the pool or choose "
            "another name" % (name, current.get("type"), pool_type))

    wanted_queues = list(dict.fromkeys(work_queues or []))
    if current is None:
        result["differences"].append("work_pool")
        if check_mode:
            pool = {"id": None, "name": name, "type": pool_type, "description": desired.get("description"),
                    "is_paused": bool(desired.get("is_paused")), "concurrency_limit": desired.get("concurrency_limit"),
                    "base_job_template": desired.get("base_job_template") or {}}
            queues = [DEFAULT_QUEUE] + [q for q in wanted_queues if q != DEFAULT_QUEUE]
        else:
            pool, created = client.create_work_pool(name, pool_type, **desired)
            # Another run may have created it first (409): converge that pool like an existing one.
            late = pool_differences(pool, desired)
            if late:
                client.update_work_pool(name, {field: desired[field] for field in late})
                pool = dict(pool, **{field: desired[field] for field in late})
            # The server creates a pool with its one queue, "default": a pool this run created needs no read of them.
            queues = _ensure_queues(client, name, wanted_queues, check_mode, result,
                                    existing=[DEFAULT_QUEUE] if created else None)
        result["changed"] = True
        result["work_pool"] = pool_view(pool)
        if check_mode and wanted_queues:
            result["differences"].extend("work_queue:%s" % q for q in wanted_queues if q != "default")
        result["work_queues"] = queues
        result["after"] = pool_view(pool, queues)
        return result

    differences = pool_differences(current, desired)
    pool = dict(current)
    if differences:
        changes = {field: desired[field] for field in differences}
        if not check_mode:
            client.update_work_pool(name, changes)
        pool.update(changes)
    result["differences"].extend(differences)
    queues = _ensure_queues(client, name, wanted_queues, check_mode, result)
    result["changed"] = bool(result["differences"])
    result["work_pool"] = pool_view(pool)
    result["work_queues"] = queues
    result["before"] = pool_view(current, [q for q in queues if q not in _added(result)])
    result["after"] = pool_view(pool, queues)
    return result


def _added(result):
    return {item.split(":", 1)[1] for item in result["differences"] if item.startswith("work_queue:")}


def _ensure_queues(client, pool, wanted, check_mode, result, existing=None):
    """Create the wanted queues that are missing; never deletes one. Returns the pool's queue names.

    ``existing``: the pool's queue names when the caller knows them, else they are read."""
    if existing is None:
        existing = [q.get("name") for q in client.list_work_queues(pool)]
    names = list(existing)
    for queue in wanted:
        if queue in existing:
            continue
        result["differences"].append("work_queue:%s" % queue)
        if not check_mode:
            client.create_work_queue(pool, queue)
        names.append(queue)
    return names
