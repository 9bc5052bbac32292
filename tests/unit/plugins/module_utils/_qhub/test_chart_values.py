"""The prefect-worker chart's values under prefect.overrides (issue 18): every key through both generations.

Each key of ``chart_values.CHART_KEYS`` has one case below: a sample value and what should be found at the
key's ``target`` in the rendered objects (read by ``rendered_at``, which knows every target place). A key
without a case fails ``test_every_chart_key_has_a_case``. The config goes the way a run takes it: the
config file's validation (``parse_qhub_config``), then the module's ``build_spec``, ``render_objects`` and, for
a worker, the work pool's template (``derived_template``).
"""

import copy
import json

import pytest

from ansible_collections.qhub.prefect.plugins.module_utils._kube.client import KubeError
from ansible_collections.qhub.prefect.plugins.module_utils._prefect.base_job_template import (
    DEFAULT_BASE_JOB_TEMPLATE,
)
from ansible_collections.qhub.prefect.plugins.module_utils._qhub.chart_values import (
    CHART_KEYS, CONTAINER_SECURITY_CONTEXT, KEY_BY_PATH, OWNED_ELSEWHERE, POD_SECURITY_CONTEXT, SAME_AS_OURS,
)
from ansible_collections.qhub.prefect.plugins.module_utils._qhub.config import parse_qhub_config
from ansible_collections.qhub.prefect.plugins.module_utils._qhub.errors import ConfigError
from ansible_collections.qhub.prefect.plugins.module_utils._qhub.images import (
    PREFECT1, PREFECT3, check_image_version, needs_cluster_uid,
)
from ansible_collections.qhub.prefect.plugins.module_utils._render.objects import render_objects
from ansible_collections.qhub.prefect.plugins.module_utils._render.spec import secret_data
from ansible_collections.qhub.prefect.plugins.module_utils._runners import (
    agent_cluster, prefect_agent_config, prefect_work_pool,
)

IMAGES = {PREFECT1: "prefecthq/prefect:1.4.1-python3.9", PREFECT3: "prefecthq/prefect:3.4.1-python3.11-kubernetes"}
ENVIRON = {"PREFECT_API_URL": "http://prefect.dev:4200/api", "PREFECT_API_KEY": "canary-token"}
TEMPLATE_CONFIG_MAP = "my-job-template"


def nested(path, value):
    """{"worker": {"config": {"limit": 2}}} from ("worker.config.limit", 2)."""
    out = value
    for part in reversed(path.split(".")):
        out = {part: out}
    return out


