"""The test bed's node: pods really run, pull from the local registries, reach the servers, and stay on the machine.

These need the node (the default); with QHUB_PREFECT_TESTBED_NODE=0 they are skipped.
"""

import base64
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kubernetes import client as k8s

from tests.support.pod_security_checker import check_restricted
from tests.testbed import node as testbed_node
from tests.testbed.testbed import KUBERNETES_SERVICE_IP, Testbed, TestbedError

TESTBED_PY = Path(__file__).resolve().parents[1] / "testbed" / "testbed.py"
POD_TIMEOUT = 90
# A documentation address (RFC 5737): routed nowhere, so a pod's attempt proves the route is missing
# without sending anything anywhere.
OFF_MACHINE_ADDRESS = "203.0.113.7"


@pytest.fixture(scope="module")
def node(testbed):
    if not testbed.node:
        pytest.skip("the test bed runs without a node (--components kube,prefect or QHUB_PREFECT_TESTBED_NODE=0)")
    return testbed.node


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


RESTRICTED = k8s.V1SecurityContext(
    run_as_user=1000, run_as_group=1000, run_as_non_root=True, read_only_root_filesystem=True,
    allow_privilege_escalation=False, capabilities=k8s.V1Capabilities(drop=["ALL"]),
    seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault"))


def pod(name, containers, pull_secrets=None, restart="Never"):
    return k8s.V1Pod(metadata=k8s.V1ObjectMeta(name=name), spec=k8s.V1PodSpec(
        containers=containers, restart_policy=restart, automount_service_account_token=False,
        security_context=k8s.V1PodSecurityContext(run_as_non_root=True, seccomp_profile=k8s.V1SeccompProfile(
            type="RuntimeDefault")),
        image_pull_secrets=[k8s.V1LocalObjectReference(name=secret) for secret in pull_secrets or []],
        termination_grace_period_seconds=1))


def container(name, image, args=None, pull="Always"):
    return k8s.V1Container(name=name, image=image, args=args, image_pull_policy=pull, security_context=RESTRICTED)


def phase(core, namespace, name):
    return core.read_namespaced_pod(name, namespace).status.phase


def finished(core, namespace, name):
    current = phase(core, namespace, name)
    return current if current in ("Succeeded", "Failed") else None


def waiting_reasons(core, namespace, name):
    statuses = core.read_namespaced_pod(name, namespace).status.container_statuses or []
    return {status.state.waiting.reason for status in statuses if status.state and status.state.waiting}


def logs(core, namespace, name, container_name):
    return core.read_namespaced_pod_log(name, namespace, container=container_name)


def test_the_node_is_ready_at_the_bridge_address(node, kube_admin):
    found = k8s.CoreV1Api(kube_admin).read_node(node["name"])
    conditions = {condition.type: condition.status for condition in found.status.conditions}
    assert conditions["Ready"] == "True", conditions
    assert {"type": "InternalIP", "address": node["address"]} in [
        {"type": item.type, "address": item.address} for item in found.status.addresses]
    assert found.status.node_info.kubelet_version == "v1.20.2"
    assert found.status.node_info.container_runtime_version.startswith("containerd://1.6")


def test_a_restricted_pod_runs_as_its_user_on_a_read_only_root(node, kube_admin, unique_namespace):
    core = k8s.CoreV1Api(kube_admin)
    spec = pod("restricted", [container("whoami", node["probe_image"], ["whoami"])])
    assert check_restricted(kube_admin.sanitize_for_serialization(spec.spec)) == []
    core.create_namespaced_pod(unique_namespace, spec)
    assert wait_for(lambda: finished(core, unique_namespace, "restricted"), POD_TIMEOUT,
                    "the pod to finish") == "Succeeded"
    # Read through the apiserver, which fetches it from the kubelet: logs work as on a real cluster.
    assert logs(core, unique_namespace, "restricted", "whoami").strip() == "uid=1000 gid=1000 rootfs=read-only"


def test_a_long_running_restricted_pod_becomes_ready(node, kube_admin, unique_namespace):
    core = k8s.CoreV1Api(kube_admin)
    core.create_namespaced_pod(unique_namespace, pod("pause", [
        container("pause", node["pause_image"], pull="IfNotPresent")], restart="Always"))

    def ready():
        status = core.read_namespaced_pod("pause", unique_namespace).status
        return status.phase == "Running" and all(item.ready for item in status.container_statuses or [False])
    wait_for(ready, POD_TIMEOUT, "the pause pod to be Running and Ready")
    pod_ip = core.read_namespaced_pod("pause", unique_namespace).status.pod_ip
    assert pod_ip.startswith(testbed_node.SUBNET_PREFIX + ".")


def test_pods_reach_the_apiserver_service_the_prefect_server_and_the_registry_and_nothing_off_the_machine(
        testbed, node, kube_admin, unique_namespace):
    core = k8s.CoreV1Api(kube_admin)
    prefect_port = testbed.prefect_api_url.rsplit(":", 1)[1].split("/", 1)[0]
    registry_port = node["registry"].rsplit(":", 1)[1]
    image = node["probe_image"]
    core.create_namespaced_pod(unique_namespace, pod("reach", [
        container("apiserver", image, ["tcp", KUBERNETES_SERVICE_IP, "443"]),
        container("prefect", image, ["http", node["address"], prefect_port, "/api/health"]),
        container("registry", image, ["http", node["address"], registry_port, "/v2/"]),
    ]))
    assert wait_for(lambda: finished(core, unique_namespace, "reach"), POD_TIMEOUT, "the probes") == "Succeeded"
    assert logs(core, unique_namespace, "reach", "apiserver").strip() == f"connected to {KUBERNETES_SERVICE_IP}:443"
    assert re.match(r"HTTP/1\.[01] 200 ", logs(core, unique_namespace, "reach", "prefect"))
    assert re.match(r"HTTP/1\.[01] 200 ", logs(core, unique_namespace, "reach", "registry"))

    # Pods have routes to the bridge's /24 and the Service range only: no way off the machine.
    core.create_namespaced_pod(unique_namespace, pod("off-machine", [
        container("probe", image, ["tcp", OFF_MACHINE_ADDRESS, "80"])]))
    assert wait_for(lambda: finished(core, unique_namespace, "off-machine"), POD_TIMEOUT, "the probe") == "Failed"
    assert "Network is unreachable" in logs(core, unique_namespace, "off-machine", "probe")


def test_always_pulls_the_image_from_the_local_mirror_of_docker_io(node, kube_admin, unique_namespace):
    core = k8s.CoreV1Api(kube_admin)
    assert node["probe_image"].startswith("docker.io/")
    core.create_namespaced_pod(unique_namespace, pod("pulled", [
        container("probe", node["probe_image"], ["whoami"], pull="Always")]))
    assert wait_for(lambda: finished(core, unique_namespace, "pulled"), POD_TIMEOUT, "the pod") == "Succeeded"
    events = wait_for(lambda: [event.message for event in core.list_namespaced_event(
        unique_namespace, field_selector="involvedObject.name=pulled").items if event.reason == "Pulled"],
        30, "the Pulled event")
    assert any("Successfully pulled image" in message for message in events), events
    assert any(node["probe_image"] in message for message in events), events
    # The pod's status names the image after the first reference containerd stored its digest by (the private
    # registry's copy of the same image, when a test pulled that first): the Pulled event says what was pulled.
    status = core.read_namespaced_pod("pulled", unique_namespace).status.container_statuses[0]
    assert "@sha256:" in status.image_id


def test_a_private_image_pulls_only_with_its_pull_secret(node, kube_admin, unique_namespace):
    core = k8s.CoreV1Api(kube_admin)
    image = node["private_probe_image"]
    core.create_namespaced_pod(unique_namespace, pod("no-secret", [container("probe", image, ["whoami"])]))
    reasons = wait_for(lambda: waiting_reasons(core, unique_namespace, "no-secret") & {
        "ErrImagePull", "ImagePullBackOff"}, POD_TIMEOUT, "the pull to fail")
    assert reasons
    events = [event.message for event in core.list_namespaced_event(
        unique_namespace, field_selector="involvedObject.name=no-secret").items]
    assert any("401 Unauthorized" in message or "authorization failed" in message for message in events), events

    auth = base64.b64encode(f"{node['registry_username']}:{node['registry_password']}".encode()).decode()
    entry = {"username": node["registry_username"], "password": node["registry_password"], "auth": auth}
    config = {"auths": {node["private_registry"]: entry}}
    core.create_namespaced_secret(unique_namespace, k8s.V1Secret(
        metadata=k8s.V1ObjectMeta(name="registry"), type="kubernetes.io/dockerconfigjson",
        data={".dockerconfigjson": base64.b64encode(json.dumps(config).encode()).decode()}))
    core.create_namespaced_pod(unique_namespace, pod("with-secret", [container("probe", image, ["whoami"])],
                                                     pull_secrets=["registry"]))
    assert wait_for(lambda: finished(core, unique_namespace, "with-secret"), POD_TIMEOUT, "the pod") == "Succeeded"
    # The first pod is still refused: the secret is the pod's, not the node's.
    assert waiting_reasons(core, unique_namespace, "no-secret") & {"ErrImagePull", "ImagePullBackOff"}


def test_a_second_node_test_bed_is_refused_naming_the_running_one(testbed, node, tmp_path):
    second = Testbed(run_dir=tmp_path / "second")
    with pytest.raises(TestbedError) as refused:
        second.start()
    assert f"another node test bed runs on this machine, in {testbed.run_dir}" in str(refused.value)
    assert "QHUB_PREFECT_TESTBED_NODE=0" in str(refused.value)
    # The running one is untouched.
    assert testbed_node.lock_holder()["run_dir"] == str(testbed.run_dir)
    assert testbed.problems() == []


def test_the_leftover_check_sees_a_running_node(testbed, node):
    """The check that runs after every teardown (scripts/test.sh) can fail: here it finds the running node."""
    check = subprocess.run([sys.executable, str(TESTBED_PY), "leftovers", "--dir", str(testbed.run_dir)],
                           capture_output=True, text=True, check=False, timeout=60)
    assert check.returncode == 1
    found = check.stdout
    assert f"network interface {testbed_node.BRIDGE}" in found
    assert "chain KUBE-SERVICES" in found
    assert f"lock {testbed_node.LOCK_FILE} held for {testbed.run_dir}" in found
    for program in ("kubelet", "kube-proxy", "containerd"):
        assert f"/{program} " in found, (program, found)
    assert "cgroup /sys/fs/cgroup/" in found
