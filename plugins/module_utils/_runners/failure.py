# -*- coding: utf-8 -*-
# Copyright: (c) 2026, qhub.prefect contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one way a module fails on an error of the collection's (QhubPrefectError and its subclasses)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


def fail_from_exception(module, exc, http=None, prefix="", report_key=True, **result):
    """End the module with ``exc``'s message, the key at fault and its public details, beside ``result``.

    ``http``: the Prefect client whose request count the result reports. ``prefix``: words before the
    message (qhub_config_info says the config is invalid). ``report_key``: False where the module has never
    returned ``key`` (prefect_work_pool), so its failed results keep their keys.
    """
    if http is not None:
        result["requests"] = http.requests
    details = exc.result_keys()
    if not report_key:
        details.pop("key", None)
    result.update(details)
    module.fail_json(msg=prefix + str(exc), **result)