def custom_template():
    """A base job template of the user's own: the default one with a marker in the flow-run pod."""
    template = copy.deepcopy(DEFAULT_BASE_JOB_TEMPLATE)
    template["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]["nodeSelector"] = {"pool": "custom"}
    return template


def read_config_map(name):
    """The worker namespace's ConfigMaps, as prefect_work_pool reads them."""
    return {"baseJobTemplate.json": json.dumps(custom_template())} if name == TEMPLATE_CONFIG_MAP else None


def error_of(call, *args, **kwargs):
    with pytest.raises(ConfigError) as caught:
        call(*args, **kwargs)
    return caught.value


def qhub_config(generation, overrides, image=None):
    return {"project_name": "demo", "namespace": "dev",
            "prefect": {"enabled": True, "image": image or IMAGES[generation], "overrides": overrides}}


def agent_params(generation, overrides, image=None, **extra):
    params = dict((key, None) for key in prefect_agent_config.argument_spec())
    params.update(namespace="dev", state="present", generation="auto", replicas=1, overrides=overrides,
                  image=image or IMAGES[generation])
    params.update(extra)
    return params


def pool_template(overrides):
    """The work pool's base job template as the role asks prefect_work_pool for it."""
    params = dict((key, None) for key in prefect_work_pool.argument_spec())
    params.update(overrides=overrides, job_namespace="dev", secret_name="prefect-worker")
    return prefect_work_pool.derived_template(params, read_config_map=read_config_map)


class Rendered:
    """A config's objects: validated as the config file, built as the module builds them, rendered."""

    def __init__(self, generation, overrides, image=None):
        config = parse_qhub_config(qhub_config(generation, overrides, image), ENVIRON)
        assert config.generation == generation
        self.spec = spec = prefect_agent_config.build_spec(agent_params(generation, overrides, image), ENVIRON)
        if not spec.is_agent:
            # What the module's run sets before rendering; a given worker.clusterUid needs no client.
            uid, _note = agent_cluster.cluster_uid(None, spec, None)
            self.spec = spec = spec.with_live_values(cluster_uid=uid)
        self.objects = render_objects(spec)
        self.pool = pool_template(overrides) if not spec.is_agent else None

    def kind(self, kind, namespace="dev"):
        found = [item for item in self.objects if item["kind"] == kind and item["metadata"]["namespace"] == namespace]
        assert len(found) <= 1
        return found[0] if found else None

    @property
    def deployment(self):
        return self.kind("Deployment")

    @property
    def pod(self):
        return self.deployment["spec"]["template"]["spec"]

    @property
    def container(self):
        return self.pod["containers"][0]

    @property
    def env(self):
        return dict((item["name"], item) for item in self.container["env"])

    def flag_values(self, flag):
        args = self.container["args"]
        return [args[index + 1] for index, arg in enumerate(args) if arg == flag]


def rendered_at(rendered, target):
    """What the objects hold at a ChartKey's target (place, field); see chart_values.TARGET_DOCS."""
    place, field = target
    if place == "pod":
        return rendered.pod.get(field)
    if place == "container":
        return rendered.container.get(field)
    if place == "template":
        return rendered.deployment["spec"]["template"]["metadata"][field]
    if place == "deployment":
        return rendered.deployment["spec"].get(field)
    if place == "object":
        found = rendered.kind(field)
        if found is None:
            return None
        assert found["spec"]["selector"] == rendered.deployment["spec"]["selector"]
        return dict((key, value) for key, value in found["spec"].items() if key != "selector")
    if place == "env":
        return rendered.env.get(field, {}).get("value")
    if place == "flag":
        return rendered.flag_values(field)
    if place == "work_pool":
        if field == "namespace":
            return rendered.pool["variables"]["properties"]["namespace"]["default"]
        return rendered.pool
    if place == "secret_ref":
        # Read from the user's Secret by the worker, its name and key passed on to the flow runs; not ours.
        if field not in rendered.env:
            return None
        reference = rendered.env[field]["valueFrom"]["secretKeyRef"]
        kind = "KEY" if field == "PREFECT_API_KEY" else "AUTH_STRING"
        passed_on = dict((part, rendered.env["PREFECT_INTEGRATIONS_KUBERNETES_WORKER_API_%s_SECRET_%s" % (
            kind, part.upper())]["value"]) for part in ("name", "key"))
        assert passed_on == reference
        return reference, field in secret_data(rendered.spec)
    if place == "service_account":
        account = rendered.kind("ServiceAccount")
        if field == "create":
            return account is not None, rendered.pod["serviceAccountName"]
        if field == "name":
            subjects = rendered.kind("RoleBinding")["subjects"]
            return account["metadata"]["name"], rendered.pod["serviceAccountName"], subjects[0]["name"]
        return account["metadata"].get(field)
    if place == "role":
        return rendered.kind("Role")[field]
    raise AssertionError("rendered_at knows no target place %r: add it" % place)


def equal(expected):
    return lambda found: found == expected


def ends_with(expected):
    """A list the collection's own items come first in, the user's after them."""
    return lambda found: isinstance(found, list) and len(found) > len(expected) and found[-len(expected):] == expected


def includes(expected):
    """A mapping holding the expected items beside others (the collection's own labels, probe fields)."""
    return lambda found: isinstance(found, dict) and all(found.get(key) == value for key, value in expected.items())


def has_marker(found):
    pod = found["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]
    # The user's template, with QHub's overrides as variable defaults all the same.
    return pod["nodeSelector"] == {"pool": "custom"} and \
        found["variables"]["properties"]["cpu_limit"]["default"] == "2"


TOLERATIONS = [{"key": "dedicated", "operator": "Equal", "value": "prefect", "effect": "NoSchedule"}]
AFFINITY = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
    {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["prefect"]}]}]}}}
ENV_VARS = [{"name": "FOO", "value": "bar"},
            {"name": "FROM_CM", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "from"}}}]
