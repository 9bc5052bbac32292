"""No secret value passes through the role's variables, its task arguments or a registered result.

The role hands the modules the config's path; each module reads ``secretEnvVars`` and ``prefect.token``
from it itself (docs/architecture.md, Secrets). Here the role runs on a config file holding canaries:
its task arguments are templated from roles/prefect_agent with Ansible's Templar, and the registered
result is qhub_config_info's own. A task that templated a secret into an argument, or a variable that
read one out of the file, shows here; so does a module that no longer finds the secrets.
"""

import json
import uuid

import pytest
import yaml
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.qhub.prefect.plugins.module_utils._runners import prefect_agent_config
from ansible_collections.qhub.prefect.plugins.module_utils._runners.options import (
    module_credentials, module_spec, task_config_secrets,
)
from tests.unit.collection.test_credential_rule import (FakeModule, role_tasks, role_vars, run_config_info,
                                                        template_args)

SELF_HOSTED = "http://prefect.dev:4200/api"


def canary(what):
    return "canary-%s-%s" % (what, uuid.uuid4().hex[:10])


@pytest.fixture
def config_with_secrets(tmp_path):
    secrets = {"token": canary("token"), "literal": canary("literal"), "referenced": canary("referenced")}
    doc = {"project_name": "demo", "namespace": "dev",
           "prefect": {"enabled": True, "image": "prefecthq/prefect:3-python3.11-kubernetes",
                       "token": secrets["token"],
                       "overrides": {"envVars": {"ENVIRONMENT": "dev"},
                                     "secretEnvVars": {"DATABASE_PASSWORD": secrets["literal"],
                                                       "S3_SECRET": "QHUB_SECRET_S3_SECRET"}}}}
    path = tmp_path / "qhub-config.yml"
    path.write_text(yaml.safe_dump(doc))
    return path, secrets, {"S3_SECRET": secrets["referenced"], "PREFECT_API_URL": SELF_HOSTED}


def registered_settings(variables, environ):
    result = run_config_info(variables, environ)
    assert not result.get("failed"), result
    # What `register` keeps: the result without its invocation.
    return dict((key, value) for key, value in result.items() if key != "invocation")


def test_no_secret_in_variables_arguments_or_results_and_the_modules_find_them(config_with_secrets):
    path, secrets, environ = config_with_secrets
    variables = role_vars({"qhub_prefect_config_file": str(path), "qhub_prefect_config": {},
                           "qhub_prefect_kubeconfig": ""})
    settings = registered_settings(variables, environ)
    variables["qhub_prefect_settings"] = settings
    assert settings["prefect"]["token_source"] == "prefect.token"
    assert settings["prefect"]["secret_env_names"] == ["DATABASE_PASSWORD", "S3_SECRET"]

    seen = {"registered qhub_prefect_settings": settings}
    for name in role_vars({}):
        if name.startswith(("qhub_prefect", "__qhub_prefect")):
            seen["variable %s" % name] = template_args({name: variables[name]}, variables)
    agent_args = None
    for task in role_tasks()[1:]:
        module = next(key for key in task if key.startswith("qhub.prefect."))
        args = template_args(task[module], variables)
        seen["task %r" % task["name"]] = args
        if module == "qhub.prefect.prefect_agent_config" and args.get("state", "present") == "present":
            agent_args = args
        if module in ("qhub.prefect.prefect_work_pool", "qhub.prefect.prefect_project"):
            assert args["qhub_config"] == str(path), "%s reads the secrets from the config file itself" % module
    text = json.dumps(seen, default=str)
    for what, value in secrets.items():
        assert value not in text, "the %s secret passed through the role: %s" % (what, text)

    # The modules still get every secret, from the file, by the one rule.
    params = ArgumentSpecValidator(prefect_agent_config.argument_spec()).validate(agent_args).validated_parameters
    module = FakeModule(params)
    secret_env, config_token = task_config_secrets(module, environ)
    spec = prefect_agent_config.build_spec(params, environ, secret_env, config_token)
    assert spec.secret_env == {"DATABASE_PASSWORD": secrets["literal"], "S3_SECRET": secrets["referenced"]}
    assert spec.token == secrets["token"]
    assert {secrets["literal"], secrets["referenced"]} <= module.no_log_values
    pool = dict((key, None) for key in module_spec(prefect_agent_config)["argument_spec"])
    pool.update(api_url=None, api_key=None, api_auth_string=None, qhub_config=str(path))
    assert module_credentials(FakeModule(pool), "prefect3", environ).token == secrets["token"]
