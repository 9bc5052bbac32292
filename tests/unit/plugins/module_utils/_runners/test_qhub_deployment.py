"""qhub_deployment runs the role's steps in one task: the same modules, with the arguments the role's tasks give them.

The arguments are compared with what Ansible's own templating makes of the role's task files
(roles/prefect_agent/tasks/*.yml, defaults and vars), after each step's module validated both: a change to a tasks
file that the module does not follow fails here.
"""

import pathlib

import pytest
import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

from ansible_collections.qhub.prefect.plugins.module_utils._runners import (
    prefect_agent_config, prefect_project, prefect_work_pool, prefect_worker_status,
    qhub_config_info, qhub_deployment,
)
from ansible_collections.qhub.prefect.plugins.module_utils._runners.in_process import (
    InProcessModule, ModuleExit, failure_message, validate,
)
from ansible_collections.qhub.prefect.plugins.module_utils._runners.options import module_spec

ROLE = pathlib.Path(__file__).resolve().parents[5] / "roles" / "prefect_agent"


def settings(generation="prefect3", enabled=True, path="/srv/qhub/qhub-config.yml"):
    """What qhub_config_info returns (tasks/check.yml registers it as qhub_prefect_settings)."""
    result = {"changed": False, "namespace": "dev", "prefect": {
        "enabled": enabled, "generation": generation, "image": "prefecthq/prefect:3-python3.11-kubernetes",
        "instance": "qhub-dev", "overrides": {"JOB_CPU_LIMIT": "2", "envVars": {"A": "b"}},
        "secret_env_names": ["TOKEN_X"], "job": {"labels": ["gpu", "big"]}}}
    if path:
        result["path"] = path
    return result


def trusted(value):
    if isinstance(value, str):
        return trust_as_template(value)
    if isinstance(value, dict):
        return dict((key, trusted(item)) for key, item in value.items())
    if isinstance(value, list):
        return [trusted(item) for item in value]
    return value


def role_variables(registered, **given):
    """The role's defaults and vars, the variables given, and what the check registered."""
    variables = {}
    for part in ("defaults", "vars"):
        variables.update(trusted(yaml.safe_load((ROLE / part / "main.yml").read_text())))
    # The default is a lookup of KUBECONFIG, which unit tests have no lookup plugins for: what it gives unset.
    variables["qhub_prefect_kubeconfig"] = ""
    variables.update(given)
    variables["qhub_prefect_settings"] = registered
    return variables


def role_task_args(tasks_file, variables):
    """The arguments Ansible gives the module of the one task in a role tasks file, and the module's name."""
    task = yaml.safe_load((ROLE / "tasks" / tasks_file).read_text())[0]
    module = next(key for key in task if key.startswith("qhub.prefect."))
    templar = Templar(loader=DataLoader(), variables=variables)
    return module, templar.template(trusted(task[module]))


def validated(runner, args):
    params, _no_log, message = validate(module_spec(runner), args, "test")
    assert message is None, message
    return params


GIVEN = [
    {"qhub_prefect_config_file": "/srv/qhub/qhub-config.yml"},
    {"qhub_prefect_config_file": "/srv/qhub/qhub-config.yml", "qhub_prefect_name": "pf", "qhub_prefect_api_url":
     "http://prefect:4200/api", "qhub_prefect_api_key": "k-123", "qhub_prefect_instance": "blue",
     "qhub_prefect_work_pool": "prod", "qhub_prefect_project": "flows", "qhub_prefect_wait": False,
     "qhub_prefect_wait_timeout": 30, "qhub_prefect_wait_for_worker": False, "qhub_prefect_worker_timeout": 45,
     "qhub_prefect_force": True, "qhub_prefect_move_from": "old, older", "qhub_prefect_lock_timeout": 5,
     "qhub_prefect_kubeconfig": "/srv/kubeconfig", "qhub_prefect_kube_context": "prod"},
    {"qhub_prefect_config": {"namespace": "dev", "prefect": {"enabled": True}}, "qhub_prefect_move_from": ["x"]},
]
STEPS = [
    ("check.yml", qhub_config_info, lambda params, registered: qhub_deployment.check_args(params)),
    ("project.yml", prefect_project, qhub_deployment.project_args),
    ("work_pool.yml", prefect_work_pool, qhub_deployment.work_pool_args),
    ("agent.yml", prefect_agent_config, qhub_deployment.agent_args),
    ("absent.yml", prefect_agent_config, qhub_deployment.removal_args),
    ("worker_status.yml", prefect_worker_status, qhub_deployment.worker_status_args),
]


