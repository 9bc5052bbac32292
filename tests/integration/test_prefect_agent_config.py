"""prefect_agent_config against the test bed's real API server (RBAC on, controller-manager running).

Follows community.postgresql's recipe: check mode (changed) -> nothing written -> real run -> verify
-> rerun (not changed) -> absent.
"""

import base64
import json
import ssl
import urllib.request

import pytest
import yaml
from kubernetes import client as k8s

from tests.support.ansible_cli import run_module
from tests.support.pod_client import DEPLOYMENT_GONE_TIMEOUT, wait_for

SECRETS = {"DATABASE_PASSWORD": "canary-db-7f3a", "S3_SECRET": "canary-s3-91bc"}
TOKEN = "canary-token-55e1"
OVERRIDES = {
    "IMAGE_PULL_POLICY": "IfNotPresent",
    "IMAGE_PULL_SECRETS": "regcred",
    "PREFECT__CLOUD__AGENT__LABELS": "['dev']",
    "prefect_agent": {"job": {"resources": {"limit": {"cpu": 2, "memory": "4Gi"}, "request": {"cpu": "500m"}}}},
    "envVars": {"ENVIRONMENT": "dev"},
}


def args_for(testbed, namespace, **extra):
    args = {"namespace": namespace, "image": "prefecthq/prefect:3-python3.11-kubernetes", "overrides": OVERRIDES,
            "secret_env": SECRETS, "api_key": TOKEN, "api_url": testbed.prefect_api_url, "work_pool": "qhub",
            "kubeconfig": testbed.kubeconfig}
    args.update(extra)
    return args


def read_all(api_client, namespace, name="prefect-worker"):
    core, rbac, apps = k8s.CoreV1Api(api_client), k8s.RbacAuthorizationV1Api(api_client), k8s.AppsV1Api(api_client)
    readers = {
        "ServiceAccount": lambda: core.read_namespaced_service_account(name, namespace),
        "Role": lambda: rbac.read_namespaced_role(name, namespace),
        "RoleBinding": lambda: rbac.read_namespaced_role_binding(name, namespace),
        "Secret": lambda: core.read_namespaced_secret(name, namespace),
        "Deployment": lambda: apps.read_namespaced_deployment(name, namespace),
    }
    found = {}
    for kind, read in readers.items():
        try:
            found[kind] = read()
        except k8s.ApiException as exc:
            if exc.status != 404:
                raise
    return found


def versions(objects):
    """What the collection wrote, per kind: a change to any object shows here, a controller's status update does not.

    The resourceVersion, but for the Deployment its generation (every spec change bumps it) and its
    labels and annotations: on a node its status moves on while the pod starts, which is no write of ours.
    """
    return dict((kind, (obj.metadata.generation, obj.metadata.labels, obj.metadata.annotations)
                 if kind == "Deployment" else obj.metadata.resource_version) for kind, obj in objects.items())


def env_by_name(container):
    return dict((item.name, item) for item in container.env)


