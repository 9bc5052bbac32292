"""qhub_deployment runs the role's steps in one task: the same modules, with the arguments the role's tasks give them.

The arguments are compared with what Ansible's own templating makes of the role's task files
(roles/prefect_agent/tasks/*.yml, defaults and vars), after each step's module validated both: a change to a tasks
file that the module does not follow fails here. (Controller code, Ansible's templating: not a module_utils test.)
"""

import pathlib

import pytest
import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

from ansible_collections.qhub.prefect.plugins.module_utils._runners import (
    prefect_agent_config, prefect_project, prefect_work_pool, prefect_worker_status, qhub_config_info,
    qhub_deployment,
)
from ansible_collections.qhub.prefect.plugins.module_utils._runners.in_process import validate
from ansible_collections.qhub.prefect.plugins.module_utils._runners.options import module_spec
from ansible_collections.qhub.prefect.plugins.plugin_utils._role_variables import args_from_role_variables

ROLE = pathlib.Path(__file__).resolve().parents[3] / "roles" / "prefect_agent"


def settings(generation="prefect3", enabled=True, path="/srv/qhub/qhub-config.yml"):
    """What qhub_config_info returns (tasks/check.yml registers it as qhub_prefect_settings)."""
    result = {"changed": False, "namespace": "dev", "prefect": {
        "enabled": enabled, "generation": generation, "image": "prefecthq/prefect:3-python3.11-kubernetes",
        "instance": "qhub-dev", "overrides": {"JOB_CPU_LIMIT": "2", "envVars": {"A": "b"}},
        "secret_env_names": ["TOKEN_X"], "job": {"labels": ["gpu", "big"]}}}
    if path:
        result["path"] = path
    return result


def trusted(value):
    if isinstance(value, str):
        return trust_as_template(value)
    if isinstance(value, dict):
        return dict((key, trusted(item)) for key, item in value.items())
    if isinstance(value, list):
        return [trusted(item) for item in value]
    return value


def role_variables(registered, **given):
    """The role's defaults and vars, the variables given, and what the check registered."""
    variables = {}
    for part in ("defaults", "vars"):
        variables.update(trusted(yaml.safe_load((ROLE / part / "main.yml").read_text())))
    # The default is a lookup of KUBECONFIG, which unit tests have no lookup plugins for: what it gives unset.
    variables["qhub_prefect_kubeconfig"] = ""
    variables.update(given)
    variables["qhub_prefect_settings"] = registered
    return variables


def role_task_args(tasks_file, variables):
    """The arguments the module of the one task in a role tasks file gets, and the module's name: as Ansible templates
    them, and for qhub_deployment's from_role_variables as its action plugin then reads the role's variables."""
    task = yaml.safe_load((ROLE / "tasks" / tasks_file).read_text())[0]
    module = next(key for key in task if key.startswith("qhub.prefect."))
    templar = Templar(loader=DataLoader(), variables=variables)
    args = templar.template(trusted(task[module]))
    if args.get("from_role_variables"):
        args = args_from_role_variables(args, variables, templar, qhub_deployment.argument_spec())
    return module, args


def validated(runner, args):
    params, _no_log, message = validate(module_spec(runner), args, "test")
    assert message is None, message
    return params


GIVEN = [
    {"qhub_prefect_config_file": "/srv/qhub/qhub-config.yml"},
    {"qhub_prefect_config_file": "/srv/qhub/qhub-config.yml", "qhub_prefect_name": "pf", "qhub_prefect_api_url":
     "http://prefect:4200/api", "qhub_prefect_api_key": "k-123", "qhub_prefect_instance": "blue",
     "qhub_prefect_work_pool": "prod", "qhub_prefect_project": "flows", "qhub_prefect_wait": False,
     "qhub_prefect_wait_timeout": 30, "qhub_prefect_wait_for_worker": False, "qhub_prefect_worker_timeout": 45,
     "qhub_prefect_force": True, "qhub_prefect_move_from": "old, older", "qhub_prefect_lock_timeout": 5,
     "qhub_prefect_kubeconfig": "/srv/kubeconfig", "qhub_prefect_kube_context": "prod"},
    {"qhub_prefect_config": {"namespace": "dev", "prefect": {"enabled": True}}, "qhub_prefect_move_from": ["x"]},
]
STEPS = [
    ("check.yml", qhub_config_info, lambda params, registered: qhub_deployment.check_args(params)),
    ("project.yml", prefect_project, qhub_deployment.project_args),
    ("work_pool.yml", prefect_work_pool, qhub_deployment.work_pool_args),
    ("agent.yml", prefect_agent_config, qhub_deployment.agent_args),
    ("absent.yml", prefect_agent_config, qhub_deployment.removal_args),
    ("worker_status.yml", prefect_worker_status, qhub_deployment.worker_status_args),
]


@pytest.mark.parametrize("given", GIVEN, ids=["defaults", "every-variable", "config-mapping"])
@pytest.mark.parametrize("generation", ["prefect3", "prefect1"])
@pytest.mark.parametrize("tasks_file, runner, build", STEPS, ids=[step[0] for step in STEPS])
def test_each_step_gets_the_arguments_the_roles_task_gives_its_module(given, generation, tasks_file, runner, build,
                                                                      ):
    path = None if "qhub_prefect_config" in given else given["qhub_prefect_config_file"]
    registered = settings(generation, path=path)
    variables = role_variables(registered, **given)
    _module, converge_args = role_task_args("converge.yml", variables)
    params = validated(qhub_deployment, converge_args)
    _module, role_args = role_task_args(tasks_file, variables)
    assert validated(runner, build(params, registered)) == validated(runner, role_args)


def test_the_role_runs_the_steps_main_yml_runs():
    main = (ROLE / "tasks" / "main.yml").read_text()
    for tasks_file, _runner, _build in STEPS[:-1]:
        assert "import_tasks: %s" % tasks_file in main


@pytest.mark.parametrize("given", GIVEN, ids=["defaults", "every-variable", "config-mapping"])
def test_the_fleet_check_passes_what_the_converge_passes_and_only_checks(given):
    variables = role_variables(settings(), **given)
    _module, converge_args = role_task_args("converge.yml", variables)
    _module, check_args = role_task_args("fleet_check.yml", variables)
    assert check_args == dict(converge_args, check_only=True)


def test_the_converge_entry_point_reads_the_role_variables_in_its_module_not_as_templated_arguments():
    task = yaml.safe_load((ROLE / "tasks" / "converge.yml").read_text())[0]
    assert task["qhub.prefect.qhub_deployment"] == {"from_role_variables": True}