RULES = [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}]

# path: (sample value, check of what rendered_at finds at the key's target).
CASES = {
    "worker.nodeSelector": ({"kubernetes.io/hostname": "node1"}, None),
    "worker.tolerations": (TOLERATIONS, None),
    "worker.affinity": (AFFINITY, None),
    "worker.priorityClassName": ("high-priority", None),
    "worker.dnsPolicy": ("ClusterFirstWithHostNet", None),
    "worker.dnsConfig": ({"options": [{"name": "ndots", "value": "2"}]}, None),
    # Merged over the restricted profile: only the field given changes.
    "worker.podSecurityContext": ({"runAsUser": 2000}, equal(
        {"runAsNonRoot": True, "runAsUser": 2000, "runAsGroup": 1001, "fsGroup": 1001,
         "seccompProfile": {"type": "RuntimeDefault"}})),
    "worker.image.pullSecrets": (["regcred", "other"], equal([{"name": "regcred"}, {"name": "other"}])),
    "worker.extraVolumes": ([{"name": "data", "emptyDir": {}}], ends_with([{"name": "data", "emptyDir": {}}])),
    "worker.extraContainers": ([{"name": "sidecar", "image": "busybox:1.36"}],
                               ends_with([{"name": "sidecar", "image": "busybox:1.36"}])),
    "worker.resources": ({"limits": {"memory": "2Gi"}}, equal(
        {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "2Gi"}})),
    "worker.containerSecurityContext": ({"readOnlyRootFilesystem": False}, equal(
        {"runAsNonRoot": True, "runAsUser": 1001, "runAsGroup": 1001, "allowPrivilegeEscalation": False,
         "readOnlyRootFilesystem": False, "capabilities": {"drop": ["ALL"]}})),
    "worker.image.pullPolicy": ("Always", None),
    "worker.livenessProbe": ({"config": {"periodSeconds": 15}}, includes(
        {"periodSeconds": 15, "timeoutSeconds": 5, "failureThreshold": 3})),
    "worker.extraVolumeMounts": ([{"name": "data", "mountPath": "/data"}],
                                 ends_with([{"name": "data", "mountPath": "/data"}])),
    "worker.extraEnvVars": (ENV_VARS, ends_with(ENV_VARS)),
    "worker.extraEnvVarsCM": ("settings", equal([{"configMapRef": {"name": "settings"}}])),
    "worker.extraEnvVarsCMs": (["one", "two"], equal([{"configMapRef": {"name": "one"}},
                                                      {"configMapRef": {"name": "two"}}])),
    "worker.extraEnvVarsSecret": ("creds", equal([{"secretRef": {"name": "creds"}}])),
    "worker.extraEnvVarsSecrets": (["one", "two"], equal([{"secretRef": {"name": "one"}},
                                                          {"secretRef": {"name": "two"}}])),
    "worker.extraArgs": (["--extra-flag"], ends_with(["--extra-flag"])),
    # Beside the collection's own labels.
    "worker.podLabels": ({"team": "data"}, includes({"team": "data", "app.kubernetes.io/part-of": "prefect"})),
    "worker.podAnnotations": ({"example.com/owner": "data"}, includes({"example.com/owner": "data"})),
    "worker.replicaCount": (2, None),
    "worker.revisionHistoryLimit": (3, None),
    "worker.podDisruptionBudget": ({"maxUnavailable": 1}, None),
    "worker.clusterUid": ("0c9a7f5e-uid", None),
    "worker.config.queryInterval": (7, equal("7")),
    "worker.config.prefetchSeconds": (20, equal("20")),
    "worker.config.http2": (True, lambda found: found in ("true", "True")),
    "worker.config.limit": (2, equal(["2"])),
    "worker.config.name": ("worker-a", equal(["worker-a"])),
    "worker.config.workQueues": (["q1", "q2"], None),
    "worker.config.jobNamespace": ("flows", None),
    "worker.config.baseJobTemplate.configuration": (json.dumps(custom_template()), has_marker),
    "worker.config.baseJobTemplate.existingConfigMapName": (TEMPLATE_CONFIG_MAP, has_marker),
    "worker.cloudApiConfig.apiKeySecret": ({"name": "my-key", "key": "api-key"},
                                           equal(({"name": "my-key", "key": "api-key"}, False))),
    "worker.selfHostedServerApiConfig.basicAuth.existingSecret": (
        "my-auth", equal(({"name": "my-auth", "key": "auth-string"}, False))),
    "serviceAccount.create": (False, equal((False, "default"))),
    "serviceAccount.name": ("custom-sa", equal(("custom-sa", "custom-sa", "custom-sa"))),
    "serviceAccount.annotations": ({"eks.amazonaws.com/role-arn": "arn:aws:iam::111122223333:role/prefect"}, None),
    "role.extraPermissions": (RULES, ends_with(RULES)),
}
# Beside the sample, in every case: a job setting, so a custom base job template shows it got the overrides.
BESIDE = {"JOB_CPU_LIMIT": "2"}


