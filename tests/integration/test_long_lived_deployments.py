"""Long-lived deployments through deploy.yml: a generation switch and a namespace move leave one agent or worker,
QHub's chart form deploys on both generations, and the credential sources users have reach servers that check.

Each test that changes a config runs the change in check mode with --diff first (removals shown, nothing
written), then for real, then again (nothing changed).
"""

import base64
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
import uuid

import pytest
import yaml
from kubernetes import client as k8s

from tests.support.ansible_cli import run_playbook
from tests.support.cluster_objects import MANAGED, labelled
from tests.testbed.prefect1_standin import Prefect1StandIn
from tests.support.pod_client import (
    DEPLOYMENT_GONE_TIMEOUT, free_port, mint_token, prefect_api, service_account_kubeconfig, wait_for,
)

PREFECT1_IMAGE = "prefecthq/prefect:0.14.22-python3.8"
PREFECT3_IMAGE = "prefecthq/prefect:3-python3.11-kubernetes"
STANDIN_KEY = "pnu_standin-" + uuid.uuid4().hex[:12]


@pytest.fixture(scope="module")
def standin():
    """The Prefect 1 GraphQL stand-in, refusing requests without its API key (as Prefect Cloud 1 did)."""
    with Prefect1StandIn(token=STANDIN_KEY) as server:
        yield server


@pytest.fixture
def project():
    return "proj-" + uuid.uuid4().hex[:8]


@pytest.fixture
def second_namespace(kube_admin):
    name = "t-" + uuid.uuid4().hex[:8]
    core = k8s.CoreV1Api(kube_admin)
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name,
                                                                    labels={"qhub-prefect-test": "true"})))
    yield name
    try:
        core.delete_namespace(name)
    except k8s.ApiException as error:
        if error.status != 404:
            raise


def owned(api_client, instance):
    """Every object carrying this collection's labels for ``instance``, in any namespace: {(kind, ns, name)}."""
    selector = "%s,qhub.prefect/instance=%s" % (MANAGED, instance)
    return set((kind, item.metadata.namespace, item.metadata.name) for kind, item in labelled(api_client, selector))


def managed_in(api_client, *namespaces):
    """This collection's objects in ``namespaces`` by its managed-by label alone: {(kind, ns, name)}."""
    return set((kind, namespace, item.metadata.name)
               for namespace in namespaces for kind, item in labelled(api_client, MANAGED, namespace))


def deployments_in(api_client, *namespaces):
    apps = k8s.AppsV1Api(api_client)
    return sorted((ns, d.metadata.name) for ns in namespaces for d in apps.list_namespaced_deployment(ns).items)


def deploy(tmp_path, config, env, check=False, diff=False, extra=None, verbosity=0):
    path = tmp_path / ("qhub-config-%s.yml" % uuid.uuid4().hex[:6])
    path.write_text(yaml.safe_dump(config))
    extra_vars = dict({"qhub_config_file": str(path), "qhub_prefect_wait": False}, **(extra or {}))
    return run_playbook("playbooks/deploy.yml", extra_vars, env=env, check=check, diff=diff, verbosity=verbosity)


def objects_of(name, namespace, kinds=("ServiceAccount", "Role", "RoleBinding", "Secret", "Deployment")):
    return set((kind, namespace, name) for kind in kinds)


