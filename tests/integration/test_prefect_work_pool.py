"""prefect_work_pool and prefect_worker_status through the ansible command, against the test bed's real
Prefect 3 server.

Follows community.postgresql's recipe: check mode (changed) -> nothing written -> real run -> verify -> rerun
(not changed) -> change -> absent -> verify gone. A loopback HTTP proxy in front of the server injects 503s and
429s to prove the retries and their bounds.
"""

import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

from ansible_collections.qhub.prefect.plugins.module_utils._qhub.overrides import parse_overrides
from ansible_collections.qhub.prefect.plugins.module_utils._runners.prefect_work_pool import input_mark
from ansible_collections.qhub.prefect.plugins.module_utils._render.work_pool_template import (
    build_base_job_template, server_default_template,
)
from tests.support.ansible_cli import run_module, run_playbook
from tests.testbed.prefect1_standin import Prefect1StandIn

KEY = "pnu_p3-canary-" + uuid.uuid4().hex[:12]
OVERRIDES = {
    "IMAGE_PULL_POLICY": "IfNotPresent",
    "IMAGE_PULL_SECRETS": "regcred",
    "PREFECT__CLOUD__AGENT__LABELS": "['dev']",
    "prefect_agent": {"job": {"resources": {"limit": {"cpu": 2, "memory": "4Gi"}, "request": {"cpu": "500m"}}}},
    "envVars": {"ENVIRONMENT": "dev"},
}


@pytest.fixture(scope="module")
def api_url(testbed):
    assert testbed.prefect_api_url, "the test bed runs no Prefect server"
    return testbed.prefect_api_url


@pytest.fixture
def pool():
    return "wp-" + uuid.uuid4().hex[:10]


