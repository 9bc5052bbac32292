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

from ansible_collections.qhub.prefect.plugins.module_utils._runners.in_process import run_in_process


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


def run_on_controller(action, runner, args):
    """Validate ``args`` like AnsibleModule would, then ``runner.run(module)``; returns the result."""
    added = task_environment(action)
    saved = dict(os.environ)
    # Option fallbacks (env_fallback) and the modules read os.environ. The worker process runs this
    # one task, and the environment is put back afterwards all the same.
    os.environ.update(added)
    try:
        try:
            return run_in_process(runner, _as_module_gets_them(args), bool(action._task.check_mode),
                                  bool(action._task.diff), action._task.action)
        except RuntimeError as exc:
            raise AnsibleActionFail(str(exc))
    finally:
        os.environ.clear()
        os.environ.update(saved)


class ControllerFirstAction(ActionBase):
    """An action plugin that runs its module's runner in-process on the controller, and launches the module elsewhere.

    Subclasses set ``runner``, the module's file in module_utils/_runners. A runner with ``CONTROLLER_ONLY``
    (it reads controller files) always runs here.
    """

    _supports_check_mode = True
    _supports_async = True
    runner = None

    def task_args(self, task_vars):
        """The module's arguments: the task's, as Ansible templated them."""
        return self._task.args

    def run(self, tmp=None, task_vars=None):
        result = super(ControllerFirstAction, self).run(tmp, task_vars)
        if getattr(self.runner, "CONTROLLER_ONLY", False) or runs_on_controller(self):
            result.update(run_on_controller(self, self.runner, self.task_args(task_vars)))
        else:
            result.update(self._execute_module(task_vars=task_vars, wrap_async=self._task.async_val))
        return result
