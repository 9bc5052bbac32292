"""The qhub_deployments inventory plugin through ansible-inventory and ansible-doc, as AWX runs it."""

import json
import pathlib
import subprocess
import sys

import yaml

from tests.support.ansible_cli import REPO, ansible_env
from tests.support.fleet_clusters import config, inventory

BIN = pathlib.Path(sys.executable).parent


def listing(path, *extra, env=None):
    completed = subprocess.run([str(BIN / "ansible-inventory"), "-i", str(path), "--list", *extra], cwd=REPO,
                               env=ansible_env(dict({"ANSIBLE_INVENTORY_UNPARSED_FAILED": "1"}, **(env or {}))),
                               capture_output=True, text=True, timeout=120, check=False)
    data = json.loads(completed.stdout) if completed.returncode == 0 else {}
    return completed, data


def plain(value):
    """ansible-inventory marks strings from plugins as unsafe: {"__ansible_unsafe": value}."""
    return value.get("__ansible_unsafe", value) if isinstance(value, dict) else value


def hostvars(data, host):
    return dict((key, plain(value)) for key, value in data["_meta"]["hostvars"][host].items())


def test_one_host_per_config_with_its_variables_and_groups(tmp_path):
    prod = config(tmp_path / "repos", "prod", "prod-ns")
    config(tmp_path / "repos", "staging", "staging-ns", image="prefecthq/prefect:1.4.1-python3.9")
    config(tmp_path / "other", "legacy", "legacy-ns")
    path = inventory(tmp_path, [
        {"config": "repos/*/qhub-config.yml", "prefect_token_env": "FLEET_DEFAULT"},
        {"config": "other/legacy/qhub-config.yml", "name": "team-legacy", "kubeconfig": "legacy.kubeconfig",
         "context": "legacy", "prefect_api_url": "http://legacy:4200/api", "prefect_token_env": "LEGACY_TOKEN",
         "vars": {"qhub_prefect_work_pool": "legacy"}},
    ], kubeconfig="~/.kube/config", context="", compose={"qhub_prefect_kube_context": "'ctx-' ~ qhub_project_name"},
        keyed_groups=[{"key": "qhub_namespace", "prefix": "ns"}],
        groups={"production": "qhub_project_name == 'prod'"})
    completed, data = listing(path)
    assert completed.returncode == 0, completed.stderr
    assert sorted(data["_meta"]["hostvars"]) == ["prod", "staging", "team-legacy"]
    assert hostvars(data, "prod") == {
        "qhub_config_file": str(prod), "qhub_project_name": "prod", "qhub_namespace": "prod-ns",
        "qhub_generation": "prefect3", "qhub_image": "prefecthq/prefect:3-python3.11-kubernetes",
        "qhub_prefect_enabled": True, "qhub_prefect_kubeconfig": str(pathlib.Path.home() / ".kube" / "config"),
        "qhub_prefect_token_env": "FLEET_DEFAULT", "qhub_prefect_kube_context": "ctx-prod",
        "ansible_connection": "local"}
    legacy = hostvars(data, "team-legacy")
    assert legacy["qhub_prefect_kubeconfig"] == str(tmp_path / "legacy.kubeconfig")
    # compose runs after the entry's settings, as in `constructed`: it wins.
    assert legacy["qhub_prefect_kube_context"] == "ctx-legacy"
    assert legacy["qhub_prefect_api_url"] == "http://legacy:4200/api"
    assert legacy["qhub_prefect_work_pool"] == "legacy"
    assert data["prefect1"]["hosts"] == ["staging"]
    assert sorted(data["prefect3"]["hosts"]) == ["prod", "team-legacy"]
    assert data["ns_prod_ns"]["hosts"] == ["prod"] and data["production"]["hosts"] == ["prod"]


def test_bad_configs_are_named_and_the_others_still_load_unless_strict(tmp_path):
    config(tmp_path, "good", "good-ns")
    config(tmp_path, "broken", "broken-ns", extra={"overrides": {"prefect_agent": {"job": {"resources": {
        "limit": {"memory": "lots"}}}}}})
    (tmp_path / "yaml").mkdir()
    (tmp_path / "yaml" / "qhub-config.yml").write_text("namespace: a\nnamespace: b\n")
    deployments = ["*/qhub-config.yml", "missing/*.yml"]
    completed, data = listing(inventory(tmp_path, deployments))
    assert completed.returncode == 0, completed.stderr
    warnings = " ".join(completed.stderr.split())
    assert "missing/*.yml matches no file" in warnings
    assert "prefect.overrides.prefect_agent.job.resources.limit.memory: 'lots' is not a Kubernetes quantity" in warnings
    assert "%s: line 2: duplicate key 'namespace'" % (tmp_path / "yaml" / "qhub-config.yml") in warnings
    assert hostvars(data, "good")["qhub_namespace"] == "good-ns"
    assert sorted(data["qhub_invalid"]["hosts"]) == ["broken", "yaml"]
    assert "resources.limit.memory" in hostvars(data, "broken")["qhub_inventory_error"]

    strict, dummy = listing(inventory(tmp_path, deployments, strict=True))
    assert strict.returncode != 0
    assert "prefect.overrides.prefect_agent.job.resources.limit.memory" in " ".join(strict.stderr.split())

    missing, dummy = listing(inventory(tmp_path, ["good/qhub-config.yml", "missing/*.yml"], strict=True))
    assert missing.returncode != 0 and "missing/*.yml matches no file" in " ".join(missing.stderr.split())


