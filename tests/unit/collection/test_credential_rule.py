"""One credential rule: the role (qhub_config_info, then the arguments its tasks pass) and every module that
talks to Prefect end up with the same API URL, token and auth string, for every combination of sources.

The role's task arguments are templated from roles/prefect_agent/tasks/main.yml with Ansible's own Templar,
so a task that passes the wrong variable, or forgets one, shows here. The expected outcome comes from the
rule as the docs state it (ORACLE), not from the code under test.
"""

import itertools
import os
import pathlib
from unittest import mock

import pytest
import yaml
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

from ansible_collections.qhub.prefect.plugins.module_utils._qhub.errors import ConfigError
from ansible_collections.qhub.prefect.plugins.module_utils._runners import prefect_agent_config as _agent_config
from ansible_collections.qhub.prefect.plugins.module_utils._runners import prefect_work_pool as _work_pool
from ansible_collections.qhub.prefect.plugins.module_utils._runners import qhub_config_info
from ansible_collections.qhub.prefect.plugins.module_utils._runners.options import (
    module_credentials, module_spec, prefect_api_argument_spec, task_config_secrets,
)
from ansible_collections.qhub.prefect.plugins.module_utils._runners.in_process import (
    InProcessModule, ModuleExit, validate,
)

ROLE = pathlib.Path(__file__).resolve().parents[3] / "roles" / "prefect_agent"
OMIT = "__omit_place_holder__"
LOADER = DataLoader()
CLOUD3 = "https://api.prefect.cloud/api/accounts/a1/workspaces/w1"
CLOUD1 = "https://api.prefect.io"
SELF3 = "http://prefect.dev:4200/api"
SELF1 = "http://prefect-apollo.dev:4200/graphql"
IMAGES = {"prefect1": "prefecthq/prefect:0.14.22-python3.8", "prefect3": "prefecthq/prefect:3-python3.11-kubernetes"}
TOKEN_ORDER = ("QHUB_SECRET_PREFECT_TOKEN", "TF_VAR_prefect_token", "PREFECT_API_KEY")


class Failed(Exception):
    def __init__(self, msg, key=None):
        super().__init__(msg)
        self.key = key


class FakeModule:
    def __init__(self, params):
        self.params = params
        self.no_log_values = set()

    def fail_json(self, msg, key=None, **_result):
        raise Failed(msg, key)


def oracle(generation, environ, role_url, config_token):
    """The rule in the words of docs/configuration.md: (url, token, auth_string) or the key path of the failure."""
    if role_url:
        url = role_url
    else:
        names = ("PREFECT__CLOUD__API", "PREFECT_API_URL") if generation == "prefect1" else ("PREFECT_API_URL",)
        url = next((environ[name] for name in names if name in environ), CLOUD1 if generation == "prefect1" else None)
    token = None
    for name in TOKEN_ORDER:
        if name in environ:
            if not environ[name]:
                return name
            token = environ[name]
            break
    if token is None and config_token is not None:
        token = environ[config_token[len("QHUB_SECRET_"):]] if config_token.startswith("QHUB_SECRET_") else config_token
        if not token:
            return "prefect.token"
    if token is None and ("api.prefect.io" in (url or "") or "api.prefect.cloud" in (url or "")):
        return "prefect.token"
    auth = environ.get("PREFECT_API_AUTH_STRING") if generation != "prefect1" else None
    return url, token, auth


def role_tasks(name="main.yml", when=()):
    """The role's tasks in the order main.yml runs them: blocks and import_tasks expanded, each task with the
    conditions of the blocks and imports around it before its own."""
    flat = []
    for task in yaml.safe_load((ROLE / "tasks" / name).read_text()):
        conditions = list(when) + _conditions(task)
        if "ansible.builtin.import_tasks" in task:
            flat += role_tasks(task["ansible.builtin.import_tasks"], conditions)
        elif "block" in task:
            flat += [dict(item, when=conditions + _conditions(item)) for item in task["block"]]
        else:
            flat.append(dict(task, when=conditions))
    return flat


