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

The parts, one job a file (``Testbed`` below composes them; this module is also the command line):
  common.py         paths, the error type, files, ports, HTTP to the servers, setup commands
  process.py        process supervision: process groups, /proc, stopping, orphaned test beds, DIR/pids.json
  pki.py            the CA and the certificates (openssl)
  control_plane.py  etcd, kube-apiserver, kube-controller-manager; kubeconfigs; or an existing cluster
  node.py           the node's machine-level parts: lock, bridge, containerd and CNI config, teardown
  node_start.py     starting the node: containerd, kube-scheduler, the kubelet, kube-proxy
  registry.py       the node's two image registries and the pushes into them
  images.py         building the Prefect images the node runs
  prefect_server.py the Prefect 3 server
  cli.py            the command line (`up`, `status`, `down`, `leftovers`)
"""

import json
import os
import shlex
import shutil
import sys
import tempfile
from pathlib import Path

try:
    from tests.testbed import node
    from tests.testbed.common import (CACHE, HERE, REPO, TESTBED_PY, TestbedError, flag_value, free_ports,
                                      http_request, log_tail, read_json, run_tool, write_private)
    from tests.testbed.control_plane import (ADMIN_GROUP, ADMIN_USER, KUBE_BINARIES, KUBE_READY_TIMEOUT,
                                             KUBERNETES_SERVICE_IP, SERVICE_ACCOUNT_ISSUER, SERVICE_CLUSTER_IP_RANGE,
                                             ControlPlane, control_plane_bin_dir)
    from tests.testbed.node_start import NODE_BINARIES, NODE_READY_TIMEOUT, NodeStart, load_images_module
    from tests.testbed.prefect_server import PREFECT_READY_TIMEOUT, PrefectServer, prefect_venv_python
    from tests.testbed.process import (TMP_PREFIX, Child, ProcessSupervision, _forget, _stop_at_exit, proc_stat,
                                       reap_orphans, recorded_children, stop_children, stop_testbed_processes)
    from tests.testbed.registry import Registries
except ImportError:  # run as a script: this directory is on sys.path
    import node
    from common import (CACHE, HERE, REPO, TESTBED_PY, TestbedError, flag_value, free_ports, http_request, log_tail,
                        read_json, run_tool, write_private)
    from control_plane import (ADMIN_GROUP, ADMIN_USER, KUBE_BINARIES, KUBE_READY_TIMEOUT, KUBERNETES_SERVICE_IP,
                               SERVICE_ACCOUNT_ISSUER, SERVICE_CLUSTER_IP_RANGE, ControlPlane, control_plane_bin_dir)
    from node_start import NODE_BINARIES, NODE_READY_TIMEOUT, NodeStart, load_images_module
    from prefect_server import PREFECT_READY_TIMEOUT, PrefectServer, prefect_venv_python
    from process import (TMP_PREFIX, Child, ProcessSupervision, _forget, _stop_at_exit, proc_stat, reap_orphans,
                         recorded_children, stop_children, stop_testbed_processes)
    from registry import Registries

# What tests, benchmarks and scripts import from here, wherever it now lives.
__all__ = ["ADMIN_GROUP", "ADMIN_USER", "CACHE", "COMPONENTS", "Child", "HERE", "KUBERNETES_SERVICE_IP",
           "KUBE_BINARIES", "KUBE_READY_TIMEOUT", "NODE_BINARIES", "NODE_READY_TIMEOUT", "PREFECT_READY_TIMEOUT",
           "REPO",
           "SERVICE_ACCOUNT_ISSUER", "SERVICE_CLUSTER_IP_RANGE", "TMP_PREFIX", "Testbed", "TestbedError",
           "control_plane_bin_dir", "default_components", "flag_value", "free_ports", "http_request",
           "load_images_module", "log_tail", "main", "prefect_venv_python", "proc_stat", "reap_orphans",
           "recorded_children", "run_tool", "stop_children", "stop_testbed_processes"]

COMPONENTS = {
    "kube": KUBE_BINARIES,
    "prefect": ("prefect-server",),
    "node": ("docker-registry", "docker-registry-private", "containerd", "kube-scheduler", "kubelet", "kube-proxy"),
}


def default_components():
    """All three, or the control plane and Prefect alone with QHUB_PREFECT_TESTBED_NODE=0."""
    if os.environ.get("QHUB_PREFECT_TESTBED_NODE", "1").strip().lower() in ("0", "false", "no", "off"):
        return ("kube", "prefect")
    return tuple(COMPONENTS)


# What a test bed creates in its run directory; `up` clears stale ones and leaves anything else alone.
RUN_DIR_ENTRIES = ("pki", "etcd-data", "logs", "prefect-home", "kubeconfig", "tokens.csv", "audit-policy.yaml",
                   "audit.log", "prefect.db", "prefect.db-wal", "prefect.db-shm", "pids.json", "testbed.json",
                   "env.sh", "containerd", "cni", "kubelet", "registry", "kubelet.kubeconfig", "kube-proxy.kubeconfig",
                   "kube-scheduler.kubeconfig", node.STATE_FILE)


class Testbed(ProcessSupervision, ControlPlane, NodeStart, Registries, PrefectServer):
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

    def _write_state(self):
        self._write_atomically("testbed.json", json.dumps(self.describe(), indent=2))
        stop_command = f"{sys.executable} {TESTBED_PY} down --dir {self.run_dir}"
        lines = [f"# The test bed in {self.run_dir}; stop it with: {stop_command}"]
        lines += [f"export {key}={shlex.quote(value)}" for key, value in self.env().items()]
        self._write_atomically("env.sh", "\n".join(lines) + "\n")

    def _write_atomically(self, name, text):
        temporary = self.run_dir / (name + ".tmp")
        write_private(temporary, text)
        temporary.replace(self.run_dir / name)

    def _readiness(self, name):
        """(a check that is true once `name` serves, how long to wait for it in seconds), asked of each part."""
        for readiness in (self._control_plane_readiness, self._prefect_readiness, self._registry_readiness,
                          self._node_readiness):
            found = readiness(name)
            if found is not None:
                return found
        raise ValueError(f"no readiness check for {name!r}")


def main(argv=None):
    """The command line (tests/testbed/cli.py)."""
    try:
        from tests.testbed import cli
    except ImportError:  # run as a script: this directory is on sys.path
        import cli
    return cli.main(argv)


if __name__ == "__main__":
    sys.exit(main())
