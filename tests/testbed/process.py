"""Process supervision: each process of a test bed in a process group of its own, tracked through /proc.

``Child`` starts (and restarts) one process and tells whether it still runs, pids being reused; ``stop_children``
and ``stop_testbed_processes`` stop them (a node's pods first); ``reap_orphans`` stops the test beds whose owner
died; ``ProcessSupervision`` is the part of ``Testbed`` that launches its processes, waits for them to answer and
records them in DIR/pids.json. Linux only.
"""

import atexit
import functools
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

try:
    from tests.testbed import node
    from tests.testbed.common import TestbedError, read_json
except ImportError:  # run as a script: this directory is on sys.path
    import node
    from common import TestbedError, read_json

TMP_PREFIX = "qhub-prefect-testbed-"
# Stopped first at teardown: nothing may make or restart pods while the containers are killed.
NODE_STOP_FIRST = ("kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy")
STOP_GRACE_SECONDS = 10
# kube-apiserver closes its port at once on SIGTERM, then waits up to 60 s for open watches (the
# controller-manager's) to end; nothing here needs that drain, and fault-injection tests stop it often.
STOP_GRACE_OVERRIDES = {"kube-apiserver": 2}


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


class ProcessSupervision:
    """The part of ``Testbed`` that launches its processes and waits for them (``self._children``, by name)."""

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

    def _write_pids(self):
        """Rewritten at every start of a process, so that `down` finds even a half-started test bed."""
        state = {"owner": self._owner_record,
                 "processes": {name: child.record() for name, child in self._children.items()}}
        self._write_atomically("pids.json", json.dumps(state, indent=2))

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
