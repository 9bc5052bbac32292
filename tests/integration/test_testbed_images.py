"""The images the node runs (tests/testbed/images.py), tried without a kubelet.

Each test runs the image's own programs from its root filesystem the way the collection's pods run them
(images.pod_like_command: UID 1000, root read-only, tmpfs HOME and /tmp, the image's entrypoint), so what
fails here would fail in the pod too. The images come from the shared image cache (the node's test bed
builds them there; a cold build takes minutes, a warm one about a second).
"""

import hashlib
import json
import os
import signal
import socket
import subprocess
import tarfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.testbed import images
from tests.testbed.prefect1_standin import Prefect1StandIn

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="building and chrooting into images needs root")

CACHE_DIR = Path(os.environ.get("QHUB_PREFECT_IMAGE_CACHE") or images.DEFAULT_IMAGE_CACHE)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    log = tmp_path_factory.mktemp("images") / "build.log"
    return {image.recipe.name: image for image in images.build_all(CACHE_DIR, log)}


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _archive_contents(archive, layer_digest=False):
    with tarfile.open(archive) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))
        config = json.load(tar.extractfile(manifest[0]["Config"]))
        if not layer_digest:
            return manifest, config, None
        digest = hashlib.sha256()
        layer = tar.extractfile(manifest[0]["Layers"][0])
        for block in iter(lambda: layer.read(1 << 20), b""):
            digest.update(block)
    return manifest, config, "sha256:" + digest.hexdigest()


