"""Secrets that reach the collection by other paths than secretEnvVars and the token's (issue 17, point 6).

- A QHUB_SECRET_ reference among ``envVars`` (QHub substitutes them everywhere) is a secret like a
  ``secretEnvVars`` entry: in the Secret, by ``secretKeyRef`` only, never in qhub_config_info's result,
  in the role's arguments, in plain env of the Deployment, the Prefect 1 job template or the work pool.
- A Prefect API URL with ``user:password@`` reaches the pod from the Secret, and is printed without them.
- Every candidate of the credential rule is masked, not only the winner.
- The log tails of a failed rollout mask multi-line secrets line by line, and JSON-escaped.
"""

import base64
import json
import uuid

import pytest
import yaml
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.qhub.prefect.plugins.module_utils._kube.apply import MASK
from ansible_collections.qhub.prefect.plugins.module_utils._kube.pod_diagnosis import Masker
from ansible_collections.qhub.prefect.plugins.module_utils._prefect.http import PrefectHttpClient
from ansible_collections.qhub.prefect.plugins.module_utils._qhub.config import config_secret_values, parse_qhub_config
from ansible_collections.qhub.prefect.plugins.module_utils._qhub.credentials import candidate_secrets, url_userinfo
from ansible_collections.qhub.prefect.plugins.module_utils._qhub.errors import ConfigError
from ansible_collections.qhub.prefect.plugins.module_utils._qhub.images import PREFECT1, PREFECT3
from ansible_collections.qhub.prefect.plugins.module_utils._qhub.overrides import parse_overrides, public_overrides
from ansible_collections.qhub.prefect.plugins.module_utils._render.objects import render_objects
from ansible_collections.qhub.prefect.plugins.module_utils._render.spec import AgentSpec, needs_digest_salt, secret_data
from ansible_collections.qhub.prefect.plugins.module_utils._runners import prefect_agent_config, prefect_work_pool
from ansible_collections.qhub.prefect.plugins.module_utils._runners.options import (
    task_config_secrets, task_secret_values,
)
from tests.unit.collection.test_credential_rule import (FakeModule, role_tasks, role_vars, run_config_info,
                                                        template_args)

IMAGES = {PREFECT1: "prefecthq/prefect:0.14.22-python3.8", PREFECT3: "prefecthq/prefect:3-python3.11-kubernetes"}


def canary(what):
    return "canary-%s-%s" % (what, uuid.uuid4().hex[:10])


def by_kind(objects):
    return dict((item["kind"], item) for item in objects)


