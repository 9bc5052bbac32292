"""The test bed itself: real TLS, authentication and RBAC, working controllers and Prefect server, clean stops."""

import base64
import json
import os
import signal
import ssl
import subprocess
import sys
import textwrap
import time
import urllib.error
from pathlib import Path

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from tests.testbed.testbed import Testbed, TestbedError, http_request, reap_orphans

TESTBED_PY = Path(__file__).resolve().parents[1] / "testbed" / "testbed.py"
REPO = TESTBED_PY.parents[2]


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def live_processes_in_groups(pgids):
    """{pid: command} of the processes that are not zombies in the given process groups, as ps sees them."""
    listing = subprocess.run(["ps", "-eo", "pid=,pgid=,stat=,args="], check=True, capture_output=True, text=True)
    found = {}
    for line in listing.stdout.splitlines():
        pid, pgid, stat, command = line.split(None, 3)
        if int(pgid) in pgids and not stat.startswith("Z"):
            found[int(pid)] = command
    return found


def group_ids_with_members(pids):
    """The process groups of the given leaders, after checking that something runs in each."""
    groups = set(pids)
    assert set(live_processes_in_groups(groups)) >= groups
    return groups


# --- the shared test bed ---------------------------------------------------------------------------------

def test_an_unauthenticated_request_is_refused(testbed):
    status, dummy = http_request(testbed.api_server + "/api/v1/namespaces", ca_file=testbed.ca_file)
    assert status == 401


def test_a_random_bearer_token_is_refused(testbed):
    status, dummy = http_request(testbed.api_server + "/api/v1/namespaces", token="not-a-token-" + os.urandom(8).hex(),
                                 ca_file=testbed.ca_file)
    assert status == 401


def test_tls_is_verified_with_the_test_bed_ca_only(testbed):
    # The apiserver listens on loopback, or with a node on the bridge address (which pods use too); its
    # certificate names both, and localhost.
    urls = [testbed.api_server]
    if "//127.0.0.1:" in testbed.api_server:
        urls.append(testbed.api_server.replace("127.0.0.1", "localhost"))
    for url in urls:
        assert http_request(url + "/readyz", token=testbed.admin_token, ca_file=testbed.ca_file) == (200, b"ok")
    with pytest.raises(urllib.error.URLError) as refused:
        http_request(testbed.api_server + "/readyz", token=testbed.admin_token)  # the system's CAs only
    assert isinstance(refused.value.reason, ssl.SSLCertVerificationError)


def test_the_kubeconfig_carries_the_ca_and_the_admin_token(testbed):
    config = yaml.safe_load(Path(testbed.kubeconfig).read_text())
    cluster = config["clusters"][0]["cluster"]
    assert "insecure-skip-tls-verify" not in cluster
    assert base64.b64decode(cluster["certificate-authority-data"]) == Path(testbed.ca_file).read_bytes()
    assert cluster["server"] == testbed.api_server
    api_client = k8s_config.new_client_from_config(config_file=testbed.kubeconfig)
    with api_client:
        names = {ns.metadata.name for ns in k8s.CoreV1Api(api_client).list_namespace().items}
    assert {"default", "kube-system"} <= names
    env = testbed.env()
    assert {key: env[key] for key in ("KUBECONFIG", "PREFECT_API_URL")} == {
        "KUBECONFIG": testbed.kubeconfig, "PREFECT_API_URL": testbed.prefect_api_url}
    registry_keys = {"QHUB_PREFECT_TESTBED_REGISTRY", "QHUB_PREFECT_TESTBED_PRIVATE_REGISTRY",
                     "QHUB_PREFECT_TESTBED_REGISTRY_USERNAME", "QHUB_PREFECT_TESTBED_REGISTRY_PASSWORD"}
    assert set(env) - {"KUBECONFIG", "PREFECT_API_URL"} == (registry_keys if testbed.node else set())


