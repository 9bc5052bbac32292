# -*- coding: utf-8 -*-
# Copyright: (c) 2026, qhub.prefect contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""kube_context_info: which API server a kubeconfig context points at, read without contacting it."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.module_utils.basic import env_fallback

from ansible_collections.qhub.prefect.plugins.module_utils._kube.target import KubeTargetError, kube_target


def argument_spec():
    """The options of kube_context_info (its DOCUMENTATION says what each does)."""
    # The same options, fallbacks included, as the kubeconfig part of the kube_auth fragment.
    return dict(
        kubeconfig=dict(type="path", fallback=(env_fallback, ["K8S_AUTH_KUBECONFIG"])),
        context=dict(type="str", fallback=(env_fallback, ["K8S_AUTH_CONTEXT"])),
        host=dict(type="str", fallback=(env_fallback, ["K8S_AUTH_HOST"])),
    )


def run(module):
    params = module.params
    try:
        target = kube_target(params["kubeconfig"], params["context"], params["host"])
    except KubeTargetError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(changed=False, **target)
