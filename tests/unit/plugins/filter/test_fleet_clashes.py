"""The fleet's clash rule (plugins/filter/fleet_clashes.py): which deployments may not run together (issue 17).

deploy.yml's check play records one claim per deployment that passed its checks, and fails every host this
filter returns, before anything is written.
"""

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.qhub.prefect.plugins.filter.fleet_clashes import FilterModule, fleet_clashes, normalise_url


def claim(host, cluster="https://k:6443", namespace=None, instance=None, api_url="http://prefect:4200/api",
          work_pool=None, generation="prefect3", enabled=True):
    return {"host": host, "cluster": cluster, "namespace": namespace or "ns-" + host, "instance": instance or host,
            "api_url": api_url, "work_pool": work_pool or "pool-" + host, "generation": generation,
            "enabled": enabled}


def test_the_filter_is_registered():
    assert FilterModule().filters()["fleet_clashes"] is fleet_clashes


def test_a_fleet_without_clashes_fails_nobody():
    assert fleet_clashes([claim("a"), claim("b"), claim("c", cluster="https://other:6443", namespace="ns-a")]) == {}


def test_one_namespace_on_one_cluster():
    found = fleet_clashes([claim("x", namespace="shared"), claim("y", namespace="shared"), claim("z")])
    assert sorted(found) == ["x", "y"]
    assert found["x"] == found["y"] == (
        "x and y deploy to the same namespace shared on the cluster https://k:6443; give each its own namespace "
        "(nothing was written for any of them)")


def test_one_instance_on_one_cluster_in_different_namespaces():
    found = fleet_clashes([claim("a1", instance="team"), claim("a2", instance="team"),
                           claim("b", instance="team", cluster="https://b:6443")])
    assert sorted(found) == ["a1", "a2"]
    assert found["a1"].startswith("a1 and a2 are the same instance team on the cluster https://k:6443, so each "
                                  "would remove the other's objects")


def test_one_work_pool_of_one_prefect_api_on_different_clusters():
    found = fleet_clashes([claim("east", cluster="https://east:6443", work_pool="shared"),
                           claim("west", cluster="https://west:6443", work_pool="shared",
                                 api_url="HTTP://user:secret@Prefect:4200/api/"),
                           claim("cloud", work_pool="shared", api_url="https://api.prefect.cloud/api/accounts/a")])
    assert sorted(found) == ["east", "west"]
    assert found["west"] == (
        "east and west use the same work pool shared of the Prefect API http://prefect:4200/api, so the flow runs "
        "of one could run on the cluster of another; give each its own qhub_prefect_work_pool (nothing was written "
        "for any of them)")
    assert "secret" not in found["west"]


@pytest.mark.parametrize("first, second", [
    ({"generation": "prefect1"}, {"generation": "prefect1"}),  # Prefect 1 has projects, which deployments may share
    ({}, {"enabled": False}),                                   # a disabled deployment polls no pool
    ({}, {"enabled": "False"}),                                 # as a template of a boolean may come back
    ({"api_url": None}, {"api_url": None}),                     # no API URL: the run fails before any write
    ({"api_url": "None"}, {"api_url": "None"}),
])
def test_only_enabled_prefect3_deployments_with_an_api_claim_a_work_pool(first, second):
    assert fleet_clashes([claim("a", work_pool="shared", **first), claim("b", work_pool="shared", **second)]) == {}


def test_every_host_of_a_clash_is_named_and_each_clash_is_listed():
    found = fleet_clashes([claim("c", namespace="n", instance="i"), claim("a", namespace="n", instance="i"),
                           claim("b", namespace="n", work_pool="p", cluster="https://K:6443/"),
                           claim("d", work_pool="p", cluster="https://elsewhere")])
    assert found["a"] == found["c"] == (
        "a, b and c deploy to the same namespace n on the cluster https://k:6443; give each its own namespace; "
        "a and c are the same instance i on the cluster https://k:6443, so each would remove the other's objects; "
        "give each its own project_name (or qhub_prefect_instance) (nothing was written for any of them)")
    assert found["b"].startswith("a, b and c deploy to the same namespace n") and "b and d use the same work pool p" \
        in found["b"]
    assert list(found["d"].split(";"))[0].startswith("b and d use the same work pool p")


def test_hosts_that_failed_their_checks_claim_nothing():
    assert fleet_clashes(["", None, claim("a", namespace="n"), {"host": ""}, claim("b")]) == {}
    with pytest.raises(AnsibleFilterError, match="want a list of claims"):
        fleet_clashes({"host": "a"})


@pytest.mark.parametrize("url, key", [
    ("https://K8s.Example:443/", "https://k8s.example"),
    ("https://k8s.example:6443", "https://k8s.example:6443"),
    ("HTTP://admin:pw@Prefect.example:80/api/", "http://prefect.example/api"),
    ("http://[FD00::1]:4200/api", "http://[fd00::1]:4200/api"),
    ("https://api.prefect.cloud/api/accounts/A/workspaces/W/", "https://api.prefect.cloud/api/accounts/A/workspaces/W"),
    ("not a url/", "not a url"),
])
def test_urls_compare_by_scheme_host_port_and_path(url, key):
    assert normalise_url(url) == key
