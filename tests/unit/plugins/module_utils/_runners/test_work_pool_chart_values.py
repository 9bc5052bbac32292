"""The prefect-worker chart's work-pool values: worker.config.jobNamespace and worker.config.baseJobTemplate.

The pool's template is derived by prefect_work_pool's runner; a custom base (inline, or the chart's ConfigMap,
read on every run) still gets the QHub overrides as its variables' defaults.
"""

import copy
import json

import pytest

from ansible_collections.qhub.prefect.plugins.module_utils._prefect.base_job_template import DEFAULT_BASE_JOB_TEMPLATE
from ansible_collections.qhub.prefect.plugins.module_utils._qhub.errors import ConfigError
from ansible_collections.qhub.prefect.plugins.module_utils._runners.prefect_work_pool import (
    BASE_JOB_TEMPLATE_KEY, derived_template, input_mark,
)


def params(overrides, **extra):
    out = dict(overrides=overrides, secret_env_names=None, secret_name=None, job_namespace="dev",
               service_account_name=None, job_image=None)
    out.update(extra)
    return out


def custom_template(marker):
    """A base job template of the user's: Prefect's default with a label of its own in the Job manifest."""
    template = copy.deepcopy(DEFAULT_BASE_JOB_TEMPLATE)
    template["job_configuration"]["job_manifest"]["metadata"]["labels"] = {"custom": marker}
    return template


def properties(template):
    return template["variables"]["properties"]


def test_job_namespace_is_the_pools_default_namespace_over_the_option():
    template = derived_template(params({"worker": {"config": {"jobNamespace": "flows"}}}))
    assert properties(template)["namespace"]["default"] == "flows"
    assert properties(derived_template(params({})))["namespace"]["default"] == "dev"


@pytest.mark.parametrize("as_json", [True, False], ids=["json-string", "mapping"])
def test_an_inline_base_job_template_gets_the_overrides_as_defaults(as_json):
    custom = custom_template("inline")
    given = json.dumps(custom) if as_json else custom
    overrides = {"JOB_CPU_LIMIT": "2", "worker": {"config": {"baseJobTemplate": {"configuration": given}}}}
    template = derived_template(params(overrides))
    assert template["job_configuration"]["job_manifest"]["metadata"]["labels"] == {"custom": "inline"}
    assert properties(template)["cpu_limit"]["default"] == "2"


def test_the_configmap_is_read_on_every_run_and_its_change_changes_the_pool():
    store = {"tmpl": {BASE_JOB_TEMPLATE_KEY: json.dumps(custom_template("one"))}}
    reads = []

    def read(name):
        reads.append(name)
        return store.get(name)

    overrides = {"JOB_MEM_LIMIT": "4Gi",
                 "worker": {"config": {"baseJobTemplate": {"existingConfigMapName": "tmpl"}}}}
    first = derived_template(params(overrides), read_config_map=read)
    assert first["job_configuration"]["job_manifest"]["metadata"]["labels"] == {"custom": "one"}
    assert properties(first)["memory_limit"]["default"] == "4Gi"
    store["tmpl"] = {BASE_JOB_TEMPLATE_KEY: json.dumps(custom_template("two"))}
    second = derived_template(params(overrides), read_config_map=read)
    assert reads == ["tmpl", "tmpl"]
    assert second["job_configuration"]["job_manifest"]["metadata"]["labels"] == {"custom": "two"}
    # The pool's input mark changes with the ConfigMap, so a rerun writes the new template.
    assert input_mark(first) != input_mark(second)


@pytest.mark.parametrize("data, message", [
    (None, "does not exist"),
    ({"other.json": "{}"}, "has no key baseJobTemplate.json"),
    ({BASE_JOB_TEMPLATE_KEY: "{not json"}, "not valid JSON"),
    ({BASE_JOB_TEMPLATE_KEY: json.dumps({"variables": {}})}, "needs job_configuration and variables"),
])
def test_a_bad_configmap_fails_naming_the_key(data, message):
    overrides = {"worker": {"config": {"baseJobTemplate": {"existingConfigMapName": "tmpl"}}}}
    with pytest.raises(ConfigError) as caught:
        derived_template(params(overrides), read_config_map=lambda name: data)
    assert "worker.config.baseJobTemplate.existingConfigMapName" in str(caught.value)
    assert message in str(caught.value)


def test_a_template_without_a_container_to_put_the_overrides_in_fails_naming_the_key():
    custom = custom_template("x")
    custom["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]["containers"] = []
    overrides = {"worker": {"config": {"baseJobTemplate": {"configuration": custom}}}}
    with pytest.raises(ConfigError) as caught:
        derived_template(params(overrides))
    assert caught.value.path == "overrides.worker.config.baseJobTemplate"
