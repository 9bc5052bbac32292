"""The Kubernetes client's connections (http.client): kept alive, renewed when the server drops them, shared by
the run lock's renewal thread, through a kubeconfig's proxy, and every failure a KubeError naming the server.

A real HTTP server on a local port plays the API server here; the TLS paths run against the test bed's API
server in the integration tests.
"""

import json
import socket
import socketserver
import threading

import pytest

from ansible_collections.qhub.prefect.plugins.module_utils._kube.client import KubeClient, KubeError


class FakeApiServer(socketserver.ThreadingTCPServer):
    """An HTTP/1.1 server that counts connections, records request lines, and can drop a connection."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, close_after_each=False, connection_close_header=False):
        self.connections = 0
        self.request_lines = []
        self.close_after_each = close_after_each
        self.connection_close_header = connection_close_header
        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.server_address[1]


class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        self.server.connections += 1
        while True:
            line = self.rfile.readline()
            if not line:
                return
            headers = {}
            while True:
                header = self.rfile.readline().strip()
                if not header:
                    break
                name, value = header.decode().split(":", 1)
                headers[name.lower()] = value.strip()
            self.server.request_lines.append(line.decode().strip())
            body = json.dumps({"kind": "Status", "path": line.decode().split()[1],
                               "authorization": headers.get("authorization")}).encode()
            extra = "Connection: close\r\n" if self.server.connection_close_header else ""
            self.wfile.write(("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n"
                              % (len(body), extra)).encode() + body)
            self.wfile.flush()
            if self.server.close_after_each or self.server.connection_close_header:
                # Dropped as an API server drops an idle keep-alive connection: no header said so.
                self.connection.shutdown(socket.SHUT_RDWR)
                return


@pytest.fixture
def server():
    started = FakeApiServer()
    yield started
    started.shutdown()
    started.server_close()


def test_requests_share_one_kept_alive_connection_and_carry_the_token(server):
    client = KubeClient(host=server.url, token="a-token")
    for dummy in range(5):
        assert client.get("/api/v1/namespaces/dev")["authorization"] == "Bearer a-token"
    assert server.connections == 1
    assert client.requests == 5


def test_a_connection_the_server_dropped_while_idle_is_replaced_not_failed():
    dropping = FakeApiServer(close_after_each=True)
    try:
        client = KubeClient(host=dropping.url, token="t")
        for dummy in range(3):
            assert client.get("/api/v1/namespaces/dev")["path"] == "/api/v1/namespaces/dev"
        assert dropping.connections == 3
    finally:
        dropping.shutdown()
        dropping.server_close()


def test_connection_close_is_honoured():
    closing = FakeApiServer(connection_close_header=True)
    try:
        client = KubeClient(host=closing.url, token="t")
        client.get("/api")
        client.get("/api")
        assert closing.connections == 2
    finally:
        closing.shutdown()
        closing.server_close()


def test_threads_share_the_client(server):
    client = KubeClient(host=server.url, token="t")
    failures = []

    def read():
        try:
            for dummy in range(20):
                client.get("/api/v1/namespaces/dev")
        except Exception as exc:  # noqa: BLE001 - collected for the assertion below
            failures.append(exc)

    threads = [threading.Thread(target=read) for dummy in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert len(server.request_lines) == 80
    assert server.connections <= 4


def test_a_query_and_a_path_below_the_servers_base_path(server):
    client = KubeClient(host=server.url + "/k8s/clusters/c-1/", token="t")
    client.request("GET", "/api/v1/pods", query=[("labelSelector", "a%3Db"), ("limit", "5")])
    assert server.request_lines == ["GET /k8s/clusters/c-1/api/v1/pods?labelSelector=a%3Db&limit=5 HTTP/1.1"]


def test_a_plain_http_server_through_a_proxy_is_asked_by_its_whole_url(server, tmp_path):
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": "http://api.internal:6443", "proxy-url": server.url}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]}))
    client = KubeClient(kubeconfig=str(kubeconfig))
    client.get("/api/v1/namespaces/dev")
    assert server.request_lines == ["GET http://api.internal:6443/api/v1/namespaces/dev HTTP/1.1"]


def test_an_unreachable_server_is_a_kube_error_naming_it():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = KubeClient(host="http://127.0.0.1:%d" % port, token="t")
    with pytest.raises(KubeError, match=r"cannot reach the Kubernetes API server at http://127.0.0.1:%d: " % port):
        client.get("/api")


def test_a_server_that_hangs_up_mid_request_is_a_kube_error():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def hang_up():
        connection, dummy = listener.accept()
        connection.recv(65536)
        connection.close()

    threading.Thread(target=hang_up, daemon=True).start()
    try:
        client = KubeClient(host="http://127.0.0.1:%d" % listener.getsockname()[1], token="t")
        with pytest.raises(KubeError, match="cannot reach the Kubernetes API server"):
            client.get("/api")
    finally:
        listener.close()


def test_an_unsupported_proxy_scheme_is_refused_by_name(tmp_path):
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": "https://api:6443", "proxy-url": "socks5://p:1080"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]}))
    with pytest.raises(KubeError, match="proxy-url 'socks5://p:1080' is not supported"):
        KubeClient(kubeconfig=str(kubeconfig))
