"""Which API server a kubeconfig context points at: the check a fleet run makes before writing anything."""

import os

import pytest
import yaml

from ansible_collections.qhub.prefect.plugins.module_utils._kube.target import KubeTargetError, kube_target


def kubeconfig(path, contexts, clusters, current=None):
    document = {"apiVersion": "v1", "kind": "Config",
                "clusters": [{"name": name, "cluster": {"server": server}} for name, server in clusters.items()],
                "users": [{"name": "u", "user": {"token": "secret-token-never-returned"}}],
                "contexts": [{"name": name, "context": dict({"cluster": cluster, "user": "u"}, **extra)}
                             for name, (cluster, extra) in contexts.items()]}
    if current:
        document["current-context"] = current
    path.write_text(yaml.safe_dump(document))
    return str(path)


def test_the_named_context_and_its_server(tmp_path):
    path = kubeconfig(tmp_path / "kc", {"prod": ("east", {"namespace": "team"}), "dev": ("west", {})},
                      {"east": "https://east:6443/", "west": "https://west:6443"}, current="dev")
    assert kube_target(path, "prod", environ={}) == {
        "server": "https://east:6443", "context": "prod", "cluster": "east", "namespace": "team", "kubeconfig": path}
    assert kube_target(path, None, environ={})["server"] == "https://west:6443"
    assert "secret-token" not in repr(kube_target(path, "prod", environ={}))


def test_a_missing_context_is_named_with_those_that_exist(tmp_path):
    path = kubeconfig(tmp_path / "kc", {"prod": ("east", {}), "dev": ("east", {})}, {"east": "https://east"})
    with pytest.raises(KubeTargetError) as error:
        kube_target(path, "staging", environ={})
    assert str(error.value) == ("the context 'staging' does not exist in the kubeconfig %s "
                                "(contexts in it: dev, prod)" % path)
    with pytest.raises(KubeTargetError, match="sets no current-context and no context was given"):
        kube_target(path, None, environ={})


def test_a_context_naming_a_missing_cluster_or_file(tmp_path):
    path = kubeconfig(tmp_path / "kc", {"prod": ("gone", {})}, {"east": "https://east"})
    with pytest.raises(KubeTargetError, match="names the cluster 'gone', which does not exist"):
        kube_target(path, "prod", environ={})
    with pytest.raises(KubeTargetError, match="does not exist"):
        kube_target(str(tmp_path / "absent"), "prod", environ={})
    (tmp_path / "bad").write_text("clusters: [\n")
    with pytest.raises(KubeTargetError, match="not valid YAML"):
        kube_target(str(tmp_path / "bad"), "prod", environ={})


def test_kubeconfig_list_merges_first_file_wins_and_host_overrides(tmp_path):
    first = kubeconfig(tmp_path / "one", {"prod": ("east", {})}, {"east": "https://first"}, current="prod")
    second = kubeconfig(tmp_path / "two", {"prod": ("east", {}), "dev": ("west", {})},
                        {"east": "https://second", "west": "https://west"}, current="dev")
    listed = os.pathsep.join([first, second])
    assert kube_target(None, None, environ={"KUBECONFIG": listed})["server"] == "https://first"
    assert kube_target(None, "dev", environ={"KUBECONFIG": listed})["server"] == "https://west"
    assert kube_target(first, "nope", host="https://direct:6443/", token="t", environ={})["server"] == \
        "https://direct:6443"
    incluster = {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443", "HOME": str(tmp_path)}
    account = tmp_path / "serviceaccount"
    account.mkdir()
    (account / "token").write_text("pod-token")
    (account / "ca.crt").write_text("CA")
    assert kube_target(None, None, environ=incluster, service_account_dir=str(account))["server"] == \
        "https://10.0.0.1:443"
