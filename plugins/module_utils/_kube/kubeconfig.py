# -*- coding: utf-8 -*-
# Copyright: (c) 2026, qhub.prefect contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which API server the Kubernetes options select, and its credentials, without the kubernetes client.

The one kubeconfig reader: the fleet check (target.py, kube_context_info) and the client (client.py)
both call ``select``, so they agree on which context, cluster and server a deployment uses and refuse
the same kubeconfigs with the same message. A KUBECONFIG list of several files is merged here, as
kubectl merges it.

Importing ``kubernetes.config`` costs about 0.7 s, more than everything else a no-op run of
prefect_agent_config does. Static credentials (token, token file, client certificate, basic auth,
CA file or data) are read here instead; only a context whose credentials need code (an ``exec``
plugin, an ``auth-provider``) is handed to the kubernetes client, as a kubeconfig of that one context.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import os
import shutil
import ssl
import tempfile

from ansible_collections.qhub.prefect.plugins.module_utils._common.errors import QhubPrefectError

SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
# User keys this loader understands; any other key with a value means the kubernetes client is needed.
_STATIC_USER_KEYS = frozenset(("token", "tokenFile", "client-certificate", "client-certificate-data",
                               "client-key", "client-key-data", "username", "password"))
_STATIC_CLUSTER_KEYS = frozenset(("server", "certificate-authority", "certificate-authority-data",
                                  "insecure-skip-tls-verify", "proxy-url", "extensions"))


class KubeconfigError(QhubPrefectError):
    """The kubeconfig, or the options naming the cluster, do not give a usable target."""


class KubeCredentials:
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


class Target:
    """The API server the options select, and where its credentials are: the one answer for every reader.

    kube_context_info (the fleet check, through target.py) reports it without reading any credential;
    KubeClient takes its credentials from it. Both go through ``select``, so a deployment the check
    passes is one the client connects to the same server for, and a kubeconfig one of them refuses
    the other refuses with the same message.
    """

    def __init__(self, server, how, context=None, cluster_name=None, namespace=None, kubeconfig=None,
                 cluster=None, user_name=None, user=None, user_base=None):
        self.server = server
        # "host" (host and token given), "kubeconfig" or "in-cluster".
        self.how = how
        self.context = context
        self.cluster_name = cluster_name
        self.namespace = namespace
        self.kubeconfig = kubeconfig
        self.cluster = cluster or {}
        self.user_name = user_name
        self.user = user or {}
        # The directory of the file the user entry came from: an exec plugin's relative command runs from there.
        self.user_base = user_base

    def public(self):
        """What kube_context_info returns: no credential."""
        return {"server": self.server, "context": self.context, "cluster": self.cluster_name,
                "namespace": self.namespace, "kubeconfig": self.kubeconfig}

    def needs_client(self):
        """True when the credentials take code to produce (an exec plugin, an auth-provider): the kubernetes client."""
        return any(value for key, value in self.user.items() if key not in _STATIC_USER_KEYS) \
            or any(value for key, value in self.cluster.items() if key not in _STATIC_CLUSTER_KEYS)

    def single_context_config(self):
        """A kubeconfig holding only the selected context, for the kubernetes client: it cannot pick another."""
        context = {"cluster": self.cluster_name}
        if self.user_name is not None:
            context["user"] = self.user_name
        return {"apiVersion": "v1", "kind": "Config", "current-context": self.context,
                "clusters": [{"name": self.cluster_name, "cluster": self.cluster}],
                "users": [{"name": self.user_name, "user": self.user}] if self.user_name is not None else [],
                "contexts": [{"name": self.context, "context": context}]}


def _load(path):
    import yaml  # here, not at the top: ansible-test's import test has no PyYAML for modules

    # libyaml's parser when PyYAML has it: the same documents, in a tenth of the time.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        with open(path) as handle:
            document = yaml.load(handle, Loader=loader) or {}  # noqa: S506 - a safe loader
    except (IOError, OSError) as exc:
        raise KubeconfigError("cannot read the kubeconfig %s: %s" % (path, exc))
    except yaml.YAMLError as exc:
        raise KubeconfigError("the kubeconfig %s is not valid YAML: %s" % (path, exc))
    if not isinstance(document, dict):
        raise KubeconfigError("the kubeconfig %s is not a mapping with clusters, users and contexts" % path)
    return document


def _entries(documents, section):
    """{name: (entry, file)} of ``section`` across merged kubeconfig files; the first file to name one wins.

    That is kubectl's rule for a KUBECONFIG list, and the file is kept because relative paths in an entry
    are relative to the file that holds it.
    """
    found = {}
    for path, document in documents:
        for entry in document.get(section) or []:
            if isinstance(entry, dict) and entry.get("name") is not None and entry["name"] not in found:
                value = entry.get(section[:-1])
                found[entry["name"]] = (value if isinstance(value, dict) else {}, path)
    return found


def _absolute(section, keys, path):
    """``section`` with the files it names made absolute against the directory of the kubeconfig holding it."""
    base = os.path.dirname(os.path.abspath(path))
    section = dict(section)
    for key in keys:
        if section.get(key):
            section[key] = os.path.join(base, os.path.expanduser(str(section[key])))
    return section


def _incluster_target(environ, service_account_dir):
    """The pod's API server, when everything the kubernetes client's in-cluster loader needs is there."""
    host, port = environ.get("KUBERNETES_SERVICE_HOST"), environ.get("KUBERNETES_SERVICE_PORT")
    files = [os.path.join(service_account_dir, name) for name in ("token", "ca.crt")]
    if not host or not port or not all(os.path.isfile(path) for path in files):
        return None
    if ":" in host:
        host = "[%s]" % host
    return Target("https://%s:%s" % (host, port), "in-cluster")


