"""The rendered objects: what each generation runs, where secrets go, least privilege."""

import base64
import json

import pytest
import yaml

from ansible_collections.qhub.prefect.plugins.module_utils._qhub.images import PREFECT1, PREFECT3
from ansible_collections.qhub.prefect.plugins.module_utils._qhub.overrides import parse_overrides
from ansible_collections.qhub.prefect.plugins.module_utils._render.objects import render_objects
from ansible_collections.qhub.prefect.plugins.module_utils._render.spec import AgentSpec

OVERRIDES = {
    "IMAGE_PULL_POLICY": "IfNotPresent", "IMAGE_PULL_SECRETS": "regcred",
    "PREFECT__CLOUD__AGENT__LABELS": "['dev', 'gpu']",
    "prefect_agent": {"job": {"resources": {"limit": {"cpu": 2, "memory": "4Gi"}, "request": {"cpu": "500m"}}}},
    "envVars": {"ENVIRONMENT": "dev"},
}
SECRETS = {"DATABASE_PASSWORD": "canary-db", "S3_KEY": "canary-s3"}


def spec(generation, **extra):
    job, dummy = parse_overrides(OVERRIDES, {})
    values = dict(name="prefect-x", namespace="dev", generation=generation, job=job,
                  image=("prefecthq/prefect:0.15.13" if generation == PREFECT1
                         else "prefecthq/prefect:3-python3.11-kubernetes"),
                  secret_env=SECRETS, token="canary-token", api_url="http://prefect:4200/api",
                  work_pool="qhub", work_queues=job.labels, cluster_uid="uid-123")
    values.update(extra)
    return AgentSpec(**values)


def by_kind(objects):
    return dict((item["kind"], item) for item in objects)


def container_of(objects):
    return by_kind(objects)["Deployment"]["spec"]["template"]["spec"]["containers"][0]


def env_of(container):
    return dict((item["name"], item) for item in container["env"])


@pytest.mark.parametrize("generation", [PREFECT1, PREFECT3])
def test_secret_values_appear_only_in_the_secret(generation):
    objects = render_objects(spec(generation))
    for item in objects:
        text = json.dumps(item)
        for canary in list(SECRETS.values()) + ["canary-token"]:
            assert canary not in text  # the Secret holds them base64-encoded
    secret = by_kind(objects)["Secret"]
    decoded = dict((k, base64.b64decode(v).decode()) for k, v in secret["data"].items())
    assert decoded["DATABASE_PASSWORD"] == "canary-db" and decoded["S3_KEY"] == "canary-s3"


def test_prefect1_agent_command_env_and_job_template():
    objects = render_objects(spec(PREFECT1))
    container = container_of(objects)
    assert container["args"][:4] == ["prefect", "agent", "kubernetes", "start"]
    env = env_of(container)
    assert env["JOB_CPU_LIMIT"]["value"] == "2" and env["JOB_MEM_LIMIT"]["value"] == "4Gi"
    assert env["PREFECT__CLOUD__AGENT__LABELS"]["value"] == '["dev", "gpu"]'
    assert env["IMAGE_PULL_SECRETS"]["value"] == "regcred"
    # The token reaches 0.x (AUTH_TOKEN) and 1.x (API_KEY) agents, by reference only.
    for key in ("PREFECT__CLOUD__AGENT__AUTH_TOKEN", "PREFECT__CLOUD__API_KEY"):
        assert env[key]["valueFrom"]["secretKeyRef"] == {"name": "prefect-x", "key": key}
    template = yaml.safe_load(by_kind(objects)["ConfigMap"]["data"]["job_template.yaml"])
    flow = template["spec"]["template"]["spec"]["containers"][0]
    assert flow["resources"] == {"limits": {"cpu": "2", "memory": "4Gi"}, "requests": {"cpu": "500m"}}
    assert flow["imagePullPolicy"] == "IfNotPresent"
    secret_ref = {"secretKeyRef": {"name": "prefect-x", "key": "DATABASE_PASSWORD"}}
    assert {"name": "DATABASE_PASSWORD", "valueFrom": secret_ref} in flow["env"]
    assert template["spec"]["template"]["spec"]["imagePullSecrets"] == [{"name": "regcred"}]


def test_prefect3_worker_command_and_observer_scope():
    container = container_of(render_objects(spec(PREFECT3)))
    assert container["args"] == ["prefect", "worker", "start", "--type", "kubernetes", "--pool", "qhub",
                                 "--name", "prefect-x", "--install-policy", "never", "--with-healthcheck",
                                 "--work-queue", "dev", "--work-queue", "gpu"]
    env = env_of(container)
    assert env["PREFECT_INTEGRATIONS_KUBERNETES_OBSERVER_NAMESPACES"]["value"] == "dev"
    assert env["PREFECT_KUBERNETES_CLUSTER_UID"]["value"] == "uid-123"
    assert env["PREFECT_API_KEY"]["valueFrom"]["secretKeyRef"]["key"] == "PREFECT_API_KEY"
    assert env["ENVIRONMENT"]["value"] == "dev"