@pytest.mark.parametrize("given", GIVEN, ids=["defaults", "every-variable", "config-mapping"])
@pytest.mark.parametrize("generation", ["prefect3", "prefect1"])
@pytest.mark.parametrize("tasks_file, runner, build", STEPS, ids=[step[0] for step in STEPS])
def test_each_step_gets_the_arguments_the_roles_task_gives_its_module(given, generation, tasks_file, runner, build,
                                                                      ):
    path = None if "qhub_prefect_config" in given else given["qhub_prefect_config_file"]
    registered = settings(generation, path=path)
    variables = role_variables(registered, **given)
    _module, converge_args = role_task_args("converge.yml", variables)
    params = validated(qhub_deployment, converge_args)
    _module, role_args = role_task_args(tasks_file, variables)
    assert validated(runner, build(params, registered)) == validated(runner, role_args)


def test_the_role_runs_the_steps_main_yml_runs():
    main = (ROLE / "tasks" / "main.yml").read_text()
    for tasks_file, _runner, _build in STEPS[:-1]:
        assert "import_tasks: %s" % tasks_file in main


class Recorder:
    """Stands in for run_in_process: records each step's module and returns the result given for it; the check step
    masks ``mask`` as qhub_config_info masks a token it finds."""

    def __init__(self, results, mask=None):
        self.results = results
        self.mask = mask
        self.ran = []

    def __call__(self, runner, args, check_mode, diff, name, masked):
        self.ran.append(name.split(".")[-1])
        if self.mask and name.endswith("qhub_config_info"):
            masked.add(self.mask)
        return dict(self.results.get(name.split(".")[-1], {"changed": False}))


def converge(monkeypatch, results, check_mode=False, diff=False, mask=None, **given):
    recorder = Recorder(results, mask)
    monkeypatch.setattr(qhub_deployment, "run_in_process", recorder)
    args = dict({"config_file": "/srv/qhub/qhub-config.yml"}, **given)
    if "config" in given:
        del args["config_file"]
    params = validated(qhub_deployment, args)
    with pytest.raises(ModuleExit) as done:
        qhub_deployment.run(InProcessModule(params, check_mode, diff, ()))
    return recorder.ran, done.value.result


@pytest.mark.parametrize("registered, steps", [
    (settings(), ["qhub_config_info", "kube_context_info", "prefect_work_pool", "prefect_agent_config",
                  "prefect_worker_status"]),
    (settings("prefect1"), ["qhub_config_info", "kube_context_info", "prefect_project", "prefect_agent_config"]),
    (settings(enabled=False), ["qhub_config_info", "kube_context_info", "prefect_agent_config"]),
])
def test_the_steps_of_each_kind_of_deployment(monkeypatch, registered, steps):
    ran, result = converge(monkeypatch, {"qhub_config_info": registered})
    assert ran == steps
    assert result["changed"] is False and "failed" not in result
    assert result["settings"] == registered
    assert ("removal" in result) is (not registered["prefect"]["enabled"])


def test_a_worker_the_apply_waited_for_is_not_asked_about_again(monkeypatch):
    ran, result = converge(monkeypatch, {"qhub_config_info": settings(),
                                         "prefect_agent_config": {"changed": True, "workers_online": ["w-1"]}})
    assert "prefect_worker_status" not in ran and "worker_status" not in result
    assert result["changed"] is True