def prefect(api_url, method, path, body=None):
    """(status, body) straight from the server, for verifying."""
    request = urllib.request.Request(api_url + path, data=None if body is None else json.dumps(body).encode(),
                                     method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            text = response.read()
            return response.status, json.loads(text) if text else None
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def read_pool(api_url, name):
    status, body = prefect(api_url, "GET", "/work_pools/" + name)
    return body if status == 200 else None


def queue_names(api_url, name):
    return [q["name"] for q in prefect(api_url, "POST", "/work_pools/%s/queues/filter" % name, {})[1]]


def pool_args(api_url, name, **extra):
    args = {"name": name, "api_url": api_url, "api_key": KEY, "job_namespace": "dev",
            "service_account_name": "prefect-worker", "overrides": OVERRIDES,
            "secret_env_names": ["DATABASE_PASSWORD"], "secret_name": "prefect-worker", "work_queues": ["dev"]}
    args.update(extra)
    return args


def expected_template(overrides, api_url, secret_env_names=("DATABASE_PASSWORD",)):
    """The server's own default kubernetes template with the overrides, marked with the input's digest."""
    job, dummy = parse_overrides(overrides, {}, path="overrides")
    shipped = build_base_job_template(job, "dev", "prefect-worker", secret_env_names=secret_env_names,
                                      secret_name="prefect-worker")
    request = urllib.request.Request(api_url + "/collections/views/aggregate-worker-metadata")
    with urllib.request.urlopen(request, timeout=30) as response:
        base = server_default_template(json.loads(response.read()))
    assert base is not None, "the test bed's server serves no kubernetes default template"
    template = build_base_job_template(job, "dev", "prefect-worker", secret_env_names=secret_env_names,
                                       secret_name="prefect-worker", base=base)
    template["variables"]["$comment"] = input_mark(shipped)
    return template


def job_resources(template):
    """The flow-run container's resources as a worker renders them from the variables' defaults."""
    properties = template["variables"]["properties"]
    resources = template["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]["containers"][0][
        "resources"]
    out = {}
    for kind, fields in resources.items():
        values = dict((field, properties[placeholder.strip("{} ")].get("default"))
                      for field, placeholder in fields.items())
        values = dict((field, value) for field, value in values.items() if value is not None)
        if values:
            out[kind] = values
    return out


class FaultyProxy:
    """An HTTP proxy on loopback: answers from ``faults`` (status, headers) while any are left, then forwards."""

    def __init__(self, upstream, faults=(), always=None):
        self.faults = list(faults)
        self.always = always
        self.received = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                outer.received.append({"method": self.command, "path": self.path, "time": time.monotonic(),
                                       "authorization": self.headers.get("Authorization")})
                fault = outer.always or (outer.faults.pop(0) if outer.faults else None)
                if fault:
                    status, headers = fault
                    data = json.dumps({"detail": "injected by the test proxy"}).encode()
                    self.send_response(status)
                    for key, value in dict(headers, **{"Content-Type": "application/json"}).items():
                        self.send_header(key, value)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                request = urllib.request.Request(upstream + self.path[len("/api"):], data=body, method=self.command,
                                                 headers={"Content-Type": "application/json"})
                try:
                    with urllib.request.urlopen(request, timeout=30) as response:
                        status, data = response.status, response.read()
                except urllib.error.HTTPError as exc:
                    status, data = exc.code, exc.read()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_DELETE = _any

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = "http://127.0.0.1:%d/api" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def proxy_for(api_url):
    proxies = []

    def make(**kwargs):
        proxies.append(FaultyProxy(api_url, **kwargs))
        return proxies[-1]

    yield make
    for proxy in proxies:
        proxy.close()


# -- the recipe -----------------------------------------------------------------------------------------
def test_check_mode_then_create_then_rerun_then_change_then_absent(api_url, pool):
    args = pool_args(api_url, pool)

    checked = run_module("prefect_work_pool", args, check=True, diff=True)
    assert checked.rc == 0, checked
    assert checked["changed"] is True
    assert checked["differences"] == ["work_pool", "work_queue:dev"]
    assert checked["work_pool"]["base_job_template"] == expected_template(OVERRIDES, api_url)
    assert checked["work_queues"] == ["default", "dev"]
    assert read_pool(api_url, pool) is None

    created = run_module("prefect_work_pool", args)
    assert created.rc == 0, created
    assert created["changed"] is True
    stored = read_pool(api_url, pool)
    assert stored["type"] == "kubernetes"
    assert stored["base_job_template"] == expected_template(OVERRIDES, api_url)
    assert job_resources(stored["base_job_template"]) == {"limits": {"cpu": "2", "memory": "4Gi"},
                                                          "requests": {"cpu": "500m"}}
    assert sorted(queue_names(api_url, pool)) == ["default", "dev"]
    assert created["work_pool"]["id"] == stored["id"]
    assert created["work_queues"] == ["default", "dev"]

    rerun = run_module("prefect_work_pool", args)
    assert rerun.rc == 0, rerun
    assert rerun["changed"] is False and rerun["differences"] == []
    assert rerun["requests"] == 2  # read the pool, list its queues: nothing else
    assert read_pool(api_url, pool)["updated"] == stored["updated"]

    bigger = json.loads(json.dumps(OVERRIDES))
    bigger["prefect_agent"]["job"]["resources"]["limit"]["cpu"] = 4
    check_change = run_module("prefect_work_pool", pool_args(api_url, pool, overrides=bigger), check=True, diff=True)
    assert check_change.rc == 0, check_change
    assert check_change["changed"] is True and check_change["differences"] == ["base_job_template"]
    lines = check_change.stdout.splitlines()
    assert any(line.startswith("-") and '"default": "2"' in line for line in lines), check_change.stdout[-3000:]
    assert any(line.startswith("+") and '"default": "4"' in line for line in lines)
    assert job_resources(read_pool(api_url, pool)["base_job_template"])["limits"]["cpu"] == "2"

    changed = run_module("prefect_work_pool", pool_args(api_url, pool, overrides=bigger))
    assert changed.rc == 0, changed
    assert changed["changed"] is True and changed["differences"] == ["base_job_template"]
    assert read_pool(api_url, pool)["base_job_template"] == expected_template(bigger, api_url)
    assert read_pool(api_url, pool)["id"] == stored["id"]

    described = run_module("prefect_work_pool", pool_args(api_url, pool, overrides=bigger, description="QHub dev",
                                                          concurrency_limit=5, paused=True))
    assert described["changed"] is True
    assert described["differences"] == ["description", "is_paused", "concurrency_limit"]
    now = read_pool(api_url, pool)
    assert (now["description"], now["is_paused"], now["concurrency_limit"]) == ("QHub dev", True, 5)

    check_absent = run_module("prefect_work_pool", {"name": pool, "api_url": api_url, "state": "absent"}, check=True)
    assert check_absent["changed"] is True and read_pool(api_url, pool) is not None

    removed = run_module("prefect_work_pool", {"name": pool, "api_url": api_url, "state": "absent"}, diff=True)
    assert removed.rc == 0, removed
    assert removed["changed"] is True and removed["work_pool"] == {}
    assert read_pool(api_url, pool) is None

    again = run_module("prefect_work_pool", {"name": pool, "api_url": api_url, "state": "absent"})
    assert again.rc == 0 and again["changed"] is False and again["requests"] == 1


def test_the_api_url_comes_from_the_environment(api_url, pool):
    args = pool_args(api_url, pool)
    del args["api_url"]
    created = run_module("prefect_work_pool", args, env={"PREFECT_API_URL": api_url})
    assert created.rc == 0, created
    assert read_pool(api_url, pool)["name"] == pool
    run_module("prefect_work_pool", {"name": pool, "state": "absent"}, env={"PREFECT_API_URL": api_url})


def test_a_template_of_your_own_for_another_pool_type(api_url, pool, tmp_path):
    # Prefect's {{ placeholders }} must reach the module untemplated: loaded from a file as the docs show.
    template = {"job_configuration": {"command": "{{ command }}"},
                "variables": {"type": "object", "properties": {"command": {"type": "string", "default": "run"}}}}
    (tmp_path / "template.json").write_text(json.dumps(template))
    playbook = tmp_path / "pool.yml"
    playbook.write_text(yaml.safe_dump([{"hosts": "localhost", "gather_facts": False, "tasks": [
        {"qhub.prefect.prefect_work_pool": {
            "name": pool, "type": "process", "api_url": api_url,
            "base_job_template": "{{ lookup('ansible.builtin.file', '%s') | from_json }}"
                                 % (tmp_path / "template.json")},
         "register": "pool"},
        {"ansible.builtin.assert": {"that": ["pool.work_pool.type == 'process'",
                                             "pool.work_pool.base_job_template.variables.properties.command.default"
                                             " == 'run'"]}}]}]))
    created = run_playbook(playbook)
    assert created.rc == 0, created
    assert created["recap"]["changed"] == 1
    assert read_pool(api_url, pool)["base_job_template"] == template
    rerun = run_playbook(playbook)
    assert rerun.rc == 0 and rerun["recap"]["changed"] == 0, rerun

    both = run_module("prefect_work_pool", {"name": pool, "type": "process", "api_url": api_url,
                                            "base_job_template": {}, "overrides": {"JOB_CPU_LIMIT": 1}})
    assert both.rc != 0 and "mutually exclusive" in both["msg"]
    derived = run_module("prefect_work_pool", {"name": pool, "type": "process", "api_url": api_url,
                                               "job_namespace": "dev"})
    assert derived.rc != 0
    assert derived["msg"] == ("job_namespace: derive a base job template only for a kubernetes pool; for a process "
                              "pool give base_job_template")
    assert read_pool(api_url, pool)["base_job_template"] == template
    run_module("prefect_work_pool", {"name": pool, "api_url": api_url, "state": "absent"})


# -- what fails, and how it reads -----------------------------------------------------------------------
def test_an_existing_pool_of_another_type_fails_clearly_and_is_left_alone(api_url, pool):
    assert prefect(api_url, "POST", "/work_pools/", {"name": pool, "type": "process"})[0] == 201
    before = read_pool(api_url, pool)
    result = run_module("prefect_work_pool", pool_args(api_url, pool))
    assert result.rc != 0
    assert result["msg"] == ("the work pool %r exists with type 'process', not 'kubernetes'; a pool's type cannot "
                             "change: delete the pool or choose another name" % pool)
    assert read_pool(api_url, pool) == before
    prefect(api_url, "DELETE", "/work_pools/" + pool)


@pytest.mark.parametrize("reserved", ["prefect-qhub", "Prefect"])
def test_reserved_names_are_refused_before_any_request(api_url, reserved):
    result = run_module("prefect_work_pool", pool_args(api_url, reserved))
    assert result.rc != 0
    assert result["msg"].startswith("name: work pool names starting with 'prefect' are reserved by Prefect")
    assert "requests" not in result.data


def test_secret_values_in_overrides_are_refused(api_url, pool):
    overrides = dict(OVERRIDES, secretEnvVars={"DATABASE_PASSWORD": "hunter2-canary"})
    result = run_module("prefect_work_pool", pool_args(api_url, pool, overrides=overrides))
    assert result.rc != 0
    assert result["msg"].startswith("overrides.secretEnvVars: secret values are not accepted by prefect_work_pool")
    assert read_pool(api_url, pool) is None


@pytest.mark.parametrize("overrides,message", [
    ({"JOB_CPU_LIMIT": "lots"}, "overrides.JOB_CPU_LIMIT: 'lots' is not a Kubernetes quantity"),
    ({"JOB_CPUS": 1}, "overrides.JOB_CPUS: unknown override; accepted keys:"),
    ({"JOB_CPU_REQUEST": "2", "JOB_CPU_LIMIT": "1"}, "overrides.JOB_CPU_REQUEST: the request 2 is above the limit 1"),
])
def test_bad_overrides_name_the_key_and_write_nothing(api_url, pool, overrides, message):
    result = run_module("prefect_work_pool", pool_args(api_url, pool, overrides=overrides))
    assert result.rc != 0
    assert result["msg"].startswith(message), result["msg"]
    assert read_pool(api_url, pool) is None


def test_secret_env_names_need_a_secret_name(api_url, pool):
    args = pool_args(api_url, pool)
    del args["secret_name"]
    result = run_module("prefect_work_pool", args)
    assert result.rc != 0 and result["msg"].startswith("secret_name: required with secret_env_names")


def test_503_twice_then_the_server_is_retried_and_converges(api_url, pool, proxy_for):
    proxy = proxy_for(faults=[(503, {}), (503, {})])
    result = run_module("prefect_work_pool", pool_args(proxy.url, pool))
    assert result.rc == 0, result
    assert result["changed"] is True
    assert read_pool(api_url, pool)["base_job_template"] == expected_template(OVERRIDES, api_url)
    # GET pool, GET the server's default template, POST pool, POST queue (a pool just created has the server's one
    # queue, "default": not read); 2 retried
    assert result["requests"] == len(proxy.received) == 4 + 2
    assert not [request for request in proxy.received if request["path"].endswith("/queues/filter")]
    gaps = [b["time"] - a["time"] for a, b in zip(proxy.received, proxy.received[1:3])]
    assert gaps[0] >= 0.45 and gaps[1] >= 0.95  # backoff 0.5 s then 1 s
    run_module("prefect_work_pool", {"name": pool, "api_url": api_url, "state": "absent"})


def test_a_server_that_stays_unavailable_fails_after_bounded_retries(api_url, pool, proxy_for):
    proxy = proxy_for(always=(503, {}))
    started = time.monotonic()
    result = run_module("prefect_work_pool", pool_args(proxy.url, pool, retries=2), verbosity=3)
    assert result.rc != 0
    assert result["msg"] == ("the Prefect API at %s/work_pools/%s answered HTTP 503 Service Unavailable; gave up "
                             "after 3 attempts" % (proxy.url, pool))
    assert len(proxy.received) == 3 and result["requests"] == 3
    assert time.monotonic() - started < 30
    assert KEY not in result.output
    assert read_pool(api_url, pool) is None


def test_429_waits_as_long_as_retry_after_says(api_url, pool, proxy_for):
    proxy = proxy_for(faults=[(429, {"Retry-After": "2"})])
    result = run_module("prefect_work_pool", pool_args(proxy.url, pool))
    assert result.rc == 0, result
    assert proxy.received[1]["time"] - proxy.received[0]["time"] >= 1.9
    run_module("prefect_work_pool", {"name": pool, "api_url": api_url, "state": "absent"})


def test_a_prefect_1_url_is_not_taken_for_a_prefect_3_api(pool):
    with Prefect1StandIn() as standin:
        result = run_module("prefect_work_pool", pool_args(standin.url, pool))
    assert result.rc != 0
    assert "it is not a Prefect 2/3 REST API" in result["msg"]
    assert "Check api_url (want http://HOST:4200/api" in result["msg"]


def test_a_prefect_3_url_is_not_taken_for_a_prefect_1_api(api_url):
    result = run_module("prefect_project", {"name": "qhub", "api_url": api_url})
    assert result.rc != 0
    assert "it is not a Prefect 1 GraphQL API" in result["msg"]
    assert "http://HOST:4200/graphql" in result["msg"]


def test_the_server_root_without_api_is_named_as_the_wrong_url(api_url, pool):
    result = run_module("prefect_work_pool", pool_args(api_url[:-len("/api")], pool))
    assert result.rc != 0
    assert "it is not a Prefect 2/3 REST API" in result["msg"]


def test_verbose_output_never_shows_the_key(api_url, pool, proxy_for):
    proxy = proxy_for()
    for check in (True, False):
        result = run_module("prefect_work_pool", pool_args(proxy.url, pool), verbosity=3, check=check, diff=True)
        assert result.rc == 0, result
        assert KEY not in result.output
    assert {r["authorization"] for r in proxy.received} == {"Bearer " + KEY}  # sent, never shown
    wrong_type = run_module("prefect_work_pool", pool_args(proxy.url, pool, type="process"), verbosity=3)
    assert wrong_type.rc != 0 and KEY not in wrong_type.output
    run_module("prefect_work_pool", {"name": pool, "api_url": api_url, "state": "absent"})


# -- prefect_worker_status -----------------------------------------------------------------------------
def test_worker_status_lists_and_waits_for_an_online_worker(api_url, pool):
    assert run_module("prefect_work_pool", pool_args(api_url, pool)).rc == 0
    status = {"work_pool": pool, "api_url": api_url}

    empty = run_module("prefect_worker_status", status)
    assert empty.rc == 0, empty
    assert empty["changed"] is False and empty["workers"] == [] and empty["online"] == []

    started = time.monotonic()
    timed_out = run_module("prefect_worker_status", dict(status, wait_online=True, timeout=3, poll_interval=1))
    assert timed_out.rc != 0
    assert timed_out["msg"].startswith("no worker of pool %s came ONLINE within 3 s; a worker with a bad API key "
                                       "looks healthy to Kubernetes: check its log" % pool)
    assert time.monotonic() - started < 20

    for name in ("prefect-worker-7d9f", "someone-else"):
        assert prefect(api_url, "POST", "/work_pools/%s/workers/heartbeat" % pool,
                       {"name": name, "heartbeat_interval_seconds": 30})[0] == 204
    online = run_module("prefect_worker_status", dict(status, name_prefix="prefect-worker", wait_online=True,
                                                      timeout=30), check=True)
    assert online.rc == 0, online
    assert online["changed"] is False
    assert online["online"] == ["prefect-worker-7d9f"]
    assert [w["name"] for w in online["workers"]] == ["prefect-worker-7d9f"]
    assert online["workers"][0]["heartbeat_interval_seconds"] == 30

    run_module("prefect_work_pool", {"name": pool, "api_url": api_url, "state": "absent"})
    missing = run_module("prefect_worker_status", status)
    assert missing.rc != 0 and missing["msg"] == "the work pool %r does not exist at %s" % (pool, api_url)


def test_the_charts_base_job_template_configmap_is_read_on_every_run(
        testbed, kube_admin, unique_namespace, api_url, pool):
    """worker.config.baseJobTemplate.existingConfigMapName: the pool is built on the ConfigMap's template, with the
    overrides as its variables' defaults, and a change to the ConfigMap reaches the pool on the next run."""
    import kubernetes.client as k8s

    core = k8s.CoreV1Api(kube_admin)
    template = build_base_job_template(parse_overrides({}, {})[0], None, None)
    template["job_configuration"]["job_manifest"]["metadata"]["labels"] = {"custom": "one"}

    def put_template(marker):
        template["job_configuration"]["job_manifest"]["metadata"]["labels"] = {"custom": marker}
        body = k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name="tmpl"),
                               data={"baseJobTemplate.json": json.dumps(template)})
        try:
            core.replace_namespaced_config_map("tmpl", unique_namespace, body)
        except k8s.ApiException:
            core.create_namespaced_config_map(unique_namespace, body)

    put_template("one")
    args = {"name": pool, "api_url": api_url, "job_namespace": unique_namespace, "kubeconfig": testbed.kubeconfig,
            "overrides": {"JOB_CPU_LIMIT": "2",
                          "worker": {"config": {"baseJobTemplate": {"existingConfigMapName": "tmpl"}}}}}
    try:
        created = run_module("prefect_work_pool", args)
        assert created.rc == 0 and created["changed"] is True, created
        assert created["base_job_template_source"] == "overrides"
        status, stored = prefect(api_url, "GET", "/work_pools/" + pool)
        manifest = stored["base_job_template"]["job_configuration"]["job_manifest"]
        assert manifest["metadata"]["labels"] == {"custom": "one"}
        assert stored["base_job_template"]["variables"]["properties"]["cpu_limit"]["default"] == "2"
        again = run_module("prefect_work_pool", args)
        assert again.rc == 0 and again["changed"] is False, again
        put_template("two")
        changed = run_module("prefect_work_pool", args)
        assert changed.rc == 0 and changed["changed"] is True, changed
        status, stored = prefect(api_url, "GET", "/work_pools/" + pool)
        assert stored["base_job_template"]["job_configuration"]["job_manifest"]["metadata"]["labels"] == {
            "custom": "two"}
    finally:
        run_module("prefect_work_pool", {"name": pool, "api_url": api_url, "state": "absent"})
