"""The test bed: a real Kubernetes control plane and a real Prefect 3 server on loopback.

etcd + kube-apiserver (TLS with a generated CA, token auth, RBAC, ServiceAccount token signing for
the TokenRequest API) + kube-controller-manager, the same approach as controller-runtime's envtest;
and ``prefect server start`` on SQLite from its own virtual environment. There is no kubelet or
scheduler: Deployments get ReplicaSets and Jobs get Pods, which stay Pending.

    python tests/testbed/testbed.py up [--dir DIR] [--components kube,prefect] [--audit-log]
    python tests/testbed/testbed.py status --dir DIR
    python tests/testbed/testbed.py down --dir DIR

``up`` leaves the processes running (DIR/env.sh exports KUBECONFIG and PREFECT_API_URL); the Python
API (``with Testbed() as bed: ...``) stops them on exit, on SIGTERM and at interpreter exit.
Set QHUB_PREFECT_TESTBED_KUBECONFIG=existing to use the cluster in KUBECONFIG instead.
"""

import argparse
import atexit
import base64
import json
import os
import pathlib
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[1]
CACHE = pathlib.Path(os.environ.get("QHUB_PREFECT_CACHE", pathlib.Path.home() / ".cache" / "qhub-prefect"))
PREFECT_VENV = pathlib.Path(os.environ.get("QHUB_PREFECT_SERVER_VENV", CACHE / "prefect-venv"))
AUDIENCE = "https://kubernetes.default.svc"
AUDIT_POLICY = """apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
"""


