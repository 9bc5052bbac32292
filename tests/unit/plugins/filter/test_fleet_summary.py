"""deploy.yml's closing lines (plugins/filter/fleet_summary.py): one per deployment, from what its run registered.

tests/support/fleet_clusters.py and the AWX test read these lines, so their wording is fixed here: it is the wording
of the Jinja loop the playbook had before issue 19.
"""

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.qhub.prefect.plugins.filter.fleet_summary import FilterModule, fleet_summary

CLUSTER = {"changed": False, "server": "https://k:6443", "context": "ctx-a"}


def ran(generation="prefect3", enabled=True, namespace="dev", changed=False, cluster=None, **steps):
    """What the converge task registered: the module qhub_deployment's result, with the steps' results."""
    converged = {"changed": changed, "cluster": cluster or CLUSTER, "settings": {
        "namespace": namespace, "prefect": {"enabled": enabled, "generation": generation}}}
    converged.update(steps)
    return {"qhub_prefect_deployment": converged}


def checked(generation="prefect3", namespace="dev", **variables):
    """What the check play alone registered, for a deployment refused after it."""
    variables["qhub_prefect_check"] = {"changed": False, "cluster": CLUSTER, "settings": {
        "namespace": namespace, "prefect": {"enabled": True, "generation": generation}}}
    return variables


def line(variables, plan=None, host="h"):
    return fleet_summary([host], {host: variables}, plan)[0]


def test_the_filter_is_registered():
    assert FilterModule().filters()["fleet_summary"] is fleet_summary


def test_a_worker_that_changed_and_is_online():
    variables = ran(changed=True, work_pool={"changed": False}, agent={"changed": True},
                    worker_status={"changed": False, "online": ["prefect-worker-1"]})
    assert line(variables) == (
        "h: cluster https://k:6443 (context ctx-a), namespace dev, prefect3, changed, worker ONLINE")


@pytest.mark.parametrize("status, said", [
    ({"changed": False, "online": [], "workers": []}, "worker not online"),
    ({}, "worker not online"),
    ({"failed": True, "msg": "the Prefect API at http://p/api could not be reached"},
     "worker status unknown (the Prefect API at http://p/api could not be reached)"),
    ({"failed": True}, "worker status unknown (not asked)"),
])
def test_the_worker_status(status, said):
    variables = ran(work_pool={"changed": False}, agent={"changed": False}, worker_status=status)
    assert line(variables).endswith(", prefect3, unchanged, " + said)


def test_a_worker_the_apply_waited_for_is_not_asked_again():
    # The module does not ask again: its result has no worker_status.
    variables = ran(work_pool={"changed": False}, agent={"changed": False, "workers_online": ["prefect-worker-5d8f"]})
    assert line(variables).endswith(", prefect3, unchanged, worker ONLINE")


def test_a_prefect1_agent_has_no_worker_status():
    variables = ran("prefect1", changed=True, project={"changed": True}, agent={"changed": False})
    assert line(variables).endswith("namespace dev, prefect1, changed, agent (Prefect 1: no worker status)")


@pytest.mark.parametrize("removal, said", [({"changed": True}, "removed"), ({"changed": False}, "nothing to remove")])
def test_a_disabled_deployment(removal, said):
    assert line(ran(enabled=False, changed=removal["changed"], removal=removal)).endswith(
        ", prefect3, disabled, " + said)


def test_a_refused_or_failed_deployment():
    refused = {"failures": {"h": "Refuse a deployment the inventory could not read: no file"}}
    assert line({}, refused) == ("h: cluster ?, namespace ?, FAILED: Refuse a deployment the inventory could not "
                                 "read: no file")
    failed = dict(ran(), __qhub_fleet_failure="Apply the agent or worker: cannot reach the Kubernetes API server")
    assert line(failed).endswith("namespace dev, FAILED: Apply the agent or worker: cannot reach the Kubernetes API "
                                 "server")


def test_a_deployment_without_a_config_of_its_own_shows_no_cluster_or_namespace():
    # Its checks ran on nothing (the inventory could not read it, or no config was given): what they read is not it.
    plan = {"failures": {"h": "Refuse a run given no QHub config at all: no QHub config"}, "unchecked": ["h"]}
    assert line(checked(), plan) == (
        "h: cluster ?, namespace ?, FAILED: Refuse a run given no QHub config at all: no QHub config")


def test_without_a_context_the_cluster_is_the_server_alone():
    variables = ran(changed=True, cluster={"server": "https://10.0.0.1:443", "context": None},
                    agent={"changed": True}, worker_status={"online": ["w"]})
    assert line(variables, host="localhost") == (
        "localhost: cluster https://10.0.0.1:443, namespace dev, prefect3, changed, worker ONLINE")


def test_a_deployment_refused_after_its_checks_shows_what_they_read():
    clash = {"failures": {"h": "namespace dev on https://k:6443 is also deployment g's"}}
    assert line(checked(), clash) == ("h: cluster https://k:6443 (context ctx-a), namespace dev, FAILED: namespace "
                                      "dev on https://k:6443 is also deployment g's")


def test_one_line_per_host_sorted_by_name():
    hostvars = {"b": ran(enabled=False), "a": ran(enabled=False)}
    assert [text.split(":")[0] for text in fleet_summary(["b", "a", "b"], hostvars)] == ["a", "b"]
    with pytest.raises(AnsibleFilterError, match="want a list of host names"):
        fleet_summary("a", hostvars)