@pytest.mark.parametrize("generation", [PREFECT1, PREFECT3])
def test_role_is_namespaced_and_grants_no_secrets(generation):
    objects = by_kind(render_objects(spec(generation)))
    assert "ClusterRole" not in objects
    resources = [r for rule in objects["Role"]["rules"] for r in rule["resources"]]
    assert "secrets" not in resources and "jobs" in resources and "pods/log" in resources
    assert objects["RoleBinding"]["subjects"] == [{"kind": "ServiceAccount", "name": "prefect-x", "namespace": "dev"}]


@pytest.mark.parametrize("generation", [PREFECT1, PREFECT3])
def test_pod_meets_the_restricted_profile(generation):
    deployment = by_kind(render_objects(spec(generation)))["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in pod["containers"]:
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert context["runAsNonRoot"] is True
    assert all("hostPath" not in volume for volume in pod["volumes"])


def test_rotating_a_secret_changes_the_pod_template():
    before = by_kind(render_objects(spec(PREFECT3)))["Deployment"]["spec"]["template"]
    after = by_kind(render_objects(spec(PREFECT3, token="rotated")))["Deployment"]["spec"]["template"]
    assert before["metadata"]["annotations"] != after["metadata"]["annotations"]
    assert before["spec"] == after["spec"]


def test_names_derive_from_the_name_option_so_several_agents_can_share_a_namespace():
    names = set(item["metadata"]["name"] for item in render_objects(spec(PREFECT1, name="team-b")))
    assert names == {"team-b", "team-b-job-template"}


@pytest.mark.parametrize("generation,path,address", [
    (PREFECT1, "/api/health", ("PREFECT__CLOUD__AGENT__AGENT_ADDRESS", "http://0.0.0.0:8080")),
    (PREFECT3, "/health", ("PREFECT_WORKER_WEBSERVER_PORT", "8080")),
])
def test_ready_through_its_own_health_endpoint_and_a_slow_start_is_not_killed(generation, path, address):
    container = container_of(render_objects(spec(generation)))
    env = dict((item["name"], item.get("value")) for item in container["env"])
    assert env[address[0]] == address[1]  # the health server listens where the probes look
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": path, "port": 8080}, probe
    startup = container["startupProbe"]
    # A 2-core node takes 20-40 s to import Prefect and reach the API: liveness waits for startup, up to 3 min.
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 180
    assert "initialDelaySeconds" not in container["livenessProbe"]
    if generation == PREFECT3:
        assert "--with-healthcheck" in container["args"]


def env_by_name(objects):
    return dict((item["name"], item) for item in container_of(objects)["env"])


def test_replicas_above_one_give_each_worker_its_pod_name():
    one = render_objects(spec(PREFECT3))
    args = container_of(one)["args"]
    assert args[args.index("--name") + 1] == "prefect-x" and "POD_NAME" not in env_by_name(one)
    three = render_objects(spec(PREFECT3, replicas=3))
    args = container_of(three)["args"]
    assert args[args.index("--name") + 1] == "$(POD_NAME)"
    assert env_by_name(three)["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert by_kind(three)["Deployment"]["spec"]["replicas"] == 3


def test_the_auth_string_reaches_the_worker_from_the_secret_and_flow_runs_by_reference():
    objects = render_objects(spec(PREFECT3, token=None, auth_string="qhub:canary-auth"))
    secret = by_kind(objects)["Secret"]["data"]
    assert base64.b64decode(secret["PREFECT_API_AUTH_STRING"]).decode() == "qhub:canary-auth"
    assert "PREFECT_API_KEY" not in secret
    env = env_by_name(objects)
    assert env["PREFECT_API_AUTH_STRING"] == {"name": "PREFECT_API_AUTH_STRING", "valueFrom": {
        "secretKeyRef": {"name": "prefect-x", "key": "PREFECT_API_AUTH_STRING"}}}
    assert env["PREFECT_INTEGRATIONS_KUBERNETES_WORKER_API_AUTH_STRING_SECRET_NAME"]["value"] == "prefect-x"
    assert "PREFECT_API_KEY" not in env
    assert "canary-auth" not in json.dumps(by_kind(objects)["Deployment"])
    # Prefect 1 has no auth string.
    assert "PREFECT_API_AUTH_STRING" not in by_kind(render_objects(spec(PREFECT1, auth_string="a:b")))["Secret"]["data"]


def test_instance_label_only_with_an_instance_and_never_in_the_selector():
    plain = by_kind(render_objects(spec(PREFECT3)))["Deployment"]
    assert "qhub.prefect/instance" not in plain["metadata"]["labels"]
    owned = by_kind(render_objects(spec(PREFECT3, instance="demo")))["Deployment"]
    assert owned["metadata"]["labels"]["qhub.prefect/instance"] == "demo"
    assert owned["spec"]["template"]["metadata"]["labels"]["qhub.prefect/instance"] == "demo"
    # A Deployment's selector cannot change: adding the label must not touch it.
    assert owned["spec"]["selector"] == plain["spec"]["selector"]


def test_the_deployment_records_the_prefect_objects_it_uses():
    worker = by_kind(render_objects(spec(PREFECT3)))["Deployment"]
    assert json.loads(worker["metadata"]["annotations"]["qhub.prefect/prefect-objects"]) == {
        "work_pool": "qhub", "work_queues": ["dev", "gpu"]}
    agent = by_kind(render_objects(spec(PREFECT1, project="flows")))["Deployment"]
    assert json.loads(agent["metadata"]["annotations"]["qhub.prefect/prefect-objects"]) == {"project": "flows"}


@pytest.mark.parametrize("generation, image, token, copied", [
    (PREFECT1, "prefecthq/prefect:1.4.1", "k", True),
    (PREFECT3, "prefecthq/prefect:2.20.3-python3.11-kubernetes", "k", True),
    (PREFECT3, "prefecthq/prefect:3.0.11-python3.11-kubernetes", "k", True),
    (PREFECT3, "prefecthq/prefect:3.1.0-python3.11-kubernetes", "k", False),
    (PREFECT3, "prefecthq/prefect:3-python3.11-kubernetes", "k", False),
    (PREFECT1, "prefecthq/prefect:1.4.1", None, False),
])
def test_which_agents_and_workers_copy_the_key_into_flow_runs(generation, image, token, copied):
    from ansible_collections.qhub.prefect.plugins.module_utils._render.objects import key_reaches_flow_runs_as_text
    assert key_reaches_flow_runs_as_text(spec(generation, image=image, token=token)) is copied


def test_without_any_key_the_secret_digest_is_keyed_with_a_salt():
    from ansible_collections.qhub.prefect.plugins.module_utils._render.spec import needs_digest_salt, secret_digest
    unkeyed = spec(PREFECT3, token=None)
    assert needs_digest_salt(unkeyed)
    bare = secret_digest(unkeyed)
    salted_spec = unkeyed.with_live_values(digest_salt="c2FsdA==")
    salted = render_objects(salted_spec)
    assert bare != secret_digest(salted_spec) and bare == secret_digest(unkeyed)
    assert "qhub-prefect-digest-salt" in by_kind(salted)["Secret"]["data"]
    assert not needs_digest_salt(spec(PREFECT3))


def test_qhub_chart_form_reaches_the_prefect1_job_template_and_agent_env():
    job, dummy = parse_overrides({"prefect_agent": {
        "job": {"imagePullSecrets": "regcred", "imagePullPolicy": "Always",
                "resources": {"requests": {"memory": "1Gi", "cpu": ""}, "limits": {"memory": "", "cpu": "2"}}},
        "prefectLabels": "['dev']"}}, {})
    objects = render_objects(spec(PREFECT1, job=job, secret_env={}))
    template = yaml.safe_load(by_kind(objects)["ConfigMap"]["data"]["job_template.yaml"])
    pod = template["spec"]["template"]["spec"]
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["containers"][0]["resources"] == {"requests": {"memory": "1Gi"}, "limits": {"cpu": "2"}}
    env = env_by_name(objects)
    assert (env["PREFECT__CLOUD__AGENT__LABELS"]["value"], env["IMAGE_PULL_POLICY"]["value"],
            env["JOB_CPU_LIMIT"]["value"]) == ('["dev"]', "Always", "2")
    assert "JOB_CPU_REQUEST" not in env


@pytest.mark.parametrize("generation", [PREFECT1, PREFECT3])
def test_a_spec_never_changes_and_its_stubs_are_what_it_renders(generation):
    from ansible_collections.qhub.prefect.plugins.module_utils._render.objects import object_stubs
    built = spec(generation)
    with pytest.raises(AttributeError):
        built.cluster_uid = "other"
    with pytest.raises(TypeError):
        built.with_live_values(name="other")
    rendered = [dict((key, item[key]) for key in ("apiVersion", "kind")) for item in render_objects(built)]
    names = [(item["metadata"]["name"], item["metadata"]["namespace"]) for item in render_objects(built)]
    stubs = object_stubs(built)
    assert rendered == [dict((key, item[key]) for key in ("apiVersion", "kind")) for item in stubs]
    assert names == [(item["metadata"]["name"], item["metadata"]["namespace"]) for item in stubs]
