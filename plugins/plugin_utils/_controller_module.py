# -*- coding: utf-8 -*-
# Copyright: (c) 2026, qhub.prefect contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run a module's logic inside the controller's worker process when the task targets the controller.

A module launch costs about 0.45 s (building the AnsiballZ payload, a temporary directory, a new
Python, the imports), more than a no-op run of our modules spends on the network. The roles and
playbooks of this collection run on localhost with the local connection, so the action plugins run
the same ``run(module)`` the modules run, on a stand-in for AnsibleModule. Anything else (another
host, become, async, a controller without the module's Python dependencies) launches the module as
usual, so the behaviour is the same either way, only the cost differs.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.errors import UnsupportedError
from ansible.module_utils.common.parameters import remove_values

from ansible_collections.qhub.prefect.plugins.module_utils._runners.options import module_spec


class _ModuleExit(Exception):
    def __init__(self, result):
        super(_ModuleExit, self).__init__("module exit")
        self.result = result


class ControllerModule:
    """The part of AnsibleModule the collection's modules use: params, check and diff mode, exits."""

    def __init__(self, params, check_mode, diff, no_log_values):
        self.params = params
        self.check_mode = check_mode
        self._diff = diff
        self.no_log_values = set(no_log_values)
        self._warnings = []

    def warn(self, warning):
        self._warnings.append(warning)

    def exit_json(self, **result):
        raise _ModuleExit(self._formatted(result))

    def fail_json(self, msg, **result):
        result["failed"] = True
        result["msg"] = msg
        raise _ModuleExit(self._formatted(result))

    def _formatted(self, result):
        result.setdefault("invocation", {"module_args": self.params})
        if self._warnings:
            result["warnings"] = result.get("warnings", []) + self._warnings
        # As AnsibleModule does: no_log values are masked everywhere, booleans and None are kept as they are.
        preserved = dict((key, value) for key, value in result.items() if value is None or isinstance(value, bool))
        result = remove_values(result, self.no_log_values)
        result.update(preserved)
        return result


def runs_on_controller(action):
    """True when a module launch for this task would run a Python on this machine, as this user, in the foreground."""
    task = action._task
    if getattr(action._connection, "transport", None) != "local":
        return False
    if action._play_context.become or task.async_val:
        return False
    return True


def task_environment(action):
    """The play's, block's and task's ``environment``, templated, as a module on this host would get it."""
    merged = {}
    layers = action._task.environment or []
    for layer in layers if isinstance(layers, list) else [layers]:
        if layer:
            values = action._templar.template(layer)
            if not isinstance(values, dict):
                raise AnsibleActionFail("environment must be a mapping, got %s" % type(values).__name__)
            merged.update((str(key), str(value)) for key, value in values.items())
    return merged


def _as_module_gets_them(args):
    """The arguments as plain JSON types, as a module receives them (no tagged or lazy template values)."""
    try:
        return json.loads(json.dumps(args))
    except (TypeError, ValueError) as exc:
        raise AnsibleActionFail("the module arguments are not JSON: %s" % exc)


def validate(spec, args, name):
    """(validated params, no_log values, error message or None) as AnsibleModule would find them.

    ``spec`` is module_spec(runner). tests/unit/plugins/plugin_utils/test_controller_module.py pins this against
    AnsibleModule itself: the no_log values come from a private attribute of ansible-core's validation result.
    """
    validator = ArgumentSpecValidator(spec["argument_spec"], mutually_exclusive=spec["mutually_exclusive"],
                                      required_one_of=spec["required_one_of"])
    validation = validator.validate(args)
    no_log_values = validation._no_log_values
    message = None
    if validation.error_messages:
        message = validation.errors.msg
        if isinstance(validation.errors[0], UnsupportedError):
            message = "Unsupported parameters for (%s) module: %s" % (name, message)
    return validation.validated_parameters, no_log_values, message


def run_on_controller(action, runner):
    """Validate the task's arguments like AnsibleModule would, then ``runner.run(module)``; returns the result."""
    added = task_environment(action)
    saved = dict(os.environ)
    # Option fallbacks (env_fallback) and the modules read os.environ. The worker process runs this
    # one task, and the environment is put back afterwards all the same.
    os.environ.update(added)
    try:
        args = _as_module_gets_them(action._task.args)
        params, no_log_values, message = validate(module_spec(runner), args, action._task.action)
        module = ControllerModule(params, bool(action._task.check_mode), bool(action._task.diff), no_log_values)
        try:
            if message is not None:
                # As AnsibleModule fails: with the invocation (what -vvv shows), secrets masked, booleans kept.
                module.fail_json(msg=message)
            runner.run(module)
        except _ModuleExit as done:
            return done.result
        raise AnsibleActionFail("the module ended without a result")
    finally:
        os.environ.clear()
        os.environ.update(saved)


class ControllerFirstAction(ActionBase):
    """An action plugin that runs its module's runner in-process on the controller, and launches the module elsewhere.

    Subclasses set ``runner``, the module's file in module_utils/_runners. A runner with ``CONTROLLER_ONLY``
    (it reads controller files) always runs here; one with ``HAS_REQUIREMENTS`` false (the controller
    lacks its Python dependencies) always launches the module.
    """

    _supports_check_mode = True
    _supports_async = True
    runner = None

    def run(self, tmp=None, task_vars=None):
        result = super(ControllerFirstAction, self).run(tmp, task_vars)
        here = getattr(self.runner, "HAS_REQUIREMENTS", True) and runs_on_controller(self)
        if getattr(self.runner, "CONTROLLER_ONLY", False) or here:
            result.update(run_on_controller(self, self.runner))
        else:
            result.update(self._execute_module(task_vars=task_vars, wrap_async=self._task.async_val))
        return result
