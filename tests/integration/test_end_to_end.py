"""The end-to-end proof: the worker the collection deploys really runs flows on the cluster.

deploy.yml applies the worker and creates the work pool; the Deployment's container then runs as a local
process (tests/worker_process.py: its env with Secrets resolved, a TokenRequest token for its
ServiceAccount) against the test bed's control plane and Prefect 3 server.
"""

import pathlib
import uuid

import yaml
from kubernetes import client as k8s

from tests.ansible_cli import run_playbook
from tests.worker_process import WorkerProcess, prefect_api, run_hello_flow, wait_for

REPO = pathlib.Path(__file__).resolve().parents[2]
SECRET_VALUE = "e2e-db-password-" + uuid.uuid4().hex[:8]


def example_config(namespace, pool):
    config = yaml.safe_load((REPO / "examples" / "qhub-config.yml").read_text())
    config["namespace"] = namespace
    # Its own QHub deployment: the example's project_name would claim (and move) every other test's "demo".
    config["project_name"] = namespace
    return config


def test_deployed_worker_submits_flow_run_jobs_with_the_configured_resources(testbed, kube_admin, unique_namespace,
                                                                             tmp_path):
    pool = "e2e-" + unique_namespace
    config = example_config(unique_namespace, pool)
    config_file = tmp_path / "qhub-config.yml"
    config_file.write_text(yaml.safe_dump(config))
    env = {"KUBECONFIG": testbed.kubeconfig, "PREFECT_API_URL": testbed.prefect_api_url,
           "QHUB_SECRET_PREFECT_TOKEN": "e2e-token", "DATABASE_PASSWORD": SECRET_VALUE}
    extra_vars = {"qhub_config_file": str(config_file), "qhub_prefect_work_pool": pool}
    deployed = run_playbook("playbooks/deploy.yml", extra_vars, env=env)
    assert deployed.rc == 0, deployed

    # The role's own check: Kubernetes would call a worker with a bad key healthy; the pool knows better.
    waiting = dict(extra_vars, qhub_prefect_wait_for_worker=True, qhub_prefect_worker_timeout=5)
    no_worker = run_playbook("playbooks/deploy.yml", waiting, env=env)
    assert no_worker.rc != 0 and "came ONLINE within 5 s" in no_worker.output, no_worker

    worker = WorkerProcess(testbed, kube_admin, unique_namespace, "prefect-worker", tmp_path / "worker").start()
    try:
        workers = wait_for(lambda: prefect_api(testbed.prefect_api_url, "POST",
                                               "/work_pools/%s/workers/filter" % pool, {}), 90,
                           what="the worker to register in the pool")
        assert [w["name"] for w in workers] == ["prefect-worker"]
        assert workers[0]["status"] == "ONLINE"
        with_worker = run_playbook("playbooks/deploy.yml", dict(waiting, qhub_prefect_worker_timeout=60), env=env)
        assert with_worker.rc == 0 and with_worker["recap"]["changed"] == 0, with_worker

        run_hello_flow(testbed.prefect_api_url, pool, queue="dev")
        batch = k8s.BatchV1Api(kube_admin)
        jobs = wait_for(lambda: batch.list_namespaced_job(unique_namespace).items, 90,
                        what="the worker to create a flow-run Job")
    finally:
        worker.stop()
    log = worker.log_text()

    job_container = jobs[0].spec.template.spec.containers[0]
    limits = config["prefect"]["overrides"]["prefect_agent"]["job"]["resources"]["limit"]
    requests = config["prefect"]["overrides"]["prefect_agent"]["job"]["resources"]["request"]
    assert job_container.resources.limits == {"cpu": str(limits["cpu"]), "memory": limits["memory"]}
    assert job_container.resources.requests == {"cpu": requests["cpu"], "memory": requests["memory"]}
    assert job_container.image_pull_policy == "IfNotPresent"
    assert [s.name for s in jobs[0].spec.template.spec.image_pull_secrets] == ["regcred"]
    env_by_name = dict((e.name, e) for e in job_container.env)
    assert env_by_name["ENVIRONMENT"].value == "dev"
    for name in ("DATABASE_PASSWORD", "PREFECT_API_KEY"):
        assert env_by_name[name].value is None, "%s reached the flow-run Job as plain text" % name
        assert env_by_name[name].value_from.secret_key_ref.name == "prefect-worker"
    assert SECRET_VALUE not in str(jobs[0].to_dict()) and "e2e-token" not in str(jobs[0].to_dict())
    assert "403" not in log and "Forbidden" not in log, log[-3000:]
    assert "created in namespace '%s'" % unique_namespace in log, log[-3000:]
