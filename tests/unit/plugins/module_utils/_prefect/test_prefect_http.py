"""The Prefect HTTP client against a scripted loopback server: retries, their bounds, and what users read."""

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ansible_collections.qhub.prefect.plugins.module_utils._prefect.v1 import Prefect1Client
from ansible_collections.qhub.prefect.plugins.module_utils._prefect.v3 import Prefect3Client
from ansible_collections.qhub.prefect.plugins.module_utils._prefect.http import (
    PREFECT1_API, PrefectApiError, PrefectHttpClient, _retry_after_seconds, public_url,
)

KEY = "pnu_unit-test-key-3c1f9a"


class Scripted:
    """Answers each request with the next scripted (status, body, headers, delay); records what came in."""

    def __init__(self):
        self.script = []
        self.default = (200, {"ok": True}, {}, 0)
        self.received = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                outer.received.append({"method": self.command, "path": self.path, "headers": dict(self.headers),
                                       "body": json.loads(body) if body else None})
                status, payload, headers, delay = outer.script.pop(0) if outer.script else outer.default
                if delay:
                    time.sleep(delay)
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                headers = dict({"Content-Type": "application/json"}, **headers)
                for name, value in headers.items():
                    self.send_header(name, value)
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

    def then(self, status, body=None, headers=None, delay=0):
        self.script.append((status, {} if body is None else body, headers or {}, delay))
        return self

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def server():
    scripted = Scripted()
    yield scripted
    scripted.close()


def client_for(url, **kwargs):
    sleeps = []
    kwargs.setdefault("api_key", KEY)
    client = PrefectHttpClient(url, sleep=sleeps.append, **kwargs)
    return client, sleeps


def test_sends_the_key_as_bearer_and_json_and_counts_requests(server):
    client, dummy = client_for(server.url)
    status, body = client.request("POST", "/work_pools/filter", {"limit": 1})
    assert (status, body) == (200, {"ok": True})
    received = server.received[0]
    assert received["path"] == "/api/work_pools/filter"
    assert received["headers"]["Authorization"] == "Bearer " + KEY
    assert received["headers"]["Content-Type"] == "application/json"
    assert received["body"] == {"limit": 1}
    assert client.requests == 1


def test_basic_auth_string_when_there_is_no_key(server):
    client, dummy = client_for(server.url, api_key=None, auth_string="admin:pass")
    client.request("GET", "/health")
    assert server.received[0]["headers"]["Authorization"] == "Basic YWRtaW46cGFzcw=="


def test_503_twice_then_success_is_retried_with_exponential_backoff(server):
    server.then(503, {"detail": "busy"}).then(503, {"detail": "busy"}).then(200, {"name": "qhub"})
    client, sleeps = client_for(server.url)
    assert client.request("GET", "/work_pools/qhub") == (200, {"name": "qhub"})
    assert client.requests == 3
    assert sleeps == [0.5, 1.0]


@pytest.mark.parametrize("status", [502, 503, 504])
def test_gateway_errors_are_retried_a_bounded_number_of_times(server, status):
    server.default = (status, {"detail": "down"}, {}, 0)
    client, sleeps = client_for(server.url, retries=2)
    with pytest.raises(PrefectApiError) as caught:
        client.request("GET", "/work_pools/qhub")
    assert client.requests == 3
    assert sleeps == [0.5, 1.0]
    message = str(caught.value)
    assert "HTTP %d" % status in message and "gave up after 3 attempts" in message
    assert server.url + "/work_pools/qhub" in message
    assert KEY not in message


def test_backoff_is_capped(server):
    server.default = (503, {}, {}, 0)
    client, sleeps = client_for(server.url, retries=6)
    with pytest.raises(PrefectApiError):
        client.request("GET", "/x")
    assert sleeps == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]


def test_429_honours_retry_after_and_caps_it(server):
    server.then(429, {}, {"Retry-After": "2"}).then(429, {}, {"Retry-After": "3600"}).then(200, [])
    client, sleeps = client_for(server.url)
    assert client.request("POST", "/work_pools/qhub/workers/filter", {}) == (200, [])
    assert sleeps == [2.0, 30.0]


def test_retry_after_as_http_date():
    assert _retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == pytest.approx(10.0)
    assert _retry_after_seconds("soon") is None
    assert _retry_after_seconds(None) is None


@pytest.mark.parametrize("status", [400, 409, 422])
def test_other_client_errors_are_not_retried_and_quote_the_server(server, status):
    server.then(status, {"exception_message": "Invalid request received.", "exception_detail": [
        {"loc": ["body", "base_job_template"], "msg": "Value error, undeclared variable(s): nope"}]})
    client, sleeps = client_for(server.url)
    with pytest.raises(PrefectApiError) as caught:
        client.request("POST", "/work_pools/", {"name": "x"})
    assert client.requests == 1 and sleeps == []
    assert caught.value.status == status
    assert "HTTP %d" % status in str(caught.value)
    assert "base_job_template: Value error, undeclared variable(s): nope" in str(caught.value)


