"""The proof users care about, through real pods: after deploy.yml says ok, flows run.

On a test bed with a node (tests/testbed/node.py) and the Prefect images built here (tests/testbed/images.py):
deploy.yml on the example config starts the worker pod; it is Running, Ready and ONLINE in its work pool; a
flow deployment's run becomes a Job whose pod runs the flow (baked into the image) to COMPLETED. Everything is
asserted from the outside: the pod spec through the API server, the flow's own log through the Prefect API.
"""

import hashlib
import json
import pathlib
import time
import uuid

import pytest
import yaml
from kubernetes import client as k8s

from tests.support.ansible_cli import run_playbook
from tests.support.pod_client import prefect_api, wait_for

REPO = pathlib.Path(__file__).resolve().parents[2]
SECRET_VALUE = "e2e-db-password-" + uuid.uuid4().hex[:12]
TOKEN = "e2e-token-" + uuid.uuid4().hex[:12]
FLOW_ENTRYPOINT = "/opt/prefect/flows/hello.py:hello"
# A 2-core machine runs the worker, the flow-run pod and the test bed at once.
TIMEOUT = 300


@pytest.fixture
def node_testbed(testbed):
    if "node" not in testbed.components:
        pytest.skip("the test bed has no node (QHUB_PREFECT_TESTBED_NODE=0): no pod can run")
    return testbed


def example_config(namespace):
    config = yaml.safe_load((REPO / "examples" / "qhub-config.yml").read_text())
    config["namespace"] = namespace
    # Its own QHub deployment: the example's project_name would claim (and move) every other test's "demo".
    config["project_name"] = namespace
    return config


def finished_state(api_url, flow_run_id):
    """The flow run's state once it is final, else None."""
    state = prefect_api(api_url, "GET", "/flow_runs/%s" % flow_run_id)["state"]
    return state if state["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED") else None


def start_hello_flow_run(api_url, pool, queue, env_var):
    """A deployment of the flow the image carries, and one run of it; returns the flow run id."""
    flow = prefect_api(api_url, "POST", "/flows/", {"name": "qhub-hello"})
    deployment = prefect_api(api_url, "POST", "/deployments/", {
        "name": "hello-%d" % int(time.time() * 1000), "flow_id": flow["id"], "work_pool_name": pool,
        "work_queue_name": queue, "entrypoint": FLOW_ENTRYPOINT,
        # The code is in the image: nothing to pull, only the directory to run in.
        "pull_steps": [{"prefect.deployments.steps.set_working_directory": {"directory": "/opt/prefect/flows"}}],
        "parameters": {"env_var": env_var}, "job_variables": {}})
    run = prefect_api(api_url, "POST", "/deployments/%s/create_flow_run" % deployment["id"], {})
    return run["id"]


def flow_run_log(api_url, flow_run_id):
    logs = prefect_api(api_url, "POST", "/logs/filter",
                       {"logs": {"flow_run_id": {"any_": [flow_run_id]}}, "sort": "TIMESTAMP_ASC", "limit": 200})
    return "\n".join(entry["message"] for entry in logs)


