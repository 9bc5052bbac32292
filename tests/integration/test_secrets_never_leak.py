"""Secrets never leak: unique canaries for the token and every secret env var, searched for in all
output (normal, --check, --diff, -vvvv and a run that fails halfway), the Ansible log file, the module
results, every Kubernetes object in the namespace but the Secret, and the Prefect work pool."""

import base64
import json
import uuid

import pytest
import yaml
from kubernetes import client as k8s

from tests.support.ansible_cli import run_playbook

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
    from tests.support.pod_client import prefect_api
    pool = prefect_api(testbed.prefect_api_url, "GET", "/work_pools/" + extra["qhub_prefect_work_pool"])
    assert_no_canary(json.dumps(pool), "the work pool")


# --- secrets by other paths (issue 17, point 6) ---------------------------------------------------------------

ENV_REF = CANARY + "-envref"
URL_PASSWORD = CANARY + "-urlpass"
LOSING_LITERAL = CANARY + "-losing-literal"
IMAGES = {"prefect1": "prefecthq/prefect:1.4.1", "prefect3": "prefecthq/prefect:3-python3.11-kubernetes"}
NAMES = {"prefect1": "prefect-agent", "prefect3": "prefect-worker"}


def assert_absent(values, text, where):
    for value in values:
        for form in forms(value):
            assert form not in text, "%s leaked into %s" % (value, where)


def namespace_listings(kube_admin, namespace):
    """Every object of the namespace a user without access to Secrets can read, as JSON text by kind."""
    core, apps = k8s.CoreV1Api(kube_admin), k8s.AppsV1Api(kube_admin)
    listings = {
        "Deployment": apps.list_namespaced_deployment(namespace),
        "ReplicaSet": apps.list_namespaced_replica_set(namespace),
        "Pod": core.list_namespaced_pod(namespace),
        "ConfigMap": core.list_namespaced_config_map(namespace),
        "Event": core.list_namespaced_event(namespace),
    }
    return dict((kind, json.dumps(kube_admin.sanitize_for_serialization(listing)))
                for kind, listing in listings.items())


def secret_values(kube_admin, name, namespace):
    secret = k8s.CoreV1Api(kube_admin).read_namespaced_secret(name, namespace)
    return dict((key, base64.b64decode(value).decode()) for key, value in secret.data.items())


def container_env(kube_admin, name, namespace):
    deployment = k8s.AppsV1Api(kube_admin).read_namespaced_deployment(name, namespace)
    return dict((item.name, item) for item in deployment.spec.template.spec.containers[0].env)


