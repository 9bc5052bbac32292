"""The controller fast path answers a task exactly as the launched module would (issue 13).

Every module is ``runner.run(AnsibleModule(**module_spec(runner)))``. On the controller its action plugin
validates the task's arguments with ``validate()`` and runs the same runner on ``InProcessModule``. A user must
not be able to tell which of the two ran a task: the same option values (defaults, conversions such as "yes" and
"7", environment fallbacks), the same secrets masked, the same failure for a bad task. Each test runs the real
AnsibleModule, fed as a launched module is (``_ANSIBLE_ARGS``), and the fast path on the same arguments. The
arguments are generated from each runner's argument_spec() and constraints, so an option added later is covered.

Two differences are deliberate and not pinned as equal:

- ansible-core 2.19 keeps a module's warnings as WarningSummary objects, which remove_values does not look
  into, so a launched module's warning is returned unmasked. The fast path masks its warnings
  (test_fast_path_masks_secrets_in_warnings).
- AnsibleModule.exit_json adds file attributes (uid, mode, state, ...) when a result's ``path`` or ``dest``
  names an existing file; InProcessModule does not. Only qhub_config_info returns a path, and it always runs on
  the controller (CONTROLLER_ONLY), so no user sees both forms.
- qhub_deployment, CONTROLLER_ONLY as well, names every invalid option at once on the fast path, each with the
  role variable it comes from (its explain_invalid), as the role's own argument validation would.
"""

import copy
import importlib
import inspect
import json
import pathlib
import types

import pytest
from ansible.module_utils import _internal, basic
from ansible.module_utils.basic import AnsibleModule, env_fallback
from ansible.module_utils.common import warnings as module_warnings
from ansible.parsing.dataloader import DataLoader
from ansible.playbook.play_context import PlayContext
from ansible.playbook.task import Task
from ansible.template import Templar

from ansible_collections.qhub.prefect.plugins.module_utils._runners.options import module_spec
from ansible_collections.qhub.prefect.plugins.module_utils._runners.in_process import (
    InProcessModule, ModuleExit, failure_message, validate,
)
from ansible_collections.qhub.prefect.plugins.plugin_utils._controller_module import (
    ControllerFirstAction, run_on_controller,
)

REPO = pathlib.Path(__file__).resolve().parents[4]
COLLECTION = "ansible_collections.qhub.prefect.plugins"
NAMES = sorted(path.stem for path in (REPO / "plugins" / "modules").glob("*.py") if path.stem != "__init__")
RUNNERS = dict((name, importlib.import_module("%s.module_utils._runners.%s" % (COLLECTION, name))) for name in NAMES)
LOADER = DataLoader()


def fqcn(name):
    return "qhub.prefect." + name


# --- arguments generated from argument_spec() --------------------------------------------------------------

def sample(name, option):
    """A value a task could give: the string form where AnsibleModule converts one, a non-default choice."""
    kind = option.get("type", "str")
    choices = [choice for choice in option.get("choices") or [] if choice != option.get("default")]
    if choices:
        return choices[-1]
    if kind == "int":
        return "7"
    if kind == "bool":
        return "yes"
    if kind == "list":
        return "first-%s,second-%s" % (name, name)
    if kind == "dict":
        return {"QHUB_%s" % name.upper(): "s3cret-%s-value" % name if option.get("no_log") else "value-%s" % name}
    if kind == "path":
        return "~/qhub-prefect/%s" % name
    return "s3cret-%s-value" % name if option.get("no_log") else "value-of-%s" % name


def env_sample(option, variable):
    return "no" if option.get("type") == "bool" else "from-env-%s" % variable


def groups(runner, attribute):
    return [tuple(group) for group in getattr(runner, attribute, None) or []]


def required_args(runner):
    """Only what the task must give: the required options and the first of each required_one_of group."""
    spec = runner.argument_spec()
    names = [name for name, option in spec.items() if option.get("required")]
    names += [group[0] for group in groups(runner, "REQUIRED_ONE_OF") if not set(group) & set(names)]
    return dict((name, sample(name, spec[name])) for name in names)


