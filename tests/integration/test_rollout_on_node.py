"""The rollout wait on a real node: deploy.yml says ok only for a running, Ready worker, and names every fault.

Each fault fails within wait_timeout with its cause named from the pod, leaves every object applied (nothing
half-applied), and the next run with the fault gone converges. Skipped on a test bed without a node
(tests/support/node_presence.py): without a kubelet no pod ever runs.
"""

import inspect
import threading
import time

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

from tests.support.ansible_cli import run_module, run_playbook
from tests.testbed.prefect1_standin import Prefect1StandIn
from tests.support.pod_client import prefect_api, wait_for

NAME = "prefect-worker"
IMAGE = "prefecthq/prefect:3-python3.11-kubernetes"
KINDS = ("ServiceAccount", "Role", "RoleBinding", "Secret", "Deployment")
SECRET_VALUE = "canary-7f3a9c"
TOKEN = "node-token-4b1e"
# Generous for a 2-core machine: pulling the image from the local registry and starting Prefect.
TIMEOUT = 240


class Deployer:
    """deploy.yml on a QHub config for one namespace, with the rollout wait on."""

    def __init__(self, testbed, namespace, tmp_path):
        self.testbed = testbed
        self.namespace = namespace
        self.tmp_path = tmp_path
        self.pool = "node-" + namespace
        self.env = {"KUBECONFIG": testbed.kubeconfig, "PREFECT_API_URL": testbed.prefect_api_url,
                    "QHUB_SECRET_PREFECT_TOKEN": TOKEN, "DATABASE_PASSWORD": SECRET_VALUE}

    def config(self, image=IMAGE, env_vars=None, secret_env_vars=None):
        return {"namespace": self.namespace, "prefect": {"enabled": True, "image": image, "overrides": {
            "envVars": env_vars or {"ENVIRONMENT": "node-test"},
            "secretEnvVars": secret_env_vars or {"DATABASE_PASSWORD": "QHUB_SECRET_DATABASE_PASSWORD"}}}}

    def run(self, timeout=TIMEOUT, extra=None, env=None, **config):
        path = self.tmp_path / "qhub-config.yml"
        path.write_text(yaml.safe_dump(self.config(**config)))
        extra_vars = dict({"qhub_config_file": str(path), "qhub_prefect_work_pool": self.pool,
                           "qhub_prefect_wait_timeout": timeout}, **(extra or {}))
        started = time.monotonic()
        result = run_playbook("playbooks/deploy.yml", extra_vars, env=dict(self.env, **(env or {})), wait=True,
                              timeout=timeout + 300)
        result.seconds = time.monotonic() - started
        return result


def owned_kinds(api_client, namespace):
    core, apps, rbac = k8s.CoreV1Api(api_client), k8s.AppsV1Api(api_client), k8s.RbacAuthorizationV1Api(api_client)
    selector = "app.kubernetes.io/managed-by=qhub.prefect"
    return sorted(kind for kind, listing in (
        ("ServiceAccount", core.list_namespaced_service_account), ("Role", rbac.list_namespaced_role),
        ("RoleBinding", rbac.list_namespaced_role_binding), ("Secret", core.list_namespaced_secret),
        ("Deployment", apps.list_namespaced_deployment)) if listing(namespace, label_selector=selector).items)


def live_pods(api_client, namespace, name=NAME):
    pods = k8s.CoreV1Api(api_client).list_namespaced_pod(
        namespace, label_selector="app.kubernetes.io/instance=%s" % name).items
    return [p for p in pods if p.metadata.deletion_timestamp is None]


def is_ready(pod):
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def assert_all_applied(api_client, namespace):
    assert owned_kinds(api_client, namespace) == sorted(KINDS)


def test_after_deploy_says_ok_the_worker_pod_is_running_ready_and_online(node, kube_admin, unique_namespace,
                                                                         tmp_path):
    deployer = Deployer(node, unique_namespace, tmp_path)
    deployed = deployer.run(extra={"qhub_prefect_wait_for_worker": True, "qhub_prefect_worker_timeout": 120})
    assert deployed.rc == 0, deployed
    pods = live_pods(kube_admin, unique_namespace)
    assert len(pods) == 1, [p.metadata.name for p in pods]
    assert pods[0].status.phase == "Running" and is_ready(pods[0]), pods[0].status
    assert all(c.ready and c.state.running for c in pods[0].status.container_statuses)
    workers = prefect_api(node.prefect_api_url, "POST", "/work_pools/%s/workers/filter" % deployer.pool, {})
    assert [(w["name"], w["status"]) for w in workers] == [(NAME, "ONLINE")]
    again = deployer.run(extra={"qhub_prefect_wait_for_worker": True})
    assert again.rc == 0 and again["recap"]["changed"] == 0, again


