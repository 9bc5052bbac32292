# -*- coding: utf-8 -*-
# Copyright: (c) 2026, qhub.prefect contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""qhub_deployment's ``from_role_variables``: the options a task does not set, read from the role's variables.

The role's converge and fleet_check entry points would otherwise pass its eighteen variables as eighteen templated
arguments, each compiled and rendered by Ansible on every task: about 20 ms of a no-op's one task. Read here, as
ansible-core's validate_argument_spec reads a role's variables, only a variable that is a template is templated
(the role's defaults are plain values).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

ROLE_VARIABLE_PREFIX = "qhub_prefect_"
# Options the task itself sets, never a role variable.
TASK_ONLY = frozenset(("from_role_variables", "check_only"))


def args_from_role_variables(args, task_vars, templar, option_names):
    """``args`` with each option it does not set taken from the variable ``qhub_prefect_<option>``, as the role
    passes them (``x if x else omit``): an empty or null variable is an option not set, and O(config) is not taken
    from its variable when O(config_file) is set."""
    merged = dict(args)
    # config last: whether config_file is set decides whether it is read at all.
    for name in sorted(option_names, key=lambda option: option == "config"):
        variable = ROLE_VARIABLE_PREFIX + name
        if name in merged or name in TASK_ONLY or variable not in task_vars:
            continue
        if name == "config" and merged.get("config_file"):
            continue
        value = templar.template(task_vars[variable])
        if value is None or (isinstance(value, (str, dict)) and not value):
            continue
        merged[name] = value
    return merged
