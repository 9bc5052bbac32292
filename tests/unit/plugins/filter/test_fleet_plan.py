"""What each deployment of a fleet does next (plugins/filter/fleet_plan.py), decided once after the check play.

deploy.yml's plays after the check hold only the deployments this filter puts in their kind, and the summary and
the final failures say what it refused and why: the messages start with the name of the check that made them
before it moved here (issue 19), so the summary reads as it did.
"""

import pytest
from ansible.errors import AnsibleFilterError
from ansible.parsing.dataloader import DataLoader
from ansible.parsing.vault import VaultLib, VaultSecret

from ansible_collections.qhub.prefect.plugins.filter.fleet_plan import FilterModule, fleet_plan


def checked(namespace, generation="prefect3", enabled=True, instance=None, api_url="http://prefect:4200/api",
            server="https://k:6443", **extra):
    """A host's variables after the check play: the inventory's, and what the check registered (qhub_deployment with
    check_only: the config read and the kubeconfig context)."""
    variables = {"qhub_config_file": "/fleet/%s/qhub-config.yml" % namespace, "qhub_prefect_work_pool": namespace,
                 "qhub_prefect_check": {"changed": False, "settings": {
                     "changed": False, "namespace": namespace, "prefect": {
                         "enabled": enabled, "generation": generation, "instance": instance or namespace,
                         "api_url": api_url}},
                     "cluster": {"changed": False, "server": server, "context": "ctx"}}}
    variables.update(extra)
    return variables


def vaulted(plaintext):
    """A vault-encrypted host variable as Ansible loads it from host_vars."""
    secret = VaultSecret(b"unit-test-password")
    ciphertext = VaultLib([("default", secret)]).encrypt(plaintext).decode()
    loader = DataLoader()
    loader.set_vault_secrets([("default", secret)])
    return loader.load("key: !vault |\n" + "".join("  %s\n" % line for line in ciphertext.splitlines()))["key"]


def test_the_filter_is_registered():
    assert FilterModule().filters()["fleet_plan"] is fleet_plan


def test_each_deployment_goes_to_the_play_of_its_kind():
    hostvars = {"w": checked("w"), "a": checked("a", generation="prefect1"), "off": checked("off", enabled=False),
                "off1": checked("off1", generation="prefect1", enabled=False), "w2": checked("w2")}
    plan = fleet_plan(["w2", "w", "a", "off", "off1"], hostvars, environ={})
    assert plan == {"converge": ["a", "off", "off1", "w", "w2"], "prefect3": ["w", "w2"], "prefect1": ["a"],
                    "disabled": ["off", "off1"], "failed": [], "failures": {}, "unchecked": []}


def test_a_single_deployment_on_the_implicit_localhost():
    assert fleet_plan(["localhost"], {"localhost": checked("dev")}, environ={})["prefect3"] == ["localhost"]


def test_refusals_name_the_check_the_host_and_the_cause():
    hostvars = {
        "bad-inventory": {"qhub_inventory_error": "deployments[1].config: x.yml matches no file"},
        "no-config": {"qhub_config_file": "", "qhub_config": {}},
        "no-key": checked("nk", qhub_prefect_token_env="FLEET_UNSET"),
        "empty-key": checked("ek", qhub_prefect_token_env="FLEET_EMPTY"),
        "plain-key": checked("pk", qhub_prefect_api_key="plain-text-key"),
        "broken": {"qhub_config_file": "b.yml", "__qhub_fleet_check_failure": "Read and validate: bad quantity"},
        "good": checked("good", qhub_prefect_token_env="FLEET_SET"),
    }
    plan = fleet_plan(list(hostvars), hostvars, environ={"FLEET_SET": "key", "FLEET_EMPTY": ""})
    assert plan["prefect3"] == plan["converge"] == ["good"]
    assert plan["failed"] == ["bad-inventory", "broken", "empty-key", "no-config", "no-key", "plain-key"]
    failures = plan["failures"]
    assert failures["bad-inventory"] == (
        "Refuse a deployment the inventory could not read: deployments[1].config: x.yml matches no file")
    assert failures["no-config"].startswith("Refuse a run given no QHub config at all: no QHub config: give one with "
                                            "-e qhub_config_file=qhub-config.yml")
    assert failures["no-key"] == (
        "Check the environment variable named as this deployment's credential source is set: no-key: the Prefect "
        "API key comes from the environment variable FLEET_UNSET (qhub_prefect_token_env), which is not set on the "
        "controller")
    assert "environment variable FLEET_EMPTY" in failures["empty-key"]
    assert failures["plain-key"].startswith("Refuse a Prefect API key kept in plain text: plain-key: "
                                            "qhub_prefect_api_key is plain text")
    assert "plain-text-key" not in repr(plan)
    assert failures["broken"] == "Read and validate: bad quantity"
    assert plan["unchecked"] == ["bad-inventory", "no-config"]


def test_a_vault_encrypted_key_is_accepted_and_not_decrypted():
    key = vaulted("the-real-key")
    plan = fleet_plan(["v"], {"v": checked("v", qhub_prefect_api_key=key)}, environ={})
    assert plan["prefect3"] == ["v"] and plan["failures"] == {}


def test_a_named_environment_variable_wins_over_a_plain_key_and_a_failed_check():
    # The unset variable is why a Prefect Cloud config then fails its read for want of a token.
    variables = checked("x", qhub_prefect_token_env="UNSET_X", qhub_prefect_api_key="ignored",
                        __qhub_fleet_check_failure="Read and validate: prefect.token: required for Prefect Cloud")
    failure = fleet_plan(["x"], {"x": variables}, environ={})["failures"]["x"]
    assert "environment variable UNSET_X" in failure


def test_clashes_fail_every_host_involved_and_nobody_else():
    hostvars = {"x": checked("shared", qhub_prefect_work_pool="x"), "y": checked("shared", qhub_prefect_work_pool="y"),
                "z": checked("own"),
                # A host that failed its checks claims nothing, so it clashes with nobody.
                "w": dict(checked("shared"), __qhub_fleet_check_failure="Check the kubeconfig context exists: no")}
    plan = fleet_plan(list(hostvars), hostvars, environ={})
    assert plan["prefect3"] == ["z"]
    assert plan["failed"] == ["w", "x", "y"]
    assert plan["failures"]["x"] == plan["failures"]["y"] == (
        "x and y deploy to the same namespace shared on the cluster https://k:6443; give each its own namespace; "
        "x and y are the same instance shared on the cluster https://k:6443, so each would remove the other's "
        "objects; give each its own project_name (or qhub_prefect_instance) (nothing was written for any of them)")


def test_the_work_pool_claim_defaults_to_the_role_default():
    hostvars = {"east": checked("east", server="https://east:6443"), "west": checked("west", server="https://w:6443"),
                "own": checked("own")}
    del hostvars["east"]["qhub_prefect_work_pool"], hostvars["west"]["qhub_prefect_work_pool"]
    failures = fleet_plan(list(hostvars), hostvars, environ={})["failures"]
    assert sorted(failures) == ["east", "west"]
    assert failures["east"].startswith("east and west use the same work pool qhub of the Prefect API")


def test_hosts_must_be_a_list_of_names():
    with pytest.raises(AnsibleFilterError, match="want a list of host names"):
        fleet_plan("localhost", {})
