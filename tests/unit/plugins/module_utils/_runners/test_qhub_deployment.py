"""qhub_deployment runs the role's steps in one task: which steps, in which order, and what the task returns.

tests/unit/collection/test_role_steps_in_one_task.py holds each step's arguments equal to the role's tasks files.
"""

import threading
import time

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
    masks ``mask`` as qhub_config_info masks a token it finds. A step given ``after_reads`` (the agent's) calls it
    between its reads and its writes, as prefect_agent_config does, and is recorded in ``wrote`` once past it."""

    def __init__(self, results, mask=None):
        self.results = results
        self.mask = mask
        self.ran = []
        self.wrote = []

    def __call__(self, runner, args, check_mode, diff, name, masked, after_reads=None):
        step = name.split(".")[-1]
        self.ran.append(step)
        if self.mask and name.endswith("qhub_config_info"):
            masked.add(self.mask)
        self.reads(step)
        if after_reads is not None:
            after_reads()
        self.wrote.append(step)
        given = self.results.get(step, {"changed": False})
        # A list: the results of the step's first, second, ... run.
        return dict(given.pop(0) if isinstance(given, list) else given)

    def reads(self, step):
        pass


def converge_with(monkeypatch, recorder, check_mode=False, diff=False, **given):
    monkeypatch.setattr(qhub_deployment, "run_in_process", recorder)
    args = dict({"config_file": "/srv/qhub/qhub-config.yml"}, **given)
    if "config" in given:
        del args["config_file"]
    params = validated(qhub_deployment, args)
    with pytest.raises(ModuleExit) as done:
        qhub_deployment.run(InProcessModule(params, check_mode, diff, ()))
    return done.value.result


def converge(monkeypatch, results, check_mode=False, diff=False, mask=None, **given):
    recorder = Recorder(results, mask)
    result = converge_with(monkeypatch, recorder, check_mode, diff, **given)
    return recorder.ran, result


@pytest.mark.parametrize("registered, steps", [
    (settings(), ["qhub_config_info", "kube_context_info", "prefect_work_pool", "prefect_agent_config",
                  "prefect_worker_status"]),
    (settings("prefect1"), ["qhub_config_info", "kube_context_info", "prefect_project", "prefect_agent_config"]),
    (settings(enabled=False), ["qhub_config_info", "kube_context_info", "prefect_agent_config"]),
])
def test_the_steps_of_each_kind_of_deployment(monkeypatch, registered, steps):
    recorder = Recorder({"qhub_config_info": registered})
    result = converge_with(monkeypatch, recorder)
    # Begun in the role's order but for the step before the agent's, which runs beside the agent's reads; past
    # their reads, in the role's order.
    assert sorted(recorder.ran) == sorted(steps)
    assert recorder.wrote == steps
    assert result["changed"] is False and "failed" not in result
    assert result["settings"] == registered
    assert ("removal" in result) is (not registered["prefect"]["enabled"])


def test_a_worker_the_apply_waited_for_is_not_asked_about_again(monkeypatch):
    ran, result = converge(monkeypatch, {"qhub_config_info": settings(),
                                         "prefect_agent_config": {"changed": True, "workers_online": ["w-1"]}})
    assert "prefect_worker_status" not in ran and "worker_status" not in result
    assert result["changed"] is True


def test_a_failed_step_ends_the_task_with_its_name_and_nothing_after_it_runs(monkeypatch):
    recorder = Recorder({"qhub_config_info": settings(), "prefect_work_pool": {
        "failed": True, "msg": "the Prefect API at http://p/api could not be reached"}})
    result = converge_with(monkeypatch, recorder)
    # The agent step read beside the work pool step, and wrote nothing; the worker's status was not asked.
    assert recorder.wrote == ["qhub_config_info", "kube_context_info", "prefect_work_pool"]
    assert "prefect_worker_status" not in recorder.ran
    assert "agent" not in result
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


class Overlapping(Recorder):
    """The step before the agent's waits until the agent step has read: they run side by side, or this times out."""

    def __init__(self, results, first="prefect_work_pool"):
        super(Overlapping, self).__init__(results)
        self.first = first
        self.agent_read = threading.Event()
        self.events = []

    def reads(self, step):
        if step == self.first:
            self.events.append("%s waits for the agent's reads: %s" % (step, self.agent_read.wait(5)))
            time.sleep(0.05)
            self.events.append("%s ended" % step)
        elif step == "prefect_agent_config":
            self.events.append("agent read")
            self.agent_read.set()

    def __call__(self, *args, **kwargs):
        result = super(Overlapping, self).__call__(*args, **kwargs)
        if args[4].endswith("prefect_agent_config"):
            self.events.append("agent wrote")
        return result


@pytest.mark.parametrize("registered, first", [(settings(), "prefect_work_pool"),
                                               (settings("prefect1"), "prefect_project")])
def test_the_agent_reads_beside_the_step_before_it_and_writes_only_once_that_step_ended(
        monkeypatch, registered, first):
    recorder = Overlapping({"qhub_config_info": registered}, first)
    result = converge_with(monkeypatch, recorder)
    assert recorder.events == ["agent read", "%s waits for the agent's reads: True" % first, "%s ended" % first,
                               "agent wrote"]
    assert "failed" not in result and result["agent"] == {"changed": False}


def test_a_failed_work_pool_step_stops_the_agent_step_before_its_first_write(monkeypatch):
    recorder = Overlapping({"qhub_config_info": settings(), "prefect_work_pool": {"failed": True, "msg": "401"}})
    result = converge_with(monkeypatch, recorder)
    assert "agent wrote" not in recorder.events and "prefect_agent_config" not in recorder.wrote
    assert result["msg"] == "Create the work pool with the overrides as its base job template: 401"


def test_an_agent_step_failing_in_its_reads_reports_itself_once_the_work_pool_step_ended(monkeypatch):
    recorder = Recorder({"qhub_config_info": settings(), "prefect_agent_config": {"failed": True, "msg": "403"}})
    result = converge_with(monkeypatch, recorder)
    assert "prefect_work_pool" in recorder.wrote and "prefect_worker_status" not in recorder.ran
    assert result["msg"] == "Apply the agent or worker and its ServiceAccount, RBAC and Secret: 403"


def test_an_error_in_the_step_beside_the_agents_is_raised_in_the_tasks_thread(monkeypatch):
    class Broken(Recorder):
        def reads(self, step):
            if step == "prefect_work_pool":
                raise ZeroDivisionError("a bug")

    with pytest.raises(ZeroDivisionError, match="a bug"):
        converge_with(monkeypatch, Broken({"qhub_config_info": settings()}))


def test_without_the_wait_for_the_worker_its_status_is_asked_beside_the_steps_and_taken_when_they_changed_nothing(
        monkeypatch):
    recorder = Recorder({"qhub_config_info": settings(), "prefect_worker_status": [
        {"changed": False, "online": True, "said": "beside"}, {"changed": False, "said": "after"}]})
    result = converge_with(monkeypatch, recorder, wait=False)
    assert recorder.ran.count("prefect_worker_status") == 1
    assert result["worker_status"]["said"] == "beside"


@pytest.mark.parametrize("changed_step", ["prefect_work_pool", "prefect_agent_config"])
def test_a_status_asked_beside_steps_that_changed_something_is_asked_again_after_them(monkeypatch, changed_step):
    recorder = Recorder({"qhub_config_info": settings(), changed_step: {"changed": True}, "prefect_worker_status": [
        {"changed": False, "said": "beside"}, {"changed": False, "said": "after"}]})
    result = converge_with(monkeypatch, recorder, wait_for_worker=False)
    assert recorder.ran.count("prefect_worker_status") == 2
    assert result["worker_status"]["said"] == "after"
    assert recorder.wrote[-1] == "prefect_worker_status"


def test_when_the_agent_step_waits_for_the_worker_no_status_is_asked_beside_it(monkeypatch):
    recorder = Recorder({"qhub_config_info": settings(), "prefect_agent_config": {
        "changed": False, "workers_online": ["prefect-worker-0"]}})
    result = converge_with(monkeypatch, recorder)
    assert "prefect_worker_status" not in recorder.ran and "worker_status" not in result