def test_check_mode_then_apply_then_rerun_then_absent(testbed, kube_admin, unique_namespace):
    args = args_for(testbed, unique_namespace)

    checked = run_module("prefect_agent_config", args, check=True)
    assert checked.rc == 0, checked
    assert checked["changed"] is True
    assert {o["kind"] for o in checked["objects"] if o["action"] == "created"} >= {
        "ServiceAccount", "Role", "RoleBinding", "Secret", "Deployment"}
    assert read_all(kube_admin, unique_namespace) == {}

    applied = run_module("prefect_agent_config", args)
    assert applied.rc == 0, applied
    assert applied["changed"] is True
    objects = read_all(kube_admin, unique_namespace)
    assert set(objects) == {"ServiceAccount", "Role", "RoleBinding", "Secret", "Deployment"}
    container = objects["Deployment"].spec.template.spec.containers[0]
    assert container.image == "prefecthq/prefect:3-python3.11-kubernetes"
    assert container.args[:7] == ["prefect", "worker", "start", "--type", "kubernetes", "--pool", "qhub"]
    assert container.args[-2:] == ["--work-queue", "dev"]
    env = env_by_name(container)
    assert env["ENVIRONMENT"].value == "dev"
    assert env["PREFECT_API_URL"].value == testbed.prefect_api_url
    assert env["PREFECT_INTEGRATIONS_KUBERNETES_OBSERVER_NAMESPACES"].value == unique_namespace
    # A recent (floating 3) image's worker never reads the cluster UID (prefect-kubernetes 0.6.0 on).
    assert "PREFECT_KUBERNETES_CLUSTER_UID" not in env
    for name in ("PREFECT_API_KEY", "DATABASE_PASSWORD", "S3_SECRET"):
        assert env[name].value is None
        assert env[name].value_from.secret_key_ref.name == "prefect-worker"
        assert env[name].value_from.secret_key_ref.key == name
    secret = dict((k, base64.b64decode(v).decode()) for k, v in objects["Secret"].data.items())
    assert secret == {"PREFECT_API_KEY": TOKEN, "DATABASE_PASSWORD": "canary-db-7f3a", "S3_SECRET": "canary-s3-91bc"}
    assert objects["RoleBinding"].subjects[0].name == "prefect-worker"
    assert objects["Deployment"].spec.template.spec.service_account_name == "prefect-worker"
    before = versions(objects)

    rerun = run_module("prefect_agent_config", args)
    assert rerun.rc == 0 and rerun["changed"] is False, rerun
    assert {o["action"] for o in rerun["objects"]} == {"unchanged"}
    rechecked = run_module("prefect_agent_config", args, check=True)
    assert rechecked.rc == 0 and rechecked["changed"] is False, rechecked
    assert versions(read_all(kube_admin, unique_namespace)) == before

    removed = run_module("prefect_agent_config", dict(args, state="absent"))
    assert removed.rc == 0 and removed["changed"] is True, removed
    # Only the Deployment waits for its pods (Foreground); the rest is gone when the run says so.
    assert set(read_all(kube_admin, unique_namespace)) <= {"Deployment"}
    # A rerun while the Foreground delete finishes has nothing left to do.
    assert run_module("prefect_agent_config", dict(args, state="absent"))["changed"] is False
    # On a node the pod's termination comes first, which a loaded machine's kubelet can take its time over.
    wait_for(lambda: read_all(kube_admin, unique_namespace) == {}, DEPLOYMENT_GONE_TIMEOUT, what="the objects gone")


def test_check_mode_changes_nothing_on_a_live_deployment(testbed, kube_admin, unique_namespace):
    args = args_for(testbed, unique_namespace)
    assert run_module("prefect_agent_config", args).rc == 0
    before = versions(read_all(kube_admin, unique_namespace))
    checked = run_module("prefect_agent_config", dict(args, image="prefecthq/prefect:3.1.0-python3.11-kubernetes"),
                         check=True)
    assert checked.rc == 0 and checked["changed"] is True, checked
    assert [o["kind"] for o in checked["objects"] if o["action"] == "updated"] == ["Deployment"]
    assert versions(read_all(kube_admin, unique_namespace)) == before


def test_diff_shows_changes_and_masks_every_secret(testbed, unique_namespace):
    args = args_for(testbed, unique_namespace)
    first = run_module("prefect_agent_config", args, diff=True)
    assert first.rc == 0, first
    rotated = run_module("prefect_agent_config", dict(args, api_key="canary-rotated-0c1d"), diff=True)
    assert rotated.rc == 0 and rotated["changed"] is True, rotated
    for result in (first, rotated):
        for canary in list(SECRETS.values()) + [TOKEN, "canary-rotated-0c1d"]:
            assert canary not in result.output
            assert base64.b64encode(canary.encode()).decode() not in result.output
    assert "Secret %s/prefect-worker" % unique_namespace in rotated.output
    assert "PREFECT_API_KEY: '********'" in rotated.output


def test_drift_is_restored_and_reported(testbed, kube_admin, unique_namespace):
    args = args_for(testbed, unique_namespace)
    assert run_module("prefect_agent_config", args).rc == 0
    apps = k8s.AppsV1Api(kube_admin)
    apps.patch_namespaced_deployment("prefect-worker", unique_namespace, {"spec": {"template": {"spec": {
        "containers": [{"name": "prefect-worker", "image": "evil/image:1"}]}}}}, field_manager="kubectl-edit")
    restored = run_module("prefect_agent_config", args)
    assert restored.rc == 0 and restored["changed"] is True, restored
    deployment = apps.read_namespaced_deployment("prefect-worker", unique_namespace)
    assert deployment.spec.template.spec.containers[0].image == "prefecthq/prefect:3-python3.11-kubernetes"


