"""Issue 18's proof on the node: the prefect-worker chart's values in a QHub config shape the real worker pod.

deploy.yml, as users run it, on a config whose ``prefect.overrides.worker`` and ``.serviceAccount`` carry keys
under the chart's names (PrefectHQ/prefect-helm charts/prefect-worker/values.yaml): the pod the kubelet runs has
them, the worker runs with them and is ONLINE, and a rerun changes nothing. A nodeSelector no node matches fails
the rollout wait naming FailedScheduling; an existing API-key Secret is referenced by the worker and by its flow
runs, and is the one Secret holding the key. Skipped on a test bed without a node (tests/support/node_presence.py).
"""

import base64
import hashlib
import json
import time
import uuid

import yaml
from kubernetes import client as k8s

from tests.support.ansible_cli import run_playbook
from tests.support.cluster_objects import MANAGED
from tests.integration.test_flow_run_on_node import finished_state, flow_run_log, start_hello_flow_run
from tests.integration.test_rollout_on_node import IMAGE, NAME, TIMEOUT, is_ready, live_pods
from tests.support.pod_client import prefect_api, wait_for

TOKEN = "chart-token-" + uuid.uuid4().hex[:12]
SECRET_VALUE = "chart-db-password-" + uuid.uuid4().hex[:12]
LIMIT = 2
TOLERATION = {"key": "qhub.test/dedicated", "operator": "Equal", "value": "prefect", "effect": "NoSchedule"}
# Below the collection's defaults (100m/256Mi, 1/1Gi), so the pod shows these and not those.
RESOURCES = {"requests": {"cpu": "50m", "memory": "200Mi"}, "limits": {"cpu": "1", "memory": "768Mi"}}
POD_LABELS = {"qhub.test/team": "data-platform"}
SA_ANNOTATIONS = {"eks.amazonaws.com/role-arn": "arn:aws:iam::111122223333:role/qhub-prefect-chart-test"}
USER_SECRET, USER_SECRET_KEY = "my-prefect-key", "key"


class ChartDeployer:
    """deploy.yml on a QHub config for one namespace whose overrides hold chart values, with the rollout wait on."""

    def __init__(self, testbed, namespace, tmp_path):
        self.namespace = namespace
        self.tmp_path = tmp_path
        self.pool = "chart-" + namespace
        self.env = {"KUBECONFIG": testbed.kubeconfig, "PREFECT_API_URL": testbed.prefect_api_url,
                    "QHUB_SECRET_PREFECT_TOKEN": TOKEN, "DATABASE_PASSWORD": SECRET_VALUE}

    def run(self, overrides, timeout=TIMEOUT):
        config = {"namespace": self.namespace, "prefect": {"enabled": True, "image": IMAGE, "overrides": dict(
            {"secretEnvVars": {"DATABASE_PASSWORD": "QHUB_SECRET_DATABASE_PASSWORD"}}, **overrides)}}
        path = self.tmp_path / "qhub-config.yml"
        path.write_text(yaml.safe_dump(config))
        # qhub_prefect_wait_for_worker is left to its default: with the wait on, ok means the worker is ONLINE.
        extra_vars = {"qhub_config_file": str(path), "qhub_prefect_work_pool": self.pool,
                      "qhub_prefect_wait_timeout": timeout}
        started = time.monotonic()
        result = run_playbook("playbooks/deploy.yml", extra_vars, env=self.env, wait=True, timeout=2 * timeout + 300)
        result.seconds = time.monotonic() - started
        return result


def a_node_hostname(api_client):
    """The kubernetes.io/hostname label of a Ready node, as the cluster reports it."""
    for item in k8s.CoreV1Api(api_client).list_node().items:
        conditions = {condition.type: condition.status for condition in item.status.conditions or []}
        if conditions.get("Ready") == "True" and not item.spec.unschedulable:
            return item.metadata.labels["kubernetes.io/hostname"]
    raise AssertionError("the test bed reports no Ready node")


def the_worker_pod(api_client, namespace):
    pods = live_pods(api_client, namespace)
    assert len(pods) == 1, [pod.metadata.name for pod in pods]
    return pods[0]


def serialized(api_client, obj):
    return json.dumps(api_client.sanitize_for_serialization(obj))


