"""Faults never lose state: the API server dies mid-run, the Prefect API fails; the next run converges."""

import pathlib
import re
import threading

import pytest
import yaml
from kubernetes import client as k8s

from tests.support.ansible_cli import run_module, run_playbook
from tests.support.node_presence import has_node
from tests.support.pod_client import wait_for
from tests.support.fault_proxy import FaultProxy

KINDS = ("ServiceAccount", "Role", "RoleBinding", "Secret", "Deployment")


def kubeconfig_through(proxy, testbed, path):
    config = yaml.safe_load(pathlib.Path(testbed.kubeconfig).read_text())
    for cluster in config["clusters"]:
        cluster["cluster"]["server"] = "https://127.0.0.1:%d" % proxy.port
    path.write_text(yaml.safe_dump(config))
    return str(path)


def owned(api_client, namespace):
    core, apps, rbac = k8s.CoreV1Api(api_client), k8s.AppsV1Api(api_client), k8s.RbacAuthorizationV1Api(api_client)
    selector = "app.kubernetes.io/managed-by=qhub.prefect"
    found = {}
    for kind, listing in (("ServiceAccount", core.list_namespaced_service_account),
                          ("Role", rbac.list_namespaced_role), ("RoleBinding", rbac.list_namespaced_role_binding),
                          ("Secret", core.list_namespaced_secret), ("ConfigMap", core.list_namespaced_config_map),
                          ("Deployment", apps.list_namespaced_deployment)):
        for item in listing(namespace, label_selector=selector).items:
            found.setdefault(kind, []).append(item)
    return found


def test_api_server_stopped_mid_run_then_next_run_converges(testbed, kube_admin, unique_namespace, tmp_path):
    args = {"namespace": unique_namespace, "api_key": "fault-token", "api_url": testbed.prefect_api_url,
            "secret_env": {"S": "fault-secret-value"}, "overrides": {"JOB_CPU_LIMIT": "1"}}
    host, port = testbed.api_server.rsplit("//", 1)[1].rsplit(":", 1)
    proxy = FaultProxy(host, int(port))

    stopped = threading.Event()

    def stop_server():
        proxy.cut()
        testbed.stop_component("kube-apiserver")
        stopped.set()

    proxy.after_chunks(8, stop_server)
    try:
        failed = run_module("prefect_agent_config", dict(args, kubeconfig=kubeconfig_through(
            proxy, testbed, tmp_path / "via-proxy")))
    finally:
        proxy.close()
        stopped.wait(30)
        testbed.start_component("kube-apiserver")
    assert failed.rc != 0, failed
    assert "cannot reach the Kubernetes API server" in failed["msg"], failed
    partial = owned(kube_admin, unique_namespace)
    assert len(partial) < len(KINDS), "the fault came too late to test anything: %s" % sorted(partial)

    converged = run_module("prefect_agent_config", dict(args, kubeconfig=testbed.kubeconfig))
    assert converged.rc == 0 and converged["changed"] is True, converged
    after = owned(kube_admin, unique_namespace)
    assert sorted(after) == sorted(KINDS) and all(len(items) == 1 for items in after.values())
    rerun = run_module("prefect_agent_config", dict(args, kubeconfig=testbed.kubeconfig))
    assert rerun.rc == 0 and rerun["changed"] is False, rerun


def test_prefect_api_down_fails_clearly_and_next_run_converges(testbed, kube_admin, unique_namespace, tmp_path):
    host, port = testbed.prefect_api_url.split("//", 1)[1].split("/", 1)[0].split(":")
    proxy = FaultProxy(host, int(port))
    proxy.refuse = True
    config = tmp_path / "qhub-config.yml"
    config.write_text(yaml.safe_dump({"namespace": unique_namespace, "prefect": {"enabled": True}}))
    pool = "faults-" + unique_namespace
    env = {"KUBECONFIG": testbed.kubeconfig, "QHUB_SECRET_PREFECT_TOKEN": "fault-test-token-3c9e",
           "PREFECT_API_URL": "http://127.0.0.1:%d/api" % proxy.port}
    extra = {"qhub_config_file": str(config), "qhub_prefect_work_pool": pool}
    try:
        down = run_playbook("playbooks/deploy.yml", extra, env=env)
        assert down.rc != 0, down
        assert "127.0.0.1:%d" % proxy.port in down.output, down
        # Nothing reached the cluster: the pool comes first and the run stopped there.
        assert owned(kube_admin, unique_namespace) == {}
        proxy.refuse = False
        recovered = run_playbook("playbooks/deploy.yml", extra, env=env)
        assert recovered.rc == 0, recovered
        again = run_playbook("playbooks/deploy.yml", extra, env=env)
        assert again.rc == 0 and again["recap"]["changed"] == 0, again
    finally:
        proxy.close()


def test_a_rollout_that_never_happens_times_out_naming_the_cause(testbed, kube_admin, unique_namespace):
    if testbed.admin_token is None:
        pytest.skip("an existing cluster: its controller-manager is not ours to stop")
    args = {"namespace": unique_namespace, "api_key": "rollout-token", "api_url": testbed.prefect_api_url,
            "kubeconfig": testbed.kubeconfig, "wait": True, "wait_timeout": 4}
    testbed.stop_component("kube-controller-manager")
    try:
        stuck = run_module("prefect_agent_config", args)
    finally:
        testbed.start_component("kube-controller-manager")
    assert stuck.rc != 0, stuck
    assert "did not roll out within 4 s" in stuck["msg"], stuck
    assert "is kube-controller-manager running" in stuck["msg"], stuck
    # Nothing half-applied: every object was applied before the wait.
    assert sorted(owned(kube_admin, unique_namespace)) == sorted(KINDS)
    # On a node, a rollout that resumes and converges is test_rollout_on_node's (the kubelet stopped mid-rollout).
    if not has_node(testbed):
        # With the controller back the pod exists, but no node can run it: the wait names that from the pod.
        core = k8s.CoreV1Api(kube_admin)
        wait_for(lambda: core.list_namespaced_pod(unique_namespace).items, 60, what="the controller to make the pod")
        pending = run_module("prefect_agent_config", dict(args, wait_timeout=3))
        assert pending.rc != 0, pending
        assert [o["action"] for o in pending["objects"]] == ["unchanged"] * len(KINDS), pending
        assert "did not roll out within 3 s: 0 of 1 pods available, 0 of 1 pods ready" in pending["msg"], pending
        assert re.search(r"pod prefect-worker-\S+ (is not scheduled to a node|cannot be scheduled)",
                         pending["msg"]), pending
    assert len(owned(kube_admin, unique_namespace)["Deployment"]) == 1
