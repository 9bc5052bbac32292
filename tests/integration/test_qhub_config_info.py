"""qhub_config_info runs on the controller; it must see what a module on localhost would see."""

import json

import yaml

from tests.support.ansible_cli import run_playbook

CONFIG = {"namespace": "dev", "prefect": {"enabled": True, "overrides": {
    "secretEnvVars": {"DATABASE_PASSWORD": "QHUB_SECRET_DATABASE_PASSWORD"}}}}


def playbook(tmp_path, config, environment=None):
    (tmp_path / "qhub-config.yml").write_text(yaml.safe_dump(config))
    play = {"hosts": "localhost", "gather_facts": False, "tasks": [
        {"name": "read", "qhub.prefect.qhub_config_info": {"path": str(tmp_path / "qhub-config.yml")},
         "register": "info"},
        {"name": "show", "ansible.builtin.debug": {"msg": "SETTINGS {{ info.prefect | to_json }}"}}]}
    if environment:
        play["environment"] = environment
    path = tmp_path / "play.yml"
    path.write_text(yaml.safe_dump([play]))
    return path


def settings(result):
    line = next(line for line in result.stdout.splitlines() if "SETTINGS" in line)
    return json.loads(json.loads(line.split(":", 1)[1].strip().rstrip(","))[len("SETTINGS "):])


def test_the_play_environment_resolves_secret_references(tmp_path):
    result = run_playbook(playbook(tmp_path, CONFIG, {"DATABASE_PASSWORD": "from-play-env",
                                                      "QHUB_SECRET_PREFECT_TOKEN": "play-token"}))
    assert result.rc == 0, result
    assert settings(result)["secret_env_names"] == ["DATABASE_PASSWORD"]
    assert "from-play-env" not in result.output and "play-token" not in result.output


def test_without_it_the_error_names_the_key_and_the_variable(tmp_path):
    result = run_playbook(playbook(tmp_path, CONFIG, {"QHUB_SECRET_PREFECT_TOKEN": "play-token"}))
    assert result.rc != 0
    assert "prefect.overrides.secretEnvVars.DATABASE_PASSWORD" in result.output
    assert "environment variable DATABASE_PASSWORD" in result.output


def test_a_disabled_block_needs_neither_token_nor_secret_values(tmp_path):
    config = dict(CONFIG, prefect=dict(CONFIG["prefect"], enabled=False))
    result = run_playbook(playbook(tmp_path, config))
    assert result.rc == 0, result
    assert settings(result)["enabled"] is False


def test_the_role_arguments_are_validated_before_any_task(tmp_path):
    (tmp_path / "qhub-config.yml").write_text(yaml.safe_dump(CONFIG))
    result = run_playbook("playbooks/deploy.yml", {"qhub_config_file": str(tmp_path / "qhub-config.yml"),
                                                   "qhub_prefect_generation": "prefect9",
                                                   "qhub_prefect_wait_timeout": "soon"})
    assert result.rc != 0
    assert "qhub_prefect_generation" in result.output and "prefect9" in result.output
    assert "qhub_prefect_wait_timeout" in result.output
    assert "Read and validate the prefect block" not in result.output
