"""A throwaway Kubernetes control plane and Prefect 3 server on loopback and free ports.

Components, each process in a process group of its own, all state in one run directory:
  kube     etcd, kube-apiserver (TLS with a fresh CA, token auth, RBAC, ServiceAccount token
           signing for the TokenRequest API) and kube-controller-manager, as controller-runtime's
           envtest does. There is no kubelet and no scheduler: Deployments get ReplicaSets and Jobs
           get Pods, which stay Pending.
  prefect  `prefect server start` on SQLite, from the Prefect venv (tests/testbed/install-venvs.sh).

Python:
    with Testbed() as bed:
        bed.kubeconfig, bed.api_server, bed.ca_file, bed.admin_token, bed.prefect_api_url, bed.env()

CLI (the processes outlive the command; `down` finds them through DIR/pids.json):
    testbed.py up [--dir DIR] [--components kube,prefect] [--audit-log]   writes DIR/env.sh, DIR/testbed.json
    testbed.py status [--dir DIR]                                         exit status 0 when all answer
    testbed.py down [--dir DIR] [--keep]                                  stops it, removes DIR unless --keep

QHUB_PREFECT_TESTBED_KUBECONFIG=existing uses the cluster in KUBECONFIG instead of starting one.
Needs only the standard library and the openssl command; Linux only (processes are tracked in /proc).
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

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CACHE = Path(os.environ.get("QHUB_PREFECT_CACHE") or Path.home() / ".cache" / "qhub-prefect")
DEFAULT_CLI_DIR = REPO / ".testbed"
TMP_PREFIX = "qhub-prefect-testbed-"

COMPONENTS = {
    "kube": ("etcd", "kube-apiserver", "kube-controller-manager"),
    "prefect": ("prefect-server",),
}
KUBE_BINARIES = COMPONENTS["kube"]
KUBE_READY_TIMEOUT = 60
PREFECT_READY_TIMEOUT = 120
STOP_GRACE_SECONDS = 10
# kube-apiserver closes its port at once on SIGTERM, then waits up to 60 s for open watches (the
# controller-manager's) to end; nothing here needs that drain, and fault-injection tests stop it often.
STOP_GRACE_OVERRIDES = {"kube-apiserver": 2}
LOG_TAIL_LINES = 30

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
DNS:kubernetes.default.svc, IP:{service_ip}
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
                   "env.sh")


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
        stop_children([Child.from_record(name, record) for name, record in state.get("processes", {}).items()])
        shutil.rmtree(run_dir, ignore_errors=True)


def recorded_children(run_dir):
    """The processes pids.json in `run_dir` lists, running or not."""
    pids = read_json(Path(run_dir) / "pids.json") or {}
    return [Child.from_record(name, record) for name, record in pids.get("processes", {}).items()]


# --- the test bed ---------------------------------------------------------------------------------------

class Testbed:
    """A control plane and/or a Prefect server; as a context manager, stopped on exit.

    run_dir     where certificates, data, logs and pids go; a fresh temp dir by default.
    components  any of "kube", "prefect" (a sequence, or a comma-separated string).
    keep        leave the run dir (logs, data) behind on stop().
    use_existing_kubeconfig
                use the cluster in $KUBECONFIG and start no control plane; by default true when
                $QHUB_PREFECT_TESTBED_KUBECONFIG is "existing".
    audit_log   make the apiserver log every request's metadata to the file `audit_log` (JSON lines).
    detached    the processes outlive this Python process (the CLI's `up`): nothing stops them at exit.
    """

    __test__ = False  # not a pytest test class, despite the name

    def __init__(self, run_dir=None, components=("kube", "prefect"), keep=False, use_existing_kubeconfig=None,
                 audit_log=False, detached=False):
        if isinstance(components, str):
            components = [part for part in components.split(",") if part]
        unknown = sorted(set(components) - set(COMPONENTS))
        if unknown or not components:
            raise ValueError(f"components must be some of {', '.join(COMPONENTS)}, not {list(components)}")
        if use_existing_kubeconfig is None:
            use_existing_kubeconfig = os.environ.get("QHUB_PREFECT_TESTBED_KUBECONFIG") == "existing"
        self.components = tuple(name for name in COMPONENTS if name in components)
        self.use_existing_kubeconfig = bool(use_existing_kubeconfig)
        self.keep = keep
        self.detached = detached
        self.run_dir = Path(run_dir).resolve() if run_dir else None
        self.want_audit_log = audit_log
        self.kubeconfig = self.api_server = self.ca_file = self.admin_token = self.bin_dir = None
        self.audit_log = None
        self.prefect_api_url = self.prefect_python = self.prefect_bin = None
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
            # The Prefect server takes longest: it is launched first and waited for last.
            if "prefect" in self.components:
                self._launch_prefect()
            if "kube" in self.components:
                if self.use_existing_kubeconfig:
                    self._use_existing_cluster()
                else:
                    self._start_control_plane()
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
                     "prefect_python", "prefect_bin"):
            setattr(bed, name, state.get(name))
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
        return {key: value for key, value in variables.items() if value}

    def describe(self):
        return {"run_dir": str(self.run_dir), "components": list(self.components),
                "use_existing_kubeconfig": self.use_existing_kubeconfig, "kubeconfig": self.kubeconfig,
                "api_server": self.api_server, "ca_file": self.ca_file, "admin_token": self.admin_token,
                "bin_dir": self.bin_dir, "audit_log": self.audit_log, "prefect_api_url": self.prefect_api_url,
                "prefect_python": self.prefect_python, "prefect_bin": self.prefect_bin,
                "startup_seconds": self.startup_seconds, "env": self.env(), "pids": self.processes()}

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
        raise ValueError(f"no readiness check for {name!r}")

    def _kube_get(self, path):
        return http_request(self.api_server + path, token=self.admin_token, ca_file=self.ca_file)

    # -- Kubernetes

    def _start_control_plane(self):
        self.bin_dir = str(control_plane_bin_dir(self.run_dir / "logs" / "install.log"))
        bin_dir = Path(self.bin_dir)
        pki = self._make_pki()
        self.ca_file = str(pki / "ca.crt")
        self.admin_token = secrets.token_hex(32)
        tokens = write_private(self.run_dir / "tokens.csv",
                               f'{self.admin_token},{ADMIN_USER},{ADMIN_USER},"{ADMIN_GROUP}"\n')
        etcd_client_port, etcd_peer_port, apiserver_port = free_ports(3)
        self.api_server = f"https://127.0.0.1:{apiserver_port}"
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
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={apiserver_port}",
            "--insecure-port=0", f"--cert-dir={pki}",
            f"--tls-cert-file={pki / 'apiserver.crt'}", f"--tls-private-key-file={pki / 'apiserver.key'}",
            # A request without credentials is refused (401) rather than served as system:anonymous.
            "--anonymous-auth=false", f"--token-auth-file={tokens}", "--authorization-mode=RBAC",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}", f"--api-audiences={SERVICE_ACCOUNT_ISSUER}",
            f"--service-account-key-file={pki / 'service-account.pub'}",
            f"--service-account-signing-key-file={pki / 'service-account.key'}",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}", "--allow-privileged=true"]
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
        config.write_text(OPENSSL_CONFIG.format(service_ip=KUBERNETES_SERVICE_IP))
        run_tool([openssl, "req", "-x509", "-new", "-newkey", "rsa:2048", "-nodes", "-days", "30",
                  "-subj", "/CN=qhub-prefect test bed CA", "-config", config, "-extensions", "ca",
                  "-keyout", pki / "ca.key", "-out", pki / "ca.crt"], log)
        run_tool([openssl, "req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=kube-apiserver",
                  "-config", config, "-keyout", pki / "apiserver.key", "-out", pki / "apiserver.csr"], log)
        run_tool([openssl, "x509", "-req", "-in", pki / "apiserver.csr", "-CA", pki / "ca.crt",
                  "-CAkey", pki / "ca.key", "-set_serial", "0x" + secrets.token_hex(8), "-days", "30",
                  "-extfile", config, "-extensions", "apiserver", "-out", pki / "apiserver.crt"], log)
        run_tool([openssl, "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                  "-out", pki / "service-account.key"], log)
        run_tool([openssl, "pkey", "-in", pki / "service-account.key", "-pubout",
                  "-out", pki / "service-account.pub"], log)
        for key in pki.glob("*.key"):
            key.chmod(0o600)
        return pki

    def _write_kubeconfig(self):
        ca_data = base64.b64encode(Path(self.ca_file).read_bytes()).decode()
        # JSON strings are valid YAML scalars; quoting keeps a token such as 1e10 a string.
        text = KUBECONFIG_TEMPLATE.format(server=json.dumps(self.api_server), ca_data=json.dumps(ca_data),
                                          user=json.dumps(ADMIN_USER), token=json.dumps(self.admin_token))
        return write_private(self.run_dir / "kubeconfig", text)

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

    # -- Prefect

    def _launch_prefect(self):
        python = prefect_venv_python(self.run_dir / "logs" / "install.log")
        self.prefect_python = str(python)
        self.prefect_bin = str(python.parent / "prefect")
        (port,) = free_ports(1)
        self.prefect_api_url = f"http://127.0.0.1:{port}/api"
        home = self.run_dir / "prefect-home"
        home.mkdir()
        env = {
            "PREFECT_HOME": str(home),
            "PREFECT_SERVER_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{self.run_dir / 'prefect.db'}",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_UI_ENABLED": "false",
            "PREFECT_SERVER_API_HOST": "127.0.0.1",
            "PREFECT_SERVER_API_PORT": str(port),
            "PREFECT_API_URL": self.prefect_api_url,
        }
        self._launch("prefect-server", [self.prefect_bin, "server", "start", "--host", "127.0.0.1",
                                        "--port", str(port)], env=env, wait=False)


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
        print(f"testbed: {name} ready after {seconds} s", file=sys.stderr)
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
    stop_children(recorded_children(run_dir))
    if args.keep:
        (run_dir / "testbed.json").unlink(missing_ok=True)
        print(f"testbed: stopped; logs and data stay in {run_dir}", file=sys.stderr)
    else:
        shutil.rmtree(run_dir, ignore_errors=True)
        print(f"testbed: stopped and removed {run_dir}", file=sys.stderr)
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, function, text in (("up", cli_up, "start a test bed that keeps running after this command"),
                                 ("status", cli_status, "exit status 0 when the test bed runs and answers"),
                                 ("down", cli_down, "stop the test bed and remove its directory")):
        command = commands.add_parser(name, help=text, description=text)
        command.set_defaults(function=function)
        command.add_argument("--dir", default=str(DEFAULT_CLI_DIR), help="the run directory (default: %(default)s)")
        if name == "up":
            command.add_argument("--components", default="kube,prefect",
                                 help=f"comma-separated, of: {', '.join(COMPONENTS)} (default: %(default)s)")
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
