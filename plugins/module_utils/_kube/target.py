# -*- coding: utf-8 -*-
# Copyright: (c) 2026, qhub.prefect contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which API server a kubeconfig context points at, read without contacting it.

A fleet run checks every deployment's kubeconfig and context before anything is written (a context
that does not exist fails that deployment alone), and tells two deployments on the same cluster apart
from two on different clusters by the server URL. The answer is kubeconfig.py's ``select``, the one
the client connects with: a reader of its own here had disagreed with the client's (a missing user
entry, a KUBECONFIG list, the in-cluster case), so the check could pass a deployment the client then
sent elsewhere or refused. The credentials in the kubeconfig are neither read nor returned.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.qhub.prefect.plugins.module_utils._kube.kubeconfig import KubeconfigError, select

# The same error as the client's: one message for one broken kubeconfig, whichever reads it first.
KubeTargetError = KubeconfigError


def kube_target(kubeconfig=None, context=None, host=None, environ=None, token=None, service_account_dir=None):
    """{server, context, cluster, namespace, kubeconfig} the modules would use with these options.

    The same order as the modules, because it is their code: ``host`` with ``token`` first, then the
    kubeconfig (``kubeconfig``, else ``KUBECONFIG``, which may list several files, else ~/.kube/config),
    then the pod's ServiceAccount; ``host`` without ``token`` replaces the server of whichever of those
    gives the credentials.
    """
    return select(kubeconfig, context, host, token, environ, service_account_dir).public()