def select(kubeconfig=None, context=None, host=None, token=None, environ=None, service_account_dir=None):
    """The Target of these options, read without contacting the server; KubeconfigError names what is wrong.

    In order: ``host`` with ``token`` (no kubeconfig read); else the kubeconfig (``kubeconfig``, else
    ``KUBECONFIG``; either may list several files, merged as kubectl merges them, and files of a list that
    do not exist are skipped), else ~/.kube/config, else the pod's ServiceAccount. ``host`` without a token
    takes the credentials from there and replaces only the server.
    """
    environ = os.environ if environ is None else environ
    service_account_dir = service_account_dir or SERVICE_ACCOUNT_DIR
    if host and token:
        return Target(host.rstrip("/"), "host")
    listed = kubeconfig or environ.get("KUBECONFIG") or ""
    default = os.path.join(environ.get("HOME") or os.path.expanduser("~"), ".kube", "config")
    paths = [os.path.expanduser(path) for path in listed.split(os.pathsep) if path] or [default]
    existing = [path for path in paths if os.path.exists(path)]
    if not existing:
        target = None if listed else _incluster_target(environ, service_account_dir)
        if target is None:
            where = "" if listed else (
                ", KUBECONFIG is not set and this is not a pod with a ServiceAccount (KUBERNETES_SERVICE_HOST, "
                "KUBERNETES_SERVICE_PORT, and token and ca.crt in %s)" % service_account_dir)
            raise KubeconfigError("the kubeconfig %s does not exist%s" % (" nor ".join(paths), where))
    else:
        target = _kubeconfig_target([(path, _load(path)) for path in existing], context)
    if host:
        target.server = host.rstrip("/")
    return target


def _kubeconfig_target(documents, context):
    shown = os.pathsep.join(path for path, dummy in documents)
    # current-context too comes from the first file that sets one, as kubectl reads a list.
    name = context or next((doc.get("current-context") for dummy, doc in documents if doc.get("current-context")),
                           None)
    contexts = _entries(documents, "contexts")
    if not name:
        raise KubeconfigError("the kubeconfig %s sets no current-context and no context was given (contexts in "
                              "it: %s)" % (shown, ", ".join(sorted(contexts)) or "none"))
    if name not in contexts:
        raise KubeconfigError("the context %r does not exist in the kubeconfig %s (contexts in it: %s)"
                              % (name, shown, ", ".join(sorted(contexts)) or "none"))
    context_entry = contexts[name][0]
    cluster_name = context_entry.get("cluster")
    cluster, cluster_file = _entries(documents, "clusters").get(cluster_name, (None, None))
    if cluster is None or not cluster.get("server"):
        problem = "has no server" if cluster is not None else "does not exist"
        raise KubeconfigError("the context %r of the kubeconfig %s names the cluster %r, which %s"
                              % (name, shown, cluster_name, problem))
    user_name, user, user_file = context_entry.get("user"), {}, None
    if user_name:
        # kubectl refuses a context whose user entry is missing; connecting without credentials instead
        # (the kubernetes client's choice) would only fail later, as Forbidden.
        user, user_file = _entries(documents, "users").get(user_name, (None, None))
        if user is None:
            raise KubeconfigError("the context %r of the kubeconfig %s names the user %r, which does not exist"
                                  % (name, shown, user_name))
    if user_file:
        user = _absolute(user, ("tokenFile", "client-certificate", "client-key"), user_file)
    return Target(str(cluster["server"]).rstrip("/"), "kubeconfig", context=name, cluster_name=cluster_name,
                  namespace=context_entry.get("namespace"), kubeconfig=shown,
                  cluster=_absolute(cluster, ("certificate-authority",), cluster_file), user_name=user_name or None,
                  user=user, user_base=os.path.dirname(os.path.abspath(user_file or cluster_file)))


def static_credentials(target, service_account_dir=None):
    """The KubeCredentials of a Target, or None when they take code (``target.needs_client()``)."""
    if target.how == "host":
        return KubeCredentials(target.server)
    if target.how == "in-cluster":
        return _incluster_credentials(target, service_account_dir or SERVICE_ACCOUNT_DIR)
    if target.needs_client():
        return None
    cluster, user = target.cluster, target.user

    def data_of(section, key):
        return _decoded(section[key], "%s of the kubeconfig %s" % (key, target.kubeconfig)) if section.get(key) \
            else None

    token = user.get("token")
    if not token and user.get("tokenFile"):
        try:
            with open(user["tokenFile"]) as handle:
                token = handle.read().strip()
        except (IOError, OSError) as exc:
            raise KubeconfigError("cannot read the tokenFile of the user %r in the kubeconfig %s: %s"
                                  % (target.user_name, target.kubeconfig, exc))
    return KubeCredentials(target.server, token=token, username=user.get("username"), password=user.get("password"),
                           ca_file=cluster.get("certificate-authority"),
                           ca_data=data_of(cluster, "certificate-authority-data"),
                           cert_file=user.get("client-certificate"), cert_data=data_of(user, "client-certificate-data"),
                           key_file=user.get("client-key"), key_data=data_of(user, "client-key-data"),
                           verify=not cluster.get("insecure-skip-tls-verify", False), proxy=cluster.get("proxy-url"))


def _incluster_credentials(target, service_account_dir):
    """The pod's ServiceAccount credentials, as the kubernetes client reads them."""
    try:
        with open(os.path.join(service_account_dir, "token")) as handle:
            token = handle.read().strip()
    except (IOError, OSError) as exc:
        raise KubeconfigError("cannot read the pod's ServiceAccount token: %s" % exc)
    return KubeCredentials(target.server, token=token, ca_file=os.path.join(service_account_dir, "ca.crt"))
