"""A throwaway Kubernetes cluster with one node, and a Prefect 3 server, on this machine only.

Components, each process in a process group of its own, all state in one run directory:
  kube     etcd, kube-apiserver (TLS with a fresh CA, token auth, RBAC, ServiceAccount token
           signing for the TokenRequest API) and kube-controller-manager, as controller-runtime's
           envtest does.
  prefect  `prefect server start` on SQLite, from the Prefect venv (tests/testbed/install-venvs.sh).
  node     a node pods really run on (tests/testbed/node.py): a bridge with a private /24 whose
           gateway address the apiserver, the Prefect server and two image registries listen on;
           containerd, kube-scheduler, the kubelet and kube-proxy. Without it (--components
           kube,prefect, or QHUB_PREFECT_TESTBED_NODE=0) everything listens on 127.0.0.1, and
           Deployments get ReplicaSets and Jobs get Pods, which stay Pending. Only one node runs
           per machine; its teardown leaves nothing behind (`testbed.py leftovers` checks).

Python:
    with Testbed() as bed:
        bed.kubeconfig, bed.api_server, bed.ca_file, bed.admin_token, bed.prefect_api_url, bed.env()

CLI (the processes outlive the command; `down` finds them through DIR/pids.json):
    testbed.py up [--dir DIR] [--components kube,prefect,node] [--audit-log]   writes DIR/env.sh, DIR/testbed.json
    testbed.py status [--dir DIR]                                              exit status 0 when all answer
    testbed.py down [--dir DIR] [--keep]                                       stops it, removes DIR unless --keep
    testbed.py leftovers [--dir DIR]                                           exit status 1 listing what a node left

QHUB_PREFECT_TESTBED_KUBECONFIG=existing uses the cluster in KUBECONFIG instead of starting one.
Needs only the standard library and the openssl command (the node: the Debian packages
tests/testbed/install-node.sh installs); Linux only (processes are tracked in /proc).
"""

import argparse
import atexit
import base64
import functools
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

try:
    from tests.testbed import node
except ImportError:  # run as a script: this directory is on sys.path
    import node

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CACHE = Path(os.environ.get("QHUB_PREFECT_CACHE") or Path.home() / ".cache" / "qhub-prefect")
DEFAULT_CLI_DIR = REPO / ".testbed"
TMP_PREFIX = "qhub-prefect-testbed-"

COMPONENTS = {
    "kube": ("etcd", "kube-apiserver", "kube-controller-manager"),
    "prefect": ("prefect-server",),
    "node": ("docker-registry", "docker-registry-private", "containerd", "kube-scheduler", "kubelet", "kube-proxy"),
}
KUBE_BINARIES = COMPONENTS["kube"]
NODE_BINARIES = ("kube-scheduler", "kubelet", "kube-proxy")
# Stopped first at teardown: nothing may make or restart pods while the containers are killed.
NODE_STOP_FIRST = ("kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy")
KUBE_READY_TIMEOUT = 60
NODE_READY_TIMEOUT = 120
PREFECT_READY_TIMEOUT = 120
STOP_GRACE_SECONDS = 10
# kube-apiserver closes its port at once on SIGTERM, then waits up to 60 s for open watches (the
# controller-manager's) to end; nothing here needs that drain, and fault-injection tests stop it often.
STOP_GRACE_OVERRIDES = {"kube-apiserver": 2}
LOG_TAIL_LINES = 30
KUBE_SOURCE_TREE = CACHE / "kubernetes" / "build" / "tree"


def default_components():
    """All three, or the control plane and Prefect alone with QHUB_PREFECT_TESTBED_NODE=0."""
    if os.environ.get("QHUB_PREFECT_TESTBED_NODE", "1").strip().lower() in ("0", "false", "no", "off"):
        return ("kube", "prefect")
    return tuple(COMPONENTS)


SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc"
SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24"
# The first address of the service range is the `kubernetes` Service, which in-cluster clients use.
KUBERNETES_SERVICE_IP = "10.0.0.1"
ADMIN_USER = "admin"
ADMIN_GROUP = "system:masters"

# Every extension strict verifiers (Go, Python 3.13's VERIFY_X509_STRICT) insist on is set here,
# and nothing comes from the system's openssl.cnf.
OPENSSL_CONFIG = """\
[req]
distinguished_name = subject
prompt = no

[subject]
CN = unused

[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign, digitalSignature
subjectKeyIdentifier = hash

[apiserver]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
subjectAltName = IP:127.0.0.1, DNS:localhost, DNS:kubernetes, DNS:kubernetes.default, \
DNS:kubernetes.default.svc, IP:{service_ip}{extra_sans}

[client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
"""

KUBECONFIG_TEMPLATE = """\
apiVersion: v1
kind: Config
clusters:
- name: testbed
  cluster:
    server: {server}
    certificate-authority-data: {ca_data}
users:
- name: {user}
  user:
    token: {token}
contexts:
- name: testbed
  context:
    cluster: testbed
    user: {user}
    namespace: default
current-context: testbed
preferences: {{}}
"""

# The metadata of every request, one JSON line each: enough to count API calls by verb and user agent.
AUDIT_POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
"""

# What a test bed creates in its run directory; `up` clears stale ones and leaves anything else alone.
RUN_DIR_ENTRIES = ("pki", "etcd-data", "logs", "prefect-home", "kubeconfig", "tokens.csv", "audit-policy.yaml",
                   "audit.log", "prefect.db", "prefect.db-wal", "prefect.db-shm", "pids.json", "testbed.json",
                   "env.sh", "containerd", "cni", "kubelet", "registry", "kubelet.kubeconfig", "kube-proxy.kubeconfig",
                   "kube-scheduler.kubeconfig", node.STATE_FILE)


class TestbedError(RuntimeError):
    """A part of the test bed failed; the message names the part and quotes the end of its log."""

    __test__ = False  # not a pytest test class, despite the name

    def __init__(self, message, log=None):
        if log is not None:
            message = f"{message}\n--- last {LOG_TAIL_LINES} lines of {log} ---\n{log_tail(log)}"
        super().__init__(message)


def log_tail(path, lines=LOG_TAIL_LINES):
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 64 * 1024))
            text = handle.read().decode("utf-8", "replace")
    except OSError as error:
        return f"(no log: {error})"
    return "\n".join(text.splitlines()[-lines:])


# --- processes (Linux /proc) -------------------------------------------------------------------------

def proc_stat(pid):
    """(state, process group, session, start time in clock ticks) of a process, or None once it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses; the fields after its last ')' do not.
    fields = raw[raw.rindex(")") + 2:].split()
    return fields[0], int(fields[2]), int(fields[3]), int(fields[19])