def test_a_failed_step_ends_the_task_with_its_name_and_nothing_after_it_runs(monkeypatch):
    ran, result = converge(monkeypatch, {"qhub_config_info": settings(), "prefect_work_pool": {
        "failed": True, "msg": "the Prefect API at http://p/api could not be reached"}})
    assert ran[-1] == "prefect_work_pool"
    assert result["failed"] is True
    assert result["msg"] == ("Create the work pool with the overrides as its base job template: the Prefect API at "
                             "http://p/api could not be reached")


def test_a_config_that_fails_its_check_writes_nothing(monkeypatch):
    ran, result = converge(monkeypatch, {"qhub_config_info": {"failed": True, "msg": "invalid QHub config: x"}})
    assert ran == ["qhub_config_info"]
    assert result["msg"] == "Read and validate the prefect block of the QHub config: invalid QHub config: x"


def test_a_worker_status_that_cannot_be_read_fails_nothing(monkeypatch):
    ran, result = converge(monkeypatch, {"qhub_config_info": settings(), "prefect_worker_status": {
        "failed": True, "msg": "unreachable"}})
    assert "failed" not in result and result["worker_status"]["msg"] == "unreachable"


def test_diffs_and_warnings_of_the_steps_are_the_tasks(monkeypatch):
    _ran, result = converge(monkeypatch, {
        "qhub_config_info": settings(),
        "prefect_work_pool": {"changed": True, "diff": {"before": "a", "after": "b"}, "warnings": ["w1"]},
        "prefect_agent_config": {"changed": True, "diff": [{"before": "c", "after": "d"}]}}, diff=True)
    assert result["diff"] == [{"before": "a", "after": "b"}, {"before": "c", "after": "d"}]
    assert result["warnings"] == ["w1"]
    assert "diff" not in result["work_pool"]


def test_every_invalid_option_is_named_with_its_role_variable():
    args = {"config_file": "c.yml", "wait_timeout": "soon", "generation": "prefect9"}
    said = failure_message(qhub_deployment, args, "first only")
    assert "argument 'wait_timeout' (qhub_prefect_wait_timeout) is of type str" in said
    assert "value of generation (qhub_prefect_generation) must be one of" in said


def test_what_a_step_masked_is_masked_in_the_tasks_result_and_invocation(monkeypatch):
    config = {"namespace": "dev", "prefect": {"enabled": True, "token": "tok-5e3c"}}
    _ran, result = converge(monkeypatch, {"qhub_config_info": settings(path=None), "prefect_agent_config": {
        "changed": False, "msg": "echoed tok-5e3c"}}, mask="tok-5e3c", config=config)
    assert "tok-5e3c" not in repr(result)
    assert result["invocation"]["module_args"]["config"]["prefect"]["token"] == "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"
    assert result["agent"]["msg"] == "echoed ********"


def test_check_only_reads_the_config_and_the_context_and_stops_there(monkeypatch):
    ran, result = converge(monkeypatch, {"qhub_config_info": settings(), "kube_context_info": {
        "changed": False, "server": "https://k:6443"}}, check_only=True)
    assert ran == ["qhub_config_info", "kube_context_info"]
    assert result["changed"] is False and result["cluster"]["server"] == "https://k:6443"
    assert set(result) >= {"settings", "cluster"} and not set(result) & {"work_pool", "agent", "removal"}


@pytest.mark.parametrize("given", GIVEN, ids=["defaults", "every-variable", "config-mapping"])
def test_the_fleet_check_passes_what_the_converge_passes_and_only_checks(given):
    variables = role_variables(settings(), **given)
    _module, converge_args = role_task_args("converge.yml", variables)
    _module, check_args = role_task_args("fleet_check.yml", variables)
    assert check_args == dict(converge_args, check_only=True)