def test_a_no_op_run_on_an_available_deployment_reads_each_object_once(node, unique_namespace):
    args = {"namespace": unique_namespace, "image": IMAGE, "api_key": TOKEN, "api_url": node.prefect_api_url,
            "work_pool": "noop-" + unique_namespace, "kubeconfig": node.kubeconfig, "wait": True,
            "wait_timeout": TIMEOUT}
    first = run_module("prefect_agent_config", args, timeout=TIMEOUT + 120)
    assert first.rc == 0, first
    again = run_module("prefect_agent_config", args)
    assert again.rc == 0 and again["changed"] is False, again
    # One GET per object, and whether a run holds the lock (the Lease's GET, the ConfigMap lock's GET), no lock
    # taken; no pod list, no events, no log: the Deployment's status already says available.
    assert again["requests"] == len(KINDS) + 2, again
    assert again.get("lock") is None


def test_an_image_that_does_not_exist_fails_naming_it_then_the_right_image_converges(node, kube_admin,
                                                                                     unique_namespace, tmp_path):
    deployer = Deployer(node, unique_namespace, tmp_path)
    missing = "prefecthq/prefect:3-python3.11-does-not-exist"
    failed = deployer.run(timeout=180, image=missing)
    assert failed.rc != 0, failed
    assert failed.seconds < 180, "the wait should stop once two pulls failed, not at the timeout"
    assert "ImagePullBackOff" in failed.output or "ErrImagePull" in failed.output, failed
    assert "cannot pull its image %s" % missing in failed.output, failed
    assert_all_applied(kube_admin, unique_namespace)
    fixed = deployer.run()
    assert fixed.rc == 0, fixed
    assert [is_ready(p) for p in live_pods(kube_admin, unique_namespace)] == [True]


def test_a_worker_that_exits_at_once_fails_with_its_log_tail_no_secret(node, kube_admin, unique_namespace, tmp_path):
    deployer = Deployer(node, unique_namespace, tmp_path)
    # A setting Prefect cannot parse stops the worker before it does anything, and Prefect's error quotes the
    # value: here a secret one, which must not reach the output.
    crashing = {"DATABASE_PASSWORD": "QHUB_SECRET_DATABASE_PASSWORD",
                "PREFECT_WORKER_QUERY_SECONDS": "QHUB_SECRET_DATABASE_PASSWORD"}
    failed = deployer.run(timeout=180, secret_env_vars=crashing)
    assert failed.rc != 0, failed
    assert failed.seconds < 180 + 60, failed
    assert "container prefect-worker keeps exiting" in failed.output or \
        "container prefect-worker exited" in failed.output, failed
    assert "last lines of its log" in failed.output, failed
    assert SECRET_VALUE not in failed.output, "a secret value reached the output"
    assert_all_applied(kube_admin, unique_namespace)
    fixed = deployer.run()
    assert fixed.rc == 0, fixed


class KeyRemover:
    """Someone else keeps a key out of the Secret (say, a misconfigured secret sync), with kubectl-edit-style PUTs."""

    def __init__(self, api_client, namespace, key):
        self.core = k8s.CoreV1Api(api_client)
        self.namespace, self.key = namespace, key
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self.stop.is_set():
            try:
                secret = self.core.read_namespaced_secret(NAME, self.namespace)
                if self.key in (secret.data or {}):
                    del secret.data[self.key]
                    self.core.replace_namespaced_secret(NAME, self.namespace, secret, field_manager="kubectl-edit")
            except ApiException as error:
                if error.status != 409:  # a write in between: read again
                    raise
            self.stop.wait(0.1)

    def __enter__(self):
        self.thread.start()
        wait_for(lambda: self.key not in (self.core.read_namespaced_secret(NAME, self.namespace).data or {}), 10,
                 interval=0.2, what="the key to be removed")
        return self

    def __exit__(self, *exc_info):
        self.stop.set()
        self.thread.join(10)


