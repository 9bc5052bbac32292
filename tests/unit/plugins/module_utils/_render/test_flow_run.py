"""Every accepted override reaches the flow runs of both generations, with the same value in the same place.

Prefect 1's flow-run pod is read from the agent's Job template ConfigMap; Prefect 2/3's is the work
pool's base job template rendered the way a worker renders it (variable defaults into placeholders,
its env variable ahead of the container's own entries). Both come from one builder (flow_run.py).
"""

import re

import pytest
import yaml

from ansible_collections.qhub.prefect.plugins.module_utils._qhub.images import PREFECT1, PREFECT3
from ansible_collections.qhub.prefect.plugins.module_utils._qhub.job_options import FLAT_OVERRIDES, NESTED_OVERRIDES
from ansible_collections.qhub.prefect.plugins.module_utils._qhub.overrides import JobSettings, parse_overrides
from ansible_collections.qhub.prefect.plugins.module_utils._render.objects import render_objects
from ansible_collections.qhub.prefect.plugins.module_utils._render.spec import AgentSpec
from ansible_collections.qhub.prefect.plugins.module_utils._render.work_pool_template import build_base_job_template

NAME = "prefect-worker"  # the agent's or worker's name, which its Secret takes
FLOW_RUNNER = "flow-runner"  # the flow-run pods' ServiceAccount
PLACEHOLDER = re.compile(r"^{{\s*([\w.]+)\s*}}$")

# A value per JobSettings field, none of them a default of either generation.
SAMPLES = {"cpu_request": "250m", "cpu_limit": "3", "memory_request": "768Mi", "memory_limit": "5Gi",
           "image_pull_policy": "Never", "image_pull_secrets": "walk-registry", "labels": "['walk-queue']"}


def _container(pod):
    return pod["containers"][0]


# Where each field lands in a flow-run pod, as (pod -> found, expected).
FLOW_RUN_PLACES = {
    "cpu_request": lambda pod: (_container(pod).get("resources", {}).get("requests", {}).get("cpu"), "250m"),
    "cpu_limit": lambda pod: (_container(pod).get("resources", {}).get("limits", {}).get("cpu"), "3"),
    "memory_request": lambda pod: (_container(pod).get("resources", {}).get("requests", {}).get("memory"), "768Mi"),
    "memory_limit": lambda pod: (_container(pod).get("resources", {}).get("limits", {}).get("memory"), "5Gi"),
    "image_pull_policy": lambda pod: (_container(pod).get("imagePullPolicy"), "Never"),
    "image_pull_secrets": lambda pod: (pod.get("imagePullSecrets"), [{"name": "walk-registry"}]),
}
# Not a flow-run setting: the labels say which flow runs the agent takes (Prefect 1) or which work
# queues the worker polls (Prefect 2/3, as prefect_agent_config passes them).
ROUTING = ("labels",)


def _nested(path, value):
    for key in reversed(path[1:]):
        value = {key: value}
    return {path[0]: value}


def every_override():
    """(id, overrides, secret env, field or None) for each flat and nested key, envVars and secretEnvVars."""
    cases = [(key, {key: SAMPLES[field]}, field) for key, field in sorted(FLAT_OVERRIDES.items())]
    cases += [(".".join(path), _nested(path, SAMPLES[field]), field)
              for path, field in sorted(NESTED_OVERRIDES.items())]
    cases += [("envVars", {"envVars": {"WALK_PLAIN": "plain-value"}}, None),
              ("secretEnvVars", {"secretEnvVars": {"WALK_SECRET": "QHUB_SECRET_WALK"}}, None)]
    return cases


CASES = every_override()


def _resolve(value, values):
    if isinstance(value, dict):
        out = dict((key, _resolve(item, values)) for key, item in value.items())
        return dict((key, item) for key, item in out.items() if item is not _MISSING)
    if isinstance(value, list):
        return [_resolve(item, values) for item in value]
    match = PLACEHOLDER.match(value) if isinstance(value, str) else None
    return values.get(match.group(1), _MISSING) if match else value


_MISSING = object()


def prefect3_flow_run_pod(job, secret_env):
    """The pod a worker makes from the pool's template: placeholders filled from the variables' defaults."""
    template = build_base_job_template(job, "dev", FLOW_RUNNER, secret_env_names=sorted(secret_env), secret_name=NAME)
    values = dict((name, prop["default"]) for name, prop in template["variables"]["properties"].items()
                  if prop.get("default") is not None)
    configuration = _resolve(template["job_configuration"], values)
    pod = configuration["job_manifest"]["spec"]["template"]["spec"]
    # prefect-kubernetes: the env variable's entries first, then the container's list (when it is one).
    container = _container(pod)
    own = container.get("env") if isinstance(container.get("env"), list) else []
    container["env"] = [{"name": name, "value": value}
                        for name, value in (configuration.get("env") or {}).items()] + own
    return pod


