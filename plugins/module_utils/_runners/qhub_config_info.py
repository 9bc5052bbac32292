# -*- coding: utf-8 -*-
# Copyright: (c) 2026, qhub.prefect contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""qhub_config_info: read a QHub config file (or take a mapping) and return its public settings."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible_collections.qhub.prefect.plugins.module_utils._qhub.config import parse_qhub_config, prefect_block
from ansible_collections.qhub.prefect.plugins.module_utils._qhub.model import ConfigError
from ansible_collections.qhub.prefect.plugins.module_utils._runners.options import read_qhub_config_file

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
        module.fail_json(msg="invalid QHub config: %s" % exc, key=exc.path, **result)
    if params["config"] is not None:
        # The mapping is this task's argument, shown (verbose) as the invocation: its secrets are masked there.
        # From a file nothing returned holds a secret, and none is masked: Ansible masks no_log values as
        # substrings of every returned string, and a short token would garble the returned path.
        module.no_log_values.update(value for value in list(config.secret_env.values()) + [config.token] if value)
    public = config.public()
    overrides = dict(prefect_block(doc).get("overrides") or {})
    overrides.pop("secretEnvVars", None)
    public["overrides"] = overrides
    result["namespace"] = public.pop("namespace")
    result["prefect"] = public
    module.exit_json(**result)
