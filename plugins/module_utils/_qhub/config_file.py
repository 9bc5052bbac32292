# -*- coding: utf-8 -*-
# Copyright: (c) 2026, qhub.prefect contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one reader of a QHub config file, for the modules and the inventory plugin alike."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible_collections.qhub.prefect.plugins.module_utils._qhub.config import load_yaml_strict


def read_qhub_config_file(path):
    """(absolute path, document) of a QHub config file; duplicate keys and YAML errors are ConfigErrors.

    IOError and UnicodeDecodeError go to the caller, which says which option named the file.
    """
    path = os.path.abspath(os.path.expanduser(path))
    with open(path, "rb") as handle:
        text = handle.read().decode("utf-8")
    return path, load_yaml_strict(text, path)
