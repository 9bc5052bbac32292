# -*- coding: utf-8 -*-
# Copyright: (c) 2026, qhub.prefect contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Argument spec and client construction shared by the modules that talk to a Prefect API.

Matches the ``qhub.prefect.prefect_api`` doc fragment.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible.module_utils.basic import env_fallback

from ansible_collections.qhub.prefect.plugins.module_utils._prefect_http import (
    PREFECT1_API, PREFECT3_API, PrefectApiError, PrefectHttpClient,
)
from ansible_collections.qhub.prefect.plugins.module_utils._qhub_config import ConfigError, resolve_secret_ref

# The same order as prefect_agent_config, so the pool and the worker never use different keys.
API_KEY_ENV = ("QHUB_SECRET_PREFECT_TOKEN", "TF_VAR_prefect_token", "PREFECT_API_KEY")
DEFAULT_TIMEOUT = 30
DEFAULT_RETRIES = 3


def prefect_api_argument_spec(api_url_default=None, api_url_env=("PREFECT_API_URL",)):
    api_url = dict(type="str")
    if api_url_env:
        api_url["fallback"] = (env_fallback, list(api_url_env))
    if api_url_default is not None:
        api_url["default"] = api_url_default
    return dict(
        api_url=api_url,
        api_key=dict(type="str", no_log=True, fallback=(env_fallback, list(API_KEY_ENV))),
        api_auth_string=dict(type="str", no_log=True, fallback=(env_fallback, ["PREFECT_API_AUTH_STRING"])),
        validate_certs=dict(type="bool", default=True),
        timeout=dict(type="int", default=DEFAULT_TIMEOUT),
        retries=dict(type="int", default=DEFAULT_RETRIES),
    )


def resolved_api_key(module):
    """api_key, with QHub's ``QHUB_SECRET_X`` convention applied (the value of the environment variable X)."""
    key = module.params.get("api_key")
    if key:
        try:
            key = resolve_secret_ref(key, "api_key", os.environ)
        except ConfigError as exc:
            module.fail_json(msg=str(exc))
        module.no_log_values.add(key)
    return key or None


def http_client(module, generation="prefect3", timeout=None):
    """A PrefectHttpClient from the module's api options; fails the module on a bad option."""
    params = module.params
    api = PREFECT1_API if generation == "prefect1" else PREFECT3_API
    auth_string = params.get("api_auth_string") if generation != "prefect1" else None
    try:
        return PrefectHttpClient(params.get("api_url"), api_key=resolved_api_key(module), auth_string=auth_string,
                                 timeout=timeout or params.get("timeout") or DEFAULT_TIMEOUT,
                                 retries=params.get("retries"), validate_certs=params.get("validate_certs"), api=api)
    except PrefectApiError as exc:
        module.fail_json(msg=str(exc), changed=False)


def fail_api(module, exc, http=None, **result):
    """End the module on a PrefectApiError, with the status and the number of requests made."""
    result.setdefault("changed", False)
    if http is not None:
        result["requests"] = http.requests
    if getattr(exc, "status", None) is not None:
        result["status"] = exc.status
    module.fail_json(msg=str(exc), **result)