def check_of(path):
    sample, check = CASES[path]
    return equal(sample) if check is None else check


def overrides_with(path, value):
    return dict(BESIDE, **nested(path, value))


def test_every_chart_key_has_a_case():
    assert set(CASES) == set(KEY_BY_PATH)
    assert len(KEY_BY_PATH) == len(CHART_KEYS)  # no key declared twice


@pytest.mark.parametrize("path", [key.path for key in CHART_KEYS])
def test_each_key_lands_at_its_target_on_a_worker(path):
    key = KEY_BY_PATH[path]
    rendered = Rendered(PREFECT3, overrides_with(path, CASES[path][0]))
    found = rendered_at(rendered, key.target)
    assert check_of(path)(found), (key.target, found)
    # Set nowhere, the same target holds something else (the default): the case shows the key's effect.
    default = rendered_at(Rendered(PREFECT3, dict(BESIDE)), key.target)
    assert found != default


@pytest.mark.parametrize("path", [key.path for key in CHART_KEYS if not key.worker_only])
def test_each_pod_key_lands_at_its_target_on_a_prefect1_agent(path):
    key = KEY_BY_PATH[path]
    rendered = Rendered(PREFECT1, overrides_with(path, CASES[path][0]))
    found = rendered_at(rendered, key.target)
    assert check_of(path)(found), (key.target, found)
    assert found != rendered_at(Rendered(PREFECT1, dict(BESIDE)), key.target)


@pytest.mark.parametrize("path", [key.path for key in CHART_KEYS if key.worker_only])
def test_a_worker_only_key_on_a_prefect1_image_fails_naming_it(path):
    overrides = nested(path, CASES[path][0])
    error = error_of(parse_qhub_config, qhub_config(PREFECT1, overrides), ENVIRON)
    assert error.path == "prefect.overrides." + path
    assert "Prefect 2/3" in error.message
    # The module, given the overrides by the role or a playbook of its own, says the same.
    error = error_of(prefect_agent_config.build_spec, agent_params(PREFECT1, overrides), ENVIRON)
    assert error.path == "overrides." + path


def test_the_worker_only_keys_are_the_ones_a_prefect1_agent_has_no_use_for():
    assert sorted(key.path for key in CHART_KEYS if key.worker_only) == sorted(
        [path for path in KEY_BY_PATH if path.startswith(("worker.config.", "worker.cloudApiConfig.",
                                                          "worker.selfHostedServerApiConfig."))]
        + ["worker.clusterUid"])


# --- null and merging ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("generation", [PREFECT1, PREFECT3])
def test_a_null_drops_that_default_and_keeps_the_rest_of_the_restricted_profile(generation):
    rendered = Rendered(generation, {"worker": {"containerSecurityContext": {"runAsUser": None}}})
    expected = dict(CONTAINER_SECURITY_CONTEXT)
    del expected["runAsUser"]
    assert rendered.container["securityContext"] == expected
    assert "runAsUser" not in rendered.container["securityContext"]
    assert rendered.pod["securityContext"] == POD_SECURITY_CONTEXT


@pytest.mark.parametrize("generation", [PREFECT1, PREFECT3])
def test_a_null_key_drops_the_whole_default(generation):
    rendered = Rendered(generation, {"worker": {"podSecurityContext": None}})
    assert "securityContext" not in rendered.pod
    assert rendered.container["securityContext"] == CONTAINER_SECURITY_CONTEXT