def deployment_env(objects):
    container = by_kind(objects)["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    return dict((item["name"], item) for item in container["env"])


def decoded(secret):
    return dict((key, base64.b64decode(value).decode()) for key, value in secret["data"].items())


def ref(secret_name, key):
    return {"secretKeyRef": {"name": secret_name, "key": key}}


# --- an envVars QHUB_SECRET_ reference is a secret ------------------------------------------------------------

def test_an_envvars_reference_is_parsed_as_a_secret_not_as_plain_env():
    job, secret_env = parse_overrides({"envVars": {"DB_PASS": "QHUB_SECRET_DB_PASS", "PLAIN": "visible"},
                                       "secretEnvVars": {"OTHER": "literal"}}, {"DB_PASS": "s3cret"})
    assert job.env == {"PLAIN": "visible"}
    assert secret_env == {"DB_PASS": "s3cret", "OTHER": "literal"}


def test_an_envvars_reference_keeps_its_errors_and_the_shadowing_rule():
    with pytest.raises(ConfigError) as unset:
        parse_overrides({"envVars": {"DB_PASS": "QHUB_SECRET_DB_PASS"}}, {})
    assert unset.value.path == "prefect.overrides.envVars.DB_PASS"
    with pytest.raises(ConfigError) as shadow:
        parse_overrides({"envVars": {"X": "QHUB_SECRET_X"}, "secretEnvVars": {"X": "y"}}, {"X": "z"})
    assert shadow.value.path == "prefect.overrides.secretEnvVars.X"


def test_public_overrides_drop_the_references_and_the_secret_env():
    overrides = {"envVars": {"DB_PASS": "QHUB_SECRET_DB_PASS", "PLAIN": "visible"}, "secretEnvVars": {"A": "b"},
                 "JOB_CPU_LIMIT": "2"}
    assert public_overrides(overrides) == {"envVars": {"PLAIN": "visible"}, "JOB_CPU_LIMIT": "2"}
    assert overrides["envVars"]["DB_PASS"] == "QHUB_SECRET_DB_PASS"  # the caller's mapping is left alone


def test_a_disabled_config_needs_no_envvars_reference_to_resolve():
    doc = {"namespace": "dev", "prefect": {"enabled": False, "overrides": {"envVars": {"A": "QHUB_SECRET_UNSET"}}}}
    config = parse_qhub_config(doc, {})
    assert config.job.env == {} and sorted(config.secret_env) == ["A"]


@pytest.fixture
def config_with_reference(tmp_path):
    value = canary("envref")
    doc = {"project_name": "demo", "namespace": "dev",
           "prefect": {"enabled": True, "image": IMAGES[PREFECT3],
                       "overrides": {"envVars": {"DB_PASS": "QHUB_SECRET_DB_PASS", "PLAIN": "visible"}}}}
    path = tmp_path / "qhub-config.yml"
    path.write_text(yaml.safe_dump(doc))
    return path, doc, value, {"DB_PASS": value, "PREFECT_API_URL": "http://prefect.dev:4200/api"}


def test_qhub_config_info_keeps_neither_the_value_nor_the_reference_and_names_it(config_with_reference):
    path, doc, value, environ = config_with_reference
    for extra in ({"qhub_prefect_config_file": str(path)}, {"qhub_prefect_config": doc}):
        variables = role_vars(dict({"qhub_prefect_config_file": "", "qhub_prefect_config": {}}, **extra))
        result = run_config_info(variables, environ)
        assert not result.get("failed"), result
        text = json.dumps(result)
        assert value not in text
        registered = json.dumps(dict((key, item) for key, item in result.items() if key != "invocation"))
        assert "QHUB_SECRET_DB_PASS" not in registered
        prefect = result["prefect"]
        assert prefect["secret_env_names"] == ["DB_PASS"] == prefect["job"]["secret_env_names"]
        assert prefect["job"]["env"] == {"PLAIN": "visible"}
        assert prefect["overrides"] == {"envVars": {"PLAIN": "visible"}}


@pytest.mark.parametrize("generation", [PREFECT1, PREFECT3])
def test_the_role_passes_no_reference_and_the_modules_store_it_as_a_secret(config_with_reference, generation):
    path, doc, value, environ = config_with_reference
    doc["prefect"]["image"] = IMAGES[generation]
    path.write_text(yaml.safe_dump(doc))
    variables = role_vars({"qhub_prefect_config_file": str(path), "qhub_prefect_config": {},
                           "qhub_prefect_kubeconfig": ""})
    settings = run_config_info(variables, environ)
    variables["qhub_prefect_settings"] = dict((key, item) for key, item in settings.items() if key != "invocation")
    args = {}
    for task in role_tasks()[1:]:
        module = next(key for key in task if key.startswith("qhub.prefect."))
        templated = template_args(task[module], variables)
        text = json.dumps(templated, default=str)
        assert value not in text and "QHUB_SECRET_DB_PASS" not in text, (task["name"], text)
        if templated.get("state", "present") == "present":
            args[module.rsplit(".", 1)[1]] = templated

    # prefect_agent_config: from the config it reads itself, into the Secret; by reference in the Deployment
    # and (Prefect 1) in the job template.
    params = ArgumentSpecValidator(prefect_agent_config.argument_spec()).validate(
        args["prefect_agent_config"]).validated_parameters
    module = FakeModule(params)
    secret_env, config_token = task_config_secrets(module, environ)
    spec = prefect_agent_config.build_spec(params, environ, secret_env, config_token)
    assert value in module.no_log_values
    objects = render_objects(spec)
    assert decoded(by_kind(objects)["Secret"])["DB_PASS"] == value
    for item in objects:
        if item["kind"] != "Secret":
            assert value not in json.dumps(item), item["kind"]
    env = deployment_env(objects)
    assert env["DB_PASS"] == {"name": "DB_PASS", "valueFrom": ref(spec.name, "DB_PASS")}
    assert env["PLAIN"] == {"name": "PLAIN", "value": "visible"}
    if generation == PREFECT1:
        template = yaml.safe_load(by_kind(objects)["ConfigMap"]["data"]["job_template.yaml"])
        flow_env = template["spec"]["template"]["spec"]["containers"][0]["env"]
        assert {"name": "DB_PASS", "valueFrom": ref(spec.name, "DB_PASS")} in flow_env
        assert {"name": "PLAIN", "value": "visible"} in flow_env
        return
    # prefect_work_pool: the name by reference, the value nowhere in the pool.
    pool_params = dict((key, None) for key in prefect_work_pool.argument_spec())
    pool_params.update(args["prefect_work_pool"])
    template = prefect_work_pool.derived_template(pool_params)
    assert value not in json.dumps(template)
    flow_container = template["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "DB_PASS", "valueFrom": ref(spec.name, "DB_PASS")} in flow_container["env"]
    assert template["variables"]["properties"]["env"]["default"] == {"PLAIN": "visible"}


def test_modules_given_a_reference_in_their_overrides_option_keep_it_secret(monkeypatch):
    """A playbook of its own may pass the raw overrides: the reference still never becomes plain env."""
    value = canary("direct")
    environ = {"DB_PASS": value, "PREFECT_API_URL": "http://prefect.dev:4200/api"}
    monkeypatch.setenv("DB_PASS", value)  # prefect_work_pool reads the process environment
    overrides = {"envVars": {"DB_PASS": "QHUB_SECRET_DB_PASS"}}
    params = dict((key, None) for key in prefect_agent_config.argument_spec())
    params.update(namespace="dev", state="present", generation="auto", replicas=1, overrides=overrides)
    spec = prefect_agent_config.build_spec(params, environ)
    assert spec.secret_env == {"DB_PASS": value} and spec.job.env == {}
    assert value in task_secret_values(params, environ)

    pool = dict((key, None) for key in prefect_work_pool.argument_spec())
    pool.update(overrides=overrides)
    with pytest.raises(ConfigError) as missing:
        prefect_work_pool.derived_template(pool)
    assert missing.value.path == "secret_name"
    pool.update(secret_name="prefect-worker")
    template = prefect_work_pool.derived_template(pool)
    assert "DB_PASS" in json.dumps(template) and value not in json.dumps(template)


# --- a user:password in the API URL --------------------------------------------------------------------------

URL = "http://qhub:%s@prefect.dev:4200/api"


@pytest.mark.parametrize("generation, key", [(PREFECT1, "PREFECT__CLOUD__API"), (PREFECT3, "PREFECT_API_URL")])
@pytest.mark.parametrize("token", [None, "canary-token"])
def test_an_api_url_with_credentials_reaches_the_pod_from_the_secret(generation, key, token):
    password = canary("password")
    job, dummy = parse_overrides({}, {})
    spec = AgentSpec(name="prefect-x", namespace="dev", generation=generation, image=IMAGES[generation], job=job,
                     token=token, api_url=URL % password)
    objects = render_objects(spec)
    assert decoded(by_kind(objects)["Secret"])[key] == URL % password
    assert deployment_env(objects)[key] == {"name": key, "valueFrom": ref("prefect-x", key)}
    for item in objects:
        if item["kind"] != "Secret":
            assert password not in json.dumps(item), item["kind"]
    # The digest of the pod template must not be keyed with nothing: the password is guessable from it otherwise.
    assert needs_digest_salt(spec) is (token is None)


def test_an_api_url_without_credentials_stays_plain():
    job, dummy = parse_overrides({}, {})
    spec = AgentSpec(name="prefect-x", namespace="dev", generation=PREFECT3, image=IMAGES[PREFECT3], job=job,
                     api_url="http://prefect.dev:4200/api")
    assert deployment_env(render_objects(spec))["PREFECT_API_URL"]["value"] == "http://prefect.dev:4200/api"
    assert "PREFECT_API_URL" not in secret_data(spec) and not needs_digest_salt(spec)


def test_the_http_client_never_quotes_the_urls_userinfo():
    client = PrefectHttpClient(URL % "pa%40ss", retries=0)
    text = client.redact("failed: %s and qhub:pa@ss" % (URL % "pa%40ss"))
    assert "pa%40ss" not in text and "pa@ss" not in text


def test_url_userinfo():
    assert url_userinfo(URL % "pw") == "qhub:pw"
    assert url_userinfo("http://token@host/api") == "token"
    assert url_userinfo("http://host:4200/api") is None and url_userinfo(None) is None


# --- every candidate masked -----------------------------------------------------------------------------------

def test_every_candidate_of_the_credential_rule_is_a_secret_value():
    environ = {"QHUB_SECRET_PREFECT_TOKEN": "winner-token", "TF_VAR_prefect_token": "second-token",
               "PREFECT_API_KEY": "third-token", "PREFECT_API_AUTH_STRING": "user:auth-pass",
               "PREFECT_API_URL": URL % "env-pass", "REFERENCED": "referenced-token", "BLANK": " "}
    found = candidate_secrets(environ, api_url=URL % "option-pass", api_key="option-key",
                              config_token="QHUB_SECRET_REFERENCED")
    assert {"winner-token", "second-token", "third-token", "user:auth-pass", "option-key", "referenced-token",
            "qhub:env-pass", "qhub:option-pass", URL % "option-pass"} <= found
    assert "QHUB_SECRET_REFERENCED" not in found  # a name, not a secret
    assert candidate_secrets({}, config_token="literal-token") == {"literal-token"}
    assert not [value for value in found if not value.strip()]


def test_a_config_mapping_gives_every_secret_it_holds_even_when_invalid():
    doc = {"prefect": {"token": "literal-token", "image": 7,
                       "overrides": {"secretEnvVars": {"A": "secret-a", "B": "QHUB_SECRET_B"},
                                     "envVars": {"C": "QHUB_SECRET_C", "D": "plain-d"}, "nonsense": [1]}}}
    assert config_secret_values(doc, {"B": "secret-b", "C": "secret-c"}) == {
        "literal-token", "secret-a", "secret-b", "secret-c"}
    assert config_secret_values(["not", "a", "mapping"], {}) == set()
    assert config_secret_values({"prefect": {"overrides": "x", "token": 5}}, {}) == set()


def test_a_module_masks_the_losing_config_token_and_the_urls_userinfo_before_reading_the_config():
    environ = {"QHUB_SECRET_PREFECT_TOKEN": "winner-token", "PREFECT_API_KEY": "loser-key"}
    doc = {"namespace": "dev", "prefect": {
        "enabled": True, "token": "literal-loser", "overrides": {"envVars": {"X": "QHUB_SECRET_UNSET"}}}}
    module = FakeModule({"qhub_config": doc, "api_url": URL % "option-pass", "api_key": None,
                         "api_auth_string": None})
    with pytest.raises(ConfigError):
        task_config_secrets(module, environ)  # the reference does not resolve: the masking came first
    assert {"literal-loser", "winner-token", "loser-key", "qhub:option-pass"} <= module.no_log_values


# --- log tails ------------------------------------------------------------------------------------------------

PEM = ("-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj\n"
       "-----END PRIVATE KEY-----\n")
SERVICE_ACCOUNT = json.dumps({"type": "service_account", "private_key_id": "a1b2c3d4e5",
                              "private_key": PEM, "client_email": "ci@project.iam.gserviceaccount.com"}, indent=2)


def test_a_multi_line_secret_is_masked_line_by_line_in_a_log():
    mask = Masker([PEM, SERVICE_ACCOUNT])
    log = ["2026-01-01 INFO key: MIIEvQIBADANBgkqhkiG9w0BAQEFAASC", "    BKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj",
           '  "private_key_id": "a1b2c3d4e5",', '"client_email": "ci@project.iam.gserviceaccount.com"']
    masked = [mask(line) for line in log]
    assert not [line for line in masked if "MIIEvQ" in line or "BKcwgg" in line or "a1b2c3d4e5" in line
                or "ci@project" in line], masked
    assert masked[0].startswith("2026-01-01 INFO key: ")
    # The fragments every JSON document has are not secrets: masking them would blank the log.
    assert mask("{") == "{" and mask("}") == "}" and mask("  },") == "  },"


def test_a_secret_is_masked_in_its_json_escaped_form():
    mask = Masker([PEM, 'pass"word\\x'])
    line = json.dumps({"event": "loaded", "value": PEM, "other": 'pass"word\\x'})
    masked = mask(line)
    assert "MIIEvQ" not in masked and "word" not in masked
    assert masked.count(MASK) >= 2 and '"event": "loaded"' in masked
