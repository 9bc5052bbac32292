"""The prefect block's validation: every accepted form, and errors that name the key at fault."""

import pytest

from ansible_collections.qhub.prefect.plugins.module_utils._kube.quantity import quantity_value
from ansible_collections.qhub.prefect.plugins.module_utils._qhub.config import load_yaml_strict, parse_qhub_config
from ansible_collections.qhub.prefect.plugins.module_utils._qhub.errors import ConfigError
from ansible_collections.qhub.prefect.plugins.module_utils._qhub.images import (
    DEFAULT_IMAGE, PREFECT1, PREFECT3, generation_of_image,
)
from ansible_collections.qhub.prefect.plugins.module_utils._qhub.names import validate_namespace, validate_object_name
from ansible_collections.qhub.prefect.plugins.module_utils._qhub.overrides import parse_overrides

TOKEN_ENV = {"QHUB_SECRET_PREFECT_TOKEN": "token-from-env"}

# The image QHub deployed until 2023: a Prefect 0.14 agent.
QHUB_IMAGE = "prefecthq/prefect:0.14.22-python3.8"


def config(**prefect):
    return {"namespace": "dev", "prefect": dict({"enabled": True}, **prefect)}


def resources(job):
    return dict((field, getattr(job, field))
                for field in ("cpu_request", "memory_request", "cpu_limit", "memory_limit"))


def error_of(call, *args, **kwargs):
    with pytest.raises(ConfigError) as caught:
        call(*args, **kwargs)
    return caught.value


def test_flat_and_nested_resources_land_in_the_same_fields():
    flat, dummy = parse_overrides({"JOB_CPU_LIMIT": "4", "JOB_MEM_LIMIT": "8Gi", "JOB_CPU_REQUEST": "1",
                                   "JOB_MEM_REQUEST": "2Gi"}, {})
    nested, dummy = parse_overrides({"prefect_agent": {"job": {"resources": {
        "limit": {"cpu": 4, "memory": "8Gi"}, "requests": {"cpu": 1, "memory": "2Gi"}}}}}, {})
    assert resources(flat) == resources(nested) == {"cpu_request": "1", "memory_request": "2Gi", "cpu_limit": "4",
                                                    "memory_limit": "8Gi"}


def test_the_same_field_set_two_ways_with_different_values_fails_naming_both():
    error = error_of(parse_overrides, {"JOB_CPU_LIMIT": "2", "prefect_agent": {"job": {"resources": {
        "limit": {"cpu": "4"}}}}}, {})
    assert "prefect.overrides.JOB_CPU_LIMIT" in str(error)
    assert "prefect.overrides.prefect_agent.job.resources.limit.cpu" in str(error)


def test_a_bad_quantity_names_its_key_path():
    error = error_of(parse_overrides, {"prefect_agent": {"job": {"resources": {"limit": {"cpu": "four"}}}}}, {})
    assert str(error) == ("prefect.overrides.prefect_agent.job.resources.limit.cpu: 'four' is not a "
                          "Kubernetes quantity (want for example 500m, 2 or 4Gi)")


@pytest.mark.parametrize("value", ["0.5", "500m", "1.5Gi", "2", "1e3", 3, 0.25])
def test_valid_quantities_are_accepted(value):
    job, dummy = parse_overrides({"JOB_CPU_LIMIT": value}, {})
    assert quantity_value(job.cpu_limit) > 0


def test_a_request_above_its_limit_fails():
    error = error_of(parse_overrides, {"JOB_MEM_REQUEST": "2Gi", "JOB_MEM_LIMIT": "1Gi"}, {})
    assert error.path == "prefect.overrides.JOB_MEM_REQUEST"


def test_unknown_override_lists_the_accepted_keys():
    error = error_of(parse_overrides, {"JOB_GPU_LIMIT": 1}, {})
    assert error.path == "prefect.overrides.JOB_GPU_LIMIT"
    assert "IMAGE_PULL_POLICY" in error.message and "secretEnvVars" in error.message