def test_openshift_restricted_v2_fragment():
    """OpenShift picks the UID and group: the chart's documented values for it."""
    rendered = Rendered(PREFECT3, {"worker": {
        "podSecurityContext": {"runAsUser": None, "runAsGroup": None, "fsGroup": None},
        "containerSecurityContext": {"runAsUser": None, "runAsGroup": None}}})
    assert rendered.pod["securityContext"] == {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    assert rendered.container["securityContext"] == {
        "runAsNonRoot": True, "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]}}


def test_resources_merge_over_the_defaults():
    rendered = Rendered(PREFECT3, {"worker": {"resources": {"limits": {"memory": "700Mi"}}}})
    assert rendered.container["resources"] == {"requests": {"cpu": "100m", "memory": "256Mi"},
                                               "limits": {"cpu": "1", "memory": "700Mi"}}
    rendered = Rendered(PREFECT3, {"worker": {"resources": {"limits": {"cpu": None}}}})
    assert rendered.container["resources"] == {"requests": {"cpu": "100m", "memory": "256Mi"},
                                               "limits": {"memory": "1Gi"}}


@pytest.mark.parametrize("generation", [PREFECT1, PREFECT3])
def test_the_liveness_probe_can_be_turned_off_leaving_startup_and_readiness(generation):
    rendered = Rendered(generation, {"worker": {"livenessProbe": {"enabled": False}}})
    assert "livenessProbe" not in rendered.container
    assert "startupProbe" in rendered.container and "readinessProbe" in rendered.container


# --- keys owned elsewhere, unknown keys ------------------------------------------------------------------------

@pytest.mark.parametrize("path", sorted(OWNED_ELSEWHERE))
def test_a_key_the_config_holds_elsewhere_fails_naming_where(path):
    error = error_of(parse_qhub_config, qhub_config(PREFECT3, nested(path, "x")), ENVIRON)
    assert error.path == "prefect.overrides." + path
    assert OWNED_ELSEWHERE[path] in error.message


def test_a_pasted_values_yaml_may_keep_the_charts_empty_values_and_what_the_collection_does_anyway():
    overrides = {"worker": {"image": {"repository": "", "prefectTag": None, "debug": False}, "apiConfig": "",
                            "config": {"type": "kubernetes", "installPolicy": "prompt", "observerClusterWide": False},
                            "autoscaling": {"enabled": False, "minReplicas": 1, "maxReplicas": 1},
                            "initContainer": {"resources": {}, "extraContainers": []},
                            "cloudApiConfig": {"jobApiKeyPropagation": "secretRef", "accountId": ""}},
                 "role": {"create": True, "namespace": ""}}
    assert Rendered(PREFECT3, overrides).kind("Deployment") is not None
    # Every value declared as the collection's own way is accepted.
    for path, same in SAME_AS_OURS.items():
        assert callable(same) or same, path


def test_the_image_is_set_at_prefect_image():
    error = error_of(parse_qhub_config, qhub_config(PREFECT3, {"worker": {"image": {
        "repository": "prefecthq/prefect", "prefectTag": "3-latest"}}}), ENVIRON)
    assert error.path.startswith("prefect.overrides.worker.image.")
    assert "prefect.image" in error.message


@pytest.mark.parametrize("path, hint", [
    ("worker.nodeSelecter", "did you mean worker.nodeSelector"),
    ("worker.config.limt", "did you mean worker.config.limit"),
    ("serviceAccount.annotation", "did you mean serviceAccount.annotations"),
    ("role.extraPermission", "did you mean role.extraPermissions"),
])
def test_an_unknown_key_fails_naming_its_path_and_the_nearest_known_key(path, hint):
    error = error_of(parse_qhub_config, qhub_config(PREFECT3, nested(path, "x")), ENVIRON)
    assert error.path == "prefect.overrides." + path
    assert hint in error.message


def test_an_unknown_key_fails_on_a_prefect1_agent_as_well():
    error = error_of(parse_qhub_config, qhub_config(PREFECT1, {"worker": {"nodeSelecter": {"a": "b"}}}), ENVIRON)
    assert error.path == "prefect.overrides.worker.nodeSelecter"
    assert "did you mean worker.nodeSelector" in error.message


# --- the queues: one field, two spellings ----------------------------------------------------------------------

def test_work_queues_and_the_agent_labels_set_the_same_field():
    overrides = {"PREFECT__CLOUD__AGENT__LABELS": "['dev']", "worker": {"config": {"workQueues": ["prod"]}}}
    error = error_of(parse_qhub_config, qhub_config(PREFECT3, overrides), ENVIRON)
    assert "worker.config.workQueues" in str(error) and "PREFECT__CLOUD__AGENT__LABELS" in str(error)
    assert "conflicts" in error.message
    overrides["worker"]["config"]["workQueues"] = ["dev"]
    rendered = Rendered(PREFECT3, overrides)
    assert rendered.flag_values("--work-queue") == ["dev"]
    assert rendered.spec.job.labels == ["dev"]


# --- extraEnvVars ----------------------------------------------------------------------------------------------

def test_an_extra_env_var_holding_a_secret_reference_fails():
    error = error_of(parse_qhub_config, qhub_config(PREFECT3, {"worker": {"extraEnvVars": [
        {"name": "DB_PASS", "value": "QHUB_SECRET_DB_PASS"}]}}), dict(ENVIRON, DB_PASS="x"))
    assert error.path == "prefect.overrides.worker.extraEnvVars[0].value"
    assert "secretEnvVars" in error.message


@pytest.mark.parametrize("generation", [PREFECT1, PREFECT3])
@pytest.mark.parametrize("name", ["PREFECT_API_KEY", "HOME", "PREFECT_KUBERNETES_CLUSTER_UID",
                                  "PREFECT_WORKER_QUERY_SECONDS", "JOB_CPU_LIMIT"])
def test_an_extra_env_var_the_collection_sets_fails(generation, name):
    error = error_of(parse_qhub_config, qhub_config(generation, {"worker": {"extraEnvVars": [
        {"name": "OK", "value": "1"}, {"name": name, "value": "x"}]}}), ENVIRON)
    assert error.path == "prefect.overrides.worker.extraEnvVars[1].name"
    assert name in error.message


def test_an_extra_env_var_also_in_env_vars_fails():
    error = error_of(parse_qhub_config, qhub_config(PREFECT3, {"envVars": {"FOO": "a"}, "worker": {
        "extraEnvVars": [{"name": "FOO", "value": "b"}]}}), ENVIRON)
    assert error.path == "prefect.overrides.worker.extraEnvVars[0].name"


def test_a_chart_env_setting_also_in_env_vars_fails():
    overrides = {"envVars": {"PREFECT_WORKER_QUERY_SECONDS": "5"}, "worker": {"config": {"queryInterval": 7}}}
    error = error_of(parse_qhub_config, qhub_config(PREFECT3, overrides), ENVIRON)
    assert "worker.config.queryInterval" in str(error)


# --- the collection's own labels and annotations ---------------------------------------------------------------

@pytest.mark.parametrize("generation", [PREFECT1, PREFECT3])
@pytest.mark.parametrize("key, name", [("podLabels", "app.kubernetes.io/instance"),
                                       ("podLabels", "app.kubernetes.io/managed-by"),
                                       ("podAnnotations", "qhub.prefect/secret-digest")])
def test_pod_labels_cannot_replace_the_collections_own(generation, key, name):
    overrides = {"worker": {key: {name: "mine"}}}
    error = error_of(Rendered, generation, overrides)
    assert error.path.endswith("worker." + key)
    assert name in error.message


# --- names the collection's own pod uses ----------------------------------------------------------------------
# Written to the intended behaviour: rendered twice, the Deployment would be refused by the API server (duplicate
# volume or container names, a mountPath that "must be unique") after the Secret and RBAC were applied.

@pytest.mark.parametrize("generation", [PREFECT1, PREFECT3])
@pytest.mark.parametrize("key, entry", [
    ("extraVolumes", {"name": "tmp", "emptyDir": {}}),
    ("extraVolumeMounts", {"name": "data", "mountPath": "/tmp"}),
    ("extraContainers", {"name": "prefect-%s", "image": "busybox:1.36"}),
])
def test_an_extra_entry_clashing_with_the_collections_own_fails_naming_it(generation, key, entry):
    if "%s" in entry["name"]:
        entry = dict(entry, name=entry["name"] % ("agent" if generation == PREFECT1 else "worker"))
    overrides = {"worker": {key: [entry]}}
    if key == "extraVolumeMounts":
        overrides["worker"]["extraVolumes"] = [{"name": "data", "emptyDir": {}}]
    error = error_of(Rendered, generation, overrides)
    assert "worker.%s[0]" % key in error.path


# --- the API key and auth string from the user's Secret --------------------------------------------------------

def test_an_existing_api_key_secret_is_referenced_and_the_key_is_not_stored_again():
    rendered = Rendered(PREFECT3, {"worker": {"cloudApiConfig": {"apiKeySecret": {"name": "my-key",
                                                                                  "key": "api-key"}}}})
    secret = rendered.kind("Secret")
    assert "PREFECT_API_KEY" not in secret["data"]
    assert "canary-token" not in json.dumps(rendered.objects)
    env = rendered.env
    assert env["PREFECT_API_KEY"] == {"name": "PREFECT_API_KEY", "valueFrom": {
        "secretKeyRef": {"name": "my-key", "key": "api-key"}}}
    # The flow runs get the same reference from the worker.
    assert env["PREFECT_INTEGRATIONS_KUBERNETES_WORKER_API_KEY_SECRET_NAME"]["value"] == "my-key"
    assert env["PREFECT_INTEGRATIONS_KUBERNETES_WORKER_API_KEY_SECRET_KEY"]["value"] == "api-key"
    # Without the chart value, the collection's Secret holds it.
    plain = Rendered(PREFECT3, {})
    assert "PREFECT_API_KEY" in plain.kind("Secret")["data"]
    assert plain.env["PREFECT_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "prefect-worker",
                                                                         "key": "PREFECT_API_KEY"}


def test_an_api_key_secret_needs_a_name_and_key():
    error = error_of(parse_qhub_config, qhub_config(PREFECT3, {"worker": {"cloudApiConfig": {
        "apiKeySecret": {"name": "my-key"}}}}), ENVIRON)
    assert error.path == "prefect.overrides.worker.cloudApiConfig.apiKeySecret.key"


# --- the ServiceAccount ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("generation", [PREFECT1, PREFECT3])
@pytest.mark.parametrize("account, expected", [({"create": False}, "default"),
                                               ({"create": False, "name": "existing"}, "existing")])
def test_no_service_account_is_created_and_the_pod_uses_the_named_one(generation, account, expected):
    rendered = Rendered(generation, {"serviceAccount": account})
    assert rendered.kind("ServiceAccount") is None
    assert rendered.pod["serviceAccountName"] == expected
    assert rendered.kind("RoleBinding")["subjects"][0]["name"] == expected


# --- replicas and the worker's name ----------------------------------------------------------------------------

def test_two_replicas_with_one_worker_name_fail():
    overrides = {"worker": {"replicaCount": 2, "config": {"name": "worker-a"}}}
    error = error_of(prefect_agent_config.build_spec, agent_params(PREFECT3, overrides), ENVIRON)
    assert error.path == "overrides.worker.config.name"
    params = agent_params(PREFECT3, {"worker": {"config": {"name": "worker-a"}}}, replicas=2)
    assert error_of(prefect_agent_config.build_spec, params, ENVIRON).path == "overrides.worker.config.name"


def test_replica_count_and_the_replicas_option_must_agree():
    overrides = {"worker": {"replicaCount": 2}}
    error = error_of(prefect_agent_config.build_spec, agent_params(PREFECT3, overrides, replicas=3), ENVIRON)
    assert error.path == "overrides.worker.replicaCount"
    spec = prefect_agent_config.build_spec(agent_params(PREFECT3, overrides, replicas=2), ENVIRON)
    assert spec.replicas == 2


def test_two_replicas_are_named_after_their_pods():
    rendered = Rendered(PREFECT3, {"worker": {"replicaCount": 2}})
    assert rendered.flag_values("--name") == ["$(POD_NAME)"]
    assert rendered.env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}


# --- jobNamespace ----------------------------------------------------------------------------------------------

def test_a_job_namespace_gets_the_role_and_binding_and_the_worker_watches_it():
    rendered = Rendered(PREFECT3, {"worker": {"config": {"jobNamespace": "flows"}}})
    role, binding = rendered.kind("Role", "flows"), rendered.kind("RoleBinding", "flows")
    assert role["rules"] == rendered.kind("Role")["rules"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "prefect-worker", "namespace": "dev"}]
    assert rendered.env["PREFECT_INTEGRATIONS_KUBERNETES_OBSERVER_NAMESPACES"]["value"] == "flows"
    assert rendered.pool["variables"]["properties"]["namespace"]["default"] == "flows"