def test_another_declarative_owner_fails_named_and_force_takes_over(testbed, kube_admin, unique_namespace):
    args = args_for(testbed, unique_namespace)
    assert run_module("prefect_agent_config", args).rc == 0
    body = {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "prefect-worker", "namespace": unique_namespace},
            "spec": {"template": {"spec": {"containers": [{"name": "prefect-worker", "image": "other/image:2"}]}}}}
    _apply_as(kube_admin, body, "argocd-controller")
    failed = run_module("prefect_agent_config", dict(args, image="prefecthq/prefect:3.2.0-python3.11-kubernetes"))
    assert failed.rc != 0
    assert "argocd-controller" in failed["msg"] and ".image" in failed["msg"] and "force: true" in failed["msg"]
    forced = run_module("prefect_agent_config", dict(args, image="prefecthq/prefect:3.2.0-python3.11-kubernetes",
                                                     force=True))
    assert forced.rc == 0 and forced["changed"] is True, forced
    image = k8s.AppsV1Api(kube_admin).read_namespaced_deployment("prefect-worker", unique_namespace) \
        .spec.template.spec.containers[0].image
    assert image == "prefecthq/prefect:3.2.0-python3.11-kubernetes"


def _apply_as(api_client, body, manager):
    """Server-side apply as another field manager, over plain HTTP (the client's API differs by version)."""
    configuration = api_client.configuration
    url = "%s/apis/apps/v1/namespaces/%s/deployments/%s?fieldManager=%s&force=true" % (
        configuration.host, body["metadata"]["namespace"], body["metadata"]["name"], manager)
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="PATCH", headers={
        "Content-Type": "application/apply-patch+yaml",
        "Authorization": next(v["value"] for v in configuration.auth_settings().values() if v.get("value"))})
    context = ssl.create_default_context(cafile=configuration.ssl_ca_cert)
    with urllib.request.urlopen(request, context=context) as response:
        assert response.status == 200


def test_token_rotation_rolls_a_new_replicaset(testbed, kube_admin, unique_namespace):
    args = args_for(testbed, unique_namespace)
    assert run_module("prefect_agent_config", args).rc == 0
    apps = k8s.AppsV1Api(kube_admin)
    selector = "app.kubernetes.io/instance=prefect-worker"
    # The controller's ReplicaSet, not the pods: this is about the pod template, node or no node.
    first = {rs.metadata.name for rs in wait_for(
        lambda: apps.list_namespaced_replica_set(unique_namespace, label_selector=selector).items, 30,
        what="the Deployment's first ReplicaSet")}
    assert len(first) == 1
    rotated = run_module("prefect_agent_config", dict(args, api_key="rotated-token"))
    assert rotated.rc == 0 and rotated["changed"] is True, rotated
    # With the Recreate strategy the new ReplicaSet comes only once the old pods are gone: on a node, after
    # their termination grace period.
    after = wait_for(lambda: {rs.metadata.name for rs in apps.list_namespaced_replica_set(
        unique_namespace, label_selector=selector).items} - first, 120, what="a new ReplicaSet after the rotation")
    assert len(after) == 1


def test_absent_leaves_unowned_objects_with_the_same_prefix(testbed, kube_admin, unique_namespace):
    args = args_for(testbed, unique_namespace)
    assert run_module("prefect_agent_config", args).rc == 0
    core = k8s.CoreV1Api(kube_admin)
    core.create_namespaced_config_map(unique_namespace, k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(
        name="prefect-worker-settings")))
    core.create_namespaced_service_account(unique_namespace, k8s.V1ServiceAccount(metadata=k8s.V1ObjectMeta(
        name="prefect-worker-2")))
    removed = run_module("prefect_agent_config", dict(args, state="absent"))
    assert removed.rc == 0, removed
    assert sorted((o["kind"], o["action"]) for o in removed["objects"]) == sorted(
        [("Deployment", "deleted"), ("Secret", "deleted"), ("RoleBinding", "deleted"), ("Role", "deleted"),
         ("ServiceAccount", "deleted")])
    wait_for(lambda: read_all(kube_admin, unique_namespace) == {}, DEPLOYMENT_GONE_TIMEOUT, what="the objects gone")
    core.read_namespaced_config_map("prefect-worker-settings", unique_namespace)
    core.read_namespaced_service_account("prefect-worker-2", unique_namespace)


