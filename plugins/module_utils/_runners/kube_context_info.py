# -*- coding: utf-8 -*-
# Copyright: (c) 2026, qhub.prefect contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""kube_context_info: which API server a kubeconfig context points at, read without contacting it."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.qhub.prefect.plugins.module_utils._kube.target import KubeTargetError, kube_target
from ansible_collections.qhub.prefect.plugins.module_utils._runners.options import kube_auth_argument_spec
from ansible_collections.qhub.prefect.plugins.module_utils._runners.failure import fail_from_exception

# The options that choose the API server, as every module that talks to Kubernetes reads them: with a token,
# host needs no kubeconfig; without one, the kubeconfig must hold the credentials (kube_token is never returned).
TARGET_OPTIONS = ("kubeconfig", "context", "host", "kube_token")


def argument_spec():
    """The options of kube_context_info (its DOCUMENTATION says what each does)."""
    return dict((name, option) for name, option in kube_auth_argument_spec().items() if name in TARGET_OPTIONS)


def run(module):
    params = module.params
    try:
        target = kube_target(params["kubeconfig"], params["context"], params["host"], token=params["kube_token"])
    except KubeTargetError as exc:
        fail_from_exception(module, exc)
    module.exit_json(changed=False, **target)
