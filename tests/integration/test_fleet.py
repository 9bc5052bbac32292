"""A fleet: deploy.yml over an inventory of the qhub_deployments plugin, on three clusters at once.

One deployment on each of three control planes plus a second namespace on the first; each deployment has its
own Prefect API key, named in the inventory by its environment variable.
"""

import base64
import threading
import uuid

import pytest

from tests.fault_proxy import FaultProxy
from tests.fleet import config, fleet_clusters, inventory, merged_kubeconfig, run_fleet, work_pool

# A module-scoped fixture from tests/fleet.py: pytest finds fixtures by name in the test module.
_FIXTURES = (fleet_clusters,)


def tokens_env(names):
    return dict(("FLEET_TOKEN_%s" % name.upper().replace("-", "_"), "fleet-key-%s-%s" % (name, uuid.uuid4().hex[:8]))
                for name in names)


@pytest.fixture
def fleet(fleet_clusters, testbed, tmp_path):
    """Four deployments: a1 and a2 on cluster a (two namespaces), b on b, c on c; their inventory and env."""
    tag = uuid.uuid4().hex[:6]
    placement = {"a1": "a", "a2": "a", "b": "b", "c": "c"}
    namespaces = dict((name, "fleet-%s-%s" % (name, tag)) for name in placement)
    kubeconfig = merged_kubeconfig(list(fleet_clusters.values()), tmp_path / "kubeconfig")
    deployments = []
    for name, cluster in placement.items():
        config(tmp_path / "deployments", name, namespaces[name])
        deployments.append({"config": "deployments/%s/qhub-config.yml" % name, "context": "ctx-" + cluster,
                            "prefect_token_env": "FLEET_TOKEN_%s" % name.upper(),
                            "vars": {"qhub_prefect_work_pool": "fleet-%s-%s" % (name, tag)}})
    path = inventory(tmp_path, deployments, kubeconfig="kubeconfig", prefect_api_url=testbed.prefect_api_url)
    env = tokens_env(placement)
    return {"inventory": path, "env": env, "placement": placement, "namespaces": namespaces, "tag": tag,
            "kubeconfig": kubeconfig, "dir": tmp_path}


def assert_secret_holds(cluster, namespace, token):
    secret = cluster.secret(namespace, "prefect-worker")
    assert secret is not None, "no Secret prefect-worker in %s on cluster %s" % (namespace, cluster.name)
    values = [base64.b64decode(value).decode() for value in secret["data"].values()]
    assert token in values, "the Secret in %s does not hold this deployment's own key" % namespace


def test_fleet_converges_every_deployment_then_reruns_unchanged(fleet, fleet_clusters, testbed):
    first = run_fleet(fleet["inventory"], env=fleet["env"], forks=4)
    assert first.rc == 0, first
    assert sorted(first["recap"]) == ["a1", "a2", "b", "c"], first
    for name, cluster_name in fleet["placement"].items():
        counters = first["recap"][name]
        assert counters["failed"] == 0 and counters["changed"] > 0, (name, first)
        cluster = fleet_clusters[cluster_name]
        # Each deployment landed on its own cluster, and nowhere else.
        assert cluster.namespace_exists(fleet["namespaces"][name]), (name, cluster_name)
        for other_name, other in fleet_clusters.items():
            if other_name != cluster_name:
                assert not other.namespace_exists(fleet["namespaces"][name]), (name, other_name)
        assert_secret_holds(cluster, fleet["namespaces"][name], fleet["env"]["FLEET_TOKEN_%s" % name.upper()])
        assert work_pool(testbed.prefect_api_url, "fleet-%s-%s" % (name, fleet["tag"])) is not None
        line = first["summary"][name]
        assert "cluster %s (context ctx-%s)" % (cluster.server, cluster_name) in line, line
        assert "namespace %s, prefect3, changed, worker not online" % fleet["namespaces"][name] in line, line
    for token in fleet["env"].values():
        assert token not in first.output

    again = run_fleet(fleet["inventory"], env=fleet["env"], forks=4)
    assert again.rc == 0, again
    assert all(counters["changed"] == 0 and counters["failed"] == 0 for counters in again["recap"].values()), again
    assert all(", unchanged, " in line for line in again["summary"].values()), again["summary"]

    # --limit converges only what it names; check mode writes nothing.
    limited = run_fleet(fleet["inventory"], env=fleet["env"], extra_args=["--limit", "b", "--check"])
    assert limited.rc == 0 and sorted(limited["recap"]) == ["b"], limited
    assert limited["recap"]["b"]["changed"] == 0, limited


