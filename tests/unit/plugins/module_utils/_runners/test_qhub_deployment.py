"""qhub_deployment runs the role's steps in one task: which steps, in which order, and what the task returns.

tests/unit/collection/test_role_steps_in_one_task.py holds each step's arguments equal to the role's tasks files.
"""

import pytest

from ansible_collections.qhub.prefect.plugins.module_utils._runners import qhub_deployment
from ansible_collections.qhub.prefect.plugins.module_utils._runners.in_process import (
    InProcessModule, ModuleExit, failure_message, validate,
)
from ansible_collections.qhub.prefect.plugins.module_utils._runners.options import module_spec


def settings(generation="prefect3", enabled=True, path="/srv/qhub/qhub-config.yml"):
    """What qhub_config_info returns (tasks/check.yml registers it as qhub_prefect_settings)."""
    result = {"changed": False, "namespace": "dev", "prefect": {
        "enabled": enabled, "generation": generation, "image": "prefecthq/prefect:3-python3.11-kubernetes",
        "instance": "qhub-dev", "overrides": {"JOB_CPU_LIMIT": "2", "envVars": {"A": "b"}},
        "secret_env_names": ["TOKEN_X"], "job": {"labels": ["gpu", "big"]}}}
    if path:
        result["path"] = path
    return result


def validated(runner, args):
    params, _no_log, message = validate(module_spec(runner), args, "test")
    assert message is None, message
    return params


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


def test_a_failure_shows_the_failed_step_and_where_not_every_steps_result(monkeypatch):
    _ran, result = converge(monkeypatch, {
        "qhub_config_info": settings(), "kube_context_info": {"changed": False, "server": "https://k:6443"},
        "prefect_work_pool": {"changed": True, "diff": {"before": "a", "after": "b"}, "work_pool": {"big": "x"}},
        "prefect_agent_config": {"failed": True, "msg": "cannot reach the Kubernetes API server"}}, diff=True)
    assert set(result) - {"invocation", "msg", "failed", "changed", "diff"} == {"settings", "cluster", "agent"}
    assert result["changed"] is True and result["diff"] == [{"before": "a", "after": "b"}]
