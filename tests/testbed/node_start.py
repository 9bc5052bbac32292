"""Starting the node on the test bed: claims the machine's node (tests/testbed/node.py holds the machine-level
parts: the lock, the bridge, containerd's and CNI's configuration, the teardown), then runs containerd,
kube-scheduler, the kubelet and kube-proxy with their own identities, and the images the pods pull from the
registries (tests/testbed/registry.py). Only one node runs per machine.
"""

import json
import os
import secrets
import shutil
import time
from pathlib import Path

try:
    from tests.testbed import node
    from tests.testbed.common import CACHE, HERE, TestbedError, free_ports, http_request, run_tool
    from tests.testbed.control_plane import KUBE_READY_TIMEOUT, KUBE_SOURCE_TREE, SERVICE_CLUSTER_IP_RANGE
    from tests.testbed.process import recorded_children
except ImportError:  # run as a script: this directory is on sys.path
    import node
    from common import CACHE, HERE, TestbedError, free_ports, http_request, run_tool
    from control_plane import KUBE_READY_TIMEOUT, KUBE_SOURCE_TREE, SERVICE_CLUSTER_IP_RANGE
    from process import recorded_children

NODE_BINARIES = ("kube-scheduler", "kubelet", "kube-proxy")
NODE_READY_TIMEOUT = 120


def load_images_module():
    """tests/testbed/images.py, which builds the Prefect images (a module of its own)."""
    try:
        from tests.testbed import images
    except ImportError:  # run as a script: this directory is on sys.path
        import images
    return images


class NodeStart:
    """The part of ``Testbed`` that claims the machine's node and starts its processes."""

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

        self._launch_registries(log)

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

        self._push_images(probe_tar, built, log)
        for name in ("kube-scheduler", "kube-proxy", "kubelet"):
            self._await_ready(name)

    def _node_ready(self):
        status, body = self._kube_get(f"/api/v1/nodes/{self.node['name']}")
        if status != 200:
            return False
        conditions = json.loads(body).get("status", {}).get("conditions", [])
        return any(item["type"] == "Ready" and item["status"] == "True" for item in conditions)

    def _node_readiness(self, name):
        """(a check that is true once node part `name` serves, how long to wait for it), or None if not ours."""
        if name == "containerd":
            return lambda: node.ctr(self.node["containerd_socket"], "version", check=False).returncode == 0, \
                KUBE_READY_TIMEOUT
        if name in ("kube-scheduler", "kube-proxy"):
            url = self.node["healthz"][name]
            return lambda: http_request(url)[0] == 200, KUBE_READY_TIMEOUT
        if name == "kubelet":
            return self._node_ready, NODE_READY_TIMEOUT
        return None