def spec(generation, job, secret_env):
    image = "prefecthq/prefect:1.4.1" if generation == PREFECT1 else "prefecthq/prefect:3-python3.11-kubernetes"
    return AgentSpec(NAME, "dev", generation, image, job, secret_env=secret_env, token="t", api_url="http://p/api",
                     work_queues=job.labels if generation != PREFECT1 else [], job_service_account=FLOW_RUNNER)


def prefect1_flow_run_pod(job, secret_env):
    objects = dict((item["kind"], item) for item in render_objects(spec(PREFECT1, job, secret_env)))
    return yaml.safe_load(objects["ConfigMap"]["data"]["job_template.yaml"])["spec"]["template"]["spec"]


def deployment_container(generation, job, secret_env):
    objects = dict((item["kind"], item) for item in render_objects(spec(generation, job, secret_env)))
    return _container(objects["Deployment"]["spec"]["template"]["spec"])


def test_every_job_setting_has_a_place_in_the_flow_run_pod_or_is_routing():
    assert sorted(JobSettings.FIELDS) == sorted(list(FLOW_RUN_PLACES) + list(ROUTING))


@pytest.mark.parametrize("overrides,field", [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_the_override_reaches_both_generations(overrides, field):
    job, secret_env = parse_overrides(overrides, {"WALK": "canary-secret"})
    pods = {PREFECT1: prefect1_flow_run_pod(job, secret_env), PREFECT3: prefect3_flow_run_pod(job, secret_env)}
    for generation, pod in pods.items():
        env = _container(pod).get("env") or []
        if "envVars" in overrides:
            assert {"name": "WALK_PLAIN", "value": "plain-value"} in env, generation
        elif "secretEnvVars" in overrides:
            assert {"name": "WALK_SECRET", "valueFrom": {"secretKeyRef": {"name": NAME, "key": "WALK_SECRET"}}} \
                in env, generation
            assert "canary-secret" not in repr(pod), generation
        elif field in ROUTING:
            container = deployment_container(generation, job, secret_env)
            if generation == PREFECT1:
                assert {"name": "PREFECT__CLOUD__AGENT__LABELS", "value": '["walk-queue"]'} in container["env"]
            else:
                assert container["args"][-2:] == ["--work-queue", "walk-queue"]
        else:
            found, expected = FLOW_RUN_PLACES[field](pod)
            assert found == expected, "%s dropped %s" % (generation, field)


def test_both_generations_give_the_flow_run_pod_the_same_values():
    overrides = {"JOB_CPU_LIMIT": "2", "JOB_MEM_REQUEST": "1Gi", "IMAGE_PULL_POLICY": "Always",
                 "IMAGE_PULL_SECRETS": "a,b", "envVars": {"B": "2", "A": "1"},
                 "secretEnvVars": {"S2": "QHUB_SECRET_WALK", "S1": "QHUB_SECRET_WALK"}}
    job, secret_env = parse_overrides(overrides, {"WALK": "canary-secret"})
    one = prefect1_flow_run_pod(job, secret_env)
    three = prefect3_flow_run_pod(job, secret_env)
    for pod in (one, three):
        container = _container(pod)
        # Prefect drops a placeholder without a value, leaving an empty kind; Prefect 1 leaves the kind out.
        container["resources"] = dict((kind, part) for kind, part in container["resources"].items() if part)
        # Plain values first, then the references; the plain ones come in the config's order in Prefect 2/3
        # (a mapping, the env variable's default) and sorted in Prefect 1.
        plain = [item for item in container["env"] if "value" in item]
        container["env"] = sorted(plain, key=lambda item: item["name"]) + container["env"][len(plain):]
    keys = ("resources", "imagePullPolicy", "env")
    assert dict((key, _container(one)[key]) for key in keys) == dict((key, _container(three)[key]) for key in keys)
    assert _container(one)["resources"] == {"limits": {"cpu": "2"}, "requests": {"memory": "1Gi"}}
    assert [item["name"] for item in _container(one)["env"]] == ["A", "B", "S1", "S2"]
    assert one["imagePullSecrets"] == three["imagePullSecrets"] == [{"name": "a"}, {"name": "b"}]
    assert one["serviceAccountName"] == three["serviceAccountName"] == FLOW_RUNNER