def live_group_members(pgid):
    """The processes of a process group that still run (zombies waiting for a parent's wait() do not)."""
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = proc_stat(int(entry))
            if stat and stat[1] == pgid and stat[0] not in "ZX":
                members.append(int(entry))
    return members


class Child:
    """One process of the test bed: how to start it (again), and the running instance.

    Each child leads a new session, so its process group holds it and all it spawns (the Prefect
    server runs uvicorn in a subprocess), and no signal for our terminal or our group reaches it.
    """

    def __init__(self, name, argv, log, env=None, cwd=None, pid=None, start_ticks=None):
        self.name = name
        self.argv = [str(arg) for arg in argv]
        self.log = Path(log)
        self.env = dict(env or {})
        self.cwd = cwd
        self.pid = pid
        self.start_ticks = start_ticks
        self.popen = None
        self.launched = None  # time.monotonic() of the last spawn

    def spawn(self):
        self.log.parent.mkdir(parents=True, exist_ok=True)
        # A developer's own Prefect profile settings must not leak into the test bed's server.
        environment = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_")}
        environment.update(self.env)
        if self.cwd:
            # Marks the process and what it starts (containerd's shims) as this test bed's: the teardown
            # and the leftover check find them by it.
            environment["QHUB_PREFECT_TESTBED_RUN_DIR"] = str(self.cwd)
        with open(self.log, "ab") as log:
            log.write(f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S')} {shlex.join(self.argv)}\n".encode())
            log.flush()
            self.popen = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                          env=environment, cwd=self.cwd, start_new_session=True)
        self.launched = time.monotonic()
        self.pid = self.popen.pid
        # Not reaped yet, so /proc has it even if it already died.
        stat = proc_stat(self.pid)
        self.start_ticks = stat[3] if stat else None

    def owns_group(self):
        """Whether process group `pid` is still the one this child started, pids being reused.

        Linux hands a pid out again only once no process group of that number is left: with the
        leader gone, any members left are ours; with it alive, its start time tells it from a newcomer.
        """
        if self.pid is None:
            return False
        stat = proc_stat(self.pid)
        return stat is None or stat[3] == self.start_ticks

    def exit_code(self):
        """None while the leader runs; then its exit code, or -1 if another process started it."""
        if self.popen is not None:
            return self.popen.poll()
        stat = proc_stat(self.pid) if self.pid else None
        return None if stat and stat[3] == self.start_ticks and stat[0] not in "ZX" else -1

    def running(self):
        return self.pid is not None and self.exit_code() is None

    def live_processes(self):
        if self.popen is not None:
            self.popen.poll()  # reaps a dead leader, which would otherwise linger as a zombie
        return live_group_members(self.pid) if self.owns_group() else []

    def record(self):
        return {"argv": self.argv, "log": str(self.log), "env": self.env, "cwd": self.cwd, "pid": self.pid,
                "start_ticks": self.start_ticks}

    @classmethod
    def from_record(cls, name, record):
        return cls(name, record["argv"], record["log"], record.get("env"), record.get("cwd"), record.get("pid"),
                   record.get("start_ticks"))


def stop_children(children):
    """SIGTERM to each child's process group (last started first); SIGKILL to what is left after its grace."""
    children = [child for child in children if child.pid is not None and child.owns_group()]
    for child in reversed(children):
        signal_group(child.pid, signal.SIGTERM)
    signalled = time.monotonic()
    killed = set()
    while True:
        left = {child.name: pids for child in children if (pids := child.live_processes())}
        if not left:
            break
        waited = time.monotonic() - signalled
        for child in children:
            if child.name in left and child.name not in killed and waited > stop_grace(child.name):
                signal_group(child.pid, signal.SIGKILL)
                killed.add(child.name)
        if waited > max(stop_grace(child.name) for child in children) + 5:
            raise TestbedError(f"processes still alive after SIGKILL: {left}")
        time.sleep(0.1)
    for child in children:
        if child.popen is not None:
            child.popen.wait()


def stop_testbed_processes(run_dir, children):
    """Stops a test bed's processes; with a node, its pods first and the machine-level state after.

    The controllers, the scheduler, the kubelet and kube-proxy stop first, so that nothing restarts a pod;
    then every container is killed through containerd (seconds, where deleting pods gracefully takes
    their grace periods); then the rest stops, and node.cleanup_machine removes what the kernel keeps.
    """
    state = read_json(Path(run_dir) / node.STATE_FILE) if run_dir else None
    if not state:
        stop_children(children)
        return
    log = Path(run_dir) / "logs" / "teardown.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    try:
        first = [child for child in children if child.name in NODE_STOP_FIRST]
        stop_children(first)
        node.kill_containers(state["containerd_socket"], log)
        stop_children([child for child in children if child not in first])
    finally:
        kube_proxy = Path(state["bin_dir"], "kube-proxy") if state.get("bin_dir") else None
        node.cleanup_machine(Path(run_dir), state.get("holder"), log, kube_proxy=kube_proxy)
        node.release(Path(run_dir))


def stop_grace(name):
    """Seconds between SIGTERM and SIGKILL for the process `name`."""
    return STOP_GRACE_OVERRIDES.get(name, STOP_GRACE_SECONDS)


def signal_group(pgid, signum):
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass


# --- small helpers ------------------------------------------------------------------------------------

# The test bed lives on loopback: a proxy from the environment must never see its requests.
_NO_PROXY = urllib.request.ProxyHandler({})