# --- image versions and the cluster UID ------------------------------------------------------------------------

@pytest.mark.parametrize("version, install_policy", [("2.10.12", False), ("2.10.17", False), ("2.10.18", True),
                                                     ("2.20.0", True), ("3.4.1", True)])
def test_the_worker_flags_follow_the_image_version(version, install_policy):
    image = "prefecthq/prefect:%s-python3.11-kubernetes" % version
    rendered = Rendered(PREFECT3, {"worker": {"clusterUid": "uid-1"}}, image=image)
    args = rendered.container["args"]
    assert "--with-healthcheck" in args
    assert ("--install-policy" in args) is install_policy
    if install_policy:
        assert args[args.index("--install-policy") + 1] == "never"


def test_an_image_before_the_healthcheck_flag_is_refused_naming_the_minimum():
    image = "prefecthq/prefect:2.10.11-python3.11-kubernetes"
    error = error_of(check_image_version, image, PREFECT3)
    assert "2.10.12" in error.message
    error = error_of(parse_qhub_config, qhub_config(PREFECT3, {}, image=image), ENVIRON)
    assert error.path == "prefect.image" and "2.10.12" in error.message
    error = error_of(prefect_agent_config.build_spec, agent_params(PREFECT3, {}, image=image), ENVIRON)
    assert error.path == "image" and "2.10.12" in error.message