def test_unknown_nested_key_lists_what_is_accepted_there():
    error = error_of(parse_overrides, {"prefect_agent": {"job": {"resources": {"limitz": {}}}}}, {})
    assert error.path == "prefect.overrides.prefect_agent.job.resources.limitz"
    assert "limits" in error.message


@pytest.mark.parametrize("value,expected", [
    ("['dev', 'gpu']", ["dev", "gpu"]), ('["dev"]', ["dev"]), ("dev, gpu", ["dev", "gpu"]), (["dev"], ["dev"])])
def test_labels_in_every_form_qhub_documented(value, expected):
    job, dummy = parse_overrides({"PREFECT__CLOUD__AGENT__LABELS": value}, {})
    assert job.labels == expected


def test_pull_secrets_comma_string_or_list():
    job, dummy = parse_overrides({"IMAGE_PULL_SECRETS": "a, b"}, {})
    assert job.image_pull_secrets == ["a", "b"]
    assert error_of(parse_overrides, {"IMAGE_PULL_SECRETS": ["Not_A_Name"]}, {}).path == \
        "prefect.overrides.IMAGE_PULL_SECRETS[0]"


def test_pull_policy_must_be_one_kubernetes_knows():
    assert error_of(parse_overrides, {"IMAGE_PULL_POLICY": "Sometimes"}, {}).path == \
        "prefect.overrides.IMAGE_PULL_POLICY"


def test_secret_reference_strips_the_prefix_exactly():
    # QHub lstrip()ped a character set, so QHUB_SECRET_SECRET_KEY became KEY.
    dummy, secrets = parse_overrides({"secretEnvVars": {"S3": "QHUB_SECRET_SECRET_KEY"}},
                                     {"SECRET_KEY": "right", "KEY": "wrong"})
    assert secrets == {"S3": "right"}


def test_a_missing_secret_reference_names_key_and_variable():
    error = error_of(parse_overrides, {"secretEnvVars": {"S3": "QHUB_SECRET_NOPE"}}, {})
    assert error.path == "prefect.overrides.secretEnvVars.S3" and "NOPE" in error.message


def test_secret_may_not_shadow_a_plain_variable():
    error = error_of(parse_overrides, {"envVars": {"A": "1"}, "secretEnvVars": {"A": "2"}}, {})
    assert error.path == "prefect.overrides.secretEnvVars.A"


@pytest.mark.parametrize("name", ["1ABC", "A-B", "A B", "Ä", ""])
def test_env_names_must_be_valid(name):
    assert error_of(parse_overrides, {"envVars": {name: "x"}}, {}).path == "prefect.overrides.envVars.%s" % name


def test_env_a_collection_sets_itself_is_refused():
    assert "PREFECT_API_URL" in str(error_of(parse_overrides, {"envVars": {"PREFECT_API_URL": "x"}}, {}))


def test_env_values_scalars_become_strings_and_structures_fail():
    job, dummy = parse_overrides({"envVars": {"N": 3, "B": True, "S": "ä"}}, {})
    assert job.env == {"N": "3", "B": "true", "S": "ä"}
    assert error_of(parse_overrides, {"envVars": {"L": [1]}}, {}).path == "prefect.overrides.envVars.L"


@pytest.mark.parametrize("image,generation", [
    ("prefecthq/prefect:0.14.22-python3.8", PREFECT1), ("prefecthq/prefect:1.4.1", PREFECT1),
    ("prefecthq/prefect:2.20.0-python3.11", PREFECT3), ("prefecthq/prefect:3-python3.11-kubernetes", PREFECT3),
    ("prefecthq/prefect:latest", PREFECT3), ("prefecthq/prefect", PREFECT3),
    ("registry.example:5000/team/prefect:3.1.0@sha256:" + "a" * 64, PREFECT3)])
def test_generation_follows_the_image_tag(image, generation):
    assert generation_of_image(image) == generation


def test_an_unreadable_tag_asks_for_the_generation():
    assert "generation" in error_of(generation_of_image, "prefecthq/prefect:custom").message