def test_an_unowned_object_with_the_exact_name_is_not_deleted(testbed, kube_admin, unique_namespace):
    core = k8s.CoreV1Api(kube_admin)
    core.create_namespaced_service_account(unique_namespace, k8s.V1ServiceAccount(metadata=k8s.V1ObjectMeta(
        name="prefect-worker")))
    removed = run_module("prefect_agent_config", dict(args_for(testbed, unique_namespace), state="absent"))
    assert removed.rc == 0 and removed["changed"] is False, removed
    assert [o["action"] for o in removed["objects"]] == ["skipped"]
    core.read_namespaced_service_account("prefect-worker", unique_namespace)


@pytest.mark.parametrize("overrides,key", [
    ({"JOB_CPU_LIMIT": "four"}, "overrides.JOB_CPU_LIMIT"),
    ({"envVars": {"BAD-NAME": "x"}}, "overrides.envVars.BAD-NAME"),
])
def test_bad_input_fails_before_any_request(testbed, overrides, key):
    failed = run_module("prefect_agent_config", dict(args_for(testbed, "never-created"), overrides=overrides))
    assert failed.rc != 0 and failed["msg"].startswith(key + ":"), failed
    assert "requests" not in failed.data


def test_qhub_era_prefect1_config_runs_an_agent_whose_job_template_carries_the_overrides(testbed, kube_admin,
                                                                                         unique_namespace):
    args = {"namespace": unique_namespace, "image": "prefecthq/prefect:0.14.22-python3.8", "api_key": TOKEN,
            "api_url": "http://prefect-server:4200/graphql", "kubeconfig": testbed.kubeconfig,
            "overrides": {"prefect_agent": {"job": {"resources": {"limit": {"cpu": 4, "memory": "8G"}}}},
                          "IMAGE_PULL_POLICY": "Always", "envVars": {"ENVIRONMENT": "dev"}},
            "secret_env": {"DATABASE_PASSWORD": "canary-db-7f3a"}}
    applied = run_module("prefect_agent_config", args)
    assert applied.rc == 0 and applied["generation"] == "prefect1", applied
    core, apps = k8s.CoreV1Api(kube_admin), k8s.AppsV1Api(kube_admin)
    pod = apps.read_namespaced_deployment("prefect-agent", unique_namespace).spec.template.spec
    container = pod.containers[0]
    assert container.args == ["prefect", "agent", "kubernetes", "start", "--job-template",
                              "/etc/prefect-agent/job_template.yaml"]
    env = env_by_name(container)
    assert env["JOB_CPU_LIMIT"].value == "4" and env["JOB_MEM_LIMIT"].value == "8G"
    assert env["PREFECT__CLOUD__API"].value == "http://prefect-server:4200/graphql"
    assert env["PREFECT__BACKEND"].value == "server"
    for key in ("PREFECT__CLOUD__AGENT__AUTH_TOKEN", "PREFECT__CLOUD__API_KEY"):
        assert env[key].value_from.secret_key_ref.key == key
    template = yaml.safe_load(core.read_namespaced_config_map("prefect-agent-job-template", unique_namespace)
                              .data["job_template.yaml"])
    flow = template["spec"]["template"]["spec"]["containers"][0]
    assert flow["resources"] == {"limits": {"cpu": "4", "memory": "8G"}}
    assert flow["imagePullPolicy"] == "Always"
    assert {"name": "DATABASE_PASSWORD", "valueFrom": {"secretKeyRef": {
        "name": "prefect-agent", "key": "DATABASE_PASSWORD"}}} in flow["env"]
    assert [v.config_map.name for v in pod.volumes if v.config_map] == ["prefect-agent-job-template"]
    rerun = run_module("prefect_agent_config", args)
    assert rerun.rc == 0 and rerun["changed"] is False, rerun


def test_an_image_that_reads_the_cluster_uid_gets_kube_systems(testbed, kube_admin, unique_namespace):
    """Prefect 2.9 to 3.4.0 workers read the UID at every flow-run submission: it is set from kube-system."""
    args = args_for(testbed, unique_namespace, image="prefecthq/prefect:3.2.0-python3.11-kubernetes")
    applied = run_module("prefect_agent_config", args)
    assert applied.rc == 0, applied
    env = env_by_name(read_all(kube_admin, unique_namespace)["Deployment"].spec.template.spec.containers[0])
    kube_system_uid = k8s.CoreV1Api(kube_admin).read_namespace("kube-system").metadata.uid
    assert env["PREFECT_KUBERNETES_CLUSTER_UID"].value == kube_system_uid
    assert run_module("prefect_agent_config", dict(args, state="absent")).rc == 0
