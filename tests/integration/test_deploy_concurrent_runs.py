"""Two runs of deploy.yml at once against one namespace end in the same state as one run."""

import json
import pathlib
import subprocess
import sys

import yaml
from kubernetes import client as k8s

from tests.support.ansible_cli import REPO, ansible_env, run_playbook
from tests.support.pod_client import prefect_api


def snapshot(api_client, namespace):
    core, apps, rbac = k8s.CoreV1Api(api_client), k8s.AppsV1Api(api_client), k8s.RbacAuthorizationV1Api(api_client)
    objects = {
        "Deployment": apps.read_namespaced_deployment("prefect-worker", namespace),
        "Secret": core.read_namespaced_secret("prefect-worker", namespace),
        "ServiceAccount": core.read_namespaced_service_account("prefect-worker", namespace),
        "Role": rbac.read_namespaced_role("prefect-worker", namespace),
        "RoleBinding": rbac.read_namespaced_role_binding("prefect-worker", namespace),
    }
    out = {}
    for kind, obj in objects.items():
        data = api_client.sanitize_for_serialization(obj)
        for key in ("resourceVersion", "uid", "creationTimestamp", "managedFields", "generation"):
            data["metadata"].pop(key, None)
        data.pop("status", None)
        out[kind] = data
    for data in out.values():
        # The digests cover the namespace, which differs between the two deployments compared.
        data["metadata"].get("annotations", {}).pop("qhub.prefect/applied-digest", None)
    # The 1.20 token controller names the ServiceAccount's token Secret at random.
    out["ServiceAccount"].pop("secrets", None)
    return out


def config_file(tmp_path, namespace):
    path = tmp_path / ("%s.yml" % namespace)
    path.write_text(yaml.safe_dump({"namespace": namespace, "prefect": {
        "enabled": True, "overrides": {"JOB_CPU_LIMIT": "1", "secretEnvVars": {"S": "value"}}}}))
    return path


def test_two_concurrent_runs_equal_one_run(testbed, kube_admin, unique_namespace, tmp_path):
    env = ansible_env({"KUBECONFIG": testbed.kubeconfig, "PREFECT_API_URL": testbed.prefect_api_url,
                       "QHUB_SECRET_PREFECT_TOKEN": "concurrent"})
    pool = "conc-" + unique_namespace
    command = [str(pathlib.Path(sys.executable).parent / "ansible-playbook"), "playbooks/deploy.yml", "-e",
               json.dumps({"qhub_config_file": str(config_file(tmp_path, unique_namespace)),
                           "qhub_prefect_work_pool": pool, "qhub_prefect_wait": False})]
    runs = [subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for dummy in range(2)]
    outputs = [run.communicate(timeout=300)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    concurrent = snapshot(kube_admin, unique_namespace)

    single_ns = unique_namespace + "-one"
    single = run_playbook("playbooks/deploy.yml", {"qhub_config_file": str(config_file(tmp_path, single_ns)),
                                                   "qhub_prefect_work_pool": pool + "-one"},
                          env={"KUBECONFIG": testbed.kubeconfig, "PREFECT_API_URL": testbed.prefect_api_url,
                               "QHUB_SECRET_PREFECT_TOKEN": "concurrent"})
    try:
        assert single.rc == 0, single
        alone = snapshot(kube_admin, single_ns)
        text = json.dumps(alone).replace(single_ns, unique_namespace).replace(pool + "-one", pool)
        assert json.loads(text) == concurrent
        rerun = run_playbook("playbooks/deploy.yml", json.loads(command[-1]), env={
            "KUBECONFIG": testbed.kubeconfig, "PREFECT_API_URL": testbed.prefect_api_url,
            "QHUB_SECRET_PREFECT_TOKEN": "concurrent"})
        assert rerun.rc == 0 and rerun["recap"]["changed"] == 0, rerun
        assert [p["name"] for p in prefect_api(testbed.prefect_api_url, "POST", "/work_pools/filter", {})
                if p["name"] == pool] == [pool]
    finally:
        k8s.CoreV1Api(kube_admin).delete_namespace(single_ns)
