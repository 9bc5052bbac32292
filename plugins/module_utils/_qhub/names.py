# -*- coding: utf-8 -*-
# Copyright: (c) 2026, qhub.prefect contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Kubernetes names a QHub config or a module option gives: namespaces, object names, label values. Pure."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.qhub.prefect.plugins.module_utils._common.errors import short
from ansible_collections.qhub.prefect.plugins.module_utils._qhub.errors import ConfigError
from ansible_collections.qhub.prefect.plugins.module_utils._qhub.images import PREFECT1
from ansible_collections.qhub.prefect.plugins.module_utils._qhub.job_options import DNS_LABEL

DEFAULT_NAMESPACE = "dev"
_LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")


def validate_namespace(value, path="namespace"):
    if not isinstance(value, str) or len(value) > 63 or not DNS_LABEL.match(value):
        raise ConfigError(path, "%s is not a valid Kubernetes namespace (a DNS label: lower-case letters, "
                          "digits and '-', at most 63 characters)" % short(value))
    return value


def default_object_name(generation):
    """The objects' name when none is given. roles/prefect_agent/vars/main.yml computes the same default
    (__qhub_prefect_object_name), since the role's work pool and worker status tasks need the name too."""
    return "prefect-agent" if generation == PREFECT1 else "prefect-worker"


def validate_object_name(value, path="name"):
    """The name of the objects an agent or worker owns. A DNS label, not just any object name (a DNS
    subdomain): it is also their app.kubernetes.io/instance label value, at most 63 characters."""
    if not isinstance(value, str) or len(value) > 63 or not DNS_LABEL.match(value):
        raise ConfigError(path, "%s is not a valid name for the agent's or worker's objects (a DNS label: "
                          "lower-case letters, digits and '-', at most 63 characters)" % short(value))
    return value


def validate_label_value(value, path):
    """A Kubernetes label value: at most 63 characters, alphanumerics with -, _ and . inside."""
    if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
        raise ConfigError(path, "%s is not a valid Kubernetes label value (at most 63 letters, digits, '-', '_' "
                          "and '.', starting and ending with a letter or digit)" % short(value))
    return value
