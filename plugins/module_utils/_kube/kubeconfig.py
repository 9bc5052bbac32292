# -*- coding: utf-8 -*-
# Copyright: (c) 2026, qhub.prefect contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Kubernetes credentials from a kubeconfig or the pod's ServiceAccount, without the kubernetes client.

Importing ``kubernetes.config`` costs about 0.7 s, more than everything else a no-op run of
prefect_agent_config does. Static credentials (token, token file, client certificate, basic auth,
CA file or data) are read here instead; a kubeconfig that needs code to produce credentials (an
``exec`` plugin, an ``auth-provider``) or merges several files returns None, and the caller falls
back to the kubernetes client, which supports all of that.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import os
import shutil
import ssl
import tempfile

SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
# User keys this loader understands; any other key with a value means the kubernetes client is needed.
_STATIC_USER_KEYS = frozenset(("token", "tokenFile", "client-certificate", "client-certificate-data",
                               "client-key", "client-key-data", "username", "password"))
_STATIC_CLUSTER_KEYS = frozenset(("server", "certificate-authority", "certificate-authority-data",
                                  "insecure-skip-tls-verify", "proxy-url", "extensions"))


class KubeconfigError(Exception):
    pass


class Credentials:
    """What a request needs: the server, how to verify it, and how to authenticate.

    Embedded kubeconfig data (``*_data``) stays in memory: files written for it would outlive the
    run whenever it ends without running exit handlers, as Ansible's forked workers do.
    """

    def __init__(self, host, token=None, username=None, password=None, authorization=None, ca_file=None,
                 ca_data=None, cert_file=None, cert_data=None, key_file=None, key_data=None, verify=True,
                 proxy=None):
        self.host = host
        self.token = token
        self.username = username
        self.password = password
        self.authorization = authorization
        self.ca_file = ca_file
        self.ca_data = ca_data
        self.cert_file = cert_file
        self.cert_data = cert_data
        self.key_file = key_file
        self.key_data = key_data
        self.verify = verify
        self.proxy = proxy

    def auth_headers(self):
        if self.token:
            return {"Authorization": "Bearer " + self.token}
        if self.authorization:
            return {"Authorization": self.authorization}
        if self.username is not None:
            pair = ("%s:%s" % (self.username, self.password or "")).encode("utf-8")
            return {"Authorization": "Basic " + base64.b64encode(pair).decode("ascii")}
        return {}

    def ssl_context(self):
        """The TLS context for the API server: its CA (or the system's), and the client certificate if any."""
        context = ssl.create_default_context(
            cafile=None if self.ca_data else self.ca_file,
            cadata=self.ca_data.decode("ascii", "replace") if self.ca_data else None)
        if not self.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if self.cert_file or self.cert_data:
            # ssl loads a certificate chain only from files: embedded data lives on disk just this long.
            work = tempfile.mkdtemp(prefix="qhub-prefect-kube-")
            try:
                cert = _private_file(work, "client.crt", self.cert_data) if self.cert_data else self.cert_file
                key = _private_file(work, "client.key", self.key_data) if self.key_data else self.key_file
                context.load_cert_chain(cert, key)
            finally:
                shutil.rmtree(work, True)
        return context


def _private_file(directory, name, content):
    path = os.path.join(directory, name)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(content)
    return path


def _decoded(data, what):
    try:
        return base64.b64decode(data, validate=True)
    except (TypeError, ValueError):
        raise KubeconfigError("%s is not valid base64" % what)


def _named(entries, name, what):
    for entry in entries or []:
        if isinstance(entry, dict) and entry.get("name") == name:
            return entry.get(what) or {}
    raise KubeconfigError("%s %r not found" % (what, name))


def load_kubeconfig(path, context=None):
    """Credentials of ``context`` (default: current-context) in the kubeconfig at ``path``.

    None when the kubeconfig needs the kubernetes client (exec or auth-provider credentials,
    or a KUBECONFIG list of several files).
    """
    if os.pathsep in path:
        return None
    import yaml  # here, not at the top: ansible-test's import test has no PyYAML for modules

    try:
        with open(path) as handle:
            document = yaml.safe_load(handle) or {}
    except (IOError, OSError) as exc:
        raise KubeconfigError("cannot read it: %s" % exc)
    except yaml.YAMLError as exc:
        raise KubeconfigError("not valid YAML: %s" % exc)
    if not isinstance(document, dict):
        raise KubeconfigError("not a kubeconfig (a mapping with clusters, users and contexts)")
    context_name = context or document.get("current-context")
    if not context_name:
        raise KubeconfigError("no context given and no current-context set")
    context_entry = _named(document.get("contexts"), context_name, "context")
    cluster = _named(document.get("clusters"), context_entry.get("cluster"), "cluster")
    user = _named(document.get("users"), context_entry.get("user"), "user") if context_entry.get("user") else {}
    if any(value for key, value in user.items() if key not in _STATIC_USER_KEYS) \
            or any(value for key, value in cluster.items() if key not in _STATIC_CLUSTER_KEYS):
        return None
    if not cluster.get("server"):
        raise KubeconfigError("cluster %r has no server" % context_entry.get("cluster"))
    base = os.path.dirname(os.path.abspath(path))

    def file_of(section, key):
        # Relative paths in a kubeconfig are relative to the kubeconfig's directory, as kubectl reads them.
        return os.path.join(base, os.path.expanduser(section[key])) if section.get(key) else None

    def data_of(section, key):
        return _decoded(section[key], key) if section.get(key) else None

    token = user.get("token")
    if not token and user.get("tokenFile"):
        with open(file_of(user, "tokenFile")) as handle:
            token = handle.read().strip()
    return Credentials(cluster["server"], token=token, username=user.get("username"), password=user.get("password"),
                       ca_file=file_of(cluster, "certificate-authority"),
                       ca_data=data_of(cluster, "certificate-authority-data"),
                       cert_file=file_of(user, "client-certificate"),
                       cert_data=data_of(user, "client-certificate-data"),
                       key_file=file_of(user, "client-key"), key_data=data_of(user, "client-key-data"),
                       verify=not cluster.get("insecure-skip-tls-verify", False), proxy=cluster.get("proxy-url"))


def load_incluster():
    """The pod's ServiceAccount credentials, as the kubernetes client reads them; None outside a pod."""
    host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT")
    token_file = os.path.join(SERVICE_ACCOUNT_DIR, "token")
    if not host or not port or not os.path.exists(token_file):
        return None
    if ":" in host:
        host = "[%s]" % host
    with open(token_file) as handle:
        token = handle.read().strip()
    return Credentials("https://%s:%s" % (host, port), token=token,
                       ca_file=os.path.join(SERVICE_ACCOUNT_DIR, "ca.crt"))
