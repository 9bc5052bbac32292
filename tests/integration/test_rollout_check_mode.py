"""Check mode never waits for a rollout: nothing was changed, so there is nothing to roll out.

Runs on any test bed. Without a node the Deployment can never become available, so a check run that
waited would take the whole wait_timeout and fail; with one, it would still poll the dry-run's generation.
The request count shows no read beyond the apply's own.
"""

import time

import yaml

from tests.support.ansible_cli import run_module, run_playbook


def test_check_mode_with_wait_returns_at_once_and_reads_nothing_more(testbed, unique_namespace):
    args = {"namespace": unique_namespace, "image": "prefecthq/prefect:3-python3.11-kubernetes",
            "api_key": "check-token", "api_url": testbed.prefect_api_url, "kubeconfig": testbed.kubeconfig,
            "overrides": {"envVars": {"ENVIRONMENT": "one"}}}
    assert run_module("prefect_agent_config", args).rc == 0
    changed = dict(args, overrides={"envVars": {"ENVIRONMENT": "two"}})
    started = time.monotonic()
    checked = run_module("prefect_agent_config", dict(changed, wait=True, wait_timeout=120), check=True)
    seconds = time.monotonic() - started
    assert checked.rc == 0 and checked["changed"] is True, checked
    assert seconds < 60, "check mode waited %.0f s" % seconds
    unwaited = run_module("prefect_agent_config", changed, check=True)
    assert checked["requests"] == unwaited["requests"], (checked, unwaited)


def test_deploy_playbook_in_check_mode_does_not_wait(testbed, unique_namespace, tmp_path):
    config = tmp_path / "qhub-config.yml"
    config.write_text(yaml.safe_dump({"namespace": unique_namespace, "prefect": {"enabled": True}}))
    env = {"KUBECONFIG": testbed.kubeconfig, "PREFECT_API_URL": testbed.prefect_api_url,
           "QHUB_SECRET_PREFECT_TOKEN": "check-token"}
    extra = {"qhub_config_file": str(config), "qhub_prefect_work_pool": "check-" + unique_namespace,
             "qhub_prefect_wait_timeout": 120}
    assert run_playbook("playbooks/deploy.yml", extra, env=env).rc == 0
    started = time.monotonic()
    checked = run_playbook("playbooks/deploy.yml", extra, env=env, check=True, wait=True)
    assert checked.rc == 0, checked
    assert time.monotonic() - started < 60