def test_rbac_refuses_a_fresh_service_account_token_until_a_role_grants_it(testbed, kube_admin, unique_namespace):
    core, rbac = k8s.CoreV1Api(kube_admin), k8s.RbacAuthorizationV1Api(kube_admin)
    core.create_namespaced_service_account(unique_namespace, k8s.V1ServiceAccount(
        metadata=k8s.V1ObjectMeta(name="reader")))
    token = core.create_namespaced_service_account_token("reader", unique_namespace, k8s.AuthenticationV1TokenRequest(
        spec=k8s.V1TokenRequestSpec(audiences=["https://kubernetes.default.svc"], expiration_seconds=600))).status.token
    secrets_url = f"{testbed.api_server}/api/v1/namespaces/{unique_namespace}/secrets"

    status, body = http_request(secrets_url, token=token, ca_file=testbed.ca_file)
    assert status == 403, body
    assert f"system:serviceaccount:{unique_namespace}:reader" in json.loads(body)["message"]

    rbac.create_namespaced_role(unique_namespace, k8s.V1Role(
        metadata=k8s.V1ObjectMeta(name="secret-reader"),
        rules=[k8s.V1PolicyRule(api_groups=[""], resources=["secrets"], verbs=["list"])]))
    rbac.create_namespaced_role_binding(unique_namespace, k8s.V1RoleBinding(
        metadata=k8s.V1ObjectMeta(name="secret-reader"),
        role_ref=k8s.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role", name="secret-reader"),
        subjects=[k8s.RbacV1Subject(kind="ServiceAccount", name="reader", namespace=unique_namespace)]))
    wait_for(lambda: http_request(secrets_url, token=token, ca_file=testbed.ca_file)[0] == 200, 10,
             "the RoleBinding to take effect")
    # Granted in its namespace only.
    assert http_request(f"{testbed.api_server}/api/v1/namespaces/default/secrets", token=token,
                        ca_file=testbed.ca_file)[0] == 403


def test_a_deployment_gets_a_replica_set_and_a_pod(kube_admin, unique_namespace):
    apps, core = k8s.AppsV1Api(kube_admin), k8s.CoreV1Api(kube_admin)
    labels = {"app": "sleeper"}
    apps.create_namespaced_deployment(unique_namespace, k8s.V1Deployment(
        metadata=k8s.V1ObjectMeta(name="sleeper"),
        spec=k8s.V1DeploymentSpec(replicas=1, selector=k8s.V1LabelSelector(match_labels=labels),
                                  template=k8s.V1PodTemplateSpec(
                                      metadata=k8s.V1ObjectMeta(labels=labels),
                                      spec=k8s.V1PodSpec(containers=[k8s.V1Container(
                                          name="main", image="docker.io/qhub-testbed/no-such-image:1")])))))
    replica_sets = wait_for(lambda: apps.list_namespaced_replica_set(unique_namespace).items, 30,
                            "the deployment controller to make a ReplicaSet")
    assert replica_sets[0].metadata.owner_references[0].name == "sleeper"
    pods = wait_for(lambda: core.list_namespaced_pod(unique_namespace).items, 30,
                    "the replicaset controller to make a Pod")
    # Pending either way: without a node nothing schedules it, on the node its image cannot be pulled.
    assert pods[0].status.phase == "Pending"


def test_the_prefect_server_answers(testbed):
    assert http_request(testbed.prefect_api_url + "/health") == (200, b"true")
    status, body = http_request(testbed.prefect_api_url + "/work_pools/filter", method="POST", body={})
    assert status == 200
    assert isinstance(json.loads(body), list)
    assert Path(testbed.prefect_python).is_file() and Path(testbed.prefect_bin).is_file()


def test_an_existing_cluster_is_used_without_starting_one(testbed, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", testbed.kubeconfig)
    monkeypatch.setenv("QHUB_PREFECT_TESTBED_KUBECONFIG", "existing")
    with Testbed(components=("kube",)) as existing:
        assert existing.processes() == {}
        assert existing.api_server == testbed.api_server and existing.admin_token == testbed.admin_token
        assert http_request(existing.api_server + "/readyz", token=existing.admin_token,
                            ca_file=existing.ca_file) == (200, b"ok")


# --- test beds of their own ------------------------------------------------------------------------------

def test_stop_leaves_no_process_behind_and_a_component_restarts_with_its_data():
    bed = Testbed(components=("kube", "prefect")).start()  # the machine's one node is the shared test bed's
    try:
        groups = group_ids_with_members(bed.processes().values())
        assert set(bed.processes()) == {"etcd", "kube-apiserver", "kube-controller-manager", "prefect-server"}
        with k8s.ApiClient(_admin_configuration(bed)) as api_client:
            core = k8s.CoreV1Api(api_client)
            core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name="survives-a-restart")))
            port = bed.api_server.rsplit(":", 1)[1]

            bed.stop_component("kube-apiserver")
            assert "kube-apiserver" not in bed.processes()
            with pytest.raises(OSError):
                http_request(bed.api_server + "/readyz", token=bed.admin_token, ca_file=bed.ca_file)
            bed.start_component("kube-apiserver")
            assert bed.api_server.endswith(":" + port)
            assert core.read_namespace("survives-a-restart").metadata.name == "survives-a-restart"
            groups |= {bed.processes()["kube-apiserver"]}
    finally:
        bed.stop()
    assert live_processes_in_groups(groups) == {}
    assert not bed.run_dir.exists()


