# -*- coding: utf-8 -*-
# Copyright: (c) 2026, qhub.prefect contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Authenticated JSON requests to one Kubernetes API server, over urllib3.

Requests go to fixed API paths. That skips API discovery, which costs kubernetes.core about 2 s a
task, and keeps us independent of the client's generated API, which changed shape between client
versions. Credentials come from kubeconfig.py; the kubernetes client is imported only for kubeconfigs
that need it (exec plugins, auth providers).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import ssl

try:
    import urllib3
    HAS_URLLIB3 = True
    URLLIB3_IMPORT_ERROR = None
except ImportError as exc:  # pragma: no cover - reported by the module with missing_required_lib
    HAS_URLLIB3 = False
    URLLIB3_IMPORT_ERROR = exc

from ansible_collections.qhub.prefect.plugins.module_utils._common.errors import QhubPrefectError
from ansible_collections.qhub.prefect.plugins.module_utils._kube.kubeconfig import (
    KubeCredentials, KubeconfigError, select, static_credentials,
)


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
        pool_args = {"maxsize": 4, "timeout": urllib3.Timeout(connect=10, read=timeout), "retries": False}
        if self.host.startswith("https:"):
            try:
                pool_args["ssl_context"] = credentials.ssl_context()
            except (ssl.SSLError, IOError, OSError) as exc:
                raise KubeError("cannot set up TLS for %s (CA or client certificate): %s" % (self.host, exc))
            if not credentials.verify:
                pool_args["cert_reqs"] = "CERT_NONE"
        if credentials.proxy:
            self.pool = urllib3.ProxyManager(credentials.proxy, **pool_args)
        else:
            self.pool = urllib3.PoolManager(**pool_args)

    def request(self, method, path, query=None, body=None, content_type="application/json", accept="application/json"):
        """(status, decoded JSON or None); raises KubeError for transport errors and HTTP >= 400."""
        headers = {"Accept": accept, "User-Agent": "qhub.prefect"}
        headers.update(self.credentials.auth_headers())
        payload = None
        if body is not None:
            headers["Content-Type"] = content_type
            payload = json.dumps(body).encode("utf-8")
        url = self.host + path
        if query:
            url += "?" + "&".join("%s=%s" % (key, value) for key, value in query)
        self.requests += 1
        try:
            response = self.pool.request(method, url, body=payload, headers=headers)
        except urllib3.exceptions.HTTPError as exc:
            raise KubeError("cannot reach the Kubernetes API server at %s: %s" % (self.host, exc))
        data = None
        if not accept.startswith("application/json") and response.status < 400:
            return response.status, response.data.decode("utf-8", "replace")
        if response.data:
            try:
                data = json.loads(response.data.decode("utf-8"))
            except ValueError:
                data = {"message": response.data.decode("utf-8", "replace")[:500]}
        if response.status >= 400:
            message = (data or {}).get("message") or "HTTP %d" % response.status
            raise KubeError(message, status=response.status, body=data)
        return response.status, data

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
        target = select(kubeconfig, context, host, token)
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
