"""Runs the worker container the collection applied as a local process, with the ServiceAccount's token.

There is no kubelet in the test bed, so instead of a pod the container's own command runs here, with the
env the Deployment declares (Secrets resolved through the API, as the kubelet would) and a kubeconfig
holding a token minted for its ServiceAccount with the TokenRequest API: exactly the identity and
permissions the pod would have.
"""

import base64
import json
import os
import pathlib
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

import yaml
from kubernetes import client as k8s


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def resolve_env(api_client, namespace, container):
    core = k8s.CoreV1Api(api_client)
    env = {}
    for item in container.env or []:
        if item.value_from is None:
            env[item.name] = item.value or ""
            continue
        ref = item.value_from.secret_key_ref
        secret = core.read_namespaced_secret(ref.name, namespace)
        env[item.name] = base64.b64decode(secret.data[ref.key]).decode()
    return env


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


class WorkerProcess:
    """The Deployment's container command, run with its env and its ServiceAccount's identity."""

    def __init__(self, testbed, api_client, namespace, deployment_name, workdir):
        apps = k8s.AppsV1Api(api_client)
        deployment = apps.read_namespaced_deployment(deployment_name, namespace)
        pod = deployment.spec.template.spec
        container = pod.containers[0]
        self.args = list(container.args)
        self.env = resolve_env(api_client, namespace, container)
        token = mint_token(api_client, namespace, pod.service_account_name)
        workdir = pathlib.Path(workdir)
        (workdir / "home").mkdir(parents=True, exist_ok=True)
        kubeconfig = service_account_kubeconfig(workdir / "kubeconfig", testbed.api_server, testbed.ca_file,
                                                token, namespace)
        process_env = {"PATH": os.path.dirname(testbed.prefect_python) + ":/usr/bin:/bin",
                       "KUBECONFIG": str(kubeconfig)}
        process_env.update(self.env)
        # Paths and ports the pod has to itself are shared on this machine.
        process_env.update(HOME=str(workdir / "home"), PREFECT_HOME=str(workdir / "home" / ".prefect"),
                           PREFECT_WORKER_WEBSERVER_PORT=str(free_port()))
        self.process_env = process_env
        self.log_path = workdir / "worker.log"
        self.process = None

    def start(self):
        command = [self.process_env["PATH"].split(":")[0] + "/" + self.args[0]] + self.args[1:]
        self.log = open(self.log_path, "w")
        self.process = subprocess.Popen(command, env=self.process_env, stdout=self.log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        return self

    def stop(self):
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
        if self.process:
            self.log.close()

    def log_text(self):
        return self.log_path.read_text(errors="replace")


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


def wait_for(predicate, timeout, interval=1.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("timed out after %s s waiting for %s" % (timeout, what))


def run_hello_flow(api_url, pool, queue=None):
    """Register a flow and a deployment on the pool and ask for one run; returns the flow run id."""
    flow = prefect_api(api_url, "POST", "/flows/", {"name": "hello-world"})
    deployment = {"name": "hello-%d" % int(time.time() * 1000), "flow_id": flow["id"], "work_pool_name": pool,
                  "entrypoint": "flows.py:hello", "job_variables": {}}
    if queue:
        deployment["work_queue_name"] = queue
    created = prefect_api(api_url, "POST", "/deployments/", deployment)
    run = prefect_api(api_url, "POST", "/deployments/%s/create_flow_run" % created["id"], {})
    return run["id"]