def test_generation_switch_leaves_one_deployment_and_nothing_of_the_old_one(
        testbed, kube_admin, unique_namespace, standin, project, tmp_path):
    env = {"KUBECONFIG": testbed.kubeconfig, "PREFECT__CLOUD__API": standin.url,
           "QHUB_SECRET_PREFECT_TOKEN": STANDIN_KEY}
    config = {"project_name": project, "namespace": unique_namespace,
              "prefect": {"enabled": True, "image": PREFECT1_IMAGE}}
    first = deploy(tmp_path, config, env, extra={"qhub_prefect_project": project})
    assert first.rc == 0, first
    assert deployments_in(kube_admin, unique_namespace) == [(unique_namespace, "prefect-agent")]
    agent_objects = objects_of("prefect-agent", unique_namespace) | {
        ("ConfigMap", unique_namespace, "prefect-agent-job-template")}
    assert managed_in(kube_admin, unique_namespace) == agent_objects

    # Only the image changes, to Prefect 3.
    config["prefect"]["image"] = PREFECT3_IMAGE
    # A token, though this server needs none, so the test fails on the fault it is about with any version.
    env = {"KUBECONFIG": testbed.kubeconfig, "PREFECT_API_URL": testbed.prefect_api_url,
           "QHUB_SECRET_PREFECT_TOKEN": "unused-token"}
    extra = {"qhub_prefect_work_pool": "gen-" + unique_namespace}
    checked = deploy(tmp_path, config, env, check=True, diff=True, extra=extra)
    assert checked.rc == 0, checked
    assert "Deployment %s/prefect-agent (absent)" % unique_namespace in checked.stdout, checked.stdout[-3000:]
    assert "Secret %s/prefect-agent (absent)" % unique_namespace in checked.stdout
    assert managed_in(kube_admin, unique_namespace) == agent_objects  # check mode wrote nothing

    switched = deploy(tmp_path, config, env, extra=extra)
    assert switched.rc == 0, switched
    # Deleted Foreground: with the wait off the run does not stay for the garbage collector.
    wait_for(lambda: deployments_in(kube_admin, unique_namespace) == [(unique_namespace, "prefect-worker")],
             DEPLOYMENT_GONE_TIMEOUT, what="the old Deployment gone")
    assert managed_in(kube_admin, unique_namespace) == objects_of("prefect-worker", unique_namespace)
    assert owned(kube_admin, project) == objects_of("prefect-worker", unique_namespace)
    core = k8s.CoreV1Api(kube_admin)
    assert [s.metadata.name for s in core.list_namespaced_secret(unique_namespace, label_selector=MANAGED).items] \
        == ["prefect-worker"]
    # The project the agent used is reported, never deleted.
    assert "project %s is no longer described by the config; it was left in place" % project in switched.output
    assert standin.find(project)

    again = deploy(tmp_path, config, env, extra=extra)
    assert again.rc == 0 and again["recap"]["changed"] == 0, again


def test_namespace_move_leaves_one_deployment(testbed, kube_admin, unique_namespace, second_namespace, project,
                                              tmp_path):
    env = {"KUBECONFIG": testbed.kubeconfig, "PREFECT_API_URL": testbed.prefect_api_url,
           "QHUB_SECRET_PREFECT_TOKEN": "unused-token"}
    extra = {"qhub_prefect_work_pool": "move-" + unique_namespace}
    config = {"project_name": project, "namespace": unique_namespace,
              "prefect": {"enabled": True, "image": PREFECT3_IMAGE,
                          "overrides": {"secretEnvVars": {"DB_PASSWORD": "QHUB_SECRET_DB"}}}}
    env["DB"] = "db-" + uuid.uuid4().hex
    assert deploy(tmp_path, config, env, extra=extra).rc == 0
    assert managed_in(kube_admin, unique_namespace) == objects_of("prefect-worker", unique_namespace)

    config["namespace"] = second_namespace
    # A move is confirmed by naming the namespace it moves from; without it the run stops
    # (test_deployment_ownership.py).
    extra["qhub_prefect_move_from"] = unique_namespace
    checked = deploy(tmp_path, config, env, check=True, diff=True, extra=extra)
    assert checked.rc == 0, checked
    assert "Deployment %s/prefect-worker (absent)" % unique_namespace in checked.stdout
    assert managed_in(kube_admin, unique_namespace, second_namespace) == objects_of("prefect-worker",
                                                                                    unique_namespace)

    moved = deploy(tmp_path, config, env, extra=extra)
    assert moved.rc == 0, moved
    wait_for(lambda: deployments_in(kube_admin, unique_namespace, second_namespace) == [
        (second_namespace, "prefect-worker")], DEPLOYMENT_GONE_TIMEOUT, what="the old Deployment gone")
    assert managed_in(kube_admin, unique_namespace) == set()
    assert owned(kube_admin, project) == objects_of("prefect-worker", second_namespace)
    assert k8s.CoreV1Api(kube_admin).list_namespaced_secret(unique_namespace, label_selector=MANAGED).items == []

    # Moving back while disabling would strand the worker in the namespace left behind: refused, nothing written.
    config.update(namespace=unique_namespace, prefect={"enabled": False})
    del extra["qhub_prefect_move_from"]
    refused = deploy(tmp_path, config, env, extra=extra)
    assert refused.rc != 0
    assert "the QHub deployment %s already has an agent or worker in the namespace %s" % (
        project, second_namespace) in refused.output, refused.output[-3000:]
    assert owned(kube_admin, project) == objects_of("prefect-worker", second_namespace)

    config["namespace"] = second_namespace
    removed = deploy(tmp_path, config, env, extra=extra)
    assert removed.rc == 0, removed
    wait_for(lambda: owned(kube_admin, project) == set(), DEPLOYMENT_GONE_TIMEOUT, what="the objects gone")


