"""Secrets never leak: unique canaries for the token and every secret env var, searched for in all
output (normal, --check, --diff, -vvvv and a run that fails halfway), the Ansible log file, the module
results, every Kubernetes object in the namespace but the Secret, and the Prefect work pool."""

import base64
import json
import uuid

import pytest
import yaml
from kubernetes import client as k8s

from tests.ansible_cli import run_playbook

CANARY = "cnry" + uuid.uuid4().hex[:10]
TOKEN = CANARY + "-token"
FROM_ENV = CANARY + "-from-env"
LITERAL = CANARY + "-literal"
ROTATED = CANARY + "-rotated"
CANARIES = (TOKEN, FROM_ENV, LITERAL, ROTATED)


def forms(value):
    """The ways a value could surface: as is, base64-encoded, JSON-escaped."""
    return (value, base64.b64encode(value.encode()).decode(), json.dumps(value)[1:-1])


@pytest.fixture
def deployment(testbed, unique_namespace, tmp_path):
    config = {"namespace": unique_namespace, "prefect": {
        "enabled": True, "image": "prefecthq/prefect:3-python3.11-kubernetes",
        "overrides": {"envVars": {"PLAIN": "visible"},
                      "secretEnvVars": {"FROM_ENV": "QHUB_SECRET_CANARY_SOURCE", "LITERAL": LITERAL}}}}
    path = tmp_path / "qhub-config.yml"
    path.write_text(yaml.safe_dump(config))
    log = tmp_path / "ansible.log"
    env = {"KUBECONFIG": testbed.kubeconfig, "PREFECT_API_URL": testbed.prefect_api_url,
           "QHUB_SECRET_PREFECT_TOKEN": TOKEN, "CANARY_SOURCE": FROM_ENV, "ANSIBLE_LOG_PATH": str(log)}
    extra = {"qhub_config_file": str(path), "qhub_prefect_work_pool": "leak-" + unique_namespace}
    return extra, env, log


def assert_no_canary(text, where):
    for canary in CANARIES:
        for form in forms(canary):
            assert form not in text, "%s leaked into %s" % (canary, where)


def test_no_canary_in_any_output_log_result_or_object(testbed, kube_admin, unique_namespace, deployment):
    extra, env, log = deployment
    runs = [
        run_playbook("playbooks/deploy.yml", extra, env=env, check=True),
        run_playbook("playbooks/deploy.yml", extra, env=env, diff=True),
        run_playbook("playbooks/deploy.yml", extra, env=env, verbosity=4),
        run_playbook("playbooks/deploy.yml", extra, env=dict(env, QHUB_SECRET_PREFECT_TOKEN=ROTATED), diff=True,
                     verbosity=4),
        # Fails halfway: the work pool is written, then the Kubernetes step cannot load its kubeconfig.
        run_playbook("playbooks/deploy.yml", dict(extra, qhub_prefect_kubeconfig="/nonexistent/kubeconfig"),
                     env=env, diff=True, verbosity=4),
    ]
    assert [run.rc for run in runs[:4]] == [0, 0, 0, 0], runs
    assert runs[4].rc != 0 and "/nonexistent/kubeconfig" in runs[4].output, runs[4]
    assert "changed=" in runs[3].stdout and "Secret %s/prefect-worker" % unique_namespace in runs[3].stdout
    for index, run in enumerate(runs):
        assert_no_canary(run.output, "the output of run %d" % index)
    assert_no_canary(log.read_text(), "ANSIBLE_LOG_PATH")

    core, apps, rbac = k8s.CoreV1Api(kube_admin), k8s.AppsV1Api(kube_admin), k8s.RbacAuthorizationV1Api(kube_admin)
    listings = {
        "Deployment": apps.list_namespaced_deployment(unique_namespace),
        "ReplicaSet": apps.list_namespaced_replica_set(unique_namespace),
        "Pod": core.list_namespaced_pod(unique_namespace),
        "ConfigMap": core.list_namespaced_config_map(unique_namespace),
        "ServiceAccount": core.list_namespaced_service_account(unique_namespace),
        "Role": rbac.list_namespaced_role(unique_namespace),
        "RoleBinding": rbac.list_namespaced_role_binding(unique_namespace),
        "Event": core.list_namespaced_event(unique_namespace),
    }
    for kind, listing in listings.items():
        assert_no_canary(json.dumps(kube_admin.sanitize_for_serialization(listing)), kind)
    secret = core.read_namespaced_secret("prefect-worker", unique_namespace)
    decoded = dict((key, base64.b64decode(value).decode()) for key, value in secret.data.items())
    assert decoded["PREFECT_API_KEY"] == ROTATED and decoded["FROM_ENV"] == FROM_ENV and decoded["LITERAL"] == LITERAL

    container = apps.read_namespaced_deployment("prefect-worker", unique_namespace).spec.template.spec.containers[0]
    for item in container.env:
        if item.name in ("PREFECT_API_KEY", "FROM_ENV", "LITERAL"):
            assert item.value is None and item.value_from.secret_key_ref.name == "prefect-worker"
    from tests.worker_process import prefect_api
    pool = prefect_api(testbed.prefect_api_url, "GET", "/work_pools/" + extra["qhub_prefect_work_pool"])
    assert_no_canary(json.dumps(pool), "the work pool")