def every_option_args(runner):
    """Every option set, leaving out the later options of each mutually exclusive group."""
    spec = runner.argument_spec()
    excluded = set()
    for group in groups(runner, "MUTUALLY_EXCLUSIVE"):
        kept = [name for name in group if name not in excluded][:1]
        excluded.update(name for name in group if name not in kept)
    return dict((name, sample(name, option)) for name, option in spec.items() if name not in excluded)


def fallbacks(runner):
    """{option: environment variable} for each option with an env_fallback."""
    found = {}
    for name, option in runner.argument_spec().items():
        fallback = option.get("fallback")
        if fallback and fallback[0] is env_fallback:
            found[name] = fallback[1][0]
    return found


def valid_cases(runner):
    """(id, task arguments, environment) the module accepts."""
    spec = runner.argument_spec()
    cases = [("required-only", required_args(runner), {}), ("every-option", every_option_args(runner), {})]
    variables = fallbacks(runner)
    if variables:
        env = dict((variable, env_sample(spec[name], variable)) for name, variable in variables.items())
        cases.append(("env-fallbacks", required_args(runner), env))
    return cases


def failing_cases(runner):
    """(id, task arguments, options the message must name) the module refuses."""
    spec = runner.argument_spec()
    base = every_option_args(runner)
    cases = []
    for name, option in spec.items():
        if option.get("required"):
            cases.append(("missing-" + name, dict((k, v) for k, v in base.items() if k != name), [name]))
    for group in groups(runner, "REQUIRED_ONE_OF"):
        cases.append(("none-of-" + "-".join(group), dict((k, v) for k, v in base.items() if k not in group),
                      list(group)))
    for group in groups(runner, "MUTUALLY_EXCLUSIVE"):
        args = dict(base, **dict((name, sample(name, spec[name])) for name in group))
        cases.append(("both-" + "-".join(group), args, list(group)))
    wrong = {"int": "seven", "bool": "maybe", "dict": ["not", "a", "mapping"], "list": {"not": "a list"}}
    for name, option in spec.items():
        if option.get("choices"):
            cases.append(("bad-choice-" + name, dict(base, **{name: "no-such-choice"}), [name]))
        elif option.get("type", "str") in wrong:
            cases.append(("wrong-type-" + name, dict(base, **{name: wrong[option.get("type")]}), [name]))
    cases.append(("unsupported", dict(base, no_such_option="x"), ["no_such_option"]))
    return cases


def params_for(generate):
    """pytest parameters (name, case...) for every runner, with readable ids."""
    found = []
    for name, runner in RUNNERS.items():
        for case in generate(runner):
            found.append(pytest.param(name, *case[1:], id="%s-%s" % (name, case[0])))
    return found


# --- the two paths -----------------------------------------------------------------------------------------

@pytest.fixture
def clean_env(monkeypatch):
    """No fallback variable of the developer's shell leaks into a test."""
    for runner in RUNNERS.values():
        for variable in fallbacks(runner).values():
            monkeypatch.delenv(variable, raising=False)
    return monkeypatch


@pytest.fixture
def launched(monkeypatch, capsys):
    """launched(runner, args, check_mode, diff): (AnsibleModule or None, printed result or None), as a module runs.

    AnsibleModule reads its arguments from _ANSIBLE_ARGS as ansible-test units feeds them, records warnings as a
    module process does (not as the controller, which displays them at once), and exits printing JSON.
    """
    monkeypatch.setattr(_internal, "is_controller", False)
    monkeypatch.setattr(module_warnings, "_global_warnings", {})
    monkeypatch.setattr(module_warnings, "_global_deprecations", {})

    def launch(runner, args, name, check_mode=False, diff=False):
        payload = dict(args, _ansible_module_name=fqcn(name), _ansible_check_mode=check_mode, _ansible_diff=diff)
        monkeypatch.setattr(basic, "_ANSIBLE_ARGS", json.dumps({"ANSIBLE_MODULE_ARGS": payload}).encode())
        monkeypatch.setattr(basic, "_ANSIBLE_PROFILE", "legacy", raising=False)  # ansible-core >= 2.19 needs one
        capsys.readouterr()
        try:
            return AnsibleModule(**module_spec(runner)), None
        except SystemExit:
            return None, printed(capsys)

    return launch


