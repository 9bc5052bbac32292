"""The action plugins run a task on the controller in-process, and launch the module for anything else.

Async tasks always launch the module (so do become and other hosts), which lets the two paths be
compared on the same objects: each must see the other's work as already done.
"""

import pytest
import yaml

from tests.support.ansible_cli import run_playbook
from tests.integration.test_prefect_agent_config import read_all, versions


def play(tmp_path, task, use_async):
    if use_async:
        task = dict(task, **{"async": 120, "poll": 1})
    path = tmp_path / ("async.yml" if use_async else "direct.yml")
    path.write_text(yaml.safe_dump([{"hosts": "localhost", "gather_facts": False, "tasks": [task]}]))
    return path


def test_the_module_and_the_controller_path_agree(testbed, kube_admin, unique_namespace, tmp_path):
    task = {"name": "agent", "qhub.prefect.prefect_agent_config": {
        "namespace": unique_namespace, "image": "prefecthq/prefect:3-python3.11-kubernetes",
        "api_url": testbed.prefect_api_url, "work_pool": "fast-path", "kubeconfig": testbed.kubeconfig,
        "overrides": {"JOB_CPU_LIMIT": "1"}, "secret_env": {"S": "fast-path-secret-51c2"}}}
    env = {"QHUB_SECRET_PREFECT_TOKEN": "fast-path-token-7d0e"}
    launched = run_playbook(play(tmp_path, task, use_async=True), env=env)
    assert launched.rc == 0 and launched["recap"]["changed"] == 1, launched
    before = versions(read_all(kube_admin, unique_namespace))
    assert set(before) == {"ServiceAccount", "Role", "RoleBinding", "Secret", "Deployment"}
    in_process = run_playbook(play(tmp_path, task, use_async=False), env=env)
    assert in_process.rc == 0 and in_process["recap"]["changed"] == 0, in_process
    launched_again = run_playbook(play(tmp_path, task, use_async=True), env=env)
    assert launched_again.rc == 0 and launched_again["recap"]["changed"] == 0, launched_again
    after = versions(read_all(kube_admin, unique_namespace))
    assert after == before
    for result in (launched, in_process, launched_again):
        assert "fast-path-secret-51c2" not in result.output and "fast-path-token-7d0e" not in result.output


@pytest.mark.parametrize("args, message", [
    ({"name": "x", "state": "gone"}, "value of state must be one of: present, absent, got: gone"),
    ({"name": "x", "colour": "red"}, "Unsupported parameters for (qhub.prefect.prefect_work_pool) module: colour"),
    ({"state": "absent"}, "missing required arguments: name"),
])
def test_bad_arguments_fail_alike_on_both_paths(tmp_path, args, message):
    task = {"name": "pool", "qhub.prefect.prefect_work_pool": args}
    for use_async in (False, True):
        result = run_playbook(play(tmp_path, task, use_async))
        assert result.rc != 0
        assert message in result.output, result
