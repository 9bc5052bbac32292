# -*- coding: utf-8 -*-
# Copyright: (c) 2026, qhub.prefect contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Argument spec and client construction shared by the modules that talk to Kubernetes."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.module_utils.basic import env_fallback, missing_required_lib

from ansible_collections.qhub.prefect.plugins.module_utils._kube import (
    HAS_URLLIB3, URLLIB3_IMPORT_ERROR, KubeClient, KubeError,
)


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
    if not HAS_URLLIB3:
        # urllib3 comes with the kubernetes client, the collection's documented requirement.
        module.fail_json(msg=missing_required_lib("kubernetes"), exception=str(URLLIB3_IMPORT_ERROR))
    params = module.params
    try:
        return KubeClient(kubeconfig=params["kubeconfig"], context=params["context"], host=params["host"],
                          token=params["kube_token"], ca_cert=params["ca_cert"],
                          validate_certs=params["validate_certs"])
    except KubeError as exc:
        module.fail_json(msg=str(exc))