def test_objects_of_another_instance_or_without_the_labels_are_never_touched(testbed, kube_admin, unique_namespace,
                                                                             project, tmp_path):
    env = {"KUBECONFIG": testbed.kubeconfig, "PREFECT_API_URL": testbed.prefect_api_url,
           "QHUB_SECRET_PREFECT_TOKEN": "unused-token"}
    extra = {"qhub_prefect_work_pool": "other-" + unique_namespace}
    other = {"project_name": project + "-other", "namespace": unique_namespace,
             "prefect": {"enabled": True, "image": PREFECT3_IMAGE}}
    assert deploy(tmp_path, other, env, extra=dict(extra, qhub_prefect_name="other-worker")).rc == 0
    apps = k8s.AppsV1Api(kube_admin)
    apps.create_namespaced_deployment(unique_namespace, k8s.V1Deployment(
        metadata=k8s.V1ObjectMeta(name="prefect-agent", labels={"app.kubernetes.io/instance": "prefect-agent"}),
        spec=k8s.V1DeploymentSpec(selector=k8s.V1LabelSelector(match_labels={"x": "y"}), template=k8s.V1PodTemplateSpec(
            metadata=k8s.V1ObjectMeta(labels={"x": "y"}),
            spec=k8s.V1PodSpec(containers=[k8s.V1Container(name="c", image="busybox")])))))

    mine = {"project_name": project, "namespace": unique_namespace,
            "prefect": {"enabled": True, "image": PREFECT3_IMAGE}}
    assert deploy(tmp_path, mine, env, extra=extra).rc == 0
    assert deployments_in(kube_admin, unique_namespace) == [
        (unique_namespace, "other-worker"), (unique_namespace, "prefect-agent"), (unique_namespace, "prefect-worker")]