def test_a_secret_key_removed_by_hand_is_named_and_the_next_run_restores_it(node, kube_admin, unique_namespace,
                                                                            tmp_path):
    deployer = Deployer(node, unique_namespace, tmp_path)
    assert deployer.run().rc == 0
    with KeyRemover(kube_admin, unique_namespace, "DATABASE_PASSWORD"):
        # A changed env rolls the pod; the new one cannot start without the key.
        failed = deployer.run(timeout=150, env_vars={"ENVIRONMENT": "node-test-2"})
    assert failed.rc != 0, failed
    assert failed.seconds < 150 + 60, failed
    assert "CreateContainerConfigError" in failed.output, failed
    assert "couldn't find key DATABASE_PASSWORD in Secret %s/%s" % (unique_namespace, NAME) in failed.output, failed
    assert SECRET_VALUE not in failed.output
    assert_all_applied(kube_admin, unique_namespace)
    restored = deployer.run(env_vars={"ENVIRONMENT": "node-test-2"})
    assert restored.rc == 0, restored
    secret = k8s.CoreV1Api(kube_admin).read_namespaced_secret(NAME, unique_namespace)
    assert "DATABASE_PASSWORD" in secret.data
    assert [is_ready(p) for p in live_pods(kube_admin, unique_namespace)] == [True]


def test_the_kubelet_stopped_during_a_rollout_fails_within_the_timeout_naming_it(node, kube_admin, unique_namespace,
                                                                                 tmp_path):
    if node.admin_token is None:
        pytest.skip("an existing cluster: its kubelet is not ours to stop")
    deployer = Deployer(node, unique_namespace, tmp_path)
    assert deployer.run().rc == 0
    node.stop_component("kubelet")
    try:
        failed = deployer.run(timeout=45, env_vars={"ENVIRONMENT": "node-test-2"})
    finally:
        node.start_component("kubelet")
    assert failed.rc != 0, failed
    assert failed.seconds < 45 + 60, failed
    assert "did not roll out within 45 s" in failed.output, failed
    assert "kubelet on" in failed.output, failed
    assert_all_applied(kube_admin, unique_namespace)
    converged = deployer.run(env_vars={"ENVIRONMENT": "node-test-2"})
    assert converged.rc == 0, converged
    assert [is_ready(p) for p in live_pods(kube_admin, unique_namespace)] == [True]


def test_the_prefect1_agent_pod_is_ready_through_its_own_health_endpoint(node, kube_admin, unique_namespace):
    if "host" not in inspect.signature(Prefect1StandIn).parameters:
        pytest.skip("the Prefect 1 stand-in cannot yet listen on an address pods reach (no host parameter)")
    with Prefect1StandIn(host=node.host) as standin:
        args = {"namespace": unique_namespace, "image": "prefecthq/prefect:1.4.1-python3.9", "api_key": TOKEN,
                "api_url": standin.url, "kubeconfig": node.kubeconfig, "wait": True, "wait_timeout": TIMEOUT}
        deployed = run_module("prefect_agent_config", args, timeout=TIMEOUT + 120)
    assert deployed.rc == 0, deployed
    pods = live_pods(kube_admin, unique_namespace, name="prefect-agent")
    assert [is_ready(p) for p in pods] == [True]
    probe = pods[0].spec.containers[0].readiness_probe.http_get
    assert (probe.path, probe.port) == ("/api/health", 8080)


def test_a_move_whose_new_rollout_fails_keeps_the_old_worker_running_and_says_so(node, kube_admin, unique_namespace,
                                                                                 tmp_path):
    old = Deployer(node, unique_namespace, tmp_path)
    project = {"qhub_prefect_instance": "moving-" + unique_namespace}
    assert old.run(extra=project).rc == 0
    [before] = live_pods(kube_admin, unique_namespace)
    new_namespace = unique_namespace + "-new"
    k8s.CoreV1Api(kube_admin).create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=new_namespace)))
    try:
        new = Deployer(node, new_namespace, tmp_path)
        new.pool = old.pool
        missing = "prefecthq/prefect:3-python3.11-does-not-exist"
        failed = new.run(timeout=120, image=missing, extra=dict(project, qhub_prefect_move_from=unique_namespace))
        assert failed.rc != 0, failed
        assert "cannot pull its image %s" % missing in failed.output, failed.output[-3000:]
        assert "Nothing old was deleted: the old agent or worker still runs (Deployment %s/%s)" % (
            unique_namespace, NAME) in failed.output, failed.output[-3000:]
        [after] = live_pods(kube_admin, unique_namespace)
        assert after.metadata.uid == before.metadata.uid
        assert after.status.phase == "Running" and is_ready(after), after.status
    finally:
        k8s.CoreV1Api(kube_admin).delete_namespace(new_namespace)
