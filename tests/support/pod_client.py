"""Helpers for tests that act as a pod or a Prefect client: ServiceAccount tokens and kubeconfigs, Prefect API calls."""

import json
import pathlib
import socket
import time
import urllib.error
import urllib.request

import yaml
from kubernetes import client as k8s


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def mint_token(api_client, namespace, service_account, seconds=3600):
    request = k8s.AuthenticationV1TokenRequest(spec=k8s.V1TokenRequestSpec(
        audiences=["https://kubernetes.default.svc"], expiration_seconds=seconds))
    response = k8s.CoreV1Api(api_client).create_namespaced_service_account_token(
        service_account, namespace, request)
    return response.status.token


def service_account_kubeconfig(path, server, ca_file, token, namespace):
    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": "pod",
        "clusters": [{"name": "testbed", "cluster": {"server": server, "certificate-authority": ca_file}}],
        "users": [{"name": "sa", "user": {"token": token}}],
        "contexts": [{"name": "pod", "context": {"cluster": "testbed", "user": "sa", "namespace": namespace}}],
    }
    pathlib.Path(path).write_text(yaml.safe_dump(config))
    return path


def prefect_api(api_url, method, path, body=None, attempts=5):
    """One Prefect API call; a 503 is retried: the test server's SQLite database is briefly locked under load."""
    data = json.dumps(body).encode() if body is not None else None
    for attempt in range(attempts):
        request = urllib.request.Request(api_url + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                text = response.read()
                return json.loads(text) if text else None
        except urllib.error.HTTPError as error:
            if error.code != 503 or attempt == attempts - 1:
                raise
        time.sleep(2 ** attempt)


# How long a Foreground delete of a Deployment may take on the node: until the kubelet has stopped its pods
# (their 30 s grace period, then a loaded node's next sync) and the garbage collector has seen it.
DEPLOYMENT_GONE_TIMEOUT = 180


def wait_for(predicate, timeout, interval=1.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("timed out after %s s waiting for %s" % (timeout, what))
