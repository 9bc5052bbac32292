# -*- coding: utf-8 -*-
# Copyright: (c) 2026, qhub.prefect contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which API server a kubeconfig context points at, read without contacting it.

A fleet run checks every deployment's kubeconfig and context before anything is written (a context
that does not exist fails that deployment alone), and tells two deployments on the same cluster apart
from two on different clusters by the server URL. Only the kubeconfig file is read; the credentials it
holds are neither read nor returned.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os


class KubeTargetError(Exception):
    pass


def _entries(documents, section):
    """Named entries of ``section`` across merged kubeconfig files; the first file to name one wins (kubectl)."""
    found = {}
    for document in documents:
        for entry in document.get(section) or []:
            if isinstance(entry, dict) and entry.get("name") is not None and entry["name"] not in found:
                found[entry["name"]] = entry.get(section[:-1]) or {}
    return found


def _load(path):
    import yaml  # late: ansible-test's import test has no PyYAML for modules

    try:
        with open(path) as handle:
            document = yaml.safe_load(handle) or {}
    except (IOError, OSError) as exc:
        raise KubeTargetError("cannot read the kubeconfig %s: %s" % (path, exc))
    except yaml.YAMLError as exc:
        raise KubeTargetError("the kubeconfig %s is not valid YAML: %s" % (path, exc))
    if not isinstance(document, dict):
        raise KubeTargetError("the kubeconfig %s is not a mapping with clusters, users and contexts" % path)
    return document


def kube_target(kubeconfig=None, context=None, host=None, environ=None):
    """{server, context, cluster, namespace, kubeconfig} the modules would use with these options.

    The same order as the modules: ``host`` first, then the kubeconfig (``kubeconfig``, else
    ``KUBECONFIG``, which may list several files, else ~/.kube/config), then the pod's ServiceAccount.
    """
    environ = os.environ if environ is None else environ
    if host:
        return {"server": host.rstrip("/"), "context": None, "cluster": None, "namespace": None, "kubeconfig": None}
    listed = kubeconfig or environ.get("KUBECONFIG") or ""
    paths = [path for path in listed.split(os.pathsep) if path] or [
        os.path.join(environ.get("HOME") or os.path.expanduser("~"), ".kube", "config")]
    existing = [path for path in paths if os.path.exists(path)]
    if not existing:
        if not listed and environ.get("KUBERNETES_SERVICE_HOST"):
            return {"server": "https://%s:%s" % (environ["KUBERNETES_SERVICE_HOST"],
                                                 environ.get("KUBERNETES_SERVICE_PORT", "443")),
                    "context": None, "cluster": None, "namespace": None, "kubeconfig": None}
        raise KubeTargetError("the kubeconfig %s does not exist" % " nor ".join(paths))
    documents = [_load(path) for path in existing]
    shown = os.pathsep.join(existing)
    name = context or next((doc.get("current-context") for doc in documents if doc.get("current-context")), None)
    contexts = _entries(documents, "contexts")
    if not name:
        raise KubeTargetError("the kubeconfig %s sets no current-context and no context was given (contexts in "
                              "it: %s)" % (shown, ", ".join(sorted(contexts)) or "none"))
    if name not in contexts:
        raise KubeTargetError("the context %r does not exist in the kubeconfig %s (contexts in it: %s)"
                              % (name, shown, ", ".join(sorted(contexts)) or "none"))
    cluster_name = contexts[name].get("cluster")
    cluster = _entries(documents, "clusters").get(cluster_name)
    if cluster is None or not cluster.get("server"):
        problem = "has no server" if cluster is not None else "does not exist"
        raise KubeTargetError("the context %r of the kubeconfig %s names the cluster %r, which %s"
                              % (name, shown, cluster_name, problem))
    return {"server": str(cluster["server"]).rstrip("/"), "context": name, "cluster": cluster_name,
            "namespace": contexts[name].get("namespace"), "kubeconfig": shown}
