# -*- coding: utf-8 -*-
# Copyright: (c) 2026, qhub.prefect contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # What each attribute means, written once; every module adds its support level and details.
    DOCUMENTATION = r'''
options: {}
attributes:
  check_mode:
    description: Can run in check mode and return the changed status a real run would report, without changing
      anything.
  diff_mode:
    description: Returns what has changed (or would change in check mode) with C(--diff).
  idempotent:
    description: Running it again with the same input reports no change and changes nothing.
notes:
  - On the controller (the local connection, no C(become), not C(async)) the action plugin runs this module's
    code inside Ansible's worker process instead of launching the module, which saves about 0.45 s a task;
    results, check mode, diff mode and C(no_log) masking are the same, and the Python is the one running Ansible
    (C(ansible_python_interpreter) is not used there). Any other host launches the module, except for
    M(qhub.prefect.qhub_config_info), which always runs on the controller.
'''

    # A module that only reads.
    INFO_MODULE = r'''
options: {}
attributes:
  check_mode:
    support: full
    details: Reads only.
  diff_mode:
    support: none
  idempotent:
    support: full
    details: Reads only.
'''
