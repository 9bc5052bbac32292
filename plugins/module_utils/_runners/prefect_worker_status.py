# -*- coding: utf-8 -*-
# Copyright: (c) 2026, qhub.prefect contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""prefect_worker_status: the workers of a pool, or a wait until one is ONLINE.

Here rather than in the module file so that its action plugin runs it inside the controller: a fleet
run asks every deployment's pool once, and a module launch per deployment would cost more than the read.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.qhub.prefect.plugins.module_utils._prefect.v3 import Prefect3Client
from ansible_collections.qhub.prefect.plugins.module_utils._runners.options import (
    http_client, prefect_api_argument_spec,
)
from ansible_collections.qhub.prefect.plugins.module_utils._runners.failure import fail_from_exception
from ansible_collections.qhub.prefect.plugins.module_utils._prefect.http import PrefectApiError

WORKER_FIELDS = ("name", "status", "last_heartbeat_time", "heartbeat_interval_seconds")
MAX_REQUEST_SECONDS = 30


def argument_spec():
    spec = prefect_api_argument_spec()
    spec.update(
        work_pool=dict(type="str", required=True),
        name_prefix=dict(type="str"),
        wait_online=dict(type="bool", default=False),
        timeout=dict(type="int", default=120),
        poll_interval=dict(type="int", default=5),
    )
    return spec


def _view(workers, prefix):
    return [{field: worker.get(field) for field in WORKER_FIELDS}
            for worker in workers if not prefix or str(worker.get("name", "")).startswith(prefix)]


def run(module):
    params = module.params
    if params["timeout"] < 1:
        module.fail_json(msg="timeout: must be at least 1 second, not %d" % params["timeout"])
    if params["poll_interval"] < 1:
        module.fail_json(msg="poll_interval: must be at least 1 second, not %d" % params["poll_interval"])

    http = http_client(module, generation="prefect3", timeout=min(MAX_REQUEST_SECONDS, params["timeout"]))
    client = Prefect3Client(http)
    prefix = params["name_prefix"]
    waited = 0.0
    try:
        if params["wait_online"]:
            _online, workers, waited = client.wait_for_online_worker(
                params["work_pool"], name_prefix=prefix, timeout=params["timeout"], interval=params["poll_interval"])
        else:
            workers = client.list_workers(params["work_pool"])
    except PrefectApiError as exc:
        fail_from_exception(module, exc, http, changed=False, workers=[], online=[])

    view = _view(workers, prefix)
    module.exit_json(changed=False, workers=view, online=[w["name"] for w in view if w["status"] == "ONLINE"],
                     waited=waited, requests=http.requests)