def test_defaults_namespace_dev_and_current_prefect_3_image():
    parsed = parse_qhub_config({"prefect": {"enabled": True}}, TOKEN_ENV)
    assert (parsed.namespace, parsed.image, parsed.generation) == ("dev", DEFAULT_IMAGE, PREFECT3)


def test_token_from_environment_preferred_over_config():
    parsed = parse_qhub_config(config(token="from-config"), {"TF_VAR_prefect_token": "tf"})
    assert (parsed.token, parsed.token_source) == ("tf", "TF_VAR_prefect_token")
    parsed = parse_qhub_config(config(token="from-config"), {})
    assert (parsed.token, parsed.token_source) == ("from-config", "prefect.token")


CLOUD = {"PREFECT_API_URL": "https://api.prefect.cloud/api/accounts/a/workspaces/w"}
SELF_HOSTED = {"PREFECT_API_URL": "http://prefect.dev:4200/api"}


def test_a_token_is_required_for_prefect_cloud_only():
    assert error_of(parse_qhub_config, config(), CLOUD).path == "prefect.token"
    # Prefect 1 without a URL is Prefect Cloud 1.
    assert error_of(parse_qhub_config, config(image=QHUB_IMAGE), {}).path == "prefect.token"
    parsed = parse_qhub_config(config(), SELF_HOSTED)
    assert (parsed.token, parsed.token_source, parsed.public()["token_required"]) == (None, None, False)
    parsed = parse_qhub_config(config(image=QHUB_IMAGE), {"PREFECT__CLOUD__API": "http://apollo:4200/graphql"})
    assert parsed.token is None and parsed.public()["api_url_source"] == "PREFECT__CLOUD__API"
    assert parse_qhub_config({"prefect": {"enabled": False}}, CLOUD).enabled is False


def test_prefect_api_key_alone_is_a_token_source():
    parsed = parse_qhub_config(config(), dict(CLOUD, PREFECT_API_KEY="pnu_x"))
    assert (parsed.token, parsed.token_source) == ("pnu_x", "PREFECT_API_KEY")


@pytest.mark.parametrize("environ, key", [
    ({"QHUB_SECRET_PREFECT_TOKEN": "", "TF_VAR_prefect_token": "t"}, "QHUB_SECRET_PREFECT_TOKEN"),
    ({"TF_VAR_prefect_token": " ", "PREFECT_API_KEY": "k"}, "TF_VAR_prefect_token"),
    ({"PREFECT_API_KEY": ""}, "PREFECT_API_KEY"),
])
def test_a_token_source_set_but_empty_fails_naming_it(environ, key):
    error = error_of(parse_qhub_config, config(token="from-config"), dict(SELF_HOSTED, **environ))
    assert (error.path, error.message.startswith("is set but empty")) == (key, True)


def test_instance_is_project_name_or_given_and_a_label_value():
    assert parse_qhub_config(dict(config(), project_name="demo"), SELF_HOSTED).instance == "demo"
    # Without project_name, the namespace marked so that no project_name (letters, '-', '_') equals it.
    assert parse_qhub_config(dict(config(), namespace="ns1"), SELF_HOSTED).instance == "ns1.ns"
    assert parse_qhub_config(dict(config(), namespace="dev"), SELF_HOSTED).instance != parse_qhub_config(
        dict(config(), namespace="prod", project_name="dev"), SELF_HOSTED).instance
    assert parse_qhub_config(dict(config(), project_name="demo"), SELF_HOSTED, instance="other").instance == "other"
    assert error_of(parse_qhub_config, dict(config(), project_name="a b"), SELF_HOSTED).path == "project_name"
    assert error_of(parse_qhub_config, dict(config(), project_name="x" * 64), SELF_HOSTED).path == "project_name"
    error = error_of(parse_qhub_config, config(), SELF_HOSTED, instance="-bad")
    assert error.path == "instance" and "label value" in error.message