def test_an_apiserver_stopped_during_the_run_fails_only_its_deployment(fleet, fleet_clusters, tmp_path):
    stopped_cluster = fleet_clusters["b"]
    host, port = stopped_cluster.server.rsplit("//", 1)[1].rsplit(":", 1)
    proxy = FaultProxy(host, int(port))
    merged_kubeconfig(list(fleet_clusters.values()), fleet["kubeconfig"],
                      server_of={"b": "https://127.0.0.1:%d" % proxy.port})
    stopped = threading.Event()

    def stop_apiserver():
        proxy.cut()
        stopped_cluster.bed.stop_component("kube-apiserver")
        stopped.set()

    # Cluster b's requests alone pass the proxy: the fault lands in the middle of its deployment's writes.
    proxy.after_chunks(8, stop_apiserver)
    try:
        broken = run_fleet(fleet["inventory"], env=fleet["env"], forks=4)
    finally:
        proxy.close()
        stopped.wait(30)
        stopped_cluster.bed.start_component("kube-apiserver")
    assert broken.rc != 0, broken
    assert broken["recap"]["b"]["failed"] == 1, broken
    for name in ("a1", "a2", "c"):
        assert broken["recap"][name]["failed"] == 0 and broken["recap"][name]["changed"] > 0, (name, broken)
        assert "changed" in broken["summary"][name], broken["summary"]
    assert "FAILED" in broken["summary"]["b"] and "cannot reach the Kubernetes API server" in broken["summary"]["b"], \
        broken["summary"]

    merged_kubeconfig(list(fleet_clusters.values()), fleet["kubeconfig"])
    recovered = run_fleet(fleet["inventory"], env=fleet["env"], forks=4)
    assert recovered.rc == 0, recovered
    assert recovered["recap"]["b"]["changed"] > 0, recovered
    assert ", changed, " in recovered["summary"]["b"], recovered["summary"]
    assert all(recovered["recap"][name]["changed"] == 0 for name in ("a1", "a2", "c")), recovered
    assert_secret_holds(stopped_cluster, fleet["namespaces"]["b"], fleet["env"]["FLEET_TOKEN_B"])
    again = run_fleet(fleet["inventory"], env=fleet["env"], forks=4)
    assert again.rc == 0 and all(c["changed"] == 0 for c in again["recap"].values()), again


def test_two_deployments_claiming_one_namespace_fail_before_any_write(fleet_clusters, testbed, tmp_path):
    tag = uuid.uuid4().hex[:6]
    kubeconfig = merged_kubeconfig(list(fleet_clusters.values()), tmp_path / "kubeconfig")
    shared, own = "clash-" + tag, "alone-" + tag
    config(tmp_path, "team-x", shared)
    config(tmp_path, "team-y", shared)
    config(tmp_path, "team-z", own)
    # team-x and team-y reach cluster b through different contexts: still the same API server.
    path = inventory(tmp_path, [
        {"config": "team-x/qhub-config.yml", "context": "ctx-b", "vars": {"qhub_prefect_work_pool": "x-" + tag}},
        {"config": "team-y/qhub-config.yml", "kubeconfig": str(fleet_clusters["b"].bed.kubeconfig),
         "vars": {"qhub_prefect_work_pool": "y-" + tag}},
        {"config": "team-z/qhub-config.yml", "context": "ctx-b", "vars": {"qhub_prefect_work_pool": "z-" + tag}},
    ], kubeconfig=str(kubeconfig), prefect_api_url=testbed.prefect_api_url)
    result = run_fleet(path, env={"QHUB_SECRET_PREFECT_TOKEN": "clash-key"})
    assert result.rc != 0, result
    for name in ("team-x", "team-y"):
        assert result["recap"][name]["failed"] == 1, result
        assert "team-x and team-y deploy to the same namespace %s on the cluster %s" % (
            shared, fleet_clusters["b"].server) in result["summary"][name], result["summary"]
    assert not fleet_clusters["b"].namespace_exists(shared)
    for pool in ("x-" + tag, "y-" + tag):
        assert work_pool(testbed.prefect_api_url, pool) is None, pool
    assert result["recap"]["team-z"]["failed"] == 0 and fleet_clusters["b"].namespace_exists(own), result