@pytest.mark.parametrize("tag, needed", [
    ("2.9.0-python3.11-kubernetes", True), ("2.10.12-python3.11-kubernetes", True), ("2.20.3-python3.11", True),
    ("3.3.7-python3.12-kubernetes", True), ("3.4.0-python3.11-kubernetes", True),
    ("3.4.1-python3.11-kubernetes", False), ("3.6.0-python3.12", False),
    ("3-python3.11", False), ("3-latest", False), ("latest", False),
    ("2-python3.11", True), ("2-latest", True),
])
def test_which_images_need_the_cluster_uid(tag, needed):
    assert needs_cluster_uid("prefecthq/prefect:" + tag) is needed


class ForbiddenClient:
    """A deployer that may not read kube-system."""

    def __init__(self):
        self.requests = []

    def get(self, path):
        self.requests.append(path)
        raise KubeError("forbidden", status=403)


def test_a_given_cluster_uid_is_used_without_reading_kube_system():
    client = ForbiddenClient()
    params = agent_params(PREFECT3, {"worker": {"clusterUid": "uid-1"}}, image="prefecthq/prefect:3.3.7-python3.12")
    spec = prefect_agent_config.build_spec(params, ENVIRON)
    assert agent_cluster.cluster_uid(client, spec, None) == ("uid-1", None)
    assert client.requests == []


def test_a_newer_image_reads_no_cluster_uid():
    client = ForbiddenClient()
    spec = Rendered(PREFECT3, {}).spec
    assert agent_cluster.cluster_uid(client, spec, None) == (None, None)
    assert client.requests == []
    assert "PREFECT_KUBERNETES_CLUSTER_UID" not in Rendered(PREFECT3, {}).env


def test_an_image_that_reads_the_uid_fails_when_it_cannot_be_read():
    client = ForbiddenClient()
    params = agent_params(PREFECT3, {}, image="prefecthq/prefect:3.3.7-python3.12")
    spec = prefect_agent_config.build_spec(params, ENVIRON)
    error = error_of(agent_cluster.cluster_uid, client, spec, None)
    assert error.path == "prefect.overrides.worker.clusterUid"
    assert client.requests == ["/api/v1/namespaces/kube-system"]