def test_qhub_chart_form_deploys_and_reaches_both_generations(testbed, kube_admin, unique_namespace, standin,
                                                              tmp_path):
    """QHub's chart values (prefect_agent.job.*, prefect_agent.prefectLabels; '' meant unset) as users wrote them."""
    overrides = {"prefect_agent": {
        "job": {"imagePullSecrets": "regcred", "imagePullPolicy": "Always",
                "resources": {"requests": {"memory": "1Gi", "cpu": ""}, "limits": {"memory": "4Gi", "cpu": "2"}}},
        "prefectLabels": "['dev', 'gpu']"}}
    pool = "chart-" + unique_namespace
    env = {"KUBECONFIG": testbed.kubeconfig, "PREFECT_API_URL": testbed.prefect_api_url}
    config = {"namespace": unique_namespace, "prefect": {"enabled": True, "image": PREFECT3_IMAGE,
                                                         "overrides": overrides}}
    worker = deploy(tmp_path, config, env, extra={"qhub_prefect_work_pool": pool})
    assert worker.rc == 0, worker
    stored = prefect_api(testbed.prefect_api_url, "GET", "/work_pools/%s" % pool)
    properties = stored["base_job_template"]["variables"]["properties"]
    assert (properties["memory_request"]["default"], properties["memory_limit"]["default"],
            properties["cpu_limit"]["default"]) == ("1Gi", "4Gi", "2")
    assert "default" not in properties["cpu_request"] or properties["cpu_request"]["default"] is None
    assert properties["image_pull_policy"]["default"] == "Always"
    job_spec = stored["base_job_template"]["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]
    assert job_spec["imagePullSecrets"] == [{"name": "regcred"}]
    queues = prefect_api(testbed.prefect_api_url, "POST", "/work_pools/%s/queues/filter" % pool, {})
    assert {"dev", "gpu"} <= set(q["name"] for q in queues)
    args = k8s.AppsV1Api(kube_admin).read_namespaced_deployment("prefect-worker", unique_namespace) \
        .spec.template.spec.containers[0].args
    assert args[args.index("--work-queue") + 1] == "dev" and "gpu" in args

    agent_namespace = unique_namespace  # the same namespace, other name: the worker stays (no instance clash)
    env1 = {"KUBECONFIG": testbed.kubeconfig, "PREFECT__CLOUD__API": standin.url, "PREFECT_API_KEY": STANDIN_KEY}
    config1 = {"namespace": agent_namespace, "prefect": {"enabled": True, "image": PREFECT1_IMAGE,
                                                         "overrides": overrides}}
    names = {"qhub_prefect_name": "chart-agent", "qhub_prefect_instance": "chart-agent-" + unique_namespace}
    agent = deploy(tmp_path, config1, env1, extra=names)
    assert agent.rc == 0, agent
    template = yaml.safe_load(k8s.CoreV1Api(kube_admin).read_namespaced_config_map(
        "chart-agent-job-template", agent_namespace).data["job_template.yaml"])
    pod = template["spec"]["template"]["spec"]
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["containers"][0]["imagePullPolicy"] == "Always"
    assert pod["containers"][0]["resources"] == {"requests": {"memory": "1Gi"},
                                                 "limits": {"cpu": "2", "memory": "4Gi"}}
    env_by_name = dict((e.name, e.value) for e in k8s.AppsV1Api(kube_admin).read_namespaced_deployment(
        "chart-agent", agent_namespace).spec.template.spec.containers[0].env)
    assert json.loads(env_by_name["PREFECT__CLOUD__AGENT__LABELS"]) == ["dev", "gpu"]
    assert env_by_name["IMAGE_PULL_SECRETS"] == "regcred"
    assert env_by_name["PREFECT__CLOUD__API"] == standin.url and env_by_name["PREFECT__BACKEND"] == "server"


def test_prefect_api_key_alone_deploys_against_a_server_that_requires_it(
        testbed, kube_admin, unique_namespace, standin, project, tmp_path):
    """What a Prefect Cloud user has: PREFECT_API_KEY and no QHub variable. The stand-in refuses requests without it."""
    config = {"project_name": project, "namespace": unique_namespace,
              "prefect": {"enabled": True, "image": PREFECT1_IMAGE}}
    base = {"KUBECONFIG": testbed.kubeconfig, "PREFECT__CLOUD__API": standin.url}
    extra = {"qhub_prefect_project": project}
    refused = deploy(tmp_path, config, dict(base, PREFECT_API_KEY="pnu_wrong"), extra=extra)
    assert refused.rc != 0 and "refused the API key" in refused.output, refused.output[-2000:]

    deployed = deploy(tmp_path, config, dict(base, PREFECT_API_KEY=STANDIN_KEY), extra=extra)
    assert deployed.rc == 0, deployed
    assert STANDIN_KEY not in deployed.output
    assert standin.find(project)
    secret = k8s.CoreV1Api(kube_admin).read_namespaced_secret("prefect-agent", unique_namespace)
    assert base64.b64decode(secret.data["PREFECT__CLOUD__API_KEY"]).decode() == STANDIN_KEY


@pytest.fixture(scope="module")
def auth_prefect(testbed, tmp_path_factory):
    """A second Prefect 3 server that requires basic auth (PREFECT_SERVER_API_AUTH_STRING)."""
    if not testbed.prefect_bin:
        pytest.skip("the test bed has no Prefect server binaries")
    workdir = tmp_path_factory.mktemp("auth-prefect")
    port = free_port()
    auth = "qhub:" + uuid.uuid4().hex
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(workdir), "PREFECT_HOME": str(workdir),
           "PREFECT_SERVER_DATABASE_CONNECTION_URL": "sqlite+aiosqlite:///%s" % (workdir / "prefect.db"),
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_SERVER_UI_ENABLED": "false",
           "PREFECT_SERVER_API_AUTH_STRING": auth}
    log = open(workdir / "server.log", "wb")
    process = subprocess.Popen([str(testbed.prefect_bin), "server", "start", "--host", "127.0.0.1", "--port",
                                str(port)], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = "http://127.0.0.1:%d/api" % port

    def healthy():
        try:
            with urllib.request.urlopen(url + "/health", timeout=5) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return process.poll() is not None and pytest.fail((workdir / "server.log").read_text()[-3000:])

    try:
        wait_for(healthy, 150, what="the Prefect server with basic auth")
        yield url, auth
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        log.close()


def authed(url, auth, path, method="GET", body=None):
    request = urllib.request.Request(url + path, method=method, data=json.dumps(body).encode() if body else None,
                                     headers={"Content-Type": "application/json", "Authorization":
                                              "Basic " + base64.b64encode(auth.encode()).decode()})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read() or b"null")


