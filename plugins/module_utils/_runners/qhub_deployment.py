# -*- coding: utf-8 -*-
# Copyright: (c) 2026, qhub.prefect contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""qhub_deployment: the role's steps for one QHub deployment, one after the other, in one task.

Each step is a module of this collection run in this process (in_process.py) with the arguments the role's tasks
file of that step gives it (roles/prefect_agent/tasks/*.yml), so a step does here exactly what its task does there:
tests/unit/collection/test_role_steps_in_one_task.py holds the two equal. What one task saves is
Ansible's cost of a task (a fork, templating, a result), paid once instead of up to five times per deployment.

One thing differs from the role's order, and only in time: the step before the agent's (the work pool, or the
Prefect 1 project) runs beside the agent step's reads, the Prefect API and the API server answering at once; the
agent step writes nothing until that step has ended, and nothing at all if it failed.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import threading

from ansible_collections.qhub.prefect.plugins.module_utils._qhub.names import default_object_name
from ansible_collections.qhub.prefect.plugins.module_utils._runners import (
    kube_context_info, prefect_agent_config, prefect_project, prefect_work_pool, prefect_worker_status,
    qhub_config_info,
)
from ansible_collections.qhub.prefect.plugins.module_utils._runners.in_process import run_in_process

REQUIRED_ONE_OF = [("config_file", "config")]
MUTUALLY_EXCLUSIVE = [("config_file", "config")]
# The QHub config is a controller file (or an extra var), as for qhub_config_info.
CONTROLLER_ONLY = True

# (result key, the role's task name, runner, module name). The task names are the role's, so a failure reads the
# same whichever way the role ran.
CHECK = ("settings", "Read and validate the prefect block of the QHub config", qhub_config_info,
         "qhub.prefect.qhub_config_info")
CLUSTER = ("cluster", "Check the kubeconfig context exists", kube_context_info, "qhub.prefect.kube_context_info")
PROJECT = ("project", "Create the Prefect 1 project the flows are registered in", prefect_project,
           "qhub.prefect.prefect_project")
WORK_POOL = ("work_pool", "Create the work pool with the overrides as its base job template", prefect_work_pool,
             "qhub.prefect.prefect_work_pool")
AGENT = ("agent", "Apply the agent or worker and its ServiceAccount, RBAC and Secret", prefect_agent_config,
         "qhub.prefect.prefect_agent_config")
REMOVAL = ("removal", "Remove the agent or worker (prefect.enabled is false)", prefect_agent_config,
           "qhub.prefect.prefect_agent_config")
WORKER_STATUS = ("worker_status", "Ask the Prefect API whether the worker is online", prefect_worker_status,
                 "qhub.prefect.prefect_worker_status")


def argument_spec():
    """The options of qhub_deployment (its DOCUMENTATION says what each does): the role's variables, unprefixed.

    The same names, so that an error naming an option names the role variable too: the role's converge entry
    point has no argument spec of its own, since its one task validates the same values.
    """
    return dict(
        config_file=dict(type="path"),
        config=dict(type="dict"),
        name=dict(type="str"),
        generation=dict(type="str", default="auto", choices=["auto", "prefect1", "prefect3"]),
        api_url=dict(type="str"),
        api_key=dict(type="str", no_log=True),
        instance=dict(type="str"),
        work_pool=dict(type="str", default="qhub"),
        project=dict(type="str", default="qhub"),
        wait=dict(type="bool", default=True),
        wait_timeout=dict(type="int", default=120),
        wait_for_worker=dict(type="bool", default=True),
        worker_timeout=dict(type="int", default=120),
        force=dict(type="bool", default=False),
        move_from=dict(type="list", elements="str", default=[]),
        lock_timeout=dict(type="int", default=60),
        kubeconfig=dict(type="path"),
        kube_context=dict(type="str"),
        check_only=dict(type="bool", default=False),
        # Read by the action plugin (plugin_utils/_role_variables.py) before the options are validated.
        from_role_variables=dict(type="bool", default=False),
    )


def explain_invalid(messages):
    """Every invalid option at once, each naming the role variable too, as the role's own argument validation would:
    this module always runs on the controller, and the role passes each variable as the option of the same name
    without the prefix."""
    explained = []
    for message in messages:
        for name in argument_spec():
            message = message.replace("argument '%s'" % name, "argument '%s' (qhub_prefect_%s)" % (name, name))
            message = message.replace("value of %s must" % name, "value of %s (qhub_prefect_%s) must" % (name, name))
        explained.append(message)
    return "; ".join(explained)


def _given(params, *names):
    """The options set to something, as the role passes ``x if x else omit``."""
    return dict((name, params[name]) for name in names if params[name])


def _kube(params):
    args = _given(params, "kubeconfig")
    if params["kube_context"]:
        args["context"] = params["kube_context"]
    return args


def _prefect_api(params, config_source):
    args = _given(params, "api_url", "api_key")
    args["qhub_config"] = config_source
    return args


def check_args(params):
    """tasks/check.yml"""
    args = _given(params, "api_url", "instance")
    if params["config_file"]:
        # As the role's realpath filter: relative to where ansible-playbook runs.
        args["path"] = os.path.realpath(os.path.expanduser(params["config_file"]))
    else:
        args["config"] = params["config"]
    args.update(generation=params["generation"], require_token=not params["api_key"])
    return args


def cluster_args(params):
    """deploy.yml's check of the kubeconfig context."""
    return _kube(params)


def config_source(params, settings):
    """vars/main.yml __qhub_prefect_config_source: the file the check read, or the mapping."""
    return settings.get("path") or params["config"]


def object_name(params, settings):
    """vars/main.yml __qhub_prefect_object_name"""
    return params["name"] or default_object_name(settings["prefect"]["generation"])


def move_from(params):
    """vars/main.yml __qhub_prefect_move_from"""
    return [name.strip() for name in params["move_from"] if name.strip()]


def project_args(params, settings):
    """tasks/project.yml"""
    args = _prefect_api(params, config_source(params, settings))
    args["name"] = params["project"]
    return args


def work_pool_args(params, settings):
    """tasks/work_pool.yml"""
    prefect, namespace = settings["prefect"], settings["namespace"]
    args = _prefect_api(params, config_source(params, settings))
    args.update(_kube(params))
    args.update(name=params["work_pool"], overrides=prefect["overrides"], secret_env_names=prefect["secret_env_names"],
                secret_name=object_name(params, settings), job_namespace=namespace,
                work_queues=(prefect.get("job") or {}).get("labels") or [], config_map_namespace=namespace)
    return args


def agent_args(params, settings):
    """tasks/agent.yml"""
    prefect = settings["prefect"]
    args = _prefect_api(params, config_source(params, settings))
    args.update(_kube(params))
    args.update(name=object_name(params, settings), namespace=settings["namespace"], image=prefect["image"],
                generation=prefect["generation"], overrides=prefect["overrides"], work_pool=params["work_pool"],
                instance=prefect["instance"], wait=params["wait"], wait_timeout=params["wait_timeout"],
                wait_online=params["wait_for_worker"], wait_online_timeout=params["worker_timeout"],
                force=params["force"], move_from=move_from(params), lock_timeout=params["lock_timeout"])
    if prefect["generation"] == "prefect1":
        args["project"] = params["project"]
    return args


def removal_args(params, settings):
    """tasks/absent.yml"""
    prefect = settings["prefect"]
    args = _kube(params)
    args.update(name=object_name(params, settings), namespace=settings["namespace"], generation=prefect["generation"],
                image=prefect["image"], instance=prefect["instance"], state="absent", move_from=move_from(params),
                lock_timeout=params["lock_timeout"], wait=params["wait"], wait_timeout=params["wait_timeout"])
    return args


def worker_status_args(params, settings):
    """tasks/worker_status.yml"""
    args = _prefect_api(params, config_source(params, settings))
    args.update(work_pool=params["work_pool"], name_prefix=object_name(params, settings), retries=0)
    return args


def steps_after_check(settings):
    """The steps that follow the check, with their argument builders, as tasks/main.yml chooses them."""
    prefect = settings["prefect"]
    if not prefect["enabled"]:
        return [(REMOVAL, removal_args)]
    if prefect["generation"] == "prefect1":
        return [(PROJECT, project_args), (AGENT, agent_args)]
    return [(WORK_POOL, work_pool_args), (AGENT, agent_args), (WORKER_STATUS, worker_status_args)]


class _EarlierStepFailed(Exception):
    """Ends the agent step once it has read when the step before it failed (not a QhubPrefectError: no runner
    reports it)."""


class _InBackground:
    """A step run in a thread; ``outcome()`` waits for it, and raises in the caller's thread what the step raised."""

    def __init__(self, steps, step, args):
        self._done = {}
        self._thread = threading.Thread(target=self._run, args=(steps, step, args), name="qhub-prefect " + step[0])
        # A task that fails meanwhile does not wait for a read nobody will look at.
        self._thread.daemon = True
        self._thread.start()

    def _run(self, steps, step, args):
        try:
            self._done["outcome"] = steps.execute(step, args)
        except BaseException as exc:  # raised again by outcome(), in the task's thread
            self._done["error"] = exc

    def outcome(self):
        self._thread.join()
        if "error" in self._done:
            raise self._done["error"]
        return self._done["outcome"]

    def ended_well(self):
        self._thread.join()
        return "outcome" in self._done and not self._done["outcome"][0].get("failed")


class Steps:
    """The results of the steps run so far, and what the task returns from them."""

    def __init__(self, module):
        self.module = module
        self.results = {}

    def run(self, step, args):
        return self.record(step, *self.execute(step, args))

    def execute(self, step, args, after_reads=None):
        """(result, masked) of one step; touches nothing shared, so that a step may run in a thread."""
        _key, _title, runner, name = step
        masked = set()
        result = run_in_process(runner, args, self.module.check_mode, self.module._diff, name, masked,
                                after_reads=after_reads)
        return result, masked

    def record(self, step, result, masked):
        key = step[0]
        # What a step masked (a token in the config, a password in api_url) is masked in this task's result and
        # invocation too: the task's arguments hold the config and the URL the step was given.
        self.module.no_log_values.update(masked)
        # The step's arguments are this task's, shown once; its warnings are this task's too.
        result.pop("invocation", None)
        for warning in result.pop("warnings", []):
            self.module.warn(warning)
        self.results[key] = result
        return result

    def run_before_agent(self, first, agent, status=None):
        """Two steps, each (step, args): the first beside the agent step's reads, then recorded as run() records them.

        The agent step waits for the first once it has read (its runner calls ``after_reads``). A first step that
        failed ends the agent step there, having only read, and the task fails with the first's result, as it would
        have before the agent step began. ``status``, (step, args), is begun beside both and returned, in the
        background, or None.
        """
        beside = _InBackground(self, *first)
        early_status = _InBackground(self, *status) if status is not None else None

        def after_agent_reads():
            if not beside.ended_well():
                raise _EarlierStepFailed()

        try:
            agent_outcome = self.execute(*agent, after_reads=after_agent_reads)
        except _EarlierStepFailed:
            agent_outcome = None
        first_outcome = beside.outcome()
        if self.record(first[0], *first_outcome).get("failed"):
            self.fail(first[0])
        if self.record(agent[0], *agent_outcome).get("failed"):
            self.fail(agent[0])
        return early_status

    def fail(self, step):
        key, title = step[0], step[1]
        # What the failure shows: the failed step's result, and where (the settings and the cluster, which the
        # fleet's summary line reads), not every step's (a work pool's whole base job template).
        shown = ("settings", "cluster", key)
        self.module.fail_json(msg="%s: %s" % (title, self.results[key].get("msg", "failed")),
                              **self._outcome(shown))

    def _outcome(self, keys=None):
        # Every step's diff, shown or not: what changed before a failure is still what changed.
        diffs = [result.pop("diff") for result in self.results.values() if result.get("diff")]
        outcome = dict((key, result) for key, result in self.results.items() if keys is None or key in keys)
        outcome["changed"] = any(result.get("changed") is True for result in self.results.values())
        if diffs:
            outcome["diff"] = [diff for item in diffs for diff in (item if isinstance(item, list) else [item])]
        return outcome

    def exit(self):
        self.module.exit_json(**self._outcome())


def run(module):
    params = module.params
    steps = Steps(module)
    for step, args in ((CHECK, check_args(params)), (CLUSTER, cluster_args(params))):
        if steps.run(step, args).get("failed"):
            steps.fail(step)
    if params["check_only"]:
        steps.exit()
    settings = steps.results["settings"]
    after_check = steps_after_check(settings)
    if len(after_check) > 1 and after_check[1][0] is AGENT:
        (first, build_first), (agent, build_agent) = after_check[:2]
        agent_waits_online = params["wait"] and params["wait_for_worker"] and not module.check_mode
        status = None
        if after_check[2:3] and after_check[2][0] is WORKER_STATUS and not agent_waits_online:
            # Asked beside the two steps; what it says is the status only if neither changed anything (a read after
            # them would find the same), else it is asked again below (a first apply asks twice, a no-op waits for
            # no more than the slower step). Not asked when the agent step waits for the worker ONLINE: that is the
            # status then.
            status = (WORKER_STATUS, worker_status_args(params, settings))
        early_status = steps.run_before_agent((first, build_first(params, settings)),
                                              (agent, build_agent(params, settings)), status)
        after_check = after_check[2:]
        if early_status is not None:
            outcome = early_status.outcome()
            if not any(steps.results[step[0]].get("changed") for step in (first, agent)):
                steps.record(WORKER_STATUS, *outcome)
                after_check = after_check[1:]
    for step, build in after_check:
        if step is WORKER_STATUS and steps.results["agent"].get("workers_online"):
            # The apply waited until a worker was ONLINE: that is the status (tasks/worker_status.yml's condition).
            continue
        # A status that cannot be read fails nothing (the role's failed_when: false); the result says why.
        if steps.run(step, build(params, settings)).get("failed") and step is not WORKER_STATUS:
            steps.fail(step)
    steps.exit()
