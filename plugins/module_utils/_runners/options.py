# -*- coding: utf-8 -*-
# Copyright: (c) 2026, qhub.prefect contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Options and clients shared by the module runners: the Kubernetes connection and the Prefect API.

Each group matches a doc fragment (``qhub.prefect.kube_auth``, ``qhub.prefect.prefect_api``).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible.module_utils.basic import env_fallback

from ansible_collections.qhub.prefect.plugins.module_utils._kube.client import KubeClient, KubeError
from ansible_collections.qhub.prefect.plugins.module_utils._qhub.credentials import (
    candidate_secrets, resolve as resolve_credentials,
)
from ansible_collections.qhub.prefect.plugins.module_utils._prefect.http import (
    PREFECT1_API, PREFECT3_API, PrefectApiError, PrefectHttpClient,
)
from ansible_collections.qhub.prefect.plugins.module_utils._qhub.config import (
    config_secret_values, config_secrets,
)
from ansible_collections.qhub.prefect.plugins.module_utils._qhub.config_file import read_qhub_config_file
from ansible_collections.qhub.prefect.plugins.module_utils._qhub.errors import ConfigError
from ansible_collections.qhub.prefect.plugins.module_utils._runners.failure import fail_from_exception


def module_spec(runner):
    """AnsibleModule's keyword arguments for a runner: the one place a module's options and constraints are read.

    A runner (a file in this directory) has ``argument_spec()`` and ``run(module)``, and may have
    ``MUTUALLY_EXCLUSIVE`` and ``REQUIRED_ONE_OF``. The module's ``main()`` and the controller fast path
    (plugin_utils/_controller_module.py) both build from this, so they validate alike.
    """
    return dict(argument_spec=runner.argument_spec(), mutually_exclusive=getattr(runner, "MUTUALLY_EXCLUSIVE", None),
                required_one_of=getattr(runner, "REQUIRED_ONE_OF", None), supports_check_mode=True)


def kube_auth_argument_spec():
    return dict(
        kubeconfig=dict(type="path", fallback=(env_fallback, ["K8S_AUTH_KUBECONFIG"])),
        context=dict(type="str", fallback=(env_fallback, ["K8S_AUTH_CONTEXT"])),
        host=dict(type="str", fallback=(env_fallback, ["K8S_AUTH_HOST"])),
        kube_token=dict(type="str", no_log=True, fallback=(env_fallback, ["K8S_AUTH_API_KEY"])),
        ca_cert=dict(type="path", fallback=(env_fallback, ["K8S_AUTH_SSL_CA_CERT"])),
        validate_certs=dict(type="bool", fallback=(env_fallback, ["K8S_AUTH_VERIFY_SSL"])),
    )


def kube_client(module):
    params = module.params
    try:
        return KubeClient(kubeconfig=params["kubeconfig"], context=params["context"], host=params["host"],
                          token=params["kube_token"], ca_cert=params["ca_cert"],
                          validate_certs=params["validate_certs"])
    except KubeError as exc:
        fail_from_exception(module, exc)


DEFAULT_TIMEOUT = 30
DEFAULT_RETRIES = 3


def prefect_api_argument_spec():
    # No env fallbacks here: the environment is read by _credentials, the one rule every module and
    # qhub_config_info share (Prefect 1 and 2/3 read different URL variables, empty values are errors).
    return dict(
        api_url=dict(type="str"),
        api_key=dict(type="str", no_log=True),
        api_auth_string=dict(type="str", no_log=True),
        validate_certs=dict(type="bool", default=True),
        timeout=dict(type="int", default=DEFAULT_TIMEOUT),
        retries=dict(type="int", default=DEFAULT_RETRIES),
        qhub_config=dict(type="raw"),
    )


def mask_values(module, values):
    """Add ``values`` to the module's no_log values; never a blank one, which would mask every space."""
    module.no_log_values.update(value for value in values if isinstance(value, str) and value.strip())


def task_secret_values(params, environ):
    """Every secret value a task's options and the environment hold or refer to, whichever the rule would pick.

    The candidates of the credential rule (credentials.candidate_secrets), and what a ``qhub_config``
    mapping or an ``overrides`` option holds (config_secret_values): all of them are the task's arguments
    or may be echoed, not only the values the run ends up using.
    """
    values = set(candidate_secrets(environ, api_url=params.get("api_url"), api_key=params.get("api_key"),
                                   api_auth_string=params.get("api_auth_string")))
    if isinstance(params.get("qhub_config"), dict):
        values |= config_secret_values(params["qhub_config"], environ)
    if isinstance(params.get("overrides"), dict):
        values |= config_secret_values({"prefect": {"overrides": params["overrides"]}}, environ)
    return values


def task_config_secrets(module, environ):
    """(secret env, prefect.token) of the task's ``qhub_config``, or ({}, None) without one.

    The module reads the config itself, so no secret value ever passes through a task argument, a
    registered result or a variable: qhub_config_info returns none, and the role hands the modules the
    config's path (or the mapping it was given), never a value read from it. Every candidate secret
    (task_secret_values) is masked first, so none shows even when the config turns out to be invalid.
    """
    mask_values(module, task_secret_values(module.params, environ))
    source = module.params.get("qhub_config")
    if source is None:
        return {}, None
    if isinstance(source, dict):
        doc = source
    elif isinstance(source, str) and source.strip():
        try:
            dummy, doc = read_qhub_config_file(source)
        except (IOError, OSError, UnicodeDecodeError) as exc:
            raise ConfigError("qhub_config", "cannot read the QHub config %s: %s" % (source, exc))
    else:
        raise ConfigError("qhub_config", "give the path of a QHub config file or the config as a mapping")
    mask_values(module, config_secret_values(doc, environ))
    secret_env, config_token = config_secrets(doc, environ)
    mask_values(module, secret_env.values())
    return secret_env, config_token


def module_credentials(module, generation="prefect3", environ=None):
    """The run's credentials by the one rule; fails the module naming the option or variable at fault."""
    params = module.params
    environ = os.environ if environ is None else environ
    try:
        dummy, config_token = task_config_secrets(module, environ)
        credentials = resolve_credentials(generation, environ, api_url=params.get("api_url"),
                                          api_key=params.get("api_key"), api_auth_string=params.get("api_auth_string"),
                                          config_token=config_token)
    except ConfigError as exc:
        fail_from_exception(module, exc, changed=False)
    mask_values(module, (credentials.token, credentials.auth_string))
    if generation != "prefect1" and not credentials.api_url:
        module.fail_json(msg="api_url: no Prefect API URL: set api_url or PREFECT_API_URL", key="api_url",
                         changed=False)
    return credentials


def http_client(module, generation="prefect3", timeout=None):
    """A PrefectHttpClient from the module's api options; fails the module on a bad option."""
    params = module.params
    api = PREFECT1_API if generation == "prefect1" else PREFECT3_API
    credentials = module_credentials(module, generation)
    try:
        return PrefectHttpClient(credentials.api_url, api_key=credentials.token, auth_string=credentials.auth_string,
                                 timeout=timeout or params.get("timeout") or DEFAULT_TIMEOUT,
                                 retries=params.get("retries"), validate_certs=params.get("validate_certs"), api=api)
    except PrefectApiError as exc:
        fail_from_exception(module, exc, changed=False)