def test_auth_string_reaches_the_work_pool_calls_and_the_worker_from_the_secret(
        testbed, kube_admin, unique_namespace, auth_prefect, tmp_path):
    url, auth = auth_prefect
    pool = "auth-" + unique_namespace
    config = {"namespace": unique_namespace, "prefect": {"enabled": True, "image": PREFECT3_IMAGE}}
    env = {"KUBECONFIG": testbed.kubeconfig, "PREFECT_API_URL": url}
    without = deploy(tmp_path, config, env, extra={"qhub_prefect_work_pool": pool})
    assert without.rc != 0 and "401" in without.output, without.output[-2000:]

    deployed = deploy(tmp_path, config, dict(env, PREFECT_API_AUTH_STRING=auth), extra={"qhub_prefect_work_pool": pool})
    assert deployed.rc == 0, deployed
    assert auth not in deployed.output and auth.split(":")[1] not in deployed.output
    assert authed(url, auth, "/work_pools/%s" % pool)["type"] == "kubernetes"
    # The pool's template was built on this server's own default for the kubernetes type.
    container = k8s.AppsV1Api(kube_admin).read_namespaced_deployment("prefect-worker", unique_namespace) \
        .spec.template.spec.containers[0]
    env_by_name = dict((e.name, e) for e in container.env)
    ref = env_by_name["PREFECT_API_AUTH_STRING"].value_from.secret_key_ref
    assert (env_by_name["PREFECT_API_AUTH_STRING"].value, ref.name, ref.key) == (
        None, "prefect-worker", "PREFECT_API_AUTH_STRING")
    assert env_by_name["PREFECT_INTEGRATIONS_KUBERNETES_WORKER_API_AUTH_STRING_SECRET_NAME"].value == "prefect-worker"
    assert "PREFECT_API_KEY" not in env_by_name  # a self-hosted server needs no token
    secret = k8s.CoreV1Api(kube_admin).read_namespaced_secret("prefect-worker", unique_namespace)
    assert base64.b64decode(secret.data["PREFECT_API_AUTH_STRING"]).decode() == auth
    assert auth not in str(k8s.AppsV1Api(kube_admin).read_namespaced_deployment(
        "prefect-worker", unique_namespace).to_dict())


def test_server_default_template_is_preferred(testbed, unique_namespace, tmp_path):
    pool = "tmpl-" + unique_namespace
    env = {"KUBECONFIG": testbed.kubeconfig, "PREFECT_API_URL": testbed.prefect_api_url}
    config = {"namespace": unique_namespace, "prefect": {"enabled": True, "image": PREFECT3_IMAGE}}
    assert deploy(tmp_path, config, env, extra={"qhub_prefect_work_pool": pool}).rc == 0
    view = prefect_api(testbed.prefect_api_url, "GET", "/collections/views/aggregate-worker-metadata")
    server_default = view["prefect-kubernetes"]["kubernetes"]["default_base_job_configuration"]
    stored = prefect_api(testbed.prefect_api_url, "GET", "/work_pools/%s" % pool)["base_job_template"]
    # Fields the collection leaves alone are the server's, not the shipped copy's.
    manifest = stored["job_configuration"]["job_manifest"]
    assert manifest["spec"]["backoffLimit"] == server_default["job_configuration"]["job_manifest"]["spec"][
        "backoffLimit"]
    assert set(server_default["variables"]["properties"]) <= set(stored["variables"]["properties"])


def limited_kubeconfig(testbed, kube_admin, namespace, tmp_path):
    """A deployer with the built-in admin role in ``namespace`` only."""
    core, rbac = k8s.CoreV1Api(kube_admin), k8s.RbacAuthorizationV1Api(kube_admin)
    core.create_namespaced_service_account(namespace, k8s.V1ServiceAccount(metadata=k8s.V1ObjectMeta(name="deployer")))
    subject = [k8s.RbacV1Subject(kind="ServiceAccount", name="deployer", namespace=namespace)]
    rbac.create_namespaced_role_binding(namespace, k8s.V1RoleBinding(
        metadata=k8s.V1ObjectMeta(name="deployer-admin"), subjects=subject,
        role_ref=k8s.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="ClusterRole", name="admin")))
    token = mint_token(kube_admin, namespace, "deployer")
    return service_account_kubeconfig(str(tmp_path / "deployer.kubeconfig"), testbed.api_server, testbed.ca_file,
                                      token, namespace)