def test_chart_values_shape_the_running_worker_and_a_rerun_changes_nothing(node, kube_admin, make_namespace,
                                                                           tmp_path):
    namespace = make_namespace()
    hostname = a_node_hostname(kube_admin)
    overrides = {
        "worker": {
            "nodeSelector": {"kubernetes.io/hostname": hostname},
            "tolerations": [TOLERATION],
            "resources": RESOURCES,
            "podLabels": POD_LABELS,
            # OpenShift's restricted-v2 picks the UID itself: the chart's users drop the fixed one with a null.
            "containerSecurityContext": {"runAsUser": None},
            "config": {"limit": LIMIT},
        },
        "serviceAccount": {"annotations": SA_ANNOTATIONS},
    }
    deployer = ChartDeployer(node, namespace, tmp_path)
    deployed = deployer.run(overrides)
    assert deployed.rc == 0, deployed

    pod = the_worker_pod(kube_admin, namespace)
    assert pod.status.phase == "Running" and is_ready(pod), pod.status
    assert all(status.ready and status.state.running for status in pod.status.container_statuses)
    spec = pod.spec
    assert spec.node_selector == {"kubernetes.io/hostname": hostname}
    assert spec.node_name == hostname
    # The API server adds its own (node.kubernetes.io/not-ready, unreachable): the user's is among them.
    assert TOLERATION in [{"key": t.key, "operator": t.operator, "value": t.value, "effect": t.effect}
                          for t in spec.tolerations], spec.tolerations
    for key, value in POD_LABELS.items():
        assert pod.metadata.labels.get(key) == value, pod.metadata.labels
    [container] = spec.containers
    assert container.resources.requests == RESOURCES["requests"], container.resources
    assert container.resources.limits == RESOURCES["limits"], container.resources
    context = container.security_context
    assert context.run_as_user is None, "the container's securityContext still sets runAsUser: %s" % context
    # The null drops that one field: the rest of the restricted profile stays.
    assert context.run_as_non_root is True and context.allow_privilege_escalation is False, context
    assert context.read_only_root_filesystem is True and context.capabilities.drop == ["ALL"], context
    args = " ".join(container.args)
    assert "--limit %d" % LIMIT in args or "--limit=%d" % LIMIT in container.args, container.args

    account = k8s.CoreV1Api(kube_admin).read_namespaced_service_account(spec.service_account_name, namespace)
    for key, value in SA_ANNOTATIONS.items():
        assert (account.metadata.annotations or {}).get(key) == value, account.metadata.annotations

    workers = prefect_api(node.prefect_api_url, "POST", "/work_pools/%s/workers/filter" % deployer.pool, {})
    assert [(w["name"], w["status"]) for w in workers] == [(NAME, "ONLINE")], \
        "deploy.yml said ok before the worker was ONLINE in its pool (issue 18, ask 5): %s" % workers

    again = deployer.run(overrides)
    assert again.rc == 0 and again["recap"]["changed"] == 0, again
    assert the_worker_pod(kube_admin, namespace).metadata.uid == pod.metadata.uid


def test_a_node_selector_no_node_matches_fails_the_wait_naming_failed_scheduling(node, kube_admin, make_namespace,
                                                                                 tmp_path):
    namespace = make_namespace()
    selector = {"qhub.test/none": "x"}
    timeout = 40
    failed = ChartDeployer(node, namespace, tmp_path).run({"worker": {"nodeSelector": selector}}, timeout=timeout)
    assert failed.rc != 0, failed
    # The playbook's own checks, the lock and the writes come on top of the wait.
    assert failed.seconds < timeout + 60, (failed.seconds, failed)
    assert "FailedScheduling" in failed.output, failed
    assert "did not roll out within %d s" % timeout in failed.output, failed
    deployment = k8s.AppsV1Api(kube_admin).read_namespaced_deployment(NAME, namespace)
    assert deployment.spec.template.spec.node_selector == selector
    assert [pod.spec.node_name for pod in live_pods(kube_admin, namespace)] == [None]