def test_401_says_the_key_was_refused_without_showing_it(server):
    server.then(401, {"detail": "Invalid API key " + KEY})
    client, dummy = client_for(server.url)
    with pytest.raises(PrefectApiError) as caught:
        client.request("GET", "/work_pools/qhub")
    assert str(caught.value) == "the Prefect API refused the API key (HTTP 401) at %s/work_pools/qhub" % server.url
    assert caught.value.status == 401


def test_403_says_the_key_was_refused_and_why(server):
    server.then(403, {"detail": "Forbidden for " + KEY})
    client, dummy = client_for(server.url)
    with pytest.raises(PrefectApiError) as caught:
        client.request("PATCH", "/work_pools/qhub", {"is_paused": True})
    message = str(caught.value)
    assert message.startswith("the Prefect API refused the API key (HTTP 403) at %s/work_pools/qhub" % server.url)
    assert KEY not in message and "********" in message


def test_401_without_a_key_asks_for_one(server):
    server.then(401, {"detail": "Unauthorized"})
    client, dummy = client_for(server.url, api_key=None)
    with pytest.raises(PrefectApiError, match="requires an API key .*PREFECT_API_KEY"):
        client.request("GET", "/work_pools/qhub")


def test_404_for_a_missing_object_is_returned_when_allowed(server):
    server.then(404, {"detail": 'Work pool "qhub" not found.'})
    client, dummy = client_for(server.url)
    assert client.request("GET", "/work_pools/qhub", allow=(404,)) == (404, {"detail": 'Work pool "qhub" not found.'})


@pytest.mark.parametrize("status,body", [(404, {"detail": "Not Found"}), (404, b"<html>nope</html>"),
                                         (405, {"detail": "Method Not Allowed"})])
def test_a_path_the_server_does_not_have_means_a_wrong_api_url(server, status, body):
    server.then(status, body)
    client, dummy = client_for(server.url)
    with pytest.raises(PrefectApiError) as caught:
        client.request("GET", "/work_pools/qhub", allow=(404,))
    assert "it is not a Prefect 2/3 REST API" in str(caught.value)
    assert "Check api_url" in str(caught.value)


def test_a_success_that_is_not_json_means_a_wrong_api_url(server):
    server.then(200, b"<!doctype html><title>Prefect UI</title>", {"Content-Type": "text/html; charset=utf-8"})
    client, dummy = client_for(server.url)
    with pytest.raises(PrefectApiError) as caught:
        client.request("GET", "/work_pools/qhub")
    assert "not JSON (text/html)" in str(caught.value)
    assert "it is not a Prefect 2/3 REST API" in str(caught.value)


def test_redirects_are_not_followed_with_the_key(server):
    server.then(307, b"", {"Location": "https://elsewhere.example/api/work_pools/qhub"})
    client, dummy = client_for(server.url)
    with pytest.raises(PrefectApiError, match="redirected \\(HTTP 307\\) to https://elsewhere.example"):
        client.request("GET", "/work_pools/qhub")
    assert len(server.received) == 1


def test_connection_refused_is_retried_then_named():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client, sleeps = client_for("http://127.0.0.1:%d/api" % port, retries=2)
    with pytest.raises(PrefectApiError) as caught:
        client.request("GET", "/health")
    assert client.requests == 3 and len(sleeps) == 2
    assert "could not be reached" in str(caught.value) and "gave up after 3 attempts" in str(caught.value)


def test_a_slow_answer_times_out_and_is_retried(server):
    server.then(200, {}, delay=1.5).then(200, {"name": "qhub"})
    client, sleeps = client_for(server.url, timeout=0.5)
    assert client.request("GET", "/work_pools/qhub") == (200, {"name": "qhub"})
    assert client.requests == 2 and sleeps == [0.5]


def test_a_server_that_always_times_out_fails_with_the_timeout_named(server):
    server.default = (200, {}, {}, 1.0)
    client, dummy = client_for(server.url, timeout=0.3, retries=1)
    with pytest.raises(PrefectApiError, match="did not answer within 0.3 s; gave up after 2 attempts"):
        client.request("GET", "/work_pools/qhub")


@pytest.mark.parametrize("url", ["", "prefect-server:4200/api", "ftp://host/api"])
def test_a_url_that_is_not_http_is_refused_before_any_request(url):
    with pytest.raises(PrefectApiError, match="api_url"):
        PrefectHttpClient(url)


def test_credentials_in_the_url_never_reach_a_message():
    assert public_url("https://user:secret@prefect.example/api") == "https://prefect.example/api"


