# -*- coding: utf-8 -*-
# Copyright: (c) 2026, qhub.prefect contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # Same option names and environment variables as kubernetes.core, so AWX credentials carry over.
    DOCUMENTATION = r'''
options:
  kubeconfig:
    description:
      - Path to a kubeconfig file.
      - Without it, C(KUBECONFIG) or C(~/.kube/config) is used, and inside a pod the in-cluster credentials.
      - Can also be set with the environment variable E(K8S_AUTH_KUBECONFIG).
    type: path
  context:
    description:
      - The kubeconfig context to use. Can also be set with E(K8S_AUTH_CONTEXT).
    type: str
  host:
    description:
      - URL of the Kubernetes API server, overriding the kubeconfig. Can also be set with E(K8S_AUTH_HOST).
    type: str
  kube_token:
    description:
      - Bearer token for the Kubernetes API server, overriding the kubeconfig. Can also be set with E(K8S_AUTH_API_KEY).
    type: str
  ca_cert:
    description:
      - CA bundle to verify the API server's certificate with. Can also be set with E(K8S_AUTH_SSL_CA_CERT).
    type: path
  validate_certs:
    description:
      - Whether to verify the API server's TLS certificate. Can also be set with E(K8S_AUTH_VERIFY_SSL).
      - Defaults to what the kubeconfig says.
    type: bool
requirements:
  - kubernetes >= 24.2.0 (the Python client, used only to read credentials)
'''