def printed(capsys):
    result = json.loads(capsys.readouterr().out)
    # The controller shows a module's warning by its message (TaskExecutor._apply_task_result_compat).
    if "warnings" in result:
        result["warnings"] = [w["event"]["msg"] if isinstance(w, dict) else w for w in result["warnings"]]
    return result


def exits(capsys, call):
    """The result a launched module prints when ``call()`` ends it."""
    with pytest.raises(SystemExit):
        call()
    return printed(capsys)


def action_for(name, args, check_mode=False, diff=False, environment=None):
    """The module's real action plugin on a real Task with these arguments, as the controller would run it."""
    task = Task()
    task.action = fqcn(name)
    task.args = copy.deepcopy(args)
    task.check_mode = check_mode
    task.diff = diff
    task.environment = [environment] if environment else []
    plugin = importlib.import_module("%s.action.%s" % (COLLECTION, name)).ActionModule
    return plugin(task, None, PlayContext(), LOADER, Templar(loader=LOADER))


def probe(runner):
    """``runner`` with its options and constraints, whose run() reports what the module was given."""
    seen = types.SimpleNamespace(**vars(runner))

    def run(module):
        module.exit_json(changed=False, params=module.params, check_mode=module.check_mode, diff=module._diff)

    seen.run = run
    return seen


def as_json(result):
    return json.loads(json.dumps(result))


# --- every module, one shape -------------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_every_module_takes_the_fast_path(name):
    """A module without the action plugin, or with one bound to another runner, would behave differently on the
    controller from its siblings; so every module's main() and its action plugin share one runner."""
    runner = RUNNERS[name]
    module = importlib.import_module("%s.modules.%s" % (COLLECTION, name))
    action = importlib.import_module("%s.action.%s" % (COLLECTION, name)).ActionModule
    assert module.runner is runner
    assert "runner.run(AnsibleModule(**module_spec(runner)))" in inspect.getsource(module.main)
    assert issubclass(action, ControllerFirstAction)
    assert action.runner is runner


# --- accepted arguments ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, args, env", params_for(valid_cases))
def test_same_params_and_secrets(name, args, env, clean_env, launched):
    """The module and the fast path see the same option values (defaults, "yes" and "7" converted, fallbacks
    read from the environment) and mask the same values: a secret the fast path missed would be printed."""
    runner = RUNNERS[name]
    spec = runner.argument_spec()
    for variable, value in env.items():
        clean_env.setenv(variable, value)
    module, failed = launched(runner, args, name)
    assert failed is None, failed
    params, no_log_values, message = validate(module_spec(runner), copy.deepcopy(args), fqcn(name))
    assert message is None
    assert params == module.params
    assert set(no_log_values) == module.no_log_values
    fast = InProcessModule(params, False, False, no_log_values)
    assert fast.params == module.params and fast.no_log_values == module.no_log_values

    # Both could agree and be wrong: the values themselves, from the spec.
    for option, value in args.items():
        kind = spec[option].get("type", "str")
        if kind == "int":
            assert params[option] == 7
        elif kind == "bool":
            assert params[option] is True
        elif kind == "list":
            assert params[option] == value.split(",")
        if spec[option].get("no_log"):
            secrets = value.values() if isinstance(value, dict) else [value]
            assert set(secrets) <= no_log_values, option
    for option, variable in fallbacks(runner).items():
        if variable in env and option not in args:
            expected = False if spec[option].get("type") == "bool" else env[variable]
            assert params[option] == expected, option
            if spec[option].get("no_log"):
                assert expected in no_log_values, option
    for option, value in spec.items():
        if option not in args and "default" in value and not (env and option in fallbacks(runner)):
            assert params[option] == value["default"], option