def test_missing_permissions_are_named_and_kube_system_read_only_where_needed(
        testbed, kube_admin, unique_namespace, tmp_path):
    if testbed.admin_token is None:
        pytest.skip("an existing cluster: no ServiceAccount tokens minted here")
    pool = "perm-" + unique_namespace
    config = {"project_name": "p-" + unique_namespace, "namespace": unique_namespace,
              "prefect": {"enabled": True, "image": PREFECT3_IMAGE}}
    env = {"PREFECT_API_URL": testbed.prefect_api_url,
           "KUBECONFIG": limited_kubeconfig(testbed, kube_admin, unique_namespace, tmp_path)}
    # The namespace admin alone deploys (test_deployment_ownership.py); told that other namespaces were not searched.
    alone = deploy(tmp_path, config, env, extra={"qhub_prefect_work_pool": pool})
    assert alone.rc == 0 and "other namespaces not searched" in alone.output, alone.output[-3000:]

    name = "qhub-prefect-list-" + unique_namespace
    try:
        env["KUBECONFIG"] = _grant_cluster_list(testbed, kube_admin, unique_namespace, tmp_path, name)
        deployed = deploy(tmp_path, config, env, extra={"qhub_prefect_work_pool": pool}, verbosity=1)
        assert deployed.rc == 0, deployed
        # A Prefect 3.4.1+ image never reads the cluster UID: no lookup, no note, no env.
        assert "kube-system (403)" not in deployed.output, deployed.output[-3000:]
        # With list on Deployments across namespaces, the search is made.
        assert "other namespaces not searched" not in deployed.output
        worker_env = [e.name for e in k8s.AppsV1Api(kube_admin).read_namespaced_deployment(
            "prefect-worker", unique_namespace).spec.template.spec.containers[0].env]
        assert "PREFECT_KUBERNETES_CLUSTER_UID" not in worker_env

        # An image whose worker reads the UID at every flow-run submission (2.9 to 3.4.0), and no right to read
        # kube-system: every flow run would fail, so the run fails before writing, naming worker.clusterUid.
        before = k8s.AppsV1Api(kube_admin).read_namespaced_deployment("prefect-worker", unique_namespace)
        old_image = dict(config, prefect=dict(config["prefect"],
                                              image="prefecthq/prefect:3.2.0-python3.11-kubernetes"))
        refused = deploy(tmp_path, old_image, env, extra={"qhub_prefect_work_pool": pool})
        assert refused.rc != 0 and "prefect.overrides.worker.clusterUid" in refused.output, refused.output[-3000:]
        after = k8s.AppsV1Api(kube_admin).read_namespaced_deployment("prefect-worker", unique_namespace)
        assert after.metadata.resource_version == before.metadata.resource_version
        # Given in the config, the UID is used as it is, and nothing is read.
        given = dict(old_image, prefect=dict(old_image["prefect"], overrides={"worker": {"clusterUid": "uid-given"}}))
        deployed = deploy(tmp_path, given, env, extra={"qhub_prefect_work_pool": pool})
        assert deployed.rc == 0, deployed.output[-3000:]
        worker_env = dict((e.name, e.value) for e in k8s.AppsV1Api(kube_admin).read_namespaced_deployment(
            "prefect-worker", unique_namespace).spec.template.spec.containers[0].env)
        assert worker_env["PREFECT_KUBERNETES_CLUSTER_UID"] == "uid-given"
    finally:
        rbac = k8s.RbacAuthorizationV1Api(kube_admin)
        for delete in (rbac.delete_cluster_role_binding, rbac.delete_cluster_role):
            try:
                delete(name)
            except k8s.ApiException:
                pass


def _grant_cluster_list(testbed, kube_admin, namespace, tmp_path, name):
    """Add what docs/configuration.md asks for: list on Deployments at cluster scope (and nothing on kube-system)."""
    rbac = k8s.RbacAuthorizationV1Api(kube_admin)
    subject = [k8s.RbacV1Subject(kind="ServiceAccount", name="deployer", namespace=namespace)]
    rbac.create_cluster_role(k8s.V1ClusterRole(metadata=k8s.V1ObjectMeta(name=name), rules=[
        k8s.V1PolicyRule(api_groups=["apps"], resources=["deployments"], verbs=["list"])]))
    rbac.create_cluster_role_binding(k8s.V1ClusterRoleBinding(
        metadata=k8s.V1ObjectMeta(name=name), subjects=subject,
        role_ref=k8s.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="ClusterRole", name=name)))
    # RBAC is read from the authorizer's cache: give it a moment to see the new binding.
    time.sleep(1)
    token = mint_token(kube_admin, namespace, "deployer")
    return service_account_kubeconfig(str(tmp_path / "deployer-list.kubeconfig"), testbed.api_server,
                                      testbed.ca_file, token, namespace)
