# -*- coding: utf-8 -*-
# Copyright: (c) 2026, qhub.prefect contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""qhub_config_info: read a QHub config file (or take a mapping) and return its public settings."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible_collections.qhub.prefect.plugins.module_utils._qhub.config import (
    config_secret_values, parse_qhub_config, prefect_block,
)
from ansible_collections.qhub.prefect.plugins.module_utils._qhub.credentials import candidate_secrets
from ansible_collections.qhub.prefect.plugins.module_utils._qhub.errors import ConfigError
from ansible_collections.qhub.prefect.plugins.module_utils._qhub.overrides import public_overrides
from ansible_collections.qhub.prefect.plugins.module_utils._qhub.config_file import read_qhub_config_file
from ansible_collections.qhub.prefect.plugins.module_utils._runners.options import mask_values

from ansible_collections.qhub.prefect.plugins.module_utils._runners.failure import fail_from_exception
REQUIRED_ONE_OF = [("path", "config")]
MUTUALLY_EXCLUSIVE = [("path", "config")]
# The config is a controller file (or an extra var): its action plugin never launches the module elsewhere.
CONTROLLER_ONLY = True


def argument_spec():
    """The options of qhub_config_info (its DOCUMENTATION says what each does)."""
    return dict(
        path=dict(type="path"),
        config=dict(type="dict"),
        generation=dict(type="str", default="auto", choices=["auto", "prefect1", "prefect3"]),
        require_token=dict(type="bool", default=True),
        api_url=dict(type="str"),
        instance=dict(type="str"),
    )


def run(module):
    params = module.params
    result = {"changed": False}
    doc = params["config"]
    # The api_url option is this task's argument, shown at -vvv: a user:password in it is masked, from the start.
    mask_values(module, candidate_secrets({}, api_url=params["api_url"]))
    if doc is not None:
        # So is the mapping, with every candidate secret it holds or refers to, winner or not, valid or not.
        # From a file nothing returned holds a secret, and none is masked: Ansible masks no_log values as
        # substrings of every returned string, and a short token would garble the returned path.
        mask_values(module, config_secret_values(doc, os.environ) | candidate_secrets(os.environ))
    try:
        if params["path"]:
            try:
                result["path"], doc = read_qhub_config_file(params["path"])
            except (IOError, OSError, UnicodeDecodeError) as exc:
                path = os.path.abspath(os.path.expanduser(params["path"]))
                module.fail_json(msg="cannot read the QHub config %s: %s" % (path, exc), path=path, **result)
        config = parse_qhub_config(doc, os.environ, params["generation"], params["require_token"],
                                   api_url=params["api_url"] or None, instance=params["instance"] or None)
    except ConfigError as exc:
        fail_from_exception(module, exc, prefix="invalid QHub config: ", **result)
    if params["config"] is not None:
        mask_values(module, list(config.secret_env.values()) + [config.token])
    public = config.public()
    # The role passes these on as plain options: without secretEnvVars, and without the envVars that are
    # QHUB_SECRET_ references (secrets too, named in secret_env_names; the modules read them from the config).
    public["overrides"] = public_overrides(prefect_block(doc).get("overrides"))
    result["namespace"] = public.pop("namespace")
    result["prefect"] = public
    module.exit_json(**result)
