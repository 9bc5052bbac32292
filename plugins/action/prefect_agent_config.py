# -*- coding: utf-8 -*-
# Copyright: (c) 2026, qhub.prefect contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""prefect_agent_config: inside the controller when the task runs there, the module everywhere else."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.plugins.action import ActionBase

from ansible_collections.qhub.prefect.plugins.module_utils._agent_config import argument_spec, run
from ansible_collections.qhub.prefect.plugins.module_utils._kube import HAS_URLLIB3
from ansible_collections.qhub.prefect.plugins.plugin_utils._controller_module import (
    run_on_controller, runs_on_controller,
)


class ActionModule(ActionBase):
    _supports_check_mode = True
    _supports_async = True

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        if HAS_URLLIB3 and runs_on_controller(self):
            result.update(run_on_controller(self, argument_spec(), run))
        else:
            result.update(self._execute_module(task_vars=task_vars, wrap_async=self._task.async_val))
        return result
