"""Every broken config in tests/data/bad-configs makes deploy.yml fail with the key path and the problem,
and neither the cluster nor the Prefect server receives a write."""

import pathlib
import uuid
from concurrent.futures import ThreadPoolExecutor

from kubernetes import client as k8s

from tests.support.ansible_cli import run_playbook
from tests.support.cluster_objects import MANAGED as LABEL, labelled
from tests.support.fleet_clusters import config
from tests.support.pod_client import prefect_api

CORPUS = sorted((pathlib.Path(__file__).parents[1] / "data" / "bad-configs").glob("*.yml"))


def expectation(path):
    lines = path.read_text(encoding="utf-8").splitlines()
    key = lines[0].split(":", 1)[1].strip()
    return (str(path) if key == "qhub-config" else key), lines[1].split(":", 1)[1].strip()


def environment(path):
    """The ``# env: NAME=value`` lines: the environment the config fails in (empty values included)."""
    return dict(line.split(":", 1)[1].strip().split("=", 1) for line in path.read_text(encoding="utf-8").splitlines()
                if line.startswith("# env:"))


def cluster_state(api_client):
    """Namespaces and every object this collection could have written, with resourceVersions."""
    state = set(("Namespace", ns.metadata.name) for ns in k8s.CoreV1Api(api_client).list_namespace().items)
    state.update((kind, item.metadata.namespace, item.metadata.name, item.metadata.resource_version)
                 for kind, item in labelled(api_client, LABEL))
    return state


def pools(api_url):
    """What a deploy writes to a work pool; the server itself updates status and timestamps."""
    fields = ("name", "type", "description", "base_job_template", "is_paused", "concurrency_limit")
    return [dict((key, pool.get(key)) for key in fields)
            for pool in prefect_api(api_url, "POST", "/work_pools/filter", {})]


def test_the_corpus_has_at_least_40_configs():
    assert len(CORPUS) >= 40


def test_every_bad_config_fails_named_and_writes_nothing(testbed, kube_admin):
    env = {"KUBECONFIG": testbed.kubeconfig, "PREFECT_API_URL": testbed.prefect_api_url}
    cluster_before = cluster_state(kube_admin)
    pools_before = pools(testbed.prefect_api_url)

    def deploy(path):
        return path, run_playbook("playbooks/deploy.yml", {"qhub_config_file": str(path)},
                                  env=dict(env, **environment(path)))

    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(deploy, CORPUS))
    problems = []
    for path, result in results:
        key, message = expectation(path)
        if result.rc == 0:
            problems.append("%s: the playbook succeeded" % path.name)
        elif key not in result.output or message not in result.output:
            problems.append("%s: wanted %r and %r in\n%s" % (path.name, key, message, result.output[-1500:]))
    assert problems == []
    # Namespaces being deleted by earlier tests may vanish meanwhile; nothing may appear or change.
    assert cluster_state(kube_admin) <= cluster_before
    assert pools(testbed.prefect_api_url) == pools_before


def test_one_config_whose_localhost_has_a_credential_source_of_its_own_is_checked_as_a_fleets(
        testbed, kube_admin, tmp_path):
    """One config given with -e skips the fleet checks only with the controller's credential: a localhost whose
    inventory names its own (a plain-text key, an unset environment variable) is refused, and nothing is written."""
    env = {"KUBECONFIG": testbed.kubeconfig, "PREFECT_API_URL": testbed.prefect_api_url,
           "QHUB_SECRET_PREFECT_TOKEN": "controller-key"}
    tag = uuid.uuid4().hex[:6]
    sources = {
        "plain": ("qhub_prefect_api_key: plain-text-key-%s" % tag, "qhub_prefect_api_key is plain text"),
        "unset": ("qhub_prefect_token_env: QHUB_UNSET_KEY_%s" % tag.upper(),
                  "the Prefect API key comes from the environment variable QHUB_UNSET_KEY_%s" % tag.upper()),
    }
    for name, (host_var, message) in sources.items():
        namespace = "own-key-%s-%s" % (name, tag)
        path = config(tmp_path / name, namespace, namespace)
        inventory_file = tmp_path / name / "hosts.yml"
        inventory_file.write_text("all:\n  hosts:\n    localhost:\n      %s\n" % host_var)
        extra_vars = {"qhub_config_file": str(path), "qhub_prefect_work_pool": namespace}
        result = run_playbook("playbooks/deploy.yml", extra_vars, env=env, extra_args=("-i", str(inventory_file)))
        assert result.rc != 0 and message in result.output, (name, result)
        assert result["recap"].get("failed") == 1, (name, result)
        assert namespace not in [ns.metadata.name for ns in k8s.CoreV1Api(kube_admin).list_namespace().items], name
        assert [pool for pool in pools(testbed.prefect_api_url) if pool["name"] == namespace] == [], name
        assert "plain-text-key-" + tag not in result.output
