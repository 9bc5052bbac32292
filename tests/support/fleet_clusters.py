"""Several clusters for fleet tests: the session's test bed plus control-plane-only test beds, and inventories.

The session test bed (kube and the shared Prefect server) is cluster "a"; `fleet_clusters` starts two more
control planes ("b", "c"), each with its own CA, token and ports, in parallel, and stops them after the
module. A kubeconfig with one context per cluster (ctx-a, ctx-b, ctx-c) is written next to them.
"""

import json
import os
import pathlib
import subprocess
import sys
import threading
import urllib.error
import urllib.request

import pytest
import yaml

from tests.support.ansible_cli import REPO, Result, ansible_env
from tests.testbed.testbed import Testbed

EXTRA_CLUSTERS = ("b", "c")


class Cluster:
    def __init__(self, name, bed):
        self.name = name
        self.bed = bed
        self.context = "ctx-" + name
        self.server = bed.api_server

    def get(self, path):
        """(status, parsed body) of a GET with the cluster's admin token."""
        from tests.testbed.testbed import http_request

        status, body = http_request(self.server + path, token=self.bed.admin_token, ca_file=self.bed.ca_file)
        return status, (json.loads(body) if body else None)

    def namespace_exists(self, namespace):
        return self.get("/api/v1/namespaces/" + namespace)[0] == 200

    def secret(self, namespace, name):
        status, body = self.get("/api/v1/namespaces/%s/secrets/%s" % (namespace, name))
        return body if status == 200 else None


def merged_kubeconfig(clusters, path, server_of=None):
    """One kubeconfig with a context ctx-<name> per cluster; `server_of` may point one through a proxy."""
    server_of = server_of or {}
    document = {"apiVersion": "v1", "kind": "Config", "clusters": [], "users": [], "contexts": [],
                "current-context": clusters[0].context, "preferences": {}}
    for cluster in clusters:
        own = yaml.safe_load(pathlib.Path(cluster.bed.kubeconfig).read_text())
        entry = dict(own["clusters"][0]["cluster"], server=server_of.get(cluster.name, cluster.server))
        document["clusters"].append({"name": "cluster-" + cluster.name, "cluster": entry})
        document["users"].append({"name": "admin-" + cluster.name, "user": own["users"][0]["user"]})
        document["contexts"].append({"name": cluster.context, "context": {
            "cluster": "cluster-" + cluster.name, "user": "admin-" + cluster.name}})
    pathlib.Path(path).write_text(yaml.safe_dump(document))
    os.chmod(path, 0o600)
    return str(path)


@pytest.fixture(scope="module")
def fleet_clusters(testbed, tmp_path_factory):
    """{name: Cluster} for a (the session's test bed) and the control-plane-only test beds b and c."""
    if testbed.admin_token is None:
        pytest.skip("an existing cluster: the fleet tests start control planes of their own")
    beds, errors = {}, []

    def start(name):
        bed = Testbed(components="kube")
        try:
            beds[name] = bed.start()
        except Exception as error:  # noqa: BLE001 - reported below with the part's log
            errors.append(error)

    threads = [threading.Thread(target=start, args=(name,)) for name in EXTRA_CLUSTERS]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        if errors:
            raise errors[0]
        clusters = {"a": Cluster("a", testbed)}
        clusters.update((name, Cluster(name, bed)) for name, bed in sorted(beds.items()))
        yield clusters
    finally:
        for bed in beds.values():
            bed.stop()


def config(directory, project, namespace, image="prefecthq/prefect:3-python3.11-kubernetes", extra=None):
    """A qhub-config.yml in DIRECTORY/PROJECT/, as one repository per deployment keeps it."""
    folder = pathlib.Path(directory) / project
    folder.mkdir(parents=True, exist_ok=True)
    document = {"project_name": project, "namespace": namespace,
                "prefect": dict({"enabled": True, "image": image}, **(extra or {}))}
    path = folder / "qhub-config.yml"
    path.write_text(yaml.safe_dump(document))
    return path


def inventory(directory, deployments, **options):
    path = pathlib.Path(directory) / "fleet.qhub_deployments.yml"
    path.write_text(yaml.safe_dump(dict({"plugin": "qhub.prefect.qhub_deployments", "deployments": deployments},
                                        **options), sort_keys=False))
    return path


def run_fleet(inventory_path, env=None, forks=4, extra_args=(), extra_vars=None, timeout=600, background=False):
    """deploy.yml over an inventory, from the repository, the way a user runs it.

    The rollout wait is off unless the extra vars turn it on, as in run_playbook: two of the fleet's clusters
    are control planes without a node, where no pod ever runs.
    """
    command = [str(pathlib.Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory_path),
               "playbooks/deploy.yml", "--forks", str(forks)]
    command += ["-e", json.dumps(dict({"qhub_prefect_wait": False}, **(extra_vars or {})))]
    command += list(extra_args)
    environment = ansible_env(env)
    if background:
        return subprocess.Popen(command, cwd=REPO, env=environment, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
    completed = subprocess.run(command, cwd=REPO, env=environment, capture_output=True, text=True,
                               timeout=timeout, check=False)
    return fleet_result(completed)


def fleet_result(completed):
    return Result(completed, {"recap": recap(completed.stdout), "summary": summary(completed.stdout)})


def recap(stdout):
    """{host: {ok, changed, failed, ...}} from PLAY RECAP."""
    hosts, seen = {}, False
    for line in stdout.splitlines():
        if line.startswith("PLAY RECAP"):
            seen = True
            continue
        if seen and ":" in line and "ok=" in line:
            name, counters = line.split(":", 1)
            hosts[name.strip()] = dict((key, int(value)) for key, value in
                                       (item.split("=") for item in counters.split()))
    return hosts


def summary(stdout):
    """{host: its summary line} from the last play's one-line-per-deployment task."""
    marker = stdout.rfind("TASK [One line per deployment]")
    if marker < 0:
        return {}
    body = stdout[marker:]
    start = body.find('"msg": [')
    end = body.find("]\n}", start)
    lines = json.loads(body[start + len('"msg": '):end + 1]) if start >= 0 and end >= 0 else []
    return dict((line.split(":", 1)[0], line) for line in lines)


def work_pool(api_url, name):
    """The work pool as the Prefect API returns it, or None."""
    request = urllib.request.Request("%s/work_pools/%s" % (api_url, name))
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return None
        raise
