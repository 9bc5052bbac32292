# -*- coding: utf-8 -*-
# Copyright: (c) 2026, qhub.prefect contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one error a config value raises, and how its messages name a value's type. Pure."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.qhub.prefect.plugins.module_utils._common.errors import QhubPrefectError


class ConfigError(QhubPrefectError, ValueError):
    """A config value at ``path`` is wrong; ``str()`` reads ``path: message``."""

    def __init__(self, path, message):
        super(ConfigError, self).__init__(message, path=path, text="%s: %s" % (path, message))


def type_name(value):
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string",
            list: "a list", dict: "a mapping"}.get(type(value), type(value).__name__)