def _run(rootfs, argv, env=None, timeout=120):
    env = dict({"HOME": "/home/prefect", "PATH": images.PATH_ENV.split("=", 1)[1], "LC_ALL": "C.UTF-8"}, **(env or {}))
    return subprocess.run(images.pod_like_command(rootfs, argv, env), capture_output=True, text=True, check=False,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def test_build_images_returns_every_reference_and_a_warm_call_is_fast(built, tmp_path):
    started = time.monotonic()
    entries = images.build_images(CACHE_DIR, tmp_path / "build.log")
    assert time.monotonic() - started < 5
    by_reference = {entry["reference"]: entry for entry in entries}
    server_version = images.installed_version(images.server_venv(), "prefect")
    for reference in ("docker.io/prefecthq/prefect:3-python3.11-kubernetes",
                      "docker.io/prefecthq/prefect:%s-python3.11-kubernetes" % server_version,
                      "docker.io/prefecthq/prefect:1.4.1-python3.9",
                      "docker.io/prefecthq/prefect:0.14.22-python3.8"):
        assert by_reference[reference]["private"] is False
        assert by_reference[reference]["archive"].is_file()
    private = [entry for entry in entries if entry["private"]]
    assert [entry["reference"] for entry in private] == ["qhub-private/prefect:3-python3.11-kubernetes"]
    # The private name is in no public archive: importing those never makes it present on the node.
    public_archives = {entry["archive"] for entry in entries if not entry["private"]}
    assert private[0]["archive"] not in public_archives
    for archive in public_archives:
        manifest = _archive_contents(archive)[0]
        assert not any("qhub-private" in tag for item in manifest for tag in item["RepoTags"])


def test_prefect3_archive_is_a_docker_archive_with_prefects_entrypoint(built):
    image = built["prefect3"]
    manifest, config, layer_digest = _archive_contents(image.archive, layer_digest=True)
    assert len(manifest) == 1
    assert "docker.io/prefecthq/prefect:3-python3.11-kubernetes" in manifest[0]["RepoTags"]
    assert config["rootfs"]["diff_ids"] == [layer_digest]
    assert config["config"]["Entrypoint"] == ["/usr/bin/tini", "-g", "--", "/opt/prefect/entrypoint.sh"]
    assert config["config"]["WorkingDir"] == "/opt/prefect"
    assert config["config"]["Labels"]["io.prefect.python-version"] == "3.11"
    private_manifest, private_config = _archive_contents(image.private_archive)[:2]
    assert private_manifest[0]["RepoTags"] == ["qhub-private/prefect:3-python3.11-kubernetes"]
    assert private_config["rootfs"] == config["rootfs"]


def test_prefect3_worker_runs_as_the_pods_run_it(built):
    """The Deployment's command, under its security context: UID 1000, read-only root, HOME on an emptyDir."""
    rootfs = built["prefect3"].rootfs
    server_version = images.installed_version(images.server_venv(), "prefect")
    command = ["/usr/bin/tini", "-g", "--", "/opt/prefect/entrypoint.sh"]

    version = _run(rootfs, command + ["prefect", "version"])
    assert version.returncode == 0, version.stdout + version.stderr
    assert server_version in version.stdout

    worker = _run(rootfs, command + ["prefect", "worker", "start", "--type", "kubernetes", "--help"])
    assert worker.returncode == 0, worker.stdout + worker.stderr
    assert "--pool" in worker.stdout and "--with-healthcheck" in worker.stdout

    probe = _run(rootfs, ["sh", "-c", "id -u; id -g; echo $HOME; python3 --version; "
                          "touch /opt/prefect/x 2>&1 || true; touch $HOME/x /tmp/x && echo writable"])
    lines = probe.stdout.splitlines()
    assert lines[:3] == ["1000", "1000", "/home/prefect"], probe.stdout + probe.stderr
    assert lines[3].startswith("Python 3.11.")
    assert "Read-only file system" in probe.stdout
    assert lines[-1] == "writable"


class _RecordingAPI(ThreadingHTTPServer):
    """Records what reaches it; answers every request with an empty JSON list."""

    def __init__(self):
        self.received = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                api.received.append((self.command, self.path, self.rfile.read(length).decode("utf-8", "replace")))
                self.send_response(201 if self.command == "POST" else 200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"[]")

            do_GET = do_POST = _answer

            def log_message(self, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()


def test_prefect3_entrypoint_runs_extra_pip_packages_before_the_command(built):
    """Prefect's entrypoint installs EXTRA_PIP_PACKAGES with uv first; when that fails it prints uv's log, sends
    it to the Prefect API and exits with uv's status instead of running the command. uv runs offline here (no
    request leaves the machine); the API is a local recorder."""
    rootfs = built["prefect3"].rootfs
    api = _RecordingAPI()
    try:
        result = _run(rootfs, ["/opt/prefect/entrypoint.sh", "echo", "the command ran"],
                      env={"EXTRA_PIP_PACKAGES": "--offline qhub-prefect-no-such-package",
                           "PREFECT_API_URL": "http://127.0.0.1:%d/api" % api.server_address[1],
                           "PREFECT_CLIENT_CSRF_SUPPORT_ENABLED": "false"})
    finally:
        api.shutdown()
        api.server_close()
    assert "+uv pip install --offline qhub-prefect-no-such-package" in result.stdout
    assert "qhub-prefect-no-such-package was not found" in result.stdout
    assert "command not found" not in result.stderr, result.stderr  # `python` exists, as in Prefect's image
    assert result.returncode not in (0, 127) and "the command ran" not in result.stdout
    sent = [body for method, path, body in api.received if method == "POST" and path == "/api/logs/"]
    assert sent and "qhub-prefect-no-such-package was not found" in sent[0], api.received
    plain = _run(rootfs, ["/opt/prefect/entrypoint.sh", "echo", "the command ran"])
    assert plain.returncode == 0 and plain.stdout.strip() == "the command ran"


def test_prefect3_image_holds_the_end_to_end_flow(built):
    result = _run(built["prefect3"].rootfs, ["python3", "-c", (
        "import runpy; flow = runpy.run_path('/opt/prefect/flows/hello.py')['hello']; print(flow.name)")])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "qhub-hello"


@pytest.mark.parametrize("name, version", [("prefect1", "1.4.1"), ("prefect0", "0.14.22")])
def test_prefect1_agent_registers_with_the_standin_and_keeps_polling(built, name, version, tmp_path):
    """The agent's own command from the image, pointed at the GraphQL stand-in: it registers, answers its health
    endpoint and polls its queue. There is no cluster: its job listing fails (logged) and it polls on."""
    rootfs = built[name].rootfs
    health_port = _free_port()
    kubeconfig = {"apiVersion": "v1", "kind": "Config", "current-context": "none",
                  "clusters": [{"name": "none", "cluster": {"server": "https://127.0.0.1:%d" % _free_port(),
                                                            "insecure-skip-tls-verify": True}}],
                  "users": [{"name": "none", "user": {"token": "none"}}],
                  "contexts": [{"name": "none", "context": {"cluster": "none", "user": "none"}}]}
    log = tmp_path / "agent.log"
    with Prefect1StandIn() as standin, open(log, "w") as out:
        env = {"PREFECT__BACKEND": "server", "PREFECT__CLOUD__API": standin.url,
               "PREFECT__CLOUD__AGENT__AGENT_ADDRESS": "http://0.0.0.0:%d" % health_port,
               "PREFECT__CLOUD__AGENT__LABELS": '["qhub", "dev"]', "PREFECT__CLOUD__AGENT__LEVEL": "DEBUG",
               "NAMESPACE": "dev", "KUBECONFIG": "/home/prefect/kubeconfig", "HOME": "/home/prefect",
               "PATH": images.PATH_ENV.split("=", 1)[1], "LC_ALL": "C.UTF-8"}
        script = "printf '%%s' '%s' > /home/prefect/kubeconfig; exec \"$@\"" % json.dumps(kubeconfig)
        argv = ["tini", "-g", "--", "entrypoint.sh", "sh", "-c", script, "sh",
                "prefect", "agent", "kubernetes", "start"]
        agent = subprocess.Popen(images.pod_like_command(rootfs, argv, env), stdout=out, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            health = _await_health(health_port, agent, log)
            assert health == 200
            agents = _await(lambda: [a for a in standin.agents() if a["queries"] >= 3], agent, log, 60)
            registered = agents[0]
            assert registered["type"] == "KubernetesAgent"
            assert registered["labels"] == ["qhub", "dev"]
            assert registered["tenant_id"] == standin.tenants[0]["id"]
            seen = [(r["operation"], r["fields"]) for r in standin.requests]
            assert ("query", ["tenant"]) in seen and ("mutation", ["register_agent"]) in seen
            assert ("query", ["hello"]) in seen
            polls = [r for r in standin.requests if r["fields"] == ["get_runs_in_queue"]]
            assert {r["agent_header"] for r in polls} == {registered["id"]}
            assert polls[-1]["variables"]["input"]["labels"] == ["qhub", "dev"]
            # It stays up past the failed job listing of its first heartbeat, still polling.
            queries = registered["queries"]
            _await(lambda: "Error while managing existing k8s jobs" in log.read_text(), agent, log, 60)
            _await(lambda: standin.agents()[0]["queries"] > queries + 1, agent, log, 60)
            assert agent.poll() is None
        finally:
            _stop(agent)
    assert "Registration successful!" in log.read_text()


def _await(condition, process, log, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if process.poll() is not None:
            pytest.fail("the agent exited with %s:\n%s" % (process.returncode, log.read_text()[-4000:]))
        time.sleep(0.5)
    pytest.fail("timed out; agent log:\n%s" % log.read_text()[-4000:])


def _await_health(port, process, log):
    def answer():
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/api/health" % port, timeout=2) as response:
                return response.status
        except OSError:
            return None
    return _await(answer, process, log, 90)


def _stop(process):
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=15)
