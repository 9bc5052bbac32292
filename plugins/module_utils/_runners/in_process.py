# -*- coding: utf-8 -*-
# Copyright: (c) 2026, qhub.prefect contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run a runner (a module's logic, a file in this directory) in this process, on a stand-in for AnsibleModule.

The controller fast path (plugin_utils/_controller_module.py) runs one module's runner this way, and qhub_deployment
runs the role's steps one after the other this way, in one task. Only ansible.module_utils is imported, so the
same code runs in an action plugin and in a module.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.common.parameters import remove_values
from ansible.module_utils.errors import UnsupportedError

from ansible_collections.qhub.prefect.plugins.module_utils._runners.options import module_spec


class ModuleExit(Exception):
    """How the stand-in's exit_json and fail_json end a runner: with its result, not the process."""

    def __init__(self, result):
        super(ModuleExit, self).__init__("module exit")
        self.result = result


class InProcessModule:
    """The part of AnsibleModule the collection's runners use: params, check and diff mode, warnings, exits."""

    def __init__(self, params, check_mode, diff, no_log_values):
        self.params = params
        # Set by run_in_process for a caller that waits on a runner's reads (qhub_deployment); None: nothing waits.
        self.after_reads = None
        self.check_mode = check_mode
        self._diff = diff
        self.no_log_values = set(no_log_values)
        self._warnings = []

    def warn(self, warning):
        self._warnings.append(warning)

    def exit_json(self, **result):
        raise ModuleExit(self._formatted(result))

    def fail_json(self, msg, **result):
        result["failed"] = True
        result["msg"] = msg
        raise ModuleExit(self._formatted(result))

    def _formatted(self, result):
        result.setdefault("invocation", {"module_args": self.params})
        if self._warnings:
            result["warnings"] = result.get("warnings", []) + self._warnings
        # As AnsibleModule does: no_log values are masked everywhere, booleans and None are kept as they are.
        preserved = dict((key, value) for key, value in result.items() if value is None or isinstance(value, bool))
        result = remove_values(result, self.no_log_values)
        result.update(preserved)
        return result


def _checked(spec, args, name):
    """(validated params, no_log values, AnsibleModule's error message or None, every error message)."""
    validator = ArgumentSpecValidator(spec["argument_spec"], mutually_exclusive=spec["mutually_exclusive"],
                                      required_one_of=spec["required_one_of"])
    validation = validator.validate(args)
    message = None
    if validation.error_messages:
        message = validation.errors.msg
        if isinstance(validation.errors[0], UnsupportedError):
            message = "Unsupported parameters for (%s) module: %s" % (name, message)
    return validation.validated_parameters, validation._no_log_values, message, list(validation.error_messages)


def validate(spec, args, name):
    """(validated params, no_log values, error message or None) as AnsibleModule would find them.

    ``spec`` is module_spec(runner). tests/unit/plugins/plugin_utils/test_controller_module.py pins this against
    AnsibleModule itself: the no_log values come from a private attribute of ansible-core's validation result.
    """
    return _checked(spec, args, name)[:3]


def _explained(runner, message, messages):
    # A runner that always runs here (CONTROLLER_ONLY) may explain every invalid option at once
    # (``explain_invalid``: qhub_deployment names the role variable of each).
    explain = getattr(runner, "explain_invalid", None)
    return explain(messages) if explain else message


def failure_message(runner, args, message):
    """The message a task with invalid ``args`` fails with here: AnsibleModule's, or the runner's explanation."""
    return _explained(runner, message, _checked(module_spec(runner), args, "")[3])


def run_in_process(runner, args, check_mode, diff, name, masked=None, after_reads=None):
    """The result of ``runner.run`` on ``args`` (plain JSON types), validated as AnsibleModule would validate them.

    ``masked``, a set, receives every value the runner masked, for a caller whose own result holds what it returned.
    ``after_reads``, for a runner that reads before it writes (prefect_agent_config), is called between the two.
    """
    params, no_log_values, message, messages = _checked(module_spec(runner), args, name)
    module = InProcessModule(params, check_mode, diff, no_log_values)
    if after_reads is not None:
        module.after_reads = after_reads
    if masked is not None:
        # The same set: what the runner adds while it runs is in it too.
        module.no_log_values = masked
        masked.update(no_log_values)
    try:
        if message is not None:
            # As AnsibleModule fails: with the invocation (what -vvv shows), secrets masked, booleans kept.
            module.fail_json(msg=_explained(runner, message, messages))
        runner.run(module)
    except ModuleExit as done:
        return done.result
    raise RuntimeError("the %s module ended without a result" % name)