def test_a_part_that_fails_to_start_is_named_with_its_log(tmp_path, monkeypatch, testbed):
    assets = tmp_path / "assets"
    assets.mkdir()
    for name in ("etcd", "kube-controller-manager"):
        (assets / name).symlink_to(Path(testbed.bin_dir or "/nonexistent", name))
    fake = assets / "kube-apiserver"
    fake.write_text("#!/bin/sh\necho 'fake apiserver: cannot start' >&2\nexit 3\n")
    fake.chmod(0o755)
    monkeypatch.setenv("KUBEBUILDER_ASSETS", str(assets))
    bed = Testbed(components=("kube",))
    with pytest.raises(TestbedError) as failed:
        bed.start()
    message = str(failed.value)
    assert "kube-apiserver exited with code 3 while starting" in message
    assert "fake apiserver: cannot start" in message
    assert not bed.run_dir.exists()


def test_cli_up_status_down(tmp_path):
    run_dir = tmp_path / "bed"
    command = [sys.executable, str(TESTBED_PY)]
    up = subprocess.run(command + ["up", "--dir", str(run_dir), "--components", "kube"], capture_output=True,
                        text=True, timeout=180, check=False)
    try:
        assert up.returncode == 0, up.stderr
        assert up.stdout.strip() == str(run_dir / "env.sh")
        state = json.loads((run_dir / "testbed.json").read_text())
        assert f"export KUBECONFIG={state['kubeconfig']}" in (run_dir / "env.sh").read_text()
        groups = group_ids_with_members(state["pids"].values())
        # The processes outlived `up` and answer.
        assert http_request(state["api_server"] + "/readyz", token=state["admin_token"],
                            ca_file=state["ca_file"]) == (200, b"ok")
        status = subprocess.run(command + ["status", "--dir", str(run_dir)], capture_output=True, text=True,
                                check=False)
        assert status.returncode == 0, status.stdout
        again = subprocess.run(command + ["up", "--dir", str(run_dir)], capture_output=True, text=True, check=False)
        assert again.returncode == 0 and "already running" in again.stderr
    finally:
        down = subprocess.run(command + ["down", "--dir", str(run_dir)], capture_output=True, text=True, check=False)
    assert down.returncode == 0, down.stderr
    assert live_processes_in_groups(groups) == {}
    assert not run_dir.exists()
    assert subprocess.run(command + ["status", "--dir", str(run_dir)], capture_output=True, check=False).returncode == 1


OWNER_SCRIPT = textwrap.dedent("""\
    import json, sys, time
    sys.path.insert(0, {repo!r})
    from tests.testbed.testbed import Testbed
    bed = Testbed(components=("kube",)).start()
    print(json.dumps({{"run_dir": str(bed.run_dir), "pids": bed.processes()}}), flush=True)
    time.sleep(300)
""")


@pytest.mark.parametrize("owner_signal", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_a_test_bed_does_not_outlive_its_owner(owner_signal):
    """SIGTERM: the owner's handler stops it. SIGKILL: the next test bed's start (reap_orphans) does."""
    owner = subprocess.Popen([sys.executable, "-c", OWNER_SCRIPT.format(repo=str(REPO))], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        line = owner.stdout.readline()
        assert line, owner.stderr.read()
        started = json.loads(line)
        groups = group_ids_with_members(started["pids"].values())
        owner.send_signal(owner_signal)
        assert owner.wait(timeout=30) == -owner_signal
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait()
    if owner_signal == signal.SIGKILL:
        assert live_processes_in_groups(groups), "SIGKILL cannot be caught: the processes are still there"
        reap_orphans()
    assert live_processes_in_groups(groups) == {}
    assert not Path(started["run_dir"]).exists()


def _admin_configuration(bed):
    configuration = k8s.Configuration()
    configuration.host = bed.api_server
    configuration.ssl_ca_cert = bed.ca_file
    configuration.api_key = {"authorization": bed.admin_token}
    configuration.api_key_prefix = {"authorization": "Bearer"}
    return configuration