def _conditions(task):
    own = task.get("when")
    return own if isinstance(own, list) else [own] if own else []


def role_vars(extra):
    variables = {}
    for name in ("defaults", "vars"):
        # Role files are trusted templates to Ansible; plain YAML strings are not, unless marked so.
        variables.update((key, trust_as_template(value) if isinstance(value, str) else value)
                         for key, value in yaml.safe_load((ROLE / name / "main.yml").read_text()).items())
    variables.update(extra)
    variables["omit"] = OMIT
    return variables


def template_args(args, variables):
    templar = Templar(loader=LOADER, variables=variables)
    out = {}
    for key, value in args.items():
        value = templar.template(trust_as_template(value)) if isinstance(value, str) else value
        if value != OMIT:
            out[key] = value
    return out


def run_config_info(variables, environ):
    """The role's first task, qhub_config_info, as the controller fast path runs it: its whole result."""
    info_args = template_args(role_tasks()[0]["qhub.prefect.qhub_config_info"], variables)
    params, no_log_values, error = validate(module_spec(qhub_config_info), info_args, "qhub_config_info")
    assert error is None, error
    with mock.patch.dict(os.environ, environ, clear=True):
        with pytest.raises(ModuleExit) as done:
            qhub_config_info.run(InProcessModule(params, False, False, no_log_values))
    return done.value.result


def run_role(generation, environ, role_url, config_token):
    """What the role does: qhub_config_info, then each Prefect-talking task's credentials as its module sees them."""
    doc = {"project_name": "demo", "namespace": "dev", "prefect": {"enabled": True, "image": IMAGES[generation]}}
    if config_token is not None:
        doc["prefect"]["token"] = config_token
    variables = role_vars({"qhub_prefect_config": doc, "qhub_prefect_config_file": "",
                           "qhub_prefect_api_url": role_url or "", "qhub_prefect_kubeconfig": ""})
    tasks = role_tasks()
    settings = run_config_info(variables, environ)
    if settings.get("failed"):
        return settings["key"], []
    variables["qhub_prefect_settings"] = settings
    seen = []
    for task in tasks[1:]:
        module = next(name for name in task if name.startswith("qhub.prefect."))
        when = task.get("when")
        conditions = when if isinstance(when, list) else [when] if when else []
        if any("generation ==" in c and ("'%s'" % generation) not in c for c in conditions):
            continue
        if any(c == "not qhub_prefect_settings.prefect.enabled" for c in conditions):
            continue
        args = template_args(task[module], variables)
        seen.append((module, module_view(module, generation, args, environ)))
    return None, seen


def module_view(module, generation, args, environ):
    """(url, token, auth string) as the module resolves them, or the key path it fails on."""
    name = module.rsplit(".", 1)[1]
    if name == "prefect_agent_config":
        validated = ArgumentSpecValidator(_agent_config.argument_spec()).validate(args)
        assert not validated.error_messages, validated.error_messages
        try:
            secret_env, config_token = task_config_secrets(FakeModule(validated.validated_parameters), environ)
            spec = _agent_config.build_spec(validated.validated_parameters, environ, secret_env, config_token)
        except ConfigError as exc:
            return exc.path
        return spec.api_url, spec.token, spec.auth_string
    spec = _work_pool.argument_spec() if name == "prefect_work_pool" else prefect_api_argument_spec()
    params = dict((key, None) for key in spec)
    params.update((key, value) for key, value in args.items() if key in spec)
    try:
        credentials = module_credentials(FakeModule(params), "prefect1" if name == "prefect_project" else "prefect3",
                                         environ)
    except Failed as exc:
        return exc.key
    return credentials.api_url, credentials.token, credentials.auth_string