@pytest.mark.parametrize("check_mode, diff", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("name, args, env", params_for(valid_cases))
def test_same_result_through_the_action(name, args, env, check_mode, diff, clean_env, launched, capsys):
    """What the module's code is given, and the result the user reads back (params and invocation masked), are
    the same whether the module was launched with the task's environment or the action plugin ran it in the
    controller with the task's ``environment``, in check and diff mode alike."""
    runner = probe(RUNNERS[name])
    for variable, value in env.items():
        clean_env.setenv(variable, value)
    module, failed = launched(runner, args, name, check_mode, diff)
    assert failed is None, failed
    expected = exits(capsys, lambda: runner.run(module))
    for variable in env:
        clean_env.delenv(variable)
    got = run_on_controller(action_for(name, args, check_mode, diff, environment=env), runner, args)
    assert as_json(got) == expected
    assert (got["check_mode"], got["diff"]) == (check_mode, diff)


# --- refused arguments -------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, args, named", params_for(failing_cases))
def test_same_failure(name, args, named, clean_env, launched):
    """A task with a missing, mistyped, unknown, conflicting or absent-but-required option fails with the same
    message (naming the option) and the same result from the fast path as from the launched module."""
    runner = RUNNERS[name]
    module, expected = launched(runner, args, name)
    assert module is None and expected["failed"] is True
    assert all(option in expected["msg"] for option in named), expected["msg"]
    explained = failure_message(runner, copy.deepcopy(args), expected["msg"])

    dummy, no_log_values, message = validate(module_spec(runner), copy.deepcopy(args), fqcn(name))
    assert message is not None  # else run_on_controller below would run the module for real
    # The only normalisation: AnsibleModule.fail_json masks secrets in the message, validate() returns it as is.
    assert InProcessModule({}, False, False, no_log_values)._formatted({"msg": message})["msg"] == expected["msg"]
    if explained != expected["msg"]:
        # qhub_deployment's explanation: the first message among them, each option with its role variable.
        assert hasattr(runner, "explain_invalid") and all(option in explained for option in named), explained
        expected["msg"] = InProcessModule({}, False, False, no_log_values)._formatted({"msg": explained})["msg"]
    assert as_json(run_on_controller(action_for(name, args), runner, args)) == expected


# --- masking ----------------------------------------------------------------------------------------------

def secret_cases():
    found = []
    for name, runner in RUNNERS.items():
        if any(option.get("no_log") for option in runner.argument_spec().values()):
            found.append(pytest.param(name, id=name))
    return found


@pytest.mark.parametrize("name", secret_cases())
def test_exit_json_masks_alike(name, clean_env, launched, capsys):
    """A result holding a secret, whole, inside a sentence, in lists and mapping values, comes out masked the same
    way from both, with booleans, None and numbers kept, and the invocation masked. (Neither masks mapping keys.)"""
    runner = RUNNERS[name]
    module, failed = launched(runner, every_option_args(runner), name)
    assert failed is None, failed
    secrets = sorted(module.no_log_values)
    assert secrets
    result = dict(changed=True, flag=False, nothing=None, count=7,
                  whole=secrets[0], sentence="the value %s is set" % " and ".join(secrets),
                  nested={"items": secrets + [True, None, 3], "mapping": {"first": secrets[0], "all": secrets}})

    def launched_exit():
        module.warn("a warning without a secret")
        module.exit_json(**copy.deepcopy(result))

    expected = exits(capsys, launched_exit)
    fast = InProcessModule(module.params, False, False, module.no_log_values)
    fast.warn("a warning without a secret")
    with pytest.raises(ModuleExit) as done:
        fast.exit_json(**copy.deepcopy(result))
    assert as_json(done.value.result) == expected
    text = json.dumps(expected)
    assert not [secret for secret in secrets if secret in text]
    assert expected["flag"] is False and expected["nothing"] is None and expected["count"] == 7


@pytest.mark.parametrize("name", secret_cases())
def test_booleans_survive_a_secret_that_spells_them(name, clean_env, launched, capsys):
    """A secret such as "rue" or "one" is masked inside "True" and "None" strings, but the result's own booleans
    and None (changed, failed) stay what they are on both paths, so Ansible still reads the outcome. (Since
    ansible-core 2.19 remove_values keeps them itself; before, only the graft both exits do kept them.)"""
    runner = RUNNERS[name]
    args = every_option_args(runner)
    option = next(option for option, value in runner.argument_spec().items()
                  if value.get("no_log") and value.get("type", "str") == "str")
    args[option] = "rue"
    module, failed = launched(runner, args, name)
    assert failed is None, failed
    result = dict(changed=True, skipped=None, words=["True", "None"])
    expected = exits(capsys, lambda: module.fail_json(msg="it is True", **copy.deepcopy(result)))
    with pytest.raises(ModuleExit) as done:
        InProcessModule(module.params, False, False, module.no_log_values).fail_json(
            msg="it is True", **copy.deepcopy(result))
    assert as_json(done.value.result) == expected
    assert expected["changed"] is True and expected["failed"] is True and expected["skipped"] is None
    assert expected["msg"] == "it is T********"


def test_fast_path_masks_secrets_in_warnings():
    """The one place the fast path is stricter than ansible-core 2.19's module: a warning that quotes a secret is
    masked (a launched module returns it as is)."""
    module = InProcessModule({"api_key": "s3cret-token"}, False, False, {"s3cret-token"})
    module.warn("the token s3cret-token was refused")
    with pytest.raises(ModuleExit) as done:
        module.exit_json(changed=False)
    assert done.value.result["warnings"] == ["the token ******** was refused"]
    assert done.value.result["invocation"] == {"module_args": {"api_key": "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"}}


# --- every candidate secret (issue 17) ---------------------------------------------------------------------

# Each source the credential rule reads, set at once: the environment's token wins, every other one loses.
CANDIDATE_ENV = {"QHUB_SECRET_PREFECT_TOKEN": "cand-winner-token", "TF_VAR_prefect_token": "cand-tf-token",
                 "PREFECT_API_KEY": "cand-api-key", "PREFECT_API_AUTH_STRING": "cand-user:cand-auth",
                 "DB_PASS": "cand-db-pass"}
CANDIDATE_CONFIG = {"namespace": "dev", "prefect": {
    "enabled": True, "image": "prefecthq/prefect:3-python3.11-kubernetes", "token": "cand-literal-token",
    "overrides": {"envVars": {"DB_PASS": "QHUB_SECRET_DB_PASS"}, "secretEnvVars": {"S": "cand-secret-literal"}}}}
# A closed port: every module fails at its first request, after reading its options and the config.
CANDIDATE_URL = "http://qhub:cand-url-password@127.0.0.1:9/api"
CANDIDATE_ARGS = {
    "qhub_config_info": {"config": CANDIDATE_CONFIG, "api_url": CANDIDATE_URL},
    "prefect_agent_config": {"namespace": "dev", "qhub_config": CANDIDATE_CONFIG, "api_url": CANDIDATE_URL,
                             "kubeconfig": "/nonexistent/kubeconfig"},
    "prefect_work_pool": {"name": "pool", "qhub_config": CANDIDATE_CONFIG, "api_url": CANDIDATE_URL, "retries": 0,
                          "overrides": {"envVars": {"DB_PASS": "QHUB_SECRET_DB_PASS"}},
                          "secret_name": "prefect-worker"},
    "prefect_project": {"name": "flows", "qhub_config": CANDIDATE_CONFIG, "api_url": CANDIDATE_URL, "retries": 0},
    "prefect_worker_status": {"work_pool": "pool", "qhub_config": CANDIDATE_CONFIG, "api_url": CANDIDATE_URL,
                              "retries": 0},
}


@pytest.mark.parametrize("name", sorted(CANDIDATE_ARGS))
def test_every_candidate_secret_is_masked_alike(name, clean_env, launched, capsys):
    """A literal prefect.token that loses to the environment's, the losing environment tokens, the auth string,
    the URL's user:password and what an envVars reference stands for: none shows in the result (its invocation,
    what -vvv prints, above all), from the launched module or the fast path, which answer alike."""
    runner = RUNNERS[name]
    args = CANDIDATE_ARGS[name]
    for variable, value in CANDIDATE_ENV.items():
        clean_env.setenv(variable, value)
    module, failed = launched(runner, args, name)
    assert failed is None, failed
    expected = exits(capsys, lambda: runner.run(module))
    for variable in CANDIDATE_ENV:
        clean_env.delenv(variable)
    got = as_json(run_on_controller(action_for(name, args, environment=CANDIDATE_ENV), runner, args))
    assert got == expected
    text = json.dumps(expected)
    assert expected["invocation"]["module_args"]
    candidates = list(CANDIDATE_ENV.values()) + ["cand-literal-token", "cand-secret-literal", "cand-url-password"]
    leaked = [value for value in candidates if value in text]
    assert not leaked, text
