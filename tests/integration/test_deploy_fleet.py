"""A fleet: deploy.yml over an inventory of the qhub_deployments plugin, on three clusters at once.

One deployment on each of three control planes plus a second namespace on the first; each deployment has its
own Prefect API key, named in the inventory by its environment variable.
"""

import base64
import threading
import uuid

import pytest

from tests.support.fault_proxy import FaultProxy
from tests.support.fleet_clusters import config, fleet_clusters, inventory, merged_kubeconfig, run_fleet, work_pool

# A module-scoped fixture from tests/support/fleet_clusters.py: pytest finds fixtures by name in the test module.
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
        # A project_name of this test's own: cluster a outlives the test, and a deployment of the same instance
        # left there in another namespace by an earlier test is one this run must not take over.
        project = "%s-%s" % (name, tag)
        config(tmp_path / "deployments", project, namespaces[name])
        deployments.append({"config": "deployments/%s/qhub-config.yml" % project, "name": name,
                            "context": "ctx-" + cluster, "prefect_token_env": "FLEET_TOKEN_%s" % name.upper(),
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


def test_two_deployments_of_one_instance_on_one_cluster_fail_before_any_write(fleet_clusters, testbed, tmp_path):
    """Two namespaces, one instance: each run would remove the other's objects as an old namespace of its own."""
    tag = uuid.uuid4().hex[:6]
    kubeconfig = merged_kubeconfig(list(fleet_clusters.values()), tmp_path / "kubeconfig")
    namespaces = dict((name, "%s-%s" % (name, tag)) for name in ("one", "two", "three", "four", "alone"))
    # one and two share a project_name; three and four differ in it but set one qhub_prefect_instance.
    config(tmp_path / "x", "team-" + tag, namespaces["one"])
    config(tmp_path / "y", "team-" + tag, namespaces["two"])
    config(tmp_path, "three", namespaces["three"])
    config(tmp_path, "four", namespaces["four"])
    config(tmp_path, "alone", namespaces["alone"])
    pool = dict((name, "inst-%s-%s" % (name, tag)) for name in namespaces)
    path = inventory(tmp_path, [
        # one and two reach cluster b through different kubeconfigs: still the same API server.
        {"config": "x/team-%s/qhub-config.yml" % tag, "name": "one", "context": "ctx-b",
         "vars": {"qhub_prefect_work_pool": pool["one"]}},
        {"config": "y/team-%s/qhub-config.yml" % tag, "name": "two",
         "kubeconfig": str(fleet_clusters["b"].bed.kubeconfig), "vars": {"qhub_prefect_work_pool": pool["two"]}},
        {"config": "three/qhub-config.yml", "context": "ctx-c",
         "vars": {"qhub_prefect_work_pool": pool["three"], "qhub_prefect_instance": "shared-" + tag}},
        {"config": "four/qhub-config.yml", "context": "ctx-c",
         "vars": {"qhub_prefect_work_pool": pool["four"], "qhub_prefect_instance": "shared-" + tag}},
        {"config": "alone/qhub-config.yml", "context": "ctx-b", "vars": {"qhub_prefect_work_pool": pool["alone"]}},
    ], kubeconfig=str(kubeconfig), prefect_api_url=testbed.prefect_api_url)
    result = run_fleet(path, env={"QHUB_SECRET_PREFECT_TOKEN": "instance-clash-key"})
    assert result.rc != 0, result
    expected = {
        "one": "one and two are the same instance team-%s on the cluster %s" % (tag, fleet_clusters["b"].server),
        "two": "one and two are the same instance team-%s on the cluster %s" % (tag, fleet_clusters["b"].server),
        "three": "four and three are the same instance shared-%s on the cluster %s" % (tag, fleet_clusters["c"].server),
        "four": "four and three are the same instance shared-%s on the cluster %s" % (tag, fleet_clusters["c"].server),
    }
    for name, message in expected.items():
        assert result["recap"][name]["failed"] == 1, (name, result)
        assert "FAILED: " + message in result["summary"][name], result["summary"]
        assert "nothing was written for any of them" in result["summary"][name], result["summary"]
        cluster = fleet_clusters["b" if name in ("one", "two") else "c"]
        assert not cluster.namespace_exists(namespaces[name]), name
        assert work_pool(testbed.prefect_api_url, pool[name]) is None, name
    assert result["recap"]["alone"]["failed"] == 0, result
    assert fleet_clusters["b"].namespace_exists(namespaces["alone"]), result


def test_two_deployments_on_one_work_pool_of_one_prefect_api_fail_before_any_write(fleet_clusters, testbed, tmp_path):
    """Two clusters, one work pool: either worker would take the other's flow runs."""
    tag = uuid.uuid4().hex[:6]
    kubeconfig = merged_kubeconfig(list(fleet_clusters.values()), tmp_path / "kubeconfig")
    shared = "shared-pool-" + tag
    namespaces = dict((name, "%s-%s" % (name, tag)) for name in ("east", "west", "off", "own"))
    for name in ("east", "west", "own"):
        config(tmp_path, name, namespaces[name])
    # Disabled: it only removes what it had, and claims no work pool.
    config(tmp_path, "off", namespaces["off"], extra={"enabled": False})
    # The same API written another way: the upper-case scheme and host and the trailing slash do not hide it.
    scheme, rest = testbed.prefect_api_url.split("://", 1)
    host, api_path = rest.split("/", 1)
    respelled = "%s://%s/%s/" % (scheme.upper(), host.upper(), api_path)
    path = inventory(tmp_path, [
        {"config": "east/qhub-config.yml", "context": "ctx-b", "vars": {"qhub_prefect_work_pool": shared}},
        {"config": "west/qhub-config.yml", "context": "ctx-c", "prefect_api_url": respelled,
         "vars": {"qhub_prefect_work_pool": shared}},
        {"config": "off/qhub-config.yml", "context": "ctx-b", "vars": {"qhub_prefect_work_pool": shared}},
        {"config": "own/qhub-config.yml", "context": "ctx-c", "vars": {"qhub_prefect_work_pool": "own-" + tag}},
    ], kubeconfig=str(kubeconfig), prefect_api_url=testbed.prefect_api_url)
    result = run_fleet(path, env={"QHUB_SECRET_PREFECT_TOKEN": "pool-clash-key"})
    assert result.rc != 0, result
    message = "east and west use the same work pool %s of the Prefect API %s" % (
        shared, testbed.prefect_api_url.rstrip("/"))
    for name, cluster in (("east", "b"), ("west", "c")):
        assert result["recap"][name]["failed"] == 1, (name, result)
        assert "FAILED: " + message in result["summary"][name], result["summary"]
        assert not fleet_clusters[cluster].namespace_exists(namespaces[name]), name
    assert work_pool(testbed.prefect_api_url, shared) is None
    for name in ("off", "own"):
        assert result["recap"][name]["failed"] == 0, (name, result)
    assert fleet_clusters["c"].namespace_exists(namespaces["own"]), result


def test_a_named_entry_matching_no_file_fails_the_run_by_name(fleet_clusters, testbed, tmp_path):
    """A deployment the inventory names but cannot find is a failure, not a warning and a green run."""
    tag = uuid.uuid4().hex[:6]
    kubeconfig = merged_kubeconfig(list(fleet_clusters.values()), tmp_path / "kubeconfig")
    config(tmp_path, "present", "present-" + tag)
    path = inventory(tmp_path, [
        {"config": "present/qhub-config.yml", "vars": {"qhub_prefect_work_pool": "present-" + tag}},
        {"config": "moved-away/qhub-config.yml", "name": "prod"},
    ], kubeconfig=str(kubeconfig), context="ctx-b", prefect_api_url=testbed.prefect_api_url)
    result = run_fleet(path, env={"QHUB_SECRET_PREFECT_TOKEN": "named-entry-key"})
    assert result.rc != 0, result
    assert result["recap"]["prod"]["failed"] == 1, result
    assert "deployments[1].config: moved-away/qhub-config.yml matches no file; the entry names the host 'prod'" in \
        result["summary"]["prod"], result["summary"]
    assert result["recap"]["present"]["failed"] == 0 and fleet_clusters["b"].namespace_exists("present-" + tag), result