URLS = {
    "none": ({}, None),
    "env self-hosted": ({"PREFECT_API_URL": "SELF"}, None),
    "env cloud": ({"PREFECT_API_URL": "CLOUD"}, None),
    "PREFECT__CLOUD__API self-hosted": ({"PREFECT__CLOUD__API": SELF1}, None),
    "PREFECT__CLOUD__API and PREFECT_API_URL": ({"PREFECT__CLOUD__API": SELF1, "PREFECT_API_URL": "CLOUD"}, None),
    "role variable": ({"PREFECT_API_URL": "CLOUD"}, "SELF"),
}
TOKENS = {
    "none": ({}, None),
    "QHUB_SECRET_PREFECT_TOKEN": ({"QHUB_SECRET_PREFECT_TOKEN": "t-qhub", "TF_VAR_prefect_token": "t-tf",
                                   "PREFECT_API_KEY": "t-key"}, "t-config"),
    "TF_VAR_prefect_token": ({"TF_VAR_prefect_token": "t-tf", "PREFECT_API_KEY": "t-key"}, "t-config"),
    "PREFECT_API_KEY alone": ({"PREFECT_API_KEY": "t-key"}, None),
    "config": ({}, "t-config"),
    "config QHUB_SECRET_ reference": ({"MY_KEY": "t-referenced"}, "QHUB_SECRET_MY_KEY"),
    "empty QHUB_SECRET_PREFECT_TOKEN": ({"QHUB_SECRET_PREFECT_TOKEN": "", "PREFECT_API_KEY": "t-key"}, None),
    "empty PREFECT_API_KEY": ({"PREFECT_API_KEY": ""}, "t-config"),
    "config reference to an empty variable": ({"MY_KEY": ""}, "QHUB_SECRET_MY_KEY"),
}
AUTH = {"no auth string": {}, "auth string": {"PREFECT_API_AUTH_STRING": "user:pass"}}
TABLE = list(itertools.product(("prefect1", "prefect3"), URLS, TOKENS, AUTH))


@pytest.mark.parametrize("generation, url_case, token_case, auth_case", TABLE,
                         ids=["-".join(row) for row in TABLE])
def test_role_and_modules_agree_with_the_rule(generation, url_case, token_case, auth_case):
    url_env, role_url = URLS[url_case]
    self_hosted = SELF1 if generation == "prefect1" else SELF3
    url_env = dict((key, {"SELF": self_hosted, "CLOUD": CLOUD3}.get(value, value)) for key, value in url_env.items())
    role_url = {"SELF": self_hosted, "CLOUD": CLOUD3}.get(role_url, role_url)
    token_env, config_token = TOKENS[token_case]
    environ = dict(url_env, **token_env)
    environ.update(AUTH[auth_case])

    expected = oracle(generation, environ, role_url, config_token)
    failed_key, modules = run_role(generation, environ, role_url, config_token)
    if isinstance(expected, str):
        assert failed_key == expected, "the role should stop before any write, naming %s" % expected
        return
    if expected[0] is None:  # Prefect 2/3 without any URL: the worker cannot run
        assert failed_key is None and modules and all(view == "api_url" for _module, view in modules), modules
        return
    assert failed_key is None
    assert {module for module, _view in modules} == (
        {"qhub.prefect.prefect_project", "qhub.prefect.prefect_agent_config"} if generation == "prefect1" else
        {"qhub.prefect.prefect_work_pool", "qhub.prefect.prefect_agent_config"})
    for module, view in modules:
        assert view == expected, "%s resolved %r, the rule says %r" % (module, view, expected)


def test_the_table_covers_every_source_and_outcome():
    outcomes = set()
    for generation, url_case, token_case, auth_case in TABLE:
        url_env, role_url = URLS[url_case]
        result = oracle(generation, dict(url_env, **TOKENS[token_case][0]), role_url, TOKENS[token_case][1])
        outcomes.add(result if isinstance(result, str) else "ok")
    assert outcomes == {"ok", "prefect.token", "QHUB_SECRET_PREFECT_TOKEN", "PREFECT_API_KEY"}