def test_deploy_yml_ok_means_a_worker_pod_that_runs_flows(node_testbed, kube_admin, unique_namespace, tmp_path):
    api_url = node_testbed.prefect_api_url
    pool = "e2e-" + unique_namespace
    config = example_config(unique_namespace)
    config_file = tmp_path / "qhub-config.yml"
    config_file.write_text(yaml.safe_dump(config))
    env = {"KUBECONFIG": node_testbed.kubeconfig, "PREFECT_API_URL": api_url,
           "QHUB_SECRET_PREFECT_TOKEN": TOKEN, "DATABASE_PASSWORD": SECRET_VALUE}
    extra_vars = {"qhub_config_file": str(config_file), "qhub_prefect_work_pool": pool,
                  "qhub_prefect_wait_timeout": TIMEOUT, "qhub_prefect_wait_for_worker": True,
                  "qhub_prefect_worker_timeout": TIMEOUT}

    deployed = run_playbook("playbooks/deploy.yml", extra_vars, env=env, wait=True, timeout=2 * TIMEOUT + 120)
    assert deployed.rc == 0, deployed

    # The moment deploy.yml says ok: the worker pod runs, is Ready, and its worker is ONLINE in the pool.
    core = k8s.CoreV1Api(kube_admin)
    pods = core.list_namespaced_pod(unique_namespace, label_selector="app.kubernetes.io/name=prefect-worker").items
    assert len(pods) == 1, [pod.metadata.name for pod in pods]
    worker_pod = pods[0]
    assert worker_pod.status.phase == "Running"
    assert {c.type: c.status for c in worker_pod.status.conditions}["Ready"] == "True"
    workers = prefect_api(api_url, "POST", "/work_pools/%s/workers/filter" % pool, {})
    assert [w["status"] for w in workers] == ["ONLINE"], workers

    # A rerun changes nothing and still finds the worker online.
    rerun = run_playbook("playbooks/deploy.yml", extra_vars, env=env, wait=True, timeout=2 * TIMEOUT + 120)
    assert rerun.rc == 0 and rerun["recap"]["changed"] == 0, rerun

    queue = json.loads(config["prefect"]["overrides"]["PREFECT__CLOUD__AGENT__LABELS"].replace("'", '"'))[0]
    flow_run_id = start_hello_flow_run(api_url, pool, queue, env_var="DATABASE_PASSWORD")
    state = wait_for(lambda: finished_state(api_url, flow_run_id), TIMEOUT, interval=2, what="the flow run to finish")
    assert state["type"] == "COMPLETED", (state, flow_run_log(api_url, flow_run_id))
    digest = hashlib.sha256(SECRET_VALUE.encode()).hexdigest()
    said = "DATABASE_PASSWORD has length %d and sha256 %s" % (len(SECRET_VALUE), digest)
    # The flow's last log batch reaches the API as its process exits, which may be after COMPLETED.
    wait_for(lambda: said in flow_run_log(api_url, flow_run_id), 60, interval=2, what="the flow's log line")
    log = flow_run_log(api_url, flow_run_id)

    # The flow ran in a pod of a Job the worker made, and that pod is the qhub-config's.
    batch = k8s.BatchV1Api(kube_admin)
    jobs = batch.list_namespaced_job(unique_namespace).items
    assert len(jobs) == 1, [job.metadata.name for job in jobs]
    selector = "job-name=%s" % jobs[0].metadata.name

    def succeeded_pods():
        pods = core.list_namespaced_pod(unique_namespace, label_selector=selector).items
        return [pod for pod in pods if pod.status.phase == "Succeeded"]

    # The run is reported COMPLETED just before the flow's process exits and its pod ends.
    flow_pods = wait_for(succeeded_pods, 60, what="the flow-run pod to succeed")
    container = flow_pods[0].spec.containers[0]
    overrides = config["prefect"]["overrides"]
    limits, requests = (overrides["prefect_agent"]["job"]["resources"][key] for key in ("limit", "request"))
    assert container.resources.limits == {"cpu": str(limits["cpu"]), "memory": limits["memory"]}
    assert container.resources.requests == {"cpu": requests["cpu"], "memory": requests["memory"]}
    assert container.image_pull_policy == overrides["IMAGE_PULL_POLICY"]
    assert [s.name for s in flow_pods[0].spec.image_pull_secrets] == [overrides["IMAGE_PULL_SECRETS"]]
    env_by_name = {item.name: item for item in container.env}
    assert env_by_name["ENVIRONMENT"].value == overrides["envVars"]["ENVIRONMENT"]
    # The worker would otherwise copy its API key into the flow-run Job as plain text.
    for name in ("DATABASE_PASSWORD", "PREFECT_API_KEY"):
        assert env_by_name[name].value is None, "%s reached the flow-run pod as plain text" % name
        assert env_by_name[name].value_from.secret_key_ref.name == "prefect-worker"
    # The worker pod made the Job with its own ServiceAccount: the Role let it do everything it tried.
    worker_log = core.read_namespaced_pod_log(worker_pod.metadata.name, unique_namespace)
    assert "403" not in worker_log and "Forbidden" not in worker_log, worker_log[-3000:]

    # The secretEnvVars value was readable inside the flow-run pod (its digest is in the flow log), never logged...
    assert SECRET_VALUE not in log
    # ...and appears in no pod spec of the namespace, nor does the API token.
    every_pod = json.dumps(k8s.ApiClient().sanitize_for_serialization(core.list_namespaced_pod(unique_namespace)))
    assert SECRET_VALUE not in every_pod and TOKEN not in every_pod
