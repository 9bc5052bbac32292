"""qhub_deployment's from_role_variables (plugin_utils/_role_variables.py): the options a task does not set, taken
from the role's variables as the role would pass them. Ansible's own Templar renders the variables."""

from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

from ansible_collections.qhub.prefect.plugins.module_utils._runners import qhub_deployment
from ansible_collections.qhub.prefect.plugins.plugin_utils._role_variables import args_from_role_variables


def read(args, variables):
    templar = Templar(loader=DataLoader(), variables=variables)
    return args_from_role_variables(args, variables, templar, qhub_deployment.argument_spec())


def test_each_option_not_set_comes_from_its_role_variable_rendered():
    variables = {"qhub_prefect_work_pool": "prod", "qhub_prefect_wait": False, "qhub_prefect_lock_timeout": 5,
                 "pool_of_this_host": "blue",
                 "qhub_prefect_project": trust_as_template("{{ pool_of_this_host }}-flows"),
                 "qhub_prefect_move_from": ["old"], "unrelated_variable": "x"}
    assert read({"from_role_variables": True}, variables) == {
        "from_role_variables": True, "work_pool": "prod", "wait": False, "lock_timeout": 5, "project": "blue-flows",
        "move_from": ["old"]}


def test_an_option_the_task_sets_wins_over_the_variable():
    assert read({"work_pool": "mine"}, {"qhub_prefect_work_pool": "prod"})["work_pool"] == "mine"


def test_empty_and_null_variables_are_options_not_set_as_the_role_omits_them():
    variables = {"qhub_prefect_api_url": "", "qhub_prefect_config": {}, "qhub_prefect_name": None,
                 "qhub_prefect_config_file": "/srv/qhub.yml", "qhub_prefect_force": False, "qhub_prefect_move_from": []}
    assert read({}, variables) == {"config_file": "/srv/qhub.yml", "force": False, "move_from": []}


def test_the_config_mapping_is_not_read_when_a_config_file_is_set():
    mapping = {"namespace": "dev", "prefect": {"enabled": True}}
    assert read({}, {"qhub_prefect_config_file": "/srv/q.yml", "qhub_prefect_config": mapping}) == {
        "config_file": "/srv/q.yml"}
    assert read({}, {"qhub_prefect_config_file": "", "qhub_prefect_config": mapping}) == {"config": mapping}
    # Both given by the task itself: left to the module, which refuses them as mutually exclusive.
    assert set(read({"config_file": "a.yml", "config": mapping}, {})) == {"config_file", "config"}


def test_check_only_is_never_read_from_a_variable():
    assert "check_only" not in read({}, {"qhub_prefect_check_only": True})