@pytest.mark.parametrize("generation", ["prefect3", "prefect1"])
def test_an_envvars_reference_is_stored_and_passed_on_as_a_secret(testbed, kube_admin, unique_namespace, tmp_path,
                                                                  generation):
    """``envVars: {DB_PASS: QHUB_SECRET_...}`` (QHub substitutes references there too) at -v and --diff: the value
    is in no output, result, Deployment, ReplicaSet, job template or work pool, only in the Secret, and the
    agent or worker, the job template and the pool refer to it there."""
    from tests.testbed.prefect1_standin import Prefect1StandIn
    from tests.support.pod_client import prefect_api

    config = {"namespace": unique_namespace, "prefect": {
        "enabled": True, "image": IMAGES[generation],
        "overrides": {"envVars": {"DB_PASS": "QHUB_SECRET_ENVREF_SOURCE", "PLAIN": "visible"}}}}
    path = tmp_path / "qhub-config.yml"
    path.write_text(yaml.safe_dump(config))
    log = tmp_path / "ansible.log"
    pool = "leak-ref-" + unique_namespace
    extra = {"qhub_config_file": str(path), "qhub_prefect_work_pool": pool}
    env = {"KUBECONFIG": testbed.kubeconfig, "ENVREF_SOURCE": ENV_REF, "ANSIBLE_LOG_PATH": str(log)}
    with Prefect1StandIn() as standin:
        env["PREFECT_API_URL" if generation == "prefect3" else "PREFECT__CLOUD__API"] = (
            testbed.prefect_api_url if generation == "prefect3" else standin.url)
        runs = [run_playbook("playbooks/deploy.yml", extra, env=env, diff=True, verbosity=1),
                run_playbook("playbooks/deploy.yml", extra, env=env, diff=True, verbosity=1)]
    assert [run.rc for run in runs] == [0, 0], runs
    # At -v every task's result is printed: what `register` keeps, qhub_config_info's public settings included.
    assert "secret_env_names" in runs[0].stdout and "DB_PASS" in runs[0].stdout, runs[0]
    for index, run in enumerate(runs):
        assert_absent([ENV_REF], run.output, "the output of run %d" % index)
        # Nor the reference: the overrides the role passes on as plain options do not carry it.
        assert "QHUB_SECRET_ENVREF_SOURCE" not in run.output, "the reference is in the output of run %d" % index
    assert_absent([ENV_REF], log.read_text(), "ANSIBLE_LOG_PATH")
    for kind, text in namespace_listings(kube_admin, unique_namespace).items():
        assert_absent([ENV_REF], text, kind)

    name = NAMES[generation]
    assert secret_values(kube_admin, name, unique_namespace)["DB_PASS"] == ENV_REF
    env_of = container_env(kube_admin, name, unique_namespace)
    assert env_of["DB_PASS"].value is None and env_of["DB_PASS"].value_from.secret_key_ref.name == name
    assert env_of["DB_PASS"].value_from.secret_key_ref.key == "DB_PASS"
    assert env_of["PLAIN"].value == "visible"
    if generation == "prefect1":
        template = yaml.safe_load(k8s.CoreV1Api(kube_admin).read_namespaced_config_map(
            name + "-job-template", unique_namespace).data["job_template.yaml"])
        flow_env = template["spec"]["template"]["spec"]["containers"][0]["env"]
        assert {"name": "DB_PASS", "valueFrom": {"secretKeyRef": {"name": name, "key": "DB_PASS"}}} in flow_env
        assert {"name": "PLAIN", "value": "visible"} in flow_env
        return
    work_pool = prefect_api(testbed.prefect_api_url, "GET", "/work_pools/" + pool)
    assert_absent([ENV_REF], json.dumps(work_pool), "the work pool")
    template = work_pool["base_job_template"]
    assert "QHUB_SECRET_ENVREF_SOURCE" not in json.dumps(template)
    assert template["variables"]["properties"]["env"]["default"] == {"PLAIN": "visible"}
    flow_container = template["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "DB_PASS", "valueFrom": {"secretKeyRef": {"name": name, "key": "DB_PASS"}}} in flow_container["env"]


@pytest.mark.parametrize("source", ["environment", "role variable"])
def test_an_api_url_with_credentials_reaches_the_worker_only_from_the_secret(testbed, kube_admin, unique_namespace,
                                                                             tmp_path, source):
    """``http://user:password@host/api``: the password is in no output (-vvvv, --diff, --check), log, result,
    Deployment, ReplicaSet or work pool; the worker reads the URL from the Secret."""
    from tests.support.pod_client import prefect_api

    scheme, rest = testbed.prefect_api_url.split("://", 1)
    url = "%s://qhub:%s@%s" % (scheme, URL_PASSWORD, rest)
    config = {"namespace": unique_namespace, "prefect": {"enabled": True, "image": IMAGES["prefect3"]}}
    path = tmp_path / "qhub-config.yml"
    path.write_text(yaml.safe_dump(config))
    log = tmp_path / "ansible.log"
    pool = "leak-url-" + unique_namespace
    extra = {"qhub_config_file": str(path), "qhub_prefect_work_pool": pool}
    env = {"KUBECONFIG": testbed.kubeconfig, "QHUB_SECRET_PREFECT_TOKEN": TOKEN, "ANSIBLE_LOG_PATH": str(log)}
    more = ()
    if source == "environment":
        env["PREFECT_API_URL"] = url
    else:
        # From a vars file (a vault's, say): at -vvvv ansible-playbook itself echoes its command line.
        variables = tmp_path / "api-url.yml"
        variables.write_text(yaml.safe_dump({"qhub_prefect_api_url": url}))
        more = ("-e", "@%s" % variables)
    runs = [run_playbook("playbooks/deploy.yml", extra, env=env, check=True, diff=True, verbosity=4, extra_args=more),
            run_playbook("playbooks/deploy.yml", extra, env=env, diff=True, verbosity=4, extra_args=more),
            run_playbook("playbooks/deploy.yml", extra, env=env, diff=True, verbosity=1, extra_args=more)]
    assert [run.rc for run in runs] == [0, 0, 0], runs
    assert "http://" in runs[1].stdout and rest in runs[1].stdout  # the URL is printed, without its userinfo
    for index, run in enumerate(runs):
        assert_absent([URL_PASSWORD, TOKEN], run.output, "the output of run %d" % index)
    assert_absent([URL_PASSWORD, TOKEN], log.read_text(), "ANSIBLE_LOG_PATH")
    for kind, text in namespace_listings(kube_admin, unique_namespace).items():
        assert_absent([URL_PASSWORD], text, kind)
    assert secret_values(kube_admin, "prefect-worker", unique_namespace)["PREFECT_API_URL"] == url
    url_env = container_env(kube_admin, "prefect-worker", unique_namespace)["PREFECT_API_URL"]
    assert url_env.value is None and url_env.value_from.secret_key_ref.key == "PREFECT_API_URL"
    assert url_env.value_from.secret_key_ref.name == "prefect-worker"
    work_pool = prefect_api(testbed.prefect_api_url, "GET", "/work_pools/" + pool)
    assert_absent([URL_PASSWORD], json.dumps(work_pool), "the work pool")


@pytest.mark.parametrize("how", ["extra var qhub_config", "role variable qhub_prefect_config"])
def test_a_literal_token_that_loses_to_the_environment_is_masked_too(testbed, kube_admin, unique_namespace, tmp_path,
                                                                     how):
    """A config mapping holding ``prefect.token`` while QHUB_SECRET_PREFECT_TOKEN wins, at -vvv: the mapping is every
    module's argument (the invocation -vvv prints), and the losing literal is masked there like the winner."""
    config = {"namespace": unique_namespace, "prefect": {
        "enabled": True, "image": IMAGES["prefect3"], "token": LOSING_LITERAL,
        "overrides": {"secretEnvVars": {"LITERAL": LITERAL}}}}
    log = tmp_path / "ansible.log"
    pool = "leak-lit-" + unique_namespace
    env = {"KUBECONFIG": testbed.kubeconfig, "PREFECT_API_URL": testbed.prefect_api_url,
           "QHUB_SECRET_PREFECT_TOKEN": TOKEN, "ANSIBLE_LOG_PATH": str(log)}
    if how == "extra var qhub_config":
        extra = {"qhub_config": config, "qhub_prefect_work_pool": pool}
        run = run_playbook("playbooks/deploy.yml", extra, env=env, diff=True, verbosity=3)
    else:
        playbook = tmp_path / "role.yml"
        playbook.write_text(yaml.safe_dump([{
            "hosts": "localhost", "connection": "local", "gather_facts": False,
            "vars": {"ansible_python_interpreter": "{{ ansible_playbook_python }}"},
            "roles": [{"role": "qhub.prefect.prefect_agent", "qhub_prefect_config": config,
                       "qhub_prefect_work_pool": pool}]}]))
        run = run_playbook(str(playbook), {}, env=env, diff=True, verbosity=3)
    assert run.rc == 0, run
    assert "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER" in run.stdout or "********" in run.stdout
    assert_absent([LOSING_LITERAL, TOKEN, LITERAL], run.output, "the output")
    assert_absent([LOSING_LITERAL, TOKEN, LITERAL], log.read_text(), "ANSIBLE_LOG_PATH")
    decoded = secret_values(kube_admin, "prefect-worker", unique_namespace)
    assert decoded["PREFECT_API_KEY"] == TOKEN and decoded["LITERAL"] == LITERAL