def http_request(url, method="GET", token=None, ca_file=None, body=None, timeout=5):
    """(status, body bytes) of one request. HTTP errors are answers too; failing to connect raises OSError."""
    headers = {"Accept": "application/json"}
    data = None
    if token:
        headers["Authorization"] = "Bearer " + token
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    handlers = [_NO_PROXY]
    if url.startswith("https:"):
        handlers.append(urllib.request.HTTPSHandler(context=ssl.create_default_context(cafile=ca_file)))
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.build_opener(*handlers).open(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def free_ports(count):
    """Ports nobody listens on now; held open together so that they differ from each other."""
    sockets = []
    try:
        for dummy in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def flag_value(argv, flag):
    """The value of `--flag=value` in a command line."""
    return next(arg.split("=", 1)[1] for arg in argv if arg.startswith(flag + "="))


def write_private(path, text):
    path = Path(path)
    path.write_text(text)
    path.chmod(0o600)
    return path


def read_json(path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def run_tool(argv, log):
    """Runs a setup command with its stderr appended to `log`; a failure raises with the log's end."""
    argv = [str(arg) for arg in argv]
    with open(log, "ab") as handle:
        handle.write(f"$ {shlex.join(argv)}\n".encode())
        handle.flush()
        done = subprocess.run(argv, check=False, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=handle,
                              text=True)
    if done.returncode != 0:
        raise TestbedError(f"{Path(argv[0]).name} {argv[1]} failed with exit code {done.returncode}", log)
    return done.stdout


def control_plane_bin_dir(log):
    """The directory with etcd, kube-apiserver and kube-controller-manager; built the first time (minutes)."""
    for candidate in (os.environ.get("KUBEBUILDER_ASSETS"), CACHE / "kubernetes" / "bin"):
        if candidate and all(os.access(Path(candidate, name), os.X_OK) for name in KUBE_BINARIES):
            return Path(candidate)
    return Path(run_tool(["bash", HERE / "install-control-plane.sh"], log).strip().splitlines()[-1])


def prefect_venv_python(log):
    """The Prefect venv's interpreter; the venv is made the first time."""
    venv = Path(os.environ.get("QHUB_PREFECT_SERVER_VENV") or CACHE / "prefect-venv")
    if os.access(venv / "bin" / "prefect", os.X_OK):
        return venv / "bin" / "python"
    # The script prints the tools venv's python, then the Prefect venv's.
    return Path(run_tool(["bash", HERE / "install-venvs.sh"], log).strip().splitlines()[-1])


# --- cleanup when the owner goes away -------------------------------------------------------------------

_owned_testbeds = []
_cleanup_lock = threading.Lock()
_cleanup_installed = False


def _stop_owned_testbeds():
    for bed in reversed(list(_owned_testbeds)):
        try:
            bed.stop()
        except (OSError, TestbedError) as error:  # report, and go on with the others
            print(f"testbed: stopping {bed.run_dir} failed: {error}", file=sys.stderr)


def _on_termination_signal(previous, signum, frame):
    _stop_owned_testbeds()
    if callable(previous):
        previous(signum, frame)
        return
    # Then die of the signal as without this handler (an exception could be caught, e.g. by pytest).
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _stop_at_exit(bed):
    """Stops `bed` when this process exits normally, on SIGTERM or on SIGHUP (SIGINT unwinds by itself)."""
    global _cleanup_installed
    with _cleanup_lock:
        _owned_testbeds.append(bed)
        if _cleanup_installed:
            return
        _cleanup_installed = True
        atexit.register(_stop_owned_testbeds)
        # Only the main thread may set handlers; a signal someone chose to ignore stays ignored.
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGHUP):
                previous = signal.getsignal(signum)
                if previous is not signal.SIG_IGN:
                    signal.signal(signum, functools.partial(_on_termination_signal, previous))


def _forget(bed):
    with _cleanup_lock:
        if bed in _owned_testbeds:
            _owned_testbeds.remove(bed)


def reap_orphans(tmp=None):
    """Stops the test beds in the temp dir whose owning process died without stopping them (SIGKILL)."""
    for run_dir in Path(tmp or tempfile.gettempdir()).glob(TMP_PREFIX + "*"):
        state = read_json(run_dir / "pids.json") or {}
        owner = state.get("owner")
        if not owner:
            continue
        stat = proc_stat(owner["pid"])
        if stat and stat[3] == owner["start_ticks"] and stat[0] not in "ZX":
            continue
        stop_testbed_processes(run_dir, [Child.from_record(name, record)
                                         for name, record in state.get("processes", {}).items()])
        shutil.rmtree(run_dir, ignore_errors=True)


def recorded_children(run_dir):
    """The processes pids.json in `run_dir` lists, running or not."""
    pids = read_json(Path(run_dir) / "pids.json") or {}
    return [Child.from_record(name, record) for name, record in pids.get("processes", {}).items()]


# --- the test bed ---------------------------------------------------------------------------------------

class Testbed:
    """A control plane and/or a Prefect server; as a context manager, stopped on exit.

    run_dir     where certificates, data, logs and pids go; a fresh temp dir by default.
    components  any of "kube", "prefect", "node" (a sequence, or a comma-separated string); by default
                all three, or "kube" and "prefect" with QHUB_PREFECT_TESTBED_NODE=0. "node" needs "kube".
    keep        leave the run dir (logs, data) behind on stop().
    use_existing_kubeconfig
                use the cluster in $KUBECONFIG and start no control plane; by default true when
                $QHUB_PREFECT_TESTBED_KUBECONFIG is "existing".
    audit_log   make the apiserver log every request's metadata to the file `audit_log` (JSON lines).
    detached    the processes outlive this Python process (the CLI's `up`): nothing stops them at exit.
    """

    __test__ = False  # not a pytest test class, despite the name

    def __init__(self, run_dir=None, components=None, keep=False, use_existing_kubeconfig=None,
                 audit_log=False, detached=False):
        if components is None:
            components = default_components()
        if isinstance(components, str):
            components = [part for part in components.split(",") if part]
        unknown = sorted(set(components) - set(COMPONENTS))
        if unknown or not components:
            raise ValueError(f"components must be some of {', '.join(COMPONENTS)}, not {list(components)}")
        if use_existing_kubeconfig is None:
            use_existing_kubeconfig = os.environ.get("QHUB_PREFECT_TESTBED_KUBECONFIG") == "existing"
        self.use_existing_kubeconfig = bool(use_existing_kubeconfig)
        if self.use_existing_kubeconfig:
            components = [name for name in components if name != "node"]  # that cluster has its own nodes
        if "node" in components and "kube" not in components:
            raise ValueError("the node component needs the kube component")
        self.components = tuple(name for name in COMPONENTS if name in components)
        self.keep = keep
        self.detached = detached
        self.run_dir = Path(run_dir).resolve() if run_dir else None
        self.want_audit_log = audit_log
        self.kubeconfig = self.api_server = self.ca_file = self.admin_token = self.bin_dir = None
        self.audit_log = None
        self.prefect_api_url = self.prefect_python = self.prefect_bin = None
        self.node = None  # with a node: its name, addresses, registries and images (see _start_node)
        self._node_state = None  # what the teardown needs, in DIR/node.json from the start on
        self._node_tokens = {}
        # Where the servers listen: the bridge's address with a node, so that pods reach them too.
        self.host = node.GATEWAY if "node" in self.components else "127.0.0.1"
        self.startup_seconds = {}
        self._children = {}
        self._owner = True  # False when attached to a test bed another process runs
        self._owner_record = None  # the process that stops this test bed when it exits; None when detached
        self._active = False
        self._run_dir_prepared = False  # stop() removes only a run dir that start() took over

    # -- life cycle

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()

    def start(self):
        if self._active:
            return self
        if not self.detached:
            reap_orphans()
        self._prepare_run_dir()
        self._active = True
        if not self.detached:
            self._owner_record = {"pid": os.getpid(), "start_ticks": proc_stat(os.getpid())[3]}
            _stop_at_exit(self)
        try:
            if "node" in self.components:
                self._claim_node()
            # The Prefect server takes longest: it is launched first and waited for last.
            if "prefect" in self.components:
                self._launch_prefect()
            if "kube" in self.components:
                if self.use_existing_kubeconfig:
                    self._use_existing_cluster()
                else:
                    self._start_control_plane()
            if "node" in self.components:
                self._start_node()
            if "prefect" in self.components:
                self._await_ready("prefect-server")
            self._write_state()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self):
        """Stops every process this test bed started and removes the run dir unless `keep`.

        A test bed found with attach() belongs to whoever started it, and keeps running.
        """
        if not self._owner:
            return
        try:
            if self._run_dir_prepared:
                stop_testbed_processes(self.run_dir, list(self._children.values()))
            else:
                stop_children(list(self._children.values()))
        finally:
            self._active = False
            _forget(self)
            if self._run_dir_prepared and not self.keep:
                shutil.rmtree(self.run_dir, ignore_errors=True)

    @classmethod
    def attach(cls, run_dir):
        """The running, healthy test bed another process started in `run_dir`, or None."""
        run_dir = Path(run_dir).resolve()
        state = read_json(run_dir / "testbed.json")
        pids = read_json(run_dir / "pids.json")
        if not state or not pids:
            return None
        bed = cls(run_dir=run_dir, components=state["components"], keep=True,
                  use_existing_kubeconfig=state.get("use_existing_kubeconfig", False), detached=True)
        for name in ("kubeconfig", "api_server", "ca_file", "admin_token", "bin_dir", "audit_log", "prefect_api_url",
                     "prefect_python", "prefect_bin", "node"):
            setattr(bed, name, state.get(name))
        bed.host = state.get("host", "127.0.0.1")
        bed.startup_seconds = state.get("startup_seconds", {})
        bed._children = {child.name: child for child in recorded_children(run_dir)}
        bed._owner = False
        bed._owner_record = pids.get("owner")
        bed._active = True
        return None if bed.problems() else bed

    def problems(self):
        """What does not run or answer; empty when the test bed is healthy."""
        found = [f"{name} is not running (log: {child.log})"
                 for name, child in self._children.items() if not child.running()]
        if found:
            return found
        for name in self._children:
            check, _timeout = self._readiness(name)
            try:
                if not check():
                    found.append(f"{name} is not ready")
            except (OSError, ValueError) as error:
                found.append(f"{name} does not answer: {error}")
        return found

    def processes(self):
        """{process name: pid} of what runs now; each pid is also the id of the process's group."""
        return {name: child.pid for name, child in self._children.items() if child.running()}

    def stop_component(self, name):
        """Stops one process (e.g. "kube-apiserver"), keeping its data, for fault injection."""
        stop_children([self._child(name)])
        self._write_pids()

    def start_component(self, name):
        """Starts a stopped process again with the same flags, port and data; returns once it answers."""
        child = self._child(name)
        if child.running():
            return
        child.spawn()
        self._write_pids()
        self._await_ready(name)

    def env(self):
        """The environment variables that point clients at this test bed."""
        variables = {"KUBECONFIG": self.kubeconfig, "PREFECT_API_URL": self.prefect_api_url}
        if self.node:
            variables.update({
                "QHUB_PREFECT_TESTBED_REGISTRY": self.node["registry"],
                "QHUB_PREFECT_TESTBED_PRIVATE_REGISTRY": self.node["private_registry"],
                "QHUB_PREFECT_TESTBED_REGISTRY_USERNAME": self.node["registry_username"],
                "QHUB_PREFECT_TESTBED_REGISTRY_PASSWORD": self.node["registry_password"],
            })
        return {key: value for key, value in variables.items() if value}

    def describe(self):
        return {"run_dir": str(self.run_dir), "components": list(self.components),
                "use_existing_kubeconfig": self.use_existing_kubeconfig, "kubeconfig": self.kubeconfig,
                "api_server": self.api_server, "ca_file": self.ca_file, "admin_token": self.admin_token,
                "bin_dir": self.bin_dir, "audit_log": self.audit_log, "prefect_api_url": self.prefect_api_url,
                "prefect_python": self.prefect_python, "prefect_bin": self.prefect_bin, "host": self.host,
                "node": self.node, "startup_seconds": self.startup_seconds, "env": self.env(),
                "pids": self.processes()}

    # -- run directory and state files

    def _prepare_run_dir(self):
        if self.run_dir is None:
            self.run_dir = Path(tempfile.mkdtemp(prefix=TMP_PREFIX))
        else:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            if any(child.running() for child in recorded_children(self.run_dir)):
                raise TestbedError(f"a test bed already runs in {self.run_dir}; "
                                   f"stop it first: testbed.py down --dir {self.run_dir}")
            for entry in RUN_DIR_ENTRIES:
                path = self.run_dir / entry
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                elif path.exists() or path.is_symlink():
                    path.unlink()
        self._run_dir_prepared = True
        # Private keys and the admin token live here.
        self.run_dir.chmod(0o700)
        (self.run_dir / "logs").mkdir()

    def _write_pids(self):
        """Rewritten at every start of a process, so that `down` finds even a half-started test bed."""
        state = {"owner": self._owner_record,
                 "processes": {name: child.record() for name, child in self._children.items()}}
        self._write_atomically("pids.json", json.dumps(state, indent=2))

    def _write_state(self):
        self._write_atomically("testbed.json", json.dumps(self.describe(), indent=2))
        stop_command = f"{sys.executable} {Path(__file__).resolve()} down --dir {self.run_dir}"
        lines = [f"# The test bed in {self.run_dir}; stop it with: {stop_command}"]
        lines += [f"export {key}={shlex.quote(value)}" for key, value in self.env().items()]
        self._write_atomically("env.sh", "\n".join(lines) + "\n")

    def _write_atomically(self, name, text):
        temporary = self.run_dir / (name + ".tmp")
        write_private(temporary, text)
        temporary.replace(self.run_dir / name)

    # -- processes

    def _child(self, name):
        if name not in self._children:
            raise ValueError(f"no process {name!r} in this test bed; there are: {', '.join(self._children)}")
        return self._children[name]

    def _launch(self, name, argv, env=None, wait=True):
        child = Child(name, argv, self.run_dir / "logs" / f"{name}.log", env=env, cwd=str(self.run_dir))
        self._children[name] = child
        child.spawn()
        self._write_pids()
        if wait:
            self._await_ready(name)
        return child

    def _await_ready(self, name):
        child = self._child(name)
        check, timeout = self._readiness(name)
        deadline = time.monotonic() + timeout
        last_problem = "no answer yet"
        while True:
            code = child.exit_code()
            if code is not None:
                raise TestbedError(f"{name} exited with code {code} while starting", child.log)
            try:
                if check():
                    break
                last_problem = "not ready yet"
            except (OSError, ValueError) as error:
                last_problem = str(error)
            if time.monotonic() > deadline:
                raise TestbedError(f"{name} did not become ready within {timeout} s ({last_problem})", child.log)
            time.sleep(0.2)
        self.startup_seconds[name] = round(time.monotonic() - child.launched, 1) if child.launched else None

    def _readiness(self, name):
        """(a check that is true once `name` serves, how long to wait for it in seconds)."""
        if name == "etcd":
            client_url = flag_value(self._child("etcd").argv, "--advertise-client-urls")
            return (lambda: json.loads(http_request(client_url + "/health")[1]).get("health") == "true",
                    KUBE_READY_TIMEOUT)
        if name == "kube-apiserver":
            return lambda: self._kube_get("/readyz") == (200, b"ok"), KUBE_READY_TIMEOUT
        if name == "kube-controller-manager":
            # The ServiceAccount controller making `default` shows that the controllers run.
            return (lambda: self._kube_get("/api/v1/namespaces/default/serviceaccounts/default")[0] == 200,
                    KUBE_READY_TIMEOUT)
        if name == "prefect-server":
            return lambda: http_request(self.prefect_api_url + "/health")[0] == 200, PREFECT_READY_TIMEOUT
        if name in ("docker-registry", "docker-registry-private"):
            address = self.node["registry" if name == "docker-registry" else "private_registry"]
            # The private one answers 401 without credentials: it serves, and asks for them.
            return lambda: http_request(f"http://{address}/v2/")[0] in (200, 401), KUBE_READY_TIMEOUT
        if name == "containerd":
            return lambda: node.ctr(self.node["containerd_socket"], "version", check=False).returncode == 0, \
                KUBE_READY_TIMEOUT
        if name in ("kube-scheduler", "kube-proxy"):
            url = self.node["healthz"][name]
            return lambda: http_request(url)[0] == 200, KUBE_READY_TIMEOUT
        if name == "kubelet":
            return self._node_ready, NODE_READY_TIMEOUT
        raise ValueError(f"no readiness check for {name!r}")

    def _kube_get(self, path):
        return http_request(self.api_server + path, token=self.admin_token, ca_file=self.ca_file)

    def _node_ready(self):
        status, body = self._kube_get(f"/api/v1/nodes/{self.node['name']}")
        if status != 200:
            return False
        conditions = json.loads(body).get("status", {}).get("conditions", [])
        return any(item["type"] == "Ready" and item["status"] == "True" for item in conditions)

    # -- Kubernetes

    def _start_control_plane(self):
        self.bin_dir = str(control_plane_bin_dir(self.run_dir / "logs" / "install.log"))
        bin_dir = Path(self.bin_dir)
        pki = self._make_pki()
        self.ca_file = str(pki / "ca.crt")
        self.admin_token = secrets.token_hex(32)
        users = [(self.admin_token, ADMIN_USER, ADMIN_GROUP)]
        if "node" in self.components:
            # The node's parts each get their own identity, with the permissions Kubernetes gives that
            # identity by default: the kubelet is authorized by the Node authorizer (its own Node, and the
            # pods, secrets and configmaps of the pods bound to it), kube-proxy and the scheduler by RBAC's
            # bootstrap bindings. So a pod test here meets the permissions of a real cluster's node.
            for user, group in ((f"system:node:{node.NODE_NAME}", "system:nodes"),
                                ("system:kube-proxy", ""), ("system:kube-scheduler", "")):
                users.append((secrets.token_hex(32), user, group))
            self._node_tokens = {user: token for token, user, _group in users}
        tokens = write_private(self.run_dir / "tokens.csv",
                               "".join(f'{token},{user},{user},"{group}"\n' for token, user, group in users))
        etcd_client_port, etcd_peer_port = free_ports(2)
        (apiserver_port,) = [node.PORTS["kube-apiserver"]] if "node" in self.components else free_ports(1)
        self.api_server = f"https://{self.host}:{apiserver_port}"
        self.kubeconfig = str(self._write_kubeconfig())

        etcd_client = f"http://127.0.0.1:{etcd_client_port}"
        etcd_peer = f"http://127.0.0.1:{etcd_peer_port}"
        self._launch("etcd", [
            bin_dir / "etcd", "--name=testbed", f"--data-dir={self.run_dir / 'etcd-data'}",
            f"--listen-client-urls={etcd_client}", f"--advertise-client-urls={etcd_client}",
            f"--listen-peer-urls={etcd_peer}", f"--initial-advertise-peer-urls={etcd_peer}",
            f"--initial-cluster=testbed={etcd_peer}", "--initial-cluster-state=new",
            "--logger=zap", "--log-outputs=stderr"])

        apiserver = [
            bin_dir / "kube-apiserver", f"--etcd-servers={etcd_client}",
            f"--bind-address={self.host}", f"--advertise-address={self.host}", f"--secure-port={apiserver_port}",
            "--insecure-port=0", f"--cert-dir={pki}",
            f"--tls-cert-file={pki / 'apiserver.crt'}", f"--tls-private-key-file={pki / 'apiserver.key'}",
            # A request without credentials is refused (401) rather than served as system:anonymous.
            "--anonymous-auth=false", f"--token-auth-file={tokens}",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}", f"--api-audiences={SERVICE_ACCOUNT_ISSUER}",
            f"--service-account-key-file={pki / 'service-account.pub'}",
            f"--service-account-signing-key-file={pki / 'service-account.key'}",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}", "--allow-privileged=true"]
        if "node" in self.components:
            apiserver += [
                "--authorization-mode=Node,RBAC", "--enable-admission-plugins=NodeRestriction",
                # For logs and exec the apiserver calls the kubelet at the node's address (the name does not
                # resolve), with a client certificate the kubelet checks against the test bed's CA.
                "--kubelet-preferred-address-types=InternalIP",
                f"--kubelet-client-certificate={pki / 'kubelet-client.crt'}",
                f"--kubelet-client-key={pki / 'kubelet-client.key'}"]
        else:
            apiserver.append("--authorization-mode=RBAC")
        if self.want_audit_log:
            self.audit_log = str(self.run_dir / "audit.log")
            policy = write_private(self.run_dir / "audit-policy.yaml", AUDIT_POLICY)
            apiserver += [f"--audit-policy-file={policy}", f"--audit-log-path={self.audit_log}",
                          "--audit-log-format=json", "--audit-log-mode=blocking"]
        self._launch("kube-apiserver", apiserver)

        self._launch("kube-controller-manager", [
            bin_dir / "kube-controller-manager", f"--kubeconfig={self.kubeconfig}",
            "--controllers=*", "--use-service-account-credentials=false", "--leader-elect=false",
            f"--service-account-private-key-file={pki / 'service-account.key'}", f"--root-ca-file={pki / 'ca.crt'}",
            f"--cluster-signing-cert-file={pki / 'ca.crt'}", f"--cluster-signing-key-file={pki / 'ca.key'}",
            # No health or metrics endpoints: nothing would scrape them, and they would take ports.
            "--port=0", "--secure-port=0", "--bind-address=127.0.0.1"])

    def _make_pki(self):
        """A CA, the apiserver's serving certificate (127.0.0.1, localhost) and the ServiceAccount key pair."""
        openssl = shutil.which("openssl")
        if openssl is None:
            raise TestbedError("the openssl command is missing (apt-get install openssl)")
        pki = self.run_dir / "pki"
        pki.mkdir(mode=0o700)
        log = self.run_dir / "logs" / "openssl.log"
        config = pki / "openssl.cnf"
        extra_sans = f", IP:{self.host}" if self.host != "127.0.0.1" else ""
        config.write_text(OPENSSL_CONFIG.format(service_ip=KUBERNETES_SERVICE_IP, extra_sans=extra_sans))
        run_tool([openssl, "req", "-x509", "-new", "-newkey", "rsa:2048", "-nodes", "-days", "30",
                  "-subj", "/CN=qhub-prefect test bed CA", "-config", config, "-extensions", "ca",
                  "-keyout", pki / "ca.key", "-out", pki / "ca.crt"], log)
        run_tool([openssl, "req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=kube-apiserver",
                  "-config", config, "-keyout", pki / "apiserver.key", "-out", pki / "apiserver.csr"], log)
        run_tool([openssl, "x509", "-req", "-in", pki / "apiserver.csr", "-CA", pki / "ca.crt",
                  "-CAkey", pki / "ca.key", "-set_serial", "0x" + secrets.token_hex(8), "-days", "30",
                  "-extfile", config, "-extensions", "apiserver", "-out", pki / "apiserver.crt"], log)
        if "node" in self.components:
            run_tool([openssl, "req", "-new", "-newkey", "rsa:2048", "-nodes",
                      "-subj", "/O=system:masters/CN=kube-apiserver-kubelet-client", "-config", config,
                      "-keyout", pki / "kubelet-client.key", "-out", pki / "kubelet-client.csr"], log)
            run_tool([openssl, "x509", "-req", "-in", pki / "kubelet-client.csr", "-CA", pki / "ca.crt",
                      "-CAkey", pki / "ca.key", "-set_serial", "0x" + secrets.token_hex(8), "-days", "30",
                      "-extfile", config, "-extensions", "client", "-out", pki / "kubelet-client.crt"], log)
        run_tool([openssl, "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                  "-out", pki / "service-account.key"], log)
        run_tool([openssl, "pkey", "-in", pki / "service-account.key", "-pubout",
                  "-out", pki / "service-account.pub"], log)
        for key in pki.glob("*.key"):
            key.chmod(0o600)
        return pki

    def _write_kubeconfig(self, name="kubeconfig", user=ADMIN_USER, token=None):
        ca_data = base64.b64encode(Path(self.ca_file).read_bytes()).decode()
        # JSON strings are valid YAML scalars; quoting keeps a token such as 1e10 a string.
        text = KUBECONFIG_TEMPLATE.format(server=json.dumps(self.api_server), ca_data=json.dumps(ca_data),
                                          user=json.dumps(user), token=json.dumps(token or self.admin_token))
        return write_private(self.run_dir / name, text)

    def _use_existing_cluster(self):
        """Points at the cluster in $KUBECONFIG; reads its server, CA and token if the kubernetes client is there."""
        kubeconfig = os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or str(Path.home() / ".kube" / "config")
        if not Path(kubeconfig).is_file():
            raise TestbedError(f"QHUB_PREFECT_TESTBED_KUBECONFIG=existing, but there is no kubeconfig at {kubeconfig}")
        self.kubeconfig = str(Path(kubeconfig).resolve())
        try:
            from kubernetes import client, config
        except ImportError:
            return
        configuration = client.Configuration()
        config.load_kube_config(config_file=self.kubeconfig, client_configuration=configuration)
        self.api_server = configuration.host
        self.ca_file = configuration.ssl_ca_cert
        # The client keeps the token as "Bearer <token>", under a key that differs between its versions.
        token = configuration.api_key.get("BearerToken") or configuration.api_key.get("authorization") or ""
        self.admin_token = token.removeprefix("Bearer ") or None

    # -- the node

    def _claim_node(self):
        """Takes the machine's node lock and makes the bridge, before any server binds to its address."""
        def running(run_dir):
            return any(child.running() for child in recorded_children(run_dir))

        try:
            holder = node.acquire(self.run_dir, running)
        except node.NodeError as error:
            raise TestbedError(str(error)) from None
        self._node_state = {"holder": holder, "bin_dir": None,
                            "containerd_socket": str(node.containerd_paths(self.run_dir)["socket"])}
        self._write_atomically(node.STATE_FILE, json.dumps(self._node_state, indent=2))
        try:
            node.create_bridge(self.run_dir / "logs" / "node-setup.log")
            node.check_ports()
        except node.NodeError as error:
            raise TestbedError(f"the node's network: {error}") from None

    def _start_node(self):
        """Registries, containerd, kube-scheduler, kubelet and kube-proxy; returns once the node is Ready."""
        log = self.run_dir / "logs" / "node-setup.log"
        bin_dir = Path(self.bin_dir)
        if not all(os.access(bin_dir / name, os.X_OK) for name in NODE_BINARIES):
            bin_dir = Path(run_tool(["bash", HERE / "install-control-plane.sh"], log).strip().splitlines()[-1])
        tools = ("containerd", "ctr", "runc", "docker-registry", "skopeo", "htpasswd", "gcc", "iptables", "conntrack")
        if any(shutil.which(tool) is None for tool in tools) or not Path(node.CNI_BIN_DIR, "bridge").exists():
            run_tool(["bash", HERE / "install-node.sh"], log)
        self._node_state["bin_dir"] = str(bin_dir)
        self._write_atomically(node.STATE_FILE, json.dumps(self._node_state, indent=2))
        try:
            self._start_node_parts(bin_dir, log)
        except node.NodeError as error:
            raise TestbedError(f"the node failed to start: {error}", log) from None

    def _start_node_parts(self, bin_dir, log):
        paths = node.containerd_paths(self.run_dir)
        public_port, private_port, kubelet_port = (node.PORTS[name] for name in (
            "docker-registry", "docker-registry-private", "kubelet"))
        kubelet_healthz, proxy_healthz, proxy_metrics, scheduler_port = free_ports(4)
        public, private = f"{node.GATEWAY}:{public_port}", f"{node.GATEWAY}:{private_port}"
        self.node = {
            "name": node.NODE_NAME, "bridge": node.BRIDGE, "address": node.GATEWAY, "subnet": node.SUBNET,
            "registry": public, "private_registry": private,
            "registry_username": node.REGISTRY_USERNAME, "registry_password": secrets.token_hex(16),
            "containerd_socket": str(paths["socket"]), "kubelet_root": str(self.run_dir / "kubelet"),
            "pause_image": node.PAUSE_IMAGE,
            "probe_image": f"docker.io/{node.PROBE_REPOSITORY}:{node.PROBE_TAG}",
            "private_probe_image": f"{private}/{node.PROBE_REPOSITORY}:{node.PROBE_TAG}",
            "images": [],
            "healthz": {"kube-scheduler": f"http://127.0.0.1:{scheduler_port}/healthz",
                        "kube-proxy": f"http://127.0.0.1:{proxy_healthz}/healthz"},
        }

        # Two registries, storage cached across test beds so that a warm start pushes nothing.
        registry_dir = self.run_dir / "registry"
        registry_dir.mkdir(mode=0o700)
        htpasswd = registry_dir / "htpasswd"
        node.make_htpasswd(htpasswd, node.REGISTRY_USERNAME, self.node["registry_password"], log)
        storage = CACHE / "registry"
        for name, address, kind, auth in (("docker-registry", public, "public", None),
                                          ("docker-registry-private", private, "private", htpasswd)):
            (storage / kind).mkdir(parents=True, exist_ok=True)
            config = node.registry_config(registry_dir / f"{kind}.yml", storage / kind, address, auth)
            self._launch(name, [shutil.which("docker-registry"), "serve", config], wait=False)

        # The images: the node's own (pause, probe) and the Prefect ones (tests/testbed/images.py).
        pause_tar, probe_tar = node.build_node_images(CACHE / "images" / "node", KUBE_SOURCE_TREE, log)
        started = time.monotonic()
        built = load_images_module().build_images(CACHE / "images", self.run_dir / "logs" / "images.log")
        self.startup_seconds["images built"] = round(time.monotonic() - started, 1)
        # Every registry host a public image names is served by the public registry; the private one by itself.
        mirrors = {"docker.io": f"http://{public}", private: f"http://{private}"}
        for image in built:
            if not image.get("private"):
                mirrors.setdefault(node.split_reference(image["reference"])[0], f"http://{public}")

        conf_dir = node.cni_config(self.run_dir, SERVICE_CLUSTER_IP_RANGE)
        node.containerd_config(self.run_dir, conf_dir, mirrors)
        self._launch("containerd", [shutil.which("containerd"), "--config", paths["config"], "--log-level", "warn"],
                     wait=False)
        self._await_ready("containerd")
        node.import_image(paths["socket"], pause_tar, log)

        tokens = self._node_tokens
        kubelet_kubeconfig = self._write_kubeconfig("kubelet.kubeconfig", f"system:node:{node.NODE_NAME}",
                                                    tokens[f"system:node:{node.NODE_NAME}"])
        proxy_kubeconfig = self._write_kubeconfig("kube-proxy.kubeconfig", "system:kube-proxy",
                                                  tokens["system:kube-proxy"])
        scheduler_kubeconfig = self._write_kubeconfig("kube-scheduler.kubeconfig", "system:kube-scheduler",
                                                      tokens["system:kube-scheduler"])
        self._launch("kube-scheduler", [
            bin_dir / "kube-scheduler", f"--kubeconfig={scheduler_kubeconfig}", "--leader-elect=false",
            # Health on plain HTTP on loopback only; no HTTPS serving, so no delegated authentication setup.
            "--address=127.0.0.1", f"--port={scheduler_port}", "--secure-port=0", "--v=1"], wait=False)
        kubelet_root = self.run_dir / "kubelet"
        kubelet_root.mkdir()
        self._launch("kubelet", [
            bin_dir / "kubelet", f"--kubeconfig={kubelet_kubeconfig}", f"--root-dir={kubelet_root}",
            "--container-runtime=remote", f"--container-runtime-endpoint=unix://{paths['socket']}",
            "--runtime-request-timeout=10m", "--cgroup-driver=cgroupfs", "--fail-swap-on=false",
            f"--hostname-override={node.NODE_NAME}", f"--node-ip={node.GATEWAY}",
            # The API (logs, exec) on the bridge address, for the apiserver's client certificate only.
            f"--address={node.GATEWAY}", f"--port={kubelet_port}", "--read-only-port=0",
            f"--client-ca-file={self.ca_file}", "--anonymous-auth=false", "--authorization-mode=AlwaysAllow",
            "--healthz-bind-address=127.0.0.1", f"--healthz-port={kubelet_healthz}",
            # No DNS server runs here: the bridge address refuses port 53 at once, where a resolver
            # copied from the host would time out. Pods use addresses.
            f"--cluster-dns={node.GATEWAY}", "--cluster-domain=cluster.local", "--resolv-conf=",
            f"--volume-plugin-dir={kubelet_root / 'volume-plugins'}",
            # A shared machine's disk is not this node's to guard: evict only when it is really full, and
            # never collect images (a test may pull one and use it minutes later).
            "--eviction-hard=memory.available<100Mi,nodefs.available<1%,nodefs.inodesFree<1%,imagefs.available<1%",
            "--image-gc-high-threshold=100", "--image-gc-low-threshold=99", "--serialize-image-pulls=false",
            "--v=1"], wait=False)
        self._launch("kube-proxy", [
            bin_dir / "kube-proxy", f"--kubeconfig={proxy_kubeconfig}", "--proxy-mode=iptables",
            f"--hostname-override={node.NODE_NAME}", f"--bind-address={node.GATEWAY}",
            f"--healthz-bind-address=127.0.0.1:{proxy_healthz}", f"--metrics-bind-address=127.0.0.1:{proxy_metrics}",
            # Leave the machine's conntrack settings alone; NodePorts only on the bridge address.
            "--conntrack-max-per-core=0", "--conntrack-tcp-timeout-established=0",
            "--conntrack-tcp-timeout-close-wait=0", f"--nodeport-addresses={node.GATEWAY}/32", "--v=1"], wait=False)

        self._await_ready("docker-registry")
        self._await_ready("docker-registry-private")
        started = time.monotonic()
        credentials = (node.REGISTRY_USERNAME, self.node["registry_password"])
        auth_file = node.write_auth_file(registry_dir / "auth.json", private, credentials)
        _registry, probe_repository, probe_tag = node.split_reference(self.node["probe_image"])
        node.push(probe_tar, public, probe_repository, probe_tag, storage / "public" / "pushed.json", log)
        node.push(probe_tar, private, probe_repository, probe_tag, storage / "private" / "pushed.json", log,
                  auth=credentials, auth_file=auth_file)
        for image in built:
            _registry, repository, tag = node.split_reference(image["reference"])
            kind = "private" if image.get("private") else "public"
            address = private if image.get("private") else public
            node.push(image["archive"], address, repository, tag, storage / kind / "pushed.json", log,
                      auth=credentials if image.get("private") else None, auth_file=auth_file)
            pull = f"{private}/{repository}:{tag}" if image.get("private") else image["reference"]
            self.node["images"].append({"reference": image["reference"], "pull": pull,
                                        "private": bool(image.get("private"))})
        self.startup_seconds["images pushed"] = round(time.monotonic() - started, 1)
        for name in ("kube-scheduler", "kube-proxy", "kubelet"):
            self._await_ready(name)

    # -- Prefect

    def _launch_prefect(self):
        python = prefect_venv_python(self.run_dir / "logs" / "install.log")
        self.prefect_python = str(python)
        self.prefect_bin = str(python.parent / "prefect")
        (port,) = [node.PORTS["prefect-server"]] if "node" in self.components else free_ports(1)
        self.prefect_api_url = f"http://{self.host}:{port}/api"
        home = self.run_dir / "prefect-home"
        home.mkdir()
        env = {
            "PREFECT_HOME": str(home),
            "PREFECT_SERVER_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{self.run_dir / 'prefect.db'}",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_UI_ENABLED": "false",
            "PREFECT_SERVER_API_HOST": self.host,
            "PREFECT_SERVER_API_PORT": str(port),
            "PREFECT_API_URL": self.prefect_api_url,
        }
        self._launch("prefect-server", [self.prefect_bin, "server", "start", "--host", self.host,
                                        "--port", str(port)], env=env, wait=False)


def load_images_module():
    """tests/testbed/images.py, which builds the Prefect images (a module of its own)."""
    try:
        from tests.testbed import images
    except ImportError:  # run as a script: this directory is on sys.path
        import images
    return images


# --- CLI -------------------------------------------------------------------------------------------------

def cli_up(args):
    run_dir = Path(args.dir).resolve()
    if Testbed.attach(run_dir) is not None:
        print(f"testbed: already running in {run_dir}", file=sys.stderr)
        print(run_dir / "env.sh")
        return 0
    bed = Testbed(run_dir=run_dir, components=args.components, keep=True, audit_log=args.audit_log, detached=True,
                  use_existing_kubeconfig=True if args.use_existing_kubeconfig else None)
    started = time.monotonic()
    try:
        bed.start()
    except TestbedError as error:
        print(f"testbed: {error}", file=sys.stderr)
        return 1
    for name, seconds in bed.startup_seconds.items():
        what = name if name.startswith("images") else f"{name} ready"
        print(f"testbed: {what} after {seconds} s", file=sys.stderr)
    stop_command = f"{sys.executable} {Path(__file__).resolve()} down --dir {run_dir}"
    print(f"testbed: up in {time.monotonic() - started:.1f} s; stop it with: {stop_command}", file=sys.stderr)
    print(run_dir / "env.sh")
    return 0


def cli_status(args):
    run_dir = Path(args.dir).resolve()
    children = recorded_children(run_dir)
    if read_json(run_dir / "testbed.json") is None:
        half = " (but with processes of a half-started one: run down)" if any(c.running() for c in children) else ""
        print(f"no test bed in {run_dir}{half}")
        return 1
    for child in children:
        print(f"{child.name:<24} {'running' if child.running() else 'stopped':<8} pid {child.pid}")
    bed = Testbed.attach(run_dir)
    if bed is None:
        print(f"not healthy; the logs are in {run_dir / 'logs'}")
        return 1
    for key in ("api_server", "prefect_api_url", "kubeconfig"):
        if getattr(bed, key):
            print(f"{key:<24} {getattr(bed, key)}")
    return 0


def cli_down(args):
    run_dir = Path(args.dir).resolve()
    if not (run_dir / "pids.json").exists():
        if (run_dir / "testbed.json").exists():
            # Without the pid list its processes cannot be found: removing the directory would orphan them.
            print(f"testbed: {run_dir} has a testbed.json but no pids.json; left alone", file=sys.stderr)
            return 1
        print(f"testbed: no test bed in {run_dir}", file=sys.stderr)
        return 0
    stop_testbed_processes(run_dir, recorded_children(run_dir))
    if args.keep:
        (run_dir / "testbed.json").unlink(missing_ok=True)
        print(f"testbed: stopped; logs and data stay in {run_dir}", file=sys.stderr)
    else:
        shutil.rmtree(run_dir, ignore_errors=True)
        print(f"testbed: stopped and removed {run_dir}", file=sys.stderr)
    return 0


def cli_leftovers(args):
    run_dir = Path(args.dir).resolve() if args.dir else None
    found = node.leftovers(run_dir)
    for line in found:
        print(line)
    if found:
        print(f"testbed: {len(found)} leftovers of a node test bed (stop it with testbed.py down --dir DIR)",
              file=sys.stderr)
        return 1
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, function, text in (("up", cli_up, "start a test bed that keeps running after this command"),
                                 ("status", cli_status, "exit status 0 when the test bed runs and answers"),
                                 ("down", cli_down, "stop the test bed and remove its directory"),
                                 ("leftovers", cli_leftovers,
                                  "exit status 1, listing them, when a node test bed left processes, mounts, iptables "
                                  "chains, the bridge, network namespaces, cgroups or pod logs behind")):
        command = commands.add_parser(name, help=text, description=text)
        command.set_defaults(function=function)
        if name == "leftovers":
            command.add_argument("--dir", help="also the processes and mounts of the test bed in this directory")
        else:
            command.add_argument("--dir", default=str(DEFAULT_CLI_DIR),
                                 help="the run directory (default: %(default)s)")
        if name == "up":
            command.add_argument("--components", default=None,
                                 help=f"comma-separated, of: {', '.join(COMPONENTS)} (default: all; kube,prefect "
                                      f"with QHUB_PREFECT_TESTBED_NODE=0)")
            command.add_argument("--audit-log", action="store_true",
                                 help="make the apiserver log every request to DIR/audit.log")
            command.add_argument("--use-existing-kubeconfig", action="store_true",
                                 help="use the cluster in KUBECONFIG instead of starting one")
        if name == "down":
            command.add_argument("--keep", action="store_true", help="keep the directory (logs, data)")
    args = parser.parse_args(argv)
    return args.function(args)


if __name__ == "__main__":
    sys.exit(main())
