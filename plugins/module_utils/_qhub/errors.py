# -*- coding: utf-8 -*-
# Copyright: (c) 2026, qhub.prefect contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one error a config value raises, and how values are shown in its message. Pure."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ConfigError(ValueError):
    """A config value at ``path`` is wrong; ``str()`` reads ``path: message``."""

    def __init__(self, path, message):
        super(ConfigError, self).__init__("%s: %s" % (path, message))
        self.path = path
        self.message = message


def type_name(value):
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string",
            list: "a list", dict: "a mapping"}.get(type(value), type(value).__name__)


def short(value, limit=60):
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "...'"
