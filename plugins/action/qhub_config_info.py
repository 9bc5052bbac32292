# -*- coding: utf-8 -*-
# Copyright: (c) 2026, qhub.prefect contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""qhub_config_info on the controller.

The config is a controller file (or an extra var), so reading it there is where it belongs, and it
spares every run a module launch (building the AnsiballZ payload, a Python start, the imports):
about 0.4 s, a sixth of a no-op deploy.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible.plugins.action import ActionBase

from ansible_collections.qhub.prefect.plugins.module_utils._runners.qhub_config_info import (
    CONFIG_INFO_ARGUMENT_SPEC, CONFIG_INFO_MUTUALLY_EXCLUSIVE, CONFIG_INFO_REQUIRED_ONE_OF, config_info,
)
from ansible_collections.qhub.prefect.plugins.plugin_utils._controller_module import task_environment


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False
    _supports_check_mode = True

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        dummy, params = self.validate_argument_spec(
            argument_spec=CONFIG_INFO_ARGUMENT_SPEC, required_one_of=CONFIG_INFO_REQUIRED_ONE_OF,
            mutually_exclusive=CONFIG_INFO_MUTUALLY_EXCLUSIVE)
        # The controller's environment with the play's, block's and task's ``environment`` on top.
        environ = dict(os.environ)
        environ.update(task_environment(self))
        result.update(config_info(params, environ))
        return result
