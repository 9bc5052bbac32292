"""The Kubernetes control plane: etcd, kube-apiserver (TLS, token auth, RBAC, ServiceAccount token signing for the
TokenRequest API, optionally an audit log) and kube-controller-manager, as controller-runtime's envtest runs them;
or, with QHUB_PREFECT_TESTBED_KUBECONFIG=existing, the cluster in $KUBECONFIG instead. Also the kubeconfigs.
"""

import base64
import json
import os
import secrets
from pathlib import Path

try:
    from tests.testbed import node
    from tests.testbed.common import (CACHE, HERE, TestbedError, flag_value, free_ports, http_request, run_tool,
                                      write_private)
    from tests.testbed.pki import make_pki
except ImportError:  # run as a script: this directory is on sys.path
    import node
    from common import CACHE, HERE, TestbedError, flag_value, free_ports, http_request, run_tool, write_private
    from pki import make_pki

KUBE_BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager")
KUBE_READY_TIMEOUT = 60
KUBE_SOURCE_TREE = CACHE / "kubernetes" / "build" / "tree"

SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc"
SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24"
# The first address of the service range is the `kubernetes` Service, which in-cluster clients use.
KUBERNETES_SERVICE_IP = "10.0.0.1"
ADMIN_USER = "admin"
ADMIN_GROUP = "system:masters"

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


def control_plane_bin_dir(log):
    """The directory with etcd, kube-apiserver and kube-controller-manager; built the first time (minutes)."""
    for candidate in (os.environ.get("KUBEBUILDER_ASSETS"), CACHE / "kubernetes" / "bin"):
        if candidate and all(os.access(Path(candidate, name), os.X_OK) for name in KUBE_BINARIES):
            return Path(candidate)
    return Path(run_tool(["bash", HERE / "install-control-plane.sh"], log).strip().splitlines()[-1])


class ControlPlane:
    """The part of ``Testbed`` that starts the control plane (or points at an existing cluster)."""

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
        return make_pki(self.run_dir, self.host, KUBERNETES_SERVICE_IP, kubelet_client="node" in self.components)

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

    def _kube_get(self, path):
        return http_request(self.api_server + path, token=self.admin_token, ca_file=self.ca_file)

    def _control_plane_readiness(self, name):
        """(a check that is true once `name` serves, how long to wait for it in seconds), or None if not ours."""
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
        return None