def test_qhub_chart_form_under_prefect_agent():
    """QHub's chart values.yaml: prefect_agent.{job.*, prefectLabels}, unset leaves as '' and labels as '[]'."""
    chart_defaults = {"prefect_agent": {
        "job": {"imagePullSecrets": "", "imagePullPolicy": "",
                "resources": {"requests": {"memory": "", "cpu": ""}, "limits": {"memory": "", "cpu": ""}}},
        "prefectLabels": "[]"}}
    job, _secret = parse_overrides(chart_defaults, {})
    assert job.as_dict() == parse_overrides({}, {})[0].as_dict()
    chart_form = {"prefect_agent": {
        "job": {"imagePullSecrets": "regcred", "imagePullPolicy": "Always",
                "resources": {"requests": {"memory": "1Gi", "cpu": "500m"}, "limits": {"memory": "4Gi", "cpu": "2"}}},
        "prefectLabels": "['dev', 'gpu']"}}
    job, _secret = parse_overrides(chart_form, {})
    assert (job.image_pull_secrets, job.image_pull_policy, job.labels) == (["regcred"], "Always", ["dev", "gpu"])
    assert resources(job) == {"cpu_request": "500m", "memory_request": "1Gi", "cpu_limit": "2", "memory_limit": "4Gi"}


def test_flat_and_nested_agree_by_value_and_disagree_naming_both_paths():
    job, _secret = parse_overrides({"JOB_CPU_LIMIT": "2", "prefect_agent": {"job": {"resources": {
        "limits": {"cpu": "2000m"}}}}}, {})
    assert job.cpu_limit == "2000m"
    error = error_of(parse_overrides, {"JOB_CPU_LIMIT": "2", "prefect_agent": {"job": {"resources": {
        "limits": {"cpu": "4"}}}}}, {})
    assert error.path == "prefect.overrides.prefect_agent.job.resources.limits.cpu"
    assert "prefect.overrides.JOB_CPU_LIMIT" in error.message


def test_public_view_holds_no_secret_value():
    parsed = parse_qhub_config(config(overrides={"secretEnvVars": {"S": "QHUB_SECRET_X"}}),
                               dict(TOKEN_ENV, X="canary-value"))
    assert "canary-value" not in repr(parsed.public()) and "token-from-env" not in repr(parsed.public())
    assert parsed.public()["secret_env_names"] == ["S"]


@pytest.mark.parametrize("doc,path", [
    ({"namespace": "Dev_1", "prefect": {}}, "namespace"),
    ({"prefect": ["enabled"]}, "prefect"),
    ({"prefect": {"enabled": "yes please"}}, "prefect.enabled"),
    ({"prefect": {"enabled": True, "imagee": "x"}}, "prefect.imagee"),
    ({"prefect": {"enabled": True, "image": "not an image"}}, "prefect.image"),
    ({"prefect": {"enabled": True, "overrides": []}}, "prefect.overrides"),
    ([1, 2], "(top level)"),
])
def test_structural_errors_name_their_key(doc, path):
    assert error_of(parse_qhub_config, doc, TOKEN_ENV).path == path


def test_duplicate_keys_and_syntax_errors_give_the_line():
    assert "line 3: duplicate key 'enabled'" in str(error_of(
        load_yaml_strict, "prefect:\n  enabled: true\n  enabled: false\n", "q.yml"))
    message = str(error_of(load_yaml_strict, "prefect:\n  enabled: [true\n", "q.yml"))
    assert "line 3, column 1: not valid YAML" in message


@pytest.mark.parametrize("value", ["Team_B", "x" * 64, 7, "-team"])
def test_an_object_name_and_a_namespace_are_refused_each_as_what_it_is(value):
    name_error = error_of(validate_object_name, value, "name")
    assert name_error.path == "name" and "is not a valid name for the agent's or worker's objects" in name_error.message
    assert "namespace" not in name_error.message
    namespace_error = error_of(validate_namespace, value, "namespace")
    assert "is not a valid Kubernetes namespace" in namespace_error.message
    assert validate_object_name("team-b") == validate_namespace("team-b") == "team-b"
