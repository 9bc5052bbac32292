# -*- coding: utf-8 -*-
# Copyright: (c) 2026, qhub.prefect contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""qhub_config_info: read a QHub config file (or take a mapping) and return its public settings."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible_collections.qhub.prefect.plugins.module_utils._qhub.config import load_yaml_strict, parse_qhub_config
from ansible_collections.qhub.prefect.plugins.module_utils._qhub.model import ConfigError

CONFIG_INFO_ARGUMENT_SPEC = dict(
    path=dict(type="path"),
    config=dict(type="dict"),
    generation=dict(type="str", default="auto", choices=["auto", "prefect1", "prefect3"]),
    require_token=dict(type="bool", default=True),
    api_url=dict(type="str"),
    instance=dict(type="str"),
)
CONFIG_INFO_REQUIRED_ONE_OF = [("path", "config")]
CONFIG_INFO_MUTUALLY_EXCLUSIVE = [("path", "config")]


def config_info(params, environ):
    """The result of qhub_config_info for validated ``params``: the public settings, or failed with a msg."""
    result = {"changed": False}
    doc = params["config"]
    try:
        if params["path"]:
            path = os.path.abspath(os.path.expanduser(params["path"]))
            result["path"] = path
            try:
                with open(path, "rb") as handle:
                    text = handle.read().decode("utf-8")
            except (IOError, OSError, UnicodeDecodeError) as exc:
                return dict(result, failed=True, msg="cannot read the QHub config %s: %s" % (path, exc))
            doc = load_yaml_strict(text, path)
        config = parse_qhub_config(doc, environ, params["generation"], params["require_token"],
                                   api_url=params["api_url"] or None, instance=params["instance"] or None)
    except ConfigError as exc:
        return dict(result, failed=True, msg="invalid QHub config: %s" % exc, key=exc.path)
    # No secret value is returned, so none is added to no_log_values: Ansible masks those as
    # substrings of every returned string, and a short token would garble the returned path.
    public = config.public()
    overrides = dict((doc.get("prefect") or {}).get("overrides") or {})
    overrides.pop("secretEnvVars", None)
    public["overrides"] = overrides
    result["namespace"] = public.pop("namespace")
    result["prefect"] = public
    return result