# -- the API clients over it ---------------------------------------------------------------------------
def test_graphql_errors_in_a_200_answer_become_clear_errors(server):
    server.then(200, {"data": {"set_project_description": None}, "errors": [{"message": "Update failed"}]})
    client = Prefect1Client(PrefectHttpClient(server.url, api_key=KEY, api=PREFECT1_API), tenant_id="t-1")
    with pytest.raises(PrefectApiError, match="set_project_description with errors: Update failed"):
        client.set_project_description("p-1", "x")
    assert server.received[0]["headers"]["X-Prefect-Tenant-Id"] == "t-1"
    assert "$input" in server.received[0]["body"]["query"]
    assert server.received[0]["body"]["variables"] == {"input": {"project_id": "p-1", "description": "x"}}


def test_graphql_unauthenticated_says_the_key_was_refused(server):
    server.then(200, {"data": None, "errors": [{"message": "Unauthenticated",
                                                "extensions": {"code": "UNAUTHENTICATED"}}]})
    client = Prefect1Client(PrefectHttpClient(server.url, api_key=KEY, api=PREFECT1_API))
    with pytest.raises(PrefectApiError, match="refused the API key \\(UNAUTHENTICATED\\)"):
        client.find_project("qhub")


def test_a_rest_api_is_not_taken_for_graphql(server):
    server.then(200, [{"name": "qhub"}])
    client = Prefect1Client(PrefectHttpClient(server.url, api=PREFECT1_API))
    with pytest.raises(PrefectApiError, match="it is not a Prefect 1 GraphQL API"):
        client.find_project("qhub")


def test_waiting_for_a_worker_fails_after_the_timeout_naming_what_was_seen(server):
    server.default = (200, [{"name": "prefect-worker-abc", "status": "OFFLINE"}, {"name": "other", "status": "ONLINE"}],
                      {}, 0)
    client = Prefect3Client(PrefectHttpClient(server.url))
    now = [0.0]
    with pytest.raises(PrefectApiError) as caught:
        client.wait_for_online_worker("qhub", name_prefix="prefect-worker", timeout=10, interval=3,
                                      clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s))
    message = str(caught.value)
    assert message.startswith("no worker of pool qhub came ONLINE within 10 s; a worker with a bad API key looks "
                              "healthy to Kubernetes: check its log")
    assert "prefect-worker-abc (OFFLINE)" in message and "other" not in message
    assert len(server.received) == 4


def test_waiting_for_a_worker_returns_once_one_is_online(server):
    server.then(200, []).then(200, [{"name": "prefect-worker", "status": "ONLINE"}])
    client = Prefect3Client(PrefectHttpClient(server.url))
    online, _workers, _waited = client.wait_for_online_worker("qhub", "prefect-worker", timeout=30, interval=0.01)
    assert [w["name"] for w in online] == ["prefect-worker"]
    assert server.received[-1]["path"] == "/api/work_pools/qhub/workers/filter"


def test_waiting_for_a_worker_waits_for_the_pool_it_creates(server):
    server.then(404, {"detail": "Work pool not found."}).then(200, [{"name": "prefect-worker", "status": "ONLINE"}])
    client = Prefect3Client(PrefectHttpClient(server.url))
    online, _workers, _waited = client.wait_for_online_worker("qhub", "prefect-worker", timeout=30, interval=0.01)
    assert [w["name"] for w in online] == ["prefect-worker"]


def test_a_pool_no_worker_ever_created_is_named_when_the_wait_ends(server):
    for dummy in range(4):
        server.then(404, {"detail": "Work pool not found."})
    client = Prefect3Client(PrefectHttpClient(server.url))
    now = [0.0]
    with pytest.raises(PrefectApiError) as caught:
        client.wait_for_online_worker("qhub", name_prefix="prefect-worker", timeout=10, interval=3,
                                      clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s))
    assert str(caught.value).startswith("no worker of pool qhub came ONLINE within 10 s (the pool does not exist at ")
    assert "no worker ever polled it" in str(caught.value)


def test_names_are_quoted_into_paths(server):
    server.then(404, {"detail": "Work pool not found."})
    client = Prefect3Client(PrefectHttpClient(server.url))
    assert client.read_work_pool("a b/c") is None
    assert server.received[0]["path"] == "/api/work_pools/a%20b%2Fc"


def test_a_prefect_cloud_workspace_url_is_just_a_base_url(server):
    cloud = server.url + "/accounts/0f1e2d3c/workspaces/4b5a6978"
    server.then(200, {"name": "qhub", "type": "kubernetes"})
    client = Prefect3Client(PrefectHttpClient(cloud + "/", api_key=KEY))
    assert client.read_work_pool("qhub")["type"] == "kubernetes"
    assert server.received[0]["path"] == "/api/accounts/0f1e2d3c/workspaces/4b5a6978/work_pools/qhub"