def test_a_named_entry_matching_no_file_is_a_failed_host_not_a_warning(tmp_path):
    """The entry promised the host prod: deploy.yml fails it by name (and exits non-zero) instead of skipping it."""
    config(tmp_path, "good", "good-ns")
    deployments = ["good/qhub-config.yml", {"config": "prod/qhub-config.yml", "name": "prod"},
                   {"config": "teams/*/qhub-config.yml", "name": "teams"}]
    completed, data = listing(inventory(tmp_path, deployments))
    assert completed.returncode == 0, completed.stderr
    assert sorted(data["qhub_invalid"]["hosts"]) == ["prod", "teams"]
    assert hostvars(data, "prod")["qhub_inventory_error"] == (
        "deployments[1].config: prod/qhub-config.yml matches no file; the entry names the host 'prod'")
    assert "teams/*/qhub-config.yml matches no file" in hostvars(data, "teams")["qhub_inventory_error"]
    assert hostvars(data, "good")["qhub_namespace"] == "good-ns"

    strict, dummy = listing(inventory(tmp_path, deployments, strict=True))
    assert strict.returncode != 0
    assert "deployments[1].config: prod/qhub-config.yml matches no file" in " ".join(strict.stderr.split())


def test_two_configs_named_alike_are_one_error_naming_both_files(tmp_path):
    first = config(tmp_path / "one", "same", "ns-one")
    second = config(tmp_path / "two", "same", "ns-two")
    completed, data = listing(inventory(tmp_path, ["one/*/qhub-config.yml", "two/*/qhub-config.yml"]))
    assert completed.returncode == 0, completed.stderr
    error = hostvars(data, "same")["qhub_inventory_error"]
    assert error == "%s and %s are both the host 'same': give one of them a name (deployments[].name)" % (
        first, second)
    assert data["qhub_invalid"]["hosts"] == ["same"]


def test_an_api_key_in_plain_text_is_refused_and_a_vaulted_one_kept(tmp_path):
    config(tmp_path, "prod", "prod-ns")
    path = inventory(tmp_path, [{"config": "prod/qhub-config.yml", "vars": {"qhub_prefect_api_key": "in-clear-9"}}])
    completed, dummy = listing(path)
    assert completed.returncode != 0
    assert "deployments[0].vars.qhub_prefect_api_key: a Prefect API key in plain text" in " ".join(
        completed.stderr.split())
    assert "in-clear-9" not in completed.stdout + completed.stderr

    password = tmp_path / "vault-password"
    password.write_text("fleet-vault-password\n")
    encrypted = subprocess.run([str(BIN / "ansible-vault"), "encrypt_string", "--vault-password-file", str(password),
                                "vaulted-key-3", "--name", "qhub_prefect_api_key"], capture_output=True, text=True,
                               check=True, env=ansible_env()).stdout
    vaulted = yaml.safe_load(path.read_text())
    text = yaml.safe_dump(dict(vaulted, deployments=[{"config": "prod/qhub-config.yml", "vars": "VARS"}]))
    indented = "\n".join("      " + line for line in encrypted.strip().splitlines())
    path.write_text(text.replace("vars: VARS", "vars:\n" + indented))
    completed, data = listing(path, "--vault-password-file", str(password))
    assert completed.returncode == 0, completed.stderr
    assert "vaulted-key-3" not in completed.stdout


def test_the_cache_serves_the_last_discovery_until_flushed(tmp_path):
    path_config = config(tmp_path, "prod", "prod-ns")
    path = inventory(tmp_path, ["prod/qhub-config.yml"], cache=True, cache_plugin="ansible.builtin.jsonfile",
                     cache_connection=str(tmp_path / "cache"), cache_timeout=3600)
    completed, data = listing(path)
    assert completed.returncode == 0 and hostvars(data, "prod")["qhub_generation"] == "prefect3", completed.stderr
    assert list((tmp_path / "cache").iterdir()), "nothing cached"
    path_config.write_text(path_config.read_text().replace("3-python3.11-kubernetes", "1.4.1-python3.9"))
    cached, data = listing(path)
    assert hostvars(data, "prod")["qhub_generation"] == "prefect3", cached.stderr
    flushed, data = listing(path, "--flush-cache")
    assert flushed.returncode == 0 and hostvars(data, "prod")["qhub_generation"] == "prefect1", flushed.stderr


def test_documentation_renders_in_ansible_doc():
    for kind, name in (("inventory", "qhub.prefect.qhub_deployments"), ("module", "qhub.prefect.kube_context_info")):
        completed = subprocess.run([str(BIN / "ansible-doc"), "-t", kind, name], cwd=REPO, env=ansible_env(),
                                   capture_output=True, text=True, timeout=120, check=False)
        assert completed.returncode == 0 and "EXAMPLES" in completed.stdout, completed.stderr
