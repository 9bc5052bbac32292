# -*- coding: utf-8 -*-
# Copyright: (c) 2026, qhub.prefect contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Authenticated JSON requests to one Kubernetes API server, over the standard library's http.client.

Requests go to fixed API paths. That skips API discovery, which costs kubernetes.core about 2 s a
task, and keeps us independent of the client's generated API, which changed shape between client
versions. Credentials come from kubeconfig.py; the kubernetes client is imported only for kubeconfigs
that need it (exec plugins, auth providers). http.client rather than urllib3: what this client needs of a
connection pool (keep-alive, a few connections for the run lock's renewal thread, a proxy tunnel) is a few lines,
and urllib3's import was a fifth of a no-op run's import time.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import http.client
import json
import select
import ssl
import threading
from urllib.parse import urlsplit

from ansible_collections.qhub.prefect.plugins.module_utils._common.errors import QhubPrefectError
from ansible_collections.qhub.prefect.plugins.module_utils._kube.kubeconfig import (
    KubeCredentials, KubeconfigError, select as select_target, static_credentials,
)

CONNECT_TIMEOUT = 10
# Idle connections kept: the run and the run lock's renewal thread each hold one at most.
IDLE_CONNECTIONS = 4
# Requests that may be sent again when a kept-alive connection turns out closed (apply is a PATCH).
IDEMPOTENT_METHODS = frozenset(("GET", "HEAD", "PUT", "PATCH", "DELETE"))


class KubeError(QhubPrefectError):
    """A request to the Kubernetes API failed, or the cluster is not as the run needs it."""

    def __init__(self, message, status=None, body=None):
        super(KubeError, self).__init__(message)
        self.status = status
        self.body = body or {}


class KubeClient:
    """Authenticated JSON requests to one API server; counts requests for the benchmarks."""

    def __init__(self, kubeconfig=None, context=None, host=None, token=None, ca_cert=None,
                 validate_certs=None, timeout=30):
        credentials = _credentials(kubeconfig, context, host, token)
        if host:
            credentials.host = host
        if token:
            credentials.token = token
        if ca_cert:
            credentials.ca_file, credentials.ca_data = ca_cert, None
        if validate_certs is not None:
            credentials.verify = validate_certs
        self.credentials = credentials
        self.host = credentials.host.rstrip("/")
        self.requests = 0
        self._connections = _Connections(self.host, credentials, timeout)

    def request(self, method, path, query=None, body=None, content_type="application/json", accept="application/json"):
        """(status, decoded JSON or None); raises KubeError for transport errors and HTTP >= 400."""
        headers = {"Accept": accept, "User-Agent": "qhub.prefect"}
        headers.update(self.credentials.auth_headers())
        payload = None
        if body is not None:
            headers["Content-Type"] = content_type
            payload = json.dumps(body).encode("utf-8")
        if query:
            path += "?" + "&".join("%s=%s" % (key, value) for key, value in query)
        self.requests += 1
        status, raw = self._connections.exchange(method, path, payload, headers)
        data = None
        if not accept.startswith("application/json") and status < 400:
            return status, raw.decode("utf-8", "replace")
        if raw:
            try:
                data = json.loads(raw.decode("utf-8"))
            except ValueError:
                data = {"message": raw.decode("utf-8", "replace")[:500]}
        if status >= 400:
            message = (data or {}).get("message") or "HTTP %d" % status
            raise KubeError(message, status=status, body=data)
        return status, data

    def text(self, path, query=None):
        """A plain-text resource (a pod's log) as a string."""
        # The 1.20 apiserver refuses Accept: text/plain for pods/log (406) though it answers in plain text.
        return self.request("GET", path, query=query, accept="*/*")[1]

    def get(self, path):
        try:
            return self.request("GET", path)[1]
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise


def _credentials(kubeconfig, context, host, token):
    """Credentials of the target kubeconfig.py selects: the one the fleet check (kube_context_info) reports."""
    try:
        target = select_target(kubeconfig, context, host, token)
        return static_credentials(target) or _client_credentials(target)
    except KubeconfigError as exc:
        raise KubeError(str(exc))


def _client_credentials(target):
    """Credentials the kubernetes client works out (exec plugins, auth providers) for the selected context."""
    try:
        from kubernetes.client import Configuration
        from kubernetes.config.kube_config import KubeConfigLoader
    except ImportError:
        raise KubeError("the context %r of the kubeconfig %s needs the kubernetes Python client (exec or "
                        "auth-provider credentials), which is not installed" % (target.context, target.kubeconfig))
    configuration = Configuration()
    try:
        # Only the context select() chose, so the client cannot choose another (its own merge of a KUBECONFIG
        # list takes current-context from the first file, kubectl's from the first that sets one).
        KubeConfigLoader(config_dict=target.single_context_config(), active_context=target.context,
                         config_base_path=target.user_base).load_and_set(configuration)
    except Exception as exc:
        raise KubeError("cannot load the context %r of the kubeconfig %s: %s"
                        % (target.context, target.kubeconfig, exc))
    # The key's name changed between client versions; auth_settings() reads whichever it uses.
    authorization = None
    for setting in configuration.auth_settings().values():
        if setting.get("in") == "header" and setting.get("key", "").lower() == "authorization" and setting.get("value"):
            authorization = setting["value"]
    return KubeCredentials(configuration.host, authorization=authorization, ca_file=configuration.ssl_ca_cert,
                           cert_file=configuration.cert_file, key_file=configuration.key_file,
                           verify=configuration.verify_ssl, proxy=configuration.proxy)


class _Connections:
    """Keep-alive connections to one API server (directly, or through the kubeconfig's proxy), safe across threads."""

    def __init__(self, host, credentials, read_timeout):
        url = urlsplit(host)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise KubeError("the Kubernetes API server's address %r is not an http(s) URL" % host)
        self.host = host
        self.https = url.scheme == "https"
        self.address = (url.hostname, url.port or (443 if self.https else 80))
        self.base_path = url.path.rstrip("/")
        self.read_timeout = read_timeout
        self.context = None
        if self.https:
            try:
                self.context = credentials.ssl_context()
            except (ssl.SSLError, IOError, OSError) as exc:
                raise KubeError("cannot set up TLS for %s (CA or client certificate): %s" % (host, exc))
        self.proxy = None
        if credentials.proxy:
            proxy = urlsplit(credentials.proxy)
            if proxy.scheme != "http" or not proxy.hostname:
                raise KubeError("the kubeconfig's proxy-url %r is not supported: an http:// proxy is"
                                % credentials.proxy)
            self.proxy = (proxy.hostname, proxy.port or 80)
        self._idle = []
        self._mutex = threading.Lock()

    def exchange(self, method, path, payload, headers):
        """(status, body bytes) of one request; a transport failure is a KubeError naming the server."""
        target = self.base_path + path
        if self.proxy and not self.https:
            # A plain-HTTP request through a proxy names the whole URL; HTTPS goes through a CONNECT tunnel.
            target = self.host + path
        connection, reused = self._take()
        try:
            return self._exchange_on(connection, method, target, payload, headers)
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as exc:
            # A kept-alive connection the server closed as it was taken (its idle timeout): the request never
            # reached it. Sent again on a new connection when sending it twice cannot do twice what it asks.
            if not (reused and method in IDEMPOTENT_METHODS):
                raise self._unreachable(exc)
        except (OSError, http.client.HTTPException) as exc:
            raise self._unreachable(exc)
        try:
            return self._exchange_on(self._new(), method, target, payload, headers)
        except (OSError, http.client.HTTPException) as exc:
            raise self._unreachable(exc)

    def _exchange_on(self, connection, method, target, payload, headers):
        try:
            connection.request(method, target, body=payload, headers=headers)
            if connection.sock is not None:
                connection.sock.settimeout(self.read_timeout)
            response = connection.getresponse()
            raw = response.read()
        except BaseException:
            connection.close()
            raise
        if response.will_close:
            connection.close()
        else:
            self._give_back(connection)
        return response.status, raw

    def _unreachable(self, exc):
        reason = str(exc) or type(exc).__name__
        return KubeError("cannot reach the Kubernetes API server at %s: %s" % (self.host, reason))

    def _take(self):
        """(a connection, whether it served a request before)."""
        with self._mutex:
            while self._idle:
                connection = self._idle.pop()
                if not _dropped(connection):
                    return connection, True
                connection.close()
        return self._new(), False

    def _give_back(self, connection):
        with self._mutex:
            if len(self._idle) < IDLE_CONNECTIONS:
                self._idle.append(connection)
                return
        connection.close()

    def _new(self):
        host, port = self.proxy or self.address
        if self.https:
            connection = http.client.HTTPSConnection(host, port, timeout=CONNECT_TIMEOUT, context=self.context)
        else:
            connection = http.client.HTTPConnection(host, port, timeout=CONNECT_TIMEOUT)
        if self.proxy and self.https:
            connection.set_tunnel(*self.address)
        return connection


def _dropped(connection):
    """Whether an idle keep-alive connection was closed by the server (readable while idle: EOF, or garbage)."""
    if connection.sock is None:
        return True
    try:
        poller = select.poll()
        poller.register(connection.sock, select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, ValueError):
        return True
