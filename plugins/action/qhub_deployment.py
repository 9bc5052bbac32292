# -*- coding: utf-8 -*-
# Copyright: (c) 2026, qhub.prefect contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""qhub_deployment: the module's runner in the controller when the task runs there, else the module."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

# Python's bytecode cache for the collection's code below (plugin_utils/_bytecode_cache.py).
from ansible_collections.qhub.prefect.plugins.plugin_utils._bytecode_cache import bytecode_imports

with bytecode_imports():
    from ansible_collections.qhub.prefect.plugins.module_utils._runners import qhub_deployment as runner
    from ansible_collections.qhub.prefect.plugins.plugin_utils._controller_module import ControllerFirstAction
    from ansible_collections.qhub.prefect.plugins.plugin_utils._role_variables import args_from_role_variables


class ActionModule(ControllerFirstAction):
    runner = runner

    def task_args(self, task_vars):
        args = super(ActionModule, self).task_args(task_vars)
        if not args.get("from_role_variables"):
            return args
        return args_from_role_variables(args, task_vars or {}, self._templar, runner.argument_spec())