def decoded_secrets(api_client, namespace, label_selector=None):
    """{name: {key: text}} of the namespace's Secrets."""
    items = k8s.CoreV1Api(api_client).list_namespaced_secret(namespace, label_selector=label_selector).items
    return {item.metadata.name: {key: base64.b64decode(value).decode("utf-8", "replace")
                                 for key, value in (item.data or {}).items()} for item in items}


def assert_references_the_user_secret(env, where):
    by_name = {item.name: item for item in env or []}
    assert "PREFECT_API_KEY" in by_name, "%s has no PREFECT_API_KEY: %s" % (where, sorted(by_name))
    key = by_name["PREFECT_API_KEY"]
    assert key.value is None, "the API key reached %s as plain text" % where
    ref = key.value_from.secret_key_ref
    assert (ref.name, ref.key) == (USER_SECRET, USER_SECRET_KEY), "%s: %s" % (where, key.value_from)


def test_an_existing_api_key_secret_is_referenced_by_the_worker_and_its_flow_runs_and_held_once(
        node, kube_admin, make_namespace, tmp_path):
    namespace = make_namespace()
    core = k8s.CoreV1Api(kube_admin)
    # The test bed's Prefect server has no auth: it takes any key, so what is proven here is where the key is read
    # from (the references, and the flow run's own digest of the value it got), not that the server checked it.
    core.create_namespaced_secret(namespace, k8s.V1Secret(
        metadata=k8s.V1ObjectMeta(name=USER_SECRET), type="Opaque", string_data={USER_SECRET_KEY: TOKEN}))
    deployer = ChartDeployer(node, namespace, tmp_path)
    overrides = {"worker": {"cloudApiConfig": {"apiKeySecret": {"name": USER_SECRET, "key": USER_SECRET_KEY}}}}
    deployed = deployer.run(overrides)
    assert deployed.rc == 0, deployed

    worker_pod = the_worker_pod(kube_admin, namespace)
    assert worker_pod.status.phase == "Running" and is_ready(worker_pod), worker_pod.status
    assert_references_the_user_secret(worker_pod.spec.containers[0].env, "the worker pod")

    holding = sorted(name for name, data in decoded_secrets(kube_admin, namespace).items()
                     if any(TOKEN in value for value in data.values()))
    assert holding == [USER_SECRET], "the Secrets holding the API key: %s" % holding
    collections = decoded_secrets(kube_admin, namespace, label_selector=MANAGED)
    assert all("PREFECT_API_KEY" not in data for data in collections.values()), \
        {name: sorted(data) for name, data in collections.items()}
    deployment = k8s.AppsV1Api(kube_admin).read_namespaced_deployment(NAME, namespace)
    assert TOKEN not in serialized(kube_admin, deployment)
    assert TOKEN not in json.dumps(prefect_api(node.prefect_api_url, "GET", "/work_pools/%s" % deployer.pool))

    # A flow run: the worker hands its Job a reference to the same Secret, and the value it resolves to is the key.
    api_url = node.prefect_api_url
    flow_run_id = start_hello_flow_run(api_url, deployer.pool, "default", env_var="PREFECT_API_KEY")
    state = wait_for(lambda: finished_state(api_url, flow_run_id), TIMEOUT, interval=2, what="the flow run to finish")
    assert state["type"] == "COMPLETED", (state, flow_run_log(api_url, flow_run_id))
    said = "PREFECT_API_KEY has length %d and sha256 %s" % (len(TOKEN), hashlib.sha256(TOKEN.encode()).hexdigest())
    wait_for(lambda: said in flow_run_log(api_url, flow_run_id), 60, interval=2, what="the flow's log line")
    assert TOKEN not in flow_run_log(api_url, flow_run_id)
    jobs = k8s.BatchV1Api(kube_admin).list_namespaced_job(namespace).items
    assert len(jobs) == 1, [job.metadata.name for job in jobs]
    flow_pods = core.list_namespaced_pod(namespace, label_selector="job-name=%s" % jobs[0].metadata.name).items
    assert flow_pods, "the flow-run Job %s has no pod" % jobs[0].metadata.name
    assert_references_the_user_secret(flow_pods[0].spec.containers[0].env, "the flow-run pod")
    assert TOKEN not in serialized(kube_admin, core.list_namespaced_pod(namespace))
    assert TOKEN not in serialized(kube_admin, jobs[0])
