"""The Kubernetes base job template derived from QHub overrides, and the shipped default it starts from."""

import copy
import json
import os
import pathlib
import re
import subprocess

import pytest

from ansible_collections.qhub.prefect.plugins.module_utils._prefect.base_job_template import (
    DEFAULT_BASE_JOB_TEMPLATE, PREFECT_KUBERNETES_VERSION,
)
from ansible_collections.qhub.prefect.plugins.module_utils._qhub.overrides import parse_overrides
from ansible_collections.qhub.prefect.plugins.module_utils._render.work_pool_template import (
    build_base_job_template, server_default_template,
)

# The test bed's Prefect 3 venv (tests/testbed/install-venvs.sh), found the way the test bed finds it.
PREFECT_VENV = pathlib.Path(os.environ.get("QHUB_PREFECT_SERVER_VENV") or pathlib.Path(
    os.environ.get("QHUB_PREFECT_CACHE") or pathlib.Path.home() / ".cache" / "qhub-prefect") / "prefect-venv")
PLACEHOLDER = re.compile(r"{{\s*([\w.]+)\s*}}")


def job_from(overrides, environ=None):
    job, _secret_env = parse_overrides(overrides, environ or {}, path="overrides")
    return job


def container(template):
    return template["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]["containers"][0]


def pod_spec(template):
    return template["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]


def placeholders(value):
    if isinstance(value, str):
        return set(PLACEHOLDER.findall(value))
    if isinstance(value, dict):
        return set().union(*(placeholders(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(placeholders(v) for v in value)) if value else set()
    return set()


def assert_prefect_would_accept(template):
    """Prefect refuses a template whose job_configuration uses a variable the schema does not declare."""
    undeclared = placeholders(template["job_configuration"]) - set(template["variables"]["properties"])
    assert not undeclared, "undeclared variables: %s" % sorted(undeclared)


QHUB_OVERRIDES = {
    "IMAGE_PULL_POLICY": "IfNotPresent",
    "IMAGE_PULL_SECRETS": "regcred,other-registry",
    "prefect_agent": {"job": {"resources": {"limit": {"cpu": 4, "memory": "8Gi"},
                                            "request": {"cpu": "500m", "memory": "1Gi"}}}},
    "envVars": {"ENVIRONMENT": "dev", "DASK_GATEWAY__ADDRESS": "http://dask-gateway.dev"},
}


def render_like_prefect(template, job_variables=None):
    """The flow-run Job a worker makes: variable defaults, then job_variables, into single placeholders.

    The rule of prefect.utilities.templating.apply_values: a placeholder with no value (no default,
    or a null one) removes its key. (test_prefect_renders_the_same checks it against Prefect itself.)
    """
    values = dict((name, prop["default"]) for name, prop in template["variables"]["properties"].items()
                  if prop.get("default") is not None)
    values.update(job_variables or {})
    missing = object()

    def apply(value):
        if isinstance(value, dict):
            out = dict((key, apply(item)) for key, item in value.items())
            return dict((key, item) for key, item in out.items() if item is not missing)
        if isinstance(value, list):
            return [apply(item) for item in value]
        match = PLACEHOLDER.fullmatch(value) if isinstance(value, str) else None
        return values.get(match.group(1), missing) if match else value

    return apply(template["job_configuration"])["job_manifest"]


def rendered_container(template, job_variables=None):
    return render_like_prefect(template, job_variables)["spec"]["template"]["spec"]["containers"][0]


def test_resources_are_variables_whose_defaults_are_the_config():
    template = build_base_job_template(job_from(QHUB_OVERRIDES), "dev", "prefect")
    properties = template["variables"]["properties"]
    assert [properties[v]["default"] for v in ("cpu_request", "cpu_limit", "memory_request", "memory_limit")] == [
        "500m", "4", "1Gi", "8Gi"]
    assert container(template)["resources"] == {"limits": {"cpu": "{{ cpu_limit }}", "memory": "{{ memory_limit }}"},
                                                "requests": {"cpu": "{{ cpu_request }}",
                                                             "memory": "{{ memory_request }}"}}
    assert rendered_container(template)["resources"] == {"limits": {"cpu": "4", "memory": "8Gi"},
                                                         "requests": {"cpu": "500m", "memory": "1Gi"}}
    assert_prefect_would_accept(template)


def test_a_deployments_job_variables_still_change_resources_pull_policy_and_image():
    template = build_base_job_template(job_from(QHUB_OVERRIDES), "dev", "prefect", image="registry.example/f:1")
    overridden = rendered_container(template, {"cpu_limit": "8", "memory_request": "2Gi",
                                               "image_pull_policy": "Always", "image": "registry.example/f:2"})
    assert overridden["resources"] == {"limits": {"cpu": "8", "memory": "8Gi"},
                                       "requests": {"cpu": "500m", "memory": "2Gi"}}
    assert (overridden["imagePullPolicy"], overridden["image"]) == ("Always", "registry.example/f:2")


def test_flat_job_overrides_land_in_the_same_place():
    template = build_base_job_template(job_from({"JOB_CPU_LIMIT": "2", "JOB_MEM_REQUEST": "512Mi"}), "dev", None)
    assert rendered_container(template)["resources"] == {"limits": {"cpu": "2"}, "requests": {"memory": "512Mi"}}


def test_without_resources_the_flow_run_container_gets_none():
    template = build_base_job_template(job_from({}), "dev", None)
    assert rendered_container(template)["resources"] == {"limits": {}, "requests": {}}
    assert_prefect_would_accept(template)


def test_a_base_without_resource_variables_gets_them_declared():
    """An older server's default template (prefect-kubernetes before 0.7.6) has no cpu/memory variables."""
    old = copy.deepcopy(DEFAULT_BASE_JOB_TEMPLATE)
    for variable in ("cpu_request", "cpu_limit", "memory_request", "memory_limit"):
        del old["variables"]["properties"][variable]
    del container(old)["resources"]
    template = build_base_job_template(job_from(QHUB_OVERRIDES), "dev", "prefect", base=old)
    assert_prefect_would_accept(template)
    assert rendered_container(template)["resources"]["limits"] == {"cpu": "4", "memory": "8Gi"}


def test_the_servers_default_template_is_preferred_when_it_has_the_known_shape():
    view = {"prefect-kubernetes": {"kubernetes": {"default_base_job_configuration": copy.deepcopy(
        DEFAULT_BASE_JOB_TEMPLATE)}}}
    view["prefect-kubernetes"]["kubernetes"]["default_base_job_configuration"]["variables"]["properties"][
        "finished_job_ttl"]["default"] = 60
    base = server_default_template(view)
    template = build_base_job_template(job_from({}), "dev", None, base=base)
    assert template["variables"]["properties"]["finished_job_ttl"]["default"] == 60
    assert server_default_template({}) is None
    assert server_default_template({"prefect-kubernetes": {"kubernetes": {"default_base_job_configuration": {}}}}) \
        is None


def test_variable_defaults_carry_namespace_service_account_pull_policy_image_and_env():
    template = build_base_job_template(job_from(QHUB_OVERRIDES), "dev", "prefect", image="registry.example/flows:1.2")
    properties = template["variables"]["properties"]
    assert properties["namespace"]["default"] == "dev"
    assert properties["service_account_name"]["default"] == "prefect"
    assert properties["image_pull_policy"]["default"] == "IfNotPresent"
    assert properties["image"]["default"] == "registry.example/flows:1.2"
    assert properties["env"]["default"] == {"ENVIRONMENT": "dev", "DASK_GATEWAY__ADDRESS": "http://dask-gateway.dev"}
    # The manifest still takes them through the variables, so a deployment can override each one.
    assert container(template)["imagePullPolicy"] == "{{ image_pull_policy }}"
    assert template["job_configuration"]["namespace"] == "{{ namespace }}"


def test_unset_settings_keep_the_defaults_of_prefect_kubernetes():
    template = build_base_job_template(job_from({}), None, None)
    default = DEFAULT_BASE_JOB_TEMPLATE["variables"]["properties"]
    properties = template["variables"]["properties"]
    for name in ("namespace", "service_account_name", "image_pull_policy", "image", "env"):
        assert properties[name] == default[name]


def test_secret_env_vars_are_secret_key_refs_and_never_values():
    job = job_from({"envVars": {"ENVIRONMENT": "dev"}})
    template = build_base_job_template(job, "dev", "prefect", secret_env_names=["S3_SECRET", "DATABASE_PASSWORD"],
                                       secret_name="prefect-worker")
    assert container(template)["env"] == [
        {"name": "DATABASE_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "prefect-worker",
                                                                     "key": "DATABASE_PASSWORD"}}},
        {"name": "S3_SECRET", "valueFrom": {"secretKeyRef": {"name": "prefect-worker", "key": "S3_SECRET"}}},
    ]
    assert template["variables"]["properties"]["env"]["default"] == {"ENVIRONMENT": "dev"}
    assert_prefect_would_accept(template)


def test_secret_env_vars_need_the_secret_name():
    job = job_from({})
    with pytest.raises(ValueError, match="secret_name"):
        build_base_job_template(job, "dev", "prefect", secret_env_names=["DATABASE_PASSWORD"])


def test_image_pull_secrets_go_into_the_pod_spec():
    template = build_base_job_template(job_from(QHUB_OVERRIDES), "dev", "prefect")
    assert pod_spec(template)["imagePullSecrets"] == [{"name": "regcred"}, {"name": "other-registry"}]
    assert "imagePullSecrets" not in pod_spec(build_base_job_template(job_from({}), "dev", "prefect"))


def test_building_leaves_the_shipped_default_untouched():
    before = copy.deepcopy(DEFAULT_BASE_JOB_TEMPLATE)
    job = job_from(QHUB_OVERRIDES)
    build_base_job_template(job, "dev", "prefect", secret_env_names=["X"], secret_name="s", image="i:1")
    assert DEFAULT_BASE_JOB_TEMPLATE == before


def test_same_input_same_template():
    first = build_base_job_template(job_from(QHUB_OVERRIDES), "dev", "prefect")
    second = build_base_job_template(job_from(json.loads(json.dumps(QHUB_OVERRIDES))), "dev", "prefect")
    assert first == second


@pytest.mark.skipif(not (PREFECT_VENV / "bin" / "prefect").exists(),
                    reason="no Prefect venv at %s (tests/testbed/install-venvs.sh makes it)" % PREFECT_VENV)
def test_shipped_default_matches_prefect_kubernetes(tmp_path):
    python = str(PREFECT_VENV / "bin" / "python")
    version = subprocess.run([python, "-c", "import prefect_kubernetes; print(prefect_kubernetes.__version__)"],
                             capture_output=True, text=True, check=True).stdout.strip()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), "PREFECT_HOME": str(tmp_path),
           "PREFECT_API_URL": "", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    printed = subprocess.run([str(PREFECT_VENV / "bin" / "prefect"), "work-pool", "get-default-base-job-template",
                              "--type", "kubernetes"], capture_output=True, text=True, env=env, timeout=120,
                             check=True)
    assert json.loads(printed.stdout) == DEFAULT_BASE_JOB_TEMPLATE, (
        "the shipped template (prefect-kubernetes %s) differs from the installed prefect-kubernetes %s"
        % (PREFECT_KUBERNETES_VERSION, version))


@pytest.mark.skipif(not (PREFECT_VENV / "bin" / "prefect").exists(),
                    reason="no Prefect venv at %s (tests/testbed/install-venvs.sh makes it)" % PREFECT_VENV)
def test_prefect_renders_the_same(tmp_path):
    """Prefect's own KubernetesWorkerJobConfiguration renders the template as render_like_prefect does."""
    template = build_base_job_template(job_from(QHUB_OVERRIDES), "dev", "prefect", image="registry.example/f:1")
    job_variables = {"cpu_limit": "8", "image_pull_policy": "Always"}
    script = (
        "import asyncio, json, sys\n"
        "from prefect_kubernetes.worker import KubernetesWorkerJobConfiguration as C\n"
        "t, v = json.loads(sys.argv[1]), json.loads(sys.argv[2])\n"
        "c = asyncio.run(C.from_template_and_values(t, v, client=object()))\n"
        "print(json.dumps(c.job_manifest['spec']['template']['spec']['containers'][0]))\n")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), "PREFECT_HOME": str(tmp_path),
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    printed = subprocess.run([str(PREFECT_VENV / "bin" / "python"), "-c", script, json.dumps(template),
                              json.dumps(job_variables)], capture_output=True, text=True, env=env, timeout=120,
                             check=False)
    assert printed.returncode == 0, printed.stderr[-2000:]
    theirs = json.loads(printed.stdout.strip().splitlines()[-1])
    ours = rendered_container(template, job_variables)
    assert theirs["resources"] == ours["resources"] == {"limits": {"cpu": "8", "memory": "8Gi"},
                                                        "requests": {"cpu": "500m", "memory": "1Gi"}}
    assert theirs["imagePullPolicy"] == ours["imagePullPolicy"] == "Always"
    assert theirs["image"] == ours["image"] == "registry.example/f:1"