class TestbedError(RuntimeError):
    pass


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def log_tail(path, lines=30):
    try:
        return "\n".join(pathlib.Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def run_openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def alive(pid):
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    try:  # a zombie child still answers kill(0)
        with open("/proc/%d/stat" % pid) as handle:
            return handle.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def kill_group(pid, grace=10.0):
    """SIGTERM the process group, then SIGKILL what is still there after ``grace`` seconds."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            if not alive(pid):
                return
            time.sleep(0.1)


class Testbed:
    """Starts the parts on free loopback ports under ``run_dir``; ``stop()`` ends every process."""

    def __init__(self, run_dir=None, components=("kube", "prefect"), keep=False, audit_log=False,
                 use_existing_kubeconfig=None):
        self.owns_dir = run_dir is None
        self.run_dir = pathlib.Path(run_dir or tempfile.mkdtemp(prefix="qhub-prefect-testbed-")).resolve()
        self.components = tuple(components)
        self.keep = keep
        self.audit_log = str(self.run_dir / "audit.log") if audit_log else None
        if use_existing_kubeconfig is None:
            use_existing_kubeconfig = os.environ.get("QHUB_PREFECT_TESTBED_KUBECONFIG") == "existing"
        self.existing_cluster = use_existing_kubeconfig
        self.processes = {}
        self.commands = {}
        self.kubeconfig = self.api_server = self.ca_file = self.admin_token = None
        self.prefect_api_url = None
        self.prefect_python = str(PREFECT_VENV / "bin" / "python")
        self.prefect_bin = str(PREFECT_VENV / "bin" / "prefect")
        self.bin_dir = None
        self.startup_seconds = {}
        self.attached = False

    # -- lifecycle ---------------------------------------------------------------------------
    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def start(self, detach=False):
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if not detach:
            atexit.register(self.stop)
            previous = signal.getsignal(signal.SIGTERM)

            def on_term(signum, frame):
                self.stop()
                if callable(previous):
                    previous(signum, frame)
                raise SystemExit(128 + signum)

            signal.signal(signal.SIGTERM, on_term)
        try:
            if "kube" in self.components:
                if self.existing_cluster:
                    self._use_existing_cluster()
                else:
                    self._start_kube()
            if "prefect" in self.components:
                self._start_prefect()
        except BaseException:
            self.stop()
            raise
        self._write_state()
        return self

    def stop(self):
        for name in reversed(list(self.processes)):
            self.stop_component(name)
        if not self.keep and self.run_dir.exists():
            shutil.rmtree(self.run_dir, ignore_errors=True)

    def _spawn(self, name, command, env=None):
        log = open(self.run_dir / (name + ".log"), "ab")
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   cwd=self.run_dir, env=env, start_new_session=True)
        log.close()
        self.processes[name] = process
        self.commands[name] = (command, env)
        (self.run_dir / (name + ".pid")).write_text(str(process.pid))
        return process

    def stop_component(self, name):
        process = self.processes.pop(name, None)
        pidfile = self.run_dir / (name + ".pid")
        pid = process.pid if process is not None else None
        if pid is None and pidfile.exists():  # a test bed this process attached to
            pid = int(pidfile.read_text())
        if pid is not None:
            kill_group(pid)
        if process is not None:
            try:
                process.wait(timeout=1)
            except subprocess.TimeoutExpired:
                pass
        if pidfile.exists() and pidfile.read_text() == str(pid):
            pidfile.unlink()

    def start_component(self, name, timeout=60):
        """Start a stopped part again with the same flags and data (fault-injection tests)."""
        command, env = self.commands[name]
        self._spawn(name, command, env)
        if self.attached:
            self._write_state()
        if name == "kube-apiserver":
            self._wait_ready("kube-apiserver", timeout)
        elif name == "prefect-server":
            self._wait_prefect(timeout)

    def _check_running(self, name):
        process = self.processes.get(name)
        if process is not None and process.poll() is not None:
            raise TestbedError("%s exited with status %s. The end of its log (%s):\n%s" % (
                name, process.returncode, self.run_dir / (name + ".log"), log_tail(self.run_dir / (name + ".log"))))

    # -- Kubernetes ------------------------------------------------------------------------
    def _binaries(self):
        done = subprocess.run(["bash", str(HERE / "install-control-plane.sh")], capture_output=True, text=True)
        if done.returncode != 0:
            raise TestbedError("installing the control plane failed:\n%s" % done.stderr[-3000:])
        bin_dir = pathlib.Path(done.stdout.strip().splitlines()[-1])
        etcd = bin_dir / "etcd" if (bin_dir / "etcd").exists() else pathlib.Path(shutil.which("etcd") or "etcd")
        controller = bin_dir / "kube-controller-manager"
        return bin_dir, etcd, bin_dir / "kube-apiserver", controller if controller.exists() else None

    def _certificates(self):
        pki = self.run_dir / "pki"
        pki.mkdir(exist_ok=True)
        run_openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
                    "-days", "7", "-subj", "/CN=qhub-prefect-testbed-ca", cwd=pki)
        run_openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "apiserver.key", "-out", "apiserver.csr",
                    "-subj", "/CN=kube-apiserver", cwd=pki)
        (pki / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc\n")
        run_openssl("x509", "-req", "-in", "apiserver.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                    "-out", "apiserver.crt", "-days", "7", "-extfile", "san.cnf", cwd=pki)
        run_openssl("genrsa", "-out", "service-accounts.key", "2048", cwd=pki)
        return pki

    def _start_kube(self):
        started = time.monotonic()
        bin_dir, etcd, apiserver, controller = self._binaries()
        self.bin_dir = str(bin_dir)
        pki = self._certificates()
        self.ca_file = str(pki / "ca.crt")
        self.admin_token = secrets.token_hex(24)
        (pki / "tokens.csv").write_text('%s,admin,admin,"system:masters"\n' % self.admin_token)
        client_port, peer_port, secure_port = free_port(), free_port(), free_port()
        self._spawn("etcd", [str(etcd), "--data-dir", str(self.run_dir / "etcd"), "--name", "testbed",
                             "--listen-client-urls", "http://127.0.0.1:%d" % client_port,
                             "--advertise-client-urls", "http://127.0.0.1:%d" % client_port,
                             "--listen-peer-urls", "http://127.0.0.1:%d" % peer_port,
                             "--initial-advertise-peer-urls", "http://127.0.0.1:%d" % peer_port,
                             "--initial-cluster", "testbed=http://127.0.0.1:%d" % peer_port,
                             "--unsafe-no-fsync"])
        self._wait_http("etcd", "http://127.0.0.1:%d/health" % client_port, 60)
        self.api_server = "https://127.0.0.1:%d" % secure_port
        flags = [
            "--etcd-servers=http://127.0.0.1:%d" % client_port, "--secure-port=%d" % secure_port,
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", "--insecure-port=0",
            "--tls-cert-file=%s" % (pki / "apiserver.crt"), "--tls-private-key-file=%s" % (pki / "apiserver.key"),
            "--client-ca-file=%s" % (pki / "ca.crt"), "--token-auth-file=%s" % (pki / "tokens.csv"),
            "--authorization-mode=RBAC", "--service-account-issuer=%s" % AUDIENCE,
            "--service-account-key-file=%s" % (pki / "service-accounts.key"),
            "--service-account-signing-key-file=%s" % (pki / "service-accounts.key"),
            "--api-audiences=%s" % AUDIENCE, "--service-cluster-ip-range=10.0.0.0/24", "--allow-privileged=true",
        ]
        if self.audit_log:
            (self.run_dir / "audit-policy.yaml").write_text(AUDIT_POLICY)
            flags += ["--audit-policy-file=%s" % (self.run_dir / "audit-policy.yaml"),
                      "--audit-log-path=%s" % self.audit_log, "--audit-log-format=json"]
        self._spawn("kube-apiserver", [str(apiserver)] + flags)
        self.kubeconfig = str(self.run_dir / "kubeconfig")
        self._write_kubeconfig(self.kubeconfig)
        self._wait_ready("kube-apiserver", 90)
        self.startup_seconds["kube-apiserver"] = round(time.monotonic() - started, 1)
        if controller is None:
            raise TestbedError("kube-controller-manager is missing from %s" % bin_dir)
        self._spawn("kube-controller-manager", [
            str(controller), "--kubeconfig=%s" % self.kubeconfig, "--leader-elect=false", "--port=0",
            "--secure-port=0", "--controllers=*", "--use-service-account-credentials=false",
            "--service-account-private-key-file=%s" % (pki / "service-accounts.key"),
            "--root-ca-file=%s" % (pki / "ca.crt"), "--cluster-signing-cert-file=%s" % (pki / "ca.crt"),
            "--cluster-signing-key-file=%s" % (pki / "ca.key")])
        self._wait_for("kube-controller-manager", lambda: self._kube_get(
            "/api/v1/namespaces/default/serviceaccounts/default") is not None, 60,
            "the default ServiceAccount (made by the controller-manager)")
        self.startup_seconds["kube"] = round(time.monotonic() - started, 1)

    def _use_existing_cluster(self):
        path = os.environ.get("KUBECONFIG") or str(pathlib.Path.home() / ".kube" / "config")
        if not pathlib.Path(path).exists():
            raise TestbedError("QHUB_PREFECT_TESTBED_KUBECONFIG=existing, but there is no kubeconfig at %s" % path)
        self.kubeconfig = path
        try:
            import yaml
            config = yaml.safe_load(pathlib.Path(path).read_text())
            context = next(c["context"] for c in config["contexts"] if c["name"] == config["current-context"])
            cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
            user = next(u["user"] for u in config["users"] if u["name"] == context["user"])
        except Exception as exc:  # a kubeconfig we cannot read is the user's to fix
            raise TestbedError("cannot read the existing cluster from %s: %s" % (path, exc))
        self.api_server = cluster["server"]
        if cluster.get("certificate-authority-data"):
            self.ca_file = str(self.run_dir / "existing-ca.crt")
            pathlib.Path(self.ca_file).write_bytes(base64.b64decode(cluster["certificate-authority-data"]))
        else:
            self.ca_file = cluster.get("certificate-authority")
        self.admin_token = user.get("token")

    def _write_kubeconfig(self, path):
        ca_data = base64.b64encode(pathlib.Path(self.ca_file).read_bytes()).decode()
        config = {
            "apiVersion": "v1", "kind": "Config", "current-context": "testbed",
            "clusters": [{"name": "testbed", "cluster": {"server": self.api_server,
                                                         "certificate-authority-data": ca_data}}],
            "users": [{"name": "admin", "user": {"token": self.admin_token}}],
            "contexts": [{"name": "testbed", "context": {"cluster": "testbed", "user": "admin"}}],
        }
        pathlib.Path(path).write_text(json.dumps(config, indent=2))
        os.chmod(path, 0o600)

    def _kube_get(self, path):
        request = urllib.request.Request(self.api_server + path,
                                         headers={"Authorization": "Bearer " + self.admin_token})
        context = ssl.create_default_context(cafile=self.ca_file)
        try:
            with urllib.request.urlopen(request, context=context, timeout=5) as response:
                return json.load(response)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise
        except (urllib.error.URLError, OSError):
            return None

    def _wait_ready(self, name, timeout):
        context = ssl.create_default_context(cafile=self.ca_file)

        def ready():
            request = urllib.request.Request(self.api_server + "/readyz",
                                             headers={"Authorization": "Bearer " + self.admin_token})
            try:
                with urllib.request.urlopen(request, context=context, timeout=5) as response:
                    return response.read().strip() == b"ok"
            except (urllib.error.URLError, OSError):
                return False

        self._wait_for(name, ready, timeout, "/readyz")

    def _wait_http(self, name, url, timeout):
        def healthy():
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    return response.status == 200
            except (urllib.error.URLError, OSError):
                return False

        self._wait_for(name, healthy, timeout, url)

    def _wait_for(self, name, predicate, timeout, what):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_running(name)
            if predicate():
                return
            time.sleep(0.25)
        raise TestbedError("%s did not become ready within %s s (waited for %s). The end of its log (%s):\n%s" % (
            name, timeout, what, self.run_dir / (name + ".log"), log_tail(self.run_dir / (name + ".log"))))

    # -- Prefect ------------------------------------------------------------------------------
    def _start_prefect(self):
        if not pathlib.Path(self.prefect_bin).exists():
            done = subprocess.run(["bash", str(HERE / "install-venvs.sh")], capture_output=True, text=True)
            if done.returncode != 0:
                raise TestbedError("installing the Prefect venv failed:\n%s" % done.stderr[-3000:])
        started = time.monotonic()
        port = free_port()
        home = self.run_dir / "prefect-home"
        home.mkdir(exist_ok=True)
        env = {"PATH": "%s:/usr/bin:/bin" % (PREFECT_VENV / "bin"), "HOME": str(home), "PREFECT_HOME": str(home),
               "PREFECT_API_DATABASE_CONNECTION_URL": "sqlite+aiosqlite:///%s" % (self.run_dir / "prefect.db"),
               "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_UI_ENABLED": "false",
               "PREFECT_SERVER_API_HOST": "127.0.0.1", "PREFECT_SERVER_API_PORT": str(port),
               "PREFECT_LOGGING_LEVEL": "WARNING"}
        self._spawn("prefect-server", [self.prefect_bin, "server", "start", "--host", "127.0.0.1",
                                       "--port", str(port)], env=env)
        self.prefect_api_url = "http://127.0.0.1:%d/api" % port
        self._wait_prefect(180)
        self.startup_seconds["prefect-server"] = round(time.monotonic() - started, 1)

    def _wait_prefect(self, timeout):
        self._wait_http("prefect-server", self.prefect_api_url + "/health", timeout)

    # -- state shared with other processes ----------------------------------------------------
    def describe(self):
        return {"run_dir": str(self.run_dir), "kubeconfig": self.kubeconfig, "api_server": self.api_server,
                "ca_file": self.ca_file, "admin_token": self.admin_token, "prefect_api_url": self.prefect_api_url,
                "prefect_python": self.prefect_python, "prefect_bin": self.prefect_bin, "bin_dir": self.bin_dir,
                "audit_log": self.audit_log, "existing_cluster": self.existing_cluster,
                "components": list(self.components), "startup_seconds": self.startup_seconds,
                "pids": self.pids(), "commands": self.commands}

    def pids(self):
        found = {}
        for pidfile in self.run_dir.glob("*.pid"):
            found[pidfile.stem] = int(pidfile.read_text())
        return found

    def env(self):
        out = {}
        if self.kubeconfig:
            out["KUBECONFIG"] = self.kubeconfig
        if self.prefect_api_url:
            out["PREFECT_API_URL"] = self.prefect_api_url
        return out

    def _write_state(self):
        (self.run_dir / "testbed.json").write_text(json.dumps(self.describe(), indent=2))
        (self.run_dir / "env.sh").write_text("".join("export %s=%s\n" % item for item in self.env().items()))

    @classmethod
    def attach(cls, run_dir):
        """The running test bed described in ``run_dir``, or None when it is not (all) running."""
        state_file = pathlib.Path(run_dir) / "testbed.json"
        if not state_file.exists():
            return None
        state = json.loads(state_file.read_text())
        pids = dict((p.stem, int(p.read_text())) for p in pathlib.Path(run_dir).glob("*.pid"))
        if not pids or not all(alive(pid) for pid in pids.values()):
            return None
        bed = cls(run_dir, components=state["components"], keep=True)
        for key in ("kubeconfig", "api_server", "ca_file", "admin_token", "prefect_api_url", "prefect_python",
                    "prefect_bin", "bin_dir", "audit_log", "existing_cluster", "startup_seconds", "commands"):
            setattr(bed, key, state[key])
        bed.attached = True
        return bed


def stop_from_pidfiles(run_dir):
    run_dir = pathlib.Path(run_dir)
    stopped = []
    for pidfile in sorted(run_dir.glob("*.pid"), key=lambda p: p.stem != "etcd"):
        pid = int(pidfile.read_text())
        if alive(pid):
            kill_group(pid)
            stopped.append(pidfile.stem)
        pidfile.unlink()
    return stopped


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["up", "down", "status"])
    parser.add_argument("--dir", default=str(REPO / ".testbed"))
    parser.add_argument("--components", default="kube,prefect")
    parser.add_argument("--audit-log", action="store_true")
    args = parser.parse_args(argv)
    if args.action == "status":
        bed = Testbed.attach(args.dir)
        if bed is None:
            print("not running (%s)" % args.dir)
            return 1
        print(json.dumps(bed.describe(), indent=2))
        return 0
    if args.action == "down":
        stopped = stop_from_pidfiles(args.dir)
        print("stopped: %s" % (", ".join(stopped) or "nothing was running"))
        return 0
    if Testbed.attach(args.dir) is not None:
        print("%s/env.sh" % args.dir)
        return 0
    stop_from_pidfiles(args.dir) if pathlib.Path(args.dir).exists() else None
    bed = Testbed(args.dir, components=args.components.split(","), keep=True, audit_log=args.audit_log)
    try:
        bed.start(detach=True)
    except TestbedError as exc:
        print("test bed failed to start: %s" % exc, file=sys.stderr)
        return 1
    print("%s/env.sh" % bed.run_dir)
    print("started in %s" % ", ".join("%s %ss" % item for item in bed.startup_seconds.items()), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