def test_bad_input_names_the_host_and_writes_nothing_for_it(fleet_clusters, testbed, tmp_path):
    tag = uuid.uuid4().hex[:6]
    kubeconfig = merged_kubeconfig(list(fleet_clusters.values()), tmp_path / "kubeconfig")
    names = {"good": "good-" + tag, "no-context": "noctx-" + tag, "no-key": "nokey-" + tag,
             "plain-key": "plain-" + tag, "dup": "dup-" + tag}
    for name, namespace in names.items():
        config(tmp_path, name, namespace)
    config(tmp_path, "broken", "broken-" + tag, extra={"overrides": {"JOB_CPU_LIMIT": "four"}})
    (tmp_path / "binary").mkdir()
    (tmp_path / "binary" / "qhub-config.yml").write_bytes(b"namespace: \xff\xfe\n")
    # A second config that would be the host "dup" too.
    config(tmp_path / "elsewhere", "dup", "dup2-" + tag)
    (tmp_path / "host_vars").mkdir()
    (tmp_path / "host_vars" / "plain-key.yml").write_text("qhub_prefect_api_key: plain-text-key-%s\n" % tag)
    deployments = [
        {"config": name + "/qhub-config.yml", "vars": {"qhub_prefect_work_pool": "bad-%s-%s" % (name, tag)}}
        for name in ("good", "no-context", "no-key", "plain-key", "broken", "binary", "dup")]
    deployments[1]["context"] = "ctx-missing"
    deployments[2]["prefect_token_env"] = "FLEET_UNSET_KEY_" + tag.upper()
    deployments.append("elsewhere/*/qhub-config.yml")
    deployments.append("nowhere/*/qhub-config.yml")
    path = inventory(tmp_path, deployments, kubeconfig=str(kubeconfig), context="ctx-c",
                     prefect_api_url=testbed.prefect_api_url)
    result = run_fleet(path, env={"QHUB_SECRET_PREFECT_TOKEN": "bad-input-key"})
    assert result.rc != 0, result
    output, lines = result.output, result["summary"]
    assert "nowhere/*/qhub-config.yml matches no file" in output, output
    assert result["recap"]["good"]["failed"] == 0 and fleet_clusters["c"].namespace_exists(names["good"]), result
    expected = {
        "no-context": "the context 'ctx-missing' does not exist in the kubeconfig %s" % kubeconfig,
        "no-key": "the Prefect API key comes from the environment variable FLEET_UNSET_KEY_%s" % tag.upper(),
        "plain-key": "plain-key: qhub_prefect_api_key is plain text",
        "broken": "broken/qhub-config.yml: prefect.overrides.JOB_CPU_LIMIT: 'four' is not a Kubernetes quantity",
        "binary": "binary/qhub-config.yml: cannot read it",
        "dup": "dup/qhub-config.yml and %s/elsewhere/dup/qhub-config.yml are both the host 'dup'" % tmp_path,
    }
    for name, message in expected.items():
        assert result["recap"][name]["failed"] == 1, (name, result)
        assert "FAILED: " in lines[name] and message in lines[name], (name, lines[name])
        namespace = names.get(name, "broken-" + tag)
        assert not fleet_clusters["c"].namespace_exists(namespace), name
        assert work_pool(testbed.prefect_api_url, "bad-%s-%s" % (name, tag)) is None, name
    assert "plain-text-key-" + tag not in output
    assert not fleet_clusters["c"].namespace_exists("dup2-" + tag)
