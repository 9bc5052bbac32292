"""The objects the prefect-worker chart's values add or change, on the test bed's real API and Prefect servers.

worker.config.jobNamespace (the pool's namespace, a Role and RoleBinding there), worker.podDisruptionBudget
and serviceAccount.{create,name,annotations}: each applied through deploy.yml, rerun without a write, removed
when the value goes, and everything gone with ``enabled: false``. Follows the check mode -> nothing written ->
real run -> verify -> rerun -> absent recipe.
"""

import json
import urllib.request
import uuid

import yaml
from kubernetes import client as k8s

from tests.support.ansible_cli import run_playbook
from tests.support.cluster_objects import MANAGED

PREFECT3_IMAGE = "prefecthq/prefect:3-python3.11-kubernetes"


def deploy(tmp_path, config, testbed, check=False):
    path = tmp_path / ("qhub-config-%s.yml" % uuid.uuid4().hex[:6])
    path.write_text(yaml.safe_dump(config))
    env = {"KUBECONFIG": testbed.kubeconfig, "PREFECT_API_URL": testbed.prefect_api_url,
           "QHUB_SECRET_PREFECT_TOKEN": "unused-token"}
    pool = "chart-" + config["namespace"]
    return run_playbook("playbooks/deploy.yml", {"qhub_config_file": str(path), "qhub_prefect_work_pool": pool},
                        env=env, check=check)


def config_of(namespace, overrides, enabled=True):
    return {"namespace": namespace, "project_name": "p-" + namespace,
            "prefect": {"enabled": enabled, "image": PREFECT3_IMAGE, "overrides": overrides}}


def recap_changed(result):
    line = next(line for line in result.stdout.splitlines() if line.startswith("localhost"))
    return int(line.split("changed=")[1].split()[0])


def rbac_in(api_client, namespace):
    rbac = k8s.RbacAuthorizationV1Api(api_client)
    roles = rbac.list_namespaced_role(namespace, label_selector=MANAGED).items
    bindings = rbac.list_namespaced_role_binding(namespace, label_selector=MANAGED).items
    return sorted([("Role", r.metadata.name) for r in roles] + [("RoleBinding", b.metadata.name) for b in bindings])


def budgets_in(api_client, namespace):
    """The collection's PodDisruptionBudgets: policy/v1beta1, all Kubernetes 1.20 serves (the client has no API)."""
    from kubernetes.dynamic import DynamicClient

    budgets = DynamicClient(api_client).resources.get(api_version="policy/v1beta1", kind="PodDisruptionBudget")
    return [item.metadata.name for item in budgets.get(namespace=namespace, label_selector=MANAGED).items]


def pool_namespace(testbed, pool):
    with urllib.request.urlopen(testbed.prefect_api_url + "/work_pools/" + pool, timeout=30) as response:
        stored = json.loads(response.read())
    return stored["base_job_template"]["variables"]["properties"]["namespace"]["default"]


def test_job_namespace_gets_the_pool_and_the_workers_rbac_owned_and_removed_with_the_rest(
        testbed, kube_admin, make_namespace, tmp_path):
    home, flows = make_namespace(), make_namespace()
    config = config_of(home, {"worker": {"config": {"jobNamespace": flows}}})

    checked = deploy(tmp_path, config, testbed, check=True)
    assert checked.rc == 0 and recap_changed(checked) > 0, checked.output[-3000:]
    assert rbac_in(kube_admin, flows) == [] and rbac_in(kube_admin, home) == []

    applied = deploy(tmp_path, config, testbed)
    assert applied.rc == 0, applied.output[-3000:]
    assert rbac_in(kube_admin, flows) == [("Role", "prefect-worker"), ("RoleBinding", "prefect-worker")]
    binding = k8s.RbacAuthorizationV1Api(kube_admin).read_namespaced_role_binding("prefect-worker", flows)
    assert [(s.name, s.namespace) for s in binding.subjects] == [("prefect-worker", home)]
    assert pool_namespace(testbed, "chart-" + home) == flows
    worker = k8s.AppsV1Api(kube_admin).read_namespaced_deployment("prefect-worker", home)
    env = dict((e.name, e.value) for e in worker.spec.template.spec.containers[0].env)
    assert env["PREFECT_INTEGRATIONS_KUBERNETES_OBSERVER_NAMESPACES"] == flows

    rerun = deploy(tmp_path, config, testbed)
    assert rerun.rc == 0 and recap_changed(rerun) == 0, rerun.output[-3000:]

    # The value goes: the RBAC there goes too, and the pool's namespace is the worker's again.
    back = deploy(tmp_path, config_of(home, {}), testbed)
    assert back.rc == 0, back.output[-3000:]
    assert rbac_in(kube_admin, flows) == []
    assert pool_namespace(testbed, "chart-" + home) == home

    deploy(tmp_path, config, testbed)
    assert rbac_in(kube_admin, flows) != []
    removed = deploy(tmp_path, config_of(home, {"worker": {"config": {"jobNamespace": flows}}}, enabled=False),
                     testbed)
    assert removed.rc == 0, removed.output[-3000:]
    assert rbac_in(kube_admin, flows) == [] and rbac_in(kube_admin, home) == []


def test_a_disruption_budget_and_the_service_account_settings(testbed, kube_admin, make_namespace, tmp_path):
    home = make_namespace()
    core = k8s.CoreV1Api(kube_admin)
    config = config_of(home, {"worker": {"podDisruptionBudget": {"maxUnavailable": 1}},
                              "serviceAccount": {"name": "flows-sa", "annotations": {"example.com/role": "r1"}}})
    applied = deploy(tmp_path, config, testbed)
    assert applied.rc == 0, applied.output[-3000:]
    # Kubernetes 1.20 serves policy/v1beta1 only; the budget is made in the version the cluster serves.
    assert budgets_in(kube_admin, home) == ["prefect-worker"]
    account = core.read_namespaced_service_account("flows-sa", home)
    assert account.metadata.annotations["example.com/role"] == "r1"
    worker = k8s.AppsV1Api(kube_admin).read_namespaced_deployment("prefect-worker", home)
    assert worker.spec.template.spec.service_account_name == "flows-sa"
    rerun = deploy(tmp_path, config, testbed)
    assert rerun.rc == 0 and recap_changed(rerun) == 0, rerun.output[-3000:]

    # No budget, and a ServiceAccount the user made: the budget and our ServiceAccount go.
    core.create_namespaced_service_account(home, k8s.V1ServiceAccount(metadata=k8s.V1ObjectMeta(name="theirs")))
    changed = deploy(tmp_path, config_of(home, {"serviceAccount": {"create": False, "name": "theirs"}}), testbed)
    assert changed.rc == 0, changed.output[-3000:]
    assert budgets_in(kube_admin, home) == []
    names = [a.metadata.name for a in core.list_namespaced_service_account(home).items]
    assert "flows-sa" not in names and "theirs" in names
    worker = k8s.AppsV1Api(kube_admin).read_namespaced_deployment("prefect-worker", home)
    assert worker.spec.template.spec.service_account_name == "theirs"

    removed = deploy(tmp_path, config_of(home, {"serviceAccount": {"create": False, "name": "theirs"}},
                                         enabled=False), testbed)
    assert removed.rc == 0, removed.output[-3000:]
    assert "theirs" in [a.metadata.name for a in core.list_namespaced_service_account(home).items]
    assert rbac_in(kube_admin, home) == []
