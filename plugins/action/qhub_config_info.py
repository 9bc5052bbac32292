# -*- coding: utf-8 -*-
# Copyright: (c) 2026, qhub.prefect contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""qhub_config_info: the module's runner in the controller when the task runs there, else the module."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

# Python's bytecode cache for the collection's code below (plugin_utils/_bytecode_cache.py).
from ansible_collections.qhub.prefect.plugins.plugin_utils._bytecode_cache import bytecode_imports

with bytecode_imports():
    from ansible_collections.qhub.prefect.plugins.module_utils._runners import qhub_config_info as runner
    from ansible_collections.qhub.prefect.plugins.plugin_utils._controller_module import ControllerFirstAction


class ActionModule(ControllerFirstAction):
    runner = runner
