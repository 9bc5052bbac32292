"""A run changes only what its own QHub deployment owns, on the test bed's real API server and Prefect server.

Ownership is the instance label *and* the namespace: twins sharing a project_name stop instead of deleting
each other, a move needs qhub_prefect_move_from, another instance's objects are never taken over, the old
agent stays when anything new fails, one run at a time holds the Lease qhub-prefect-<instance>, and a user
bound to the built-in admin ClusterRole in one namespace only can deploy, rerun and disable there.
"""

import concurrent.futures
import datetime
import uuid

import pytest
import yaml
from kubernetes import client as k8s

from tests.support.ansible_cli import run_module, run_playbook
from tests.support.cluster_objects import MANAGED, labelled, read_lease
from tests.support.pod_client import DEPLOYMENT_GONE_TIMEOUT, mint_token, service_account_kubeconfig, wait_for

PREFECT3_IMAGE = "prefecthq/prefect:3-python3.11-kubernetes"
WORKER_OBJECTS = ("ServiceAccount", "Role", "RoleBinding", "Secret", "Deployment")


def env_of(testbed, kubeconfig=None):
    return {"KUBECONFIG": kubeconfig or testbed.kubeconfig, "PREFECT_API_URL": testbed.prefect_api_url,
            "QHUB_SECRET_PREFECT_TOKEN": "unused-token"}


def deploy(tmp_path, config, env, check=False, diff=False, extra=None):
    path = tmp_path / ("qhub-config-%s.yml" % uuid.uuid4().hex[:6])
    path.write_text(yaml.safe_dump(config))
    # One pool per QHub deployment, the same from run to run (a rerun must find nothing to change).
    pool = "own-" + (config.get("project_name") or config["namespace"])
    extra_vars = dict({"qhub_config_file": str(path), "qhub_prefect_work_pool": pool}, **(extra or {}))
    return run_playbook("playbooks/deploy.yml", extra_vars, env=env, check=check, diff=diff)


def config_of(namespace, project=None, enabled=True, **prefect):
    config = {"namespace": namespace, "prefect": dict({"enabled": enabled, "image": PREFECT3_IMAGE}, **prefect)}
    if project:
        config["project_name"] = project
    return config


def objects_in(api_client, namespace):
    """{(kind, name): uid} of the collection's objects in ``namespace``."""
    return dict(((kind, item.metadata.name), item.metadata.uid)
                for kind, item in labelled(api_client, MANAGED, namespace))


def worker_objects(namespace_objects):
    return set(kind for kind, name in namespace_objects if name == "prefect-worker")


def test_twins_sharing_a_project_name_stop_instead_of_deleting_each_other(testbed, kube_admin, make_namespace,
                                                                          tmp_path):
    prod, staging = make_namespace(), make_namespace()
    project = "twin-" + uuid.uuid4().hex[:6]
    env = env_of(testbed)
    assert deploy(tmp_path, config_of(prod, project), env).rc == 0
    before = objects_in(kube_admin, prod)
    assert worker_objects(before) == set(WORKER_OBJECTS)

    for check in (True, False):  # check mode says the same as the run
        refused = deploy(tmp_path, config_of(staging, project), env, check=check, diff=check)
        assert refused.rc != 0
        text = refused.output
        assert "the QHub deployment %s already has an agent or worker in the namespace %s" % (project, prod) in text
        assert "qhub_prefect_move_from=%s" % prod in text and "qhub_prefect_instance" in text
        assert objects_in(kube_admin, prod) == before  # not one object replaced
        assert objects_in(kube_admin, staging) == {}

    # A different deployment that shares the name: its own instance, and both live side by side.
    extra = {"qhub_prefect_instance": project + "-staging"}
    assert deploy(tmp_path, config_of(staging, project), env, extra=extra).rc == 0
    assert worker_objects(objects_in(kube_admin, staging)) == set(WORKER_OBJECTS)
    assert objects_in(kube_admin, prod) == before
    rerun = deploy(tmp_path, config_of(prod, project), env)
    assert rerun.rc == 0 and objects_in(kube_admin, staging) != {}, rerun


def test_no_project_name_in_dev_is_not_project_name_dev_elsewhere(testbed, kube_admin, make_namespace, tmp_path):
    dev, prod = make_namespace(), make_namespace()
    env = env_of(testbed)
    assert deploy(tmp_path, config_of(dev), env).rc == 0  # instance from the namespace
    named = deploy(tmp_path, config_of(prod, project=dev), env)  # project_name equal to that namespace
    assert named.rc == 0, named
    again = deploy(tmp_path, config_of(dev), env)
    assert again.rc == 0, again
    assert worker_objects(objects_in(kube_admin, dev)) == set(WORKER_OBJECTS)
    assert worker_objects(objects_in(kube_admin, prod)) == set(WORKER_OBJECTS)


def test_objects_of_the_old_namespace_label_are_adopted(testbed, kube_admin, make_namespace, tmp_path):
    namespace = make_namespace()
    env = env_of(testbed)
    # What an earlier version wrote for a config without project_name: the bare namespace as instance.
    old = deploy(tmp_path, config_of(namespace), env, extra={"qhub_prefect_instance": namespace})
    assert old.rc == 0, old
    uids = objects_in(kube_admin, namespace)
    rerun = deploy(tmp_path, config_of(namespace), env)
    assert rerun.rc == 0, rerun
    assert objects_in(kube_admin, namespace) == uids
    deployment = k8s.AppsV1Api(kube_admin).read_namespaced_deployment("prefect-worker", namespace)
    assert deployment.metadata.labels["qhub.prefect/instance"] == namespace + ".ns"


def test_objects_from_before_the_instance_label_are_adopted(testbed, kube_admin, unique_namespace, tmp_path):
    # The module without instance writes what versions before the label wrote: managed-by, no instance.
    project = "adopt-" + uuid.uuid4().hex[:6]
    pool = "own-" + project
    old = run_module("prefect_agent_config", {"namespace": unique_namespace, "api_url": testbed.prefect_api_url,
                                              "kubeconfig": testbed.kubeconfig, "work_pool": pool})
    assert old.rc == 0, old
    uids = objects_in(kube_admin, unique_namespace)
    adopted = deploy(tmp_path, config_of(unique_namespace, project), env_of(testbed))
    assert adopted.rc == 0, adopted
    assert objects_in(kube_admin, unique_namespace) == uids
    deployment = k8s.AppsV1Api(kube_admin).read_namespaced_deployment("prefect-worker", unique_namespace)
    assert deployment.metadata.labels["qhub.prefect/instance"] == project


def test_a_move_needs_move_from_and_then_leaves_one_worker(testbed, kube_admin, make_namespace, tmp_path):
    old, new = make_namespace(), make_namespace()
    project = "move-" + uuid.uuid4().hex[:6]
    env = env_of(testbed)
    assert deploy(tmp_path, config_of(old, project), env).rc == 0
    before = objects_in(kube_admin, old)

    extra = {"qhub_prefect_move_from": old}
    checked = deploy(tmp_path, config_of(new, project), env, check=True, diff=True, extra=extra)
    assert checked.rc == 0, checked
    assert "Deployment %s/prefect-worker (absent)" % old in checked.stdout
    assert objects_in(kube_admin, old) == before and objects_in(kube_admin, new) == {}

    moved = deploy(tmp_path, config_of(new, project), env, extra=extra)
    assert moved.rc == 0, moved
    wait_for(lambda: objects_in(kube_admin, old) == {}, DEPLOYMENT_GONE_TIMEOUT, what="the old namespace emptied")
    assert worker_objects(objects_in(kube_admin, new)) == set(WORKER_OBJECTS)
    again = deploy(tmp_path, config_of(new, project), env, extra=extra)
    assert again.rc == 0 and again["recap"]["changed"] == 0, again

    # Disabling in the old namespace while the worker runs in the new one: stopped, nothing removed.
    stray = deploy(tmp_path, config_of(old, project, enabled=False), env)
    assert stray.rc != 0 and "in the namespace %s" % new in stray.output
    assert worker_objects(objects_in(kube_admin, new)) == set(WORKER_OBJECTS)
    removed = deploy(tmp_path, config_of(new, project, enabled=False), env)
    assert removed.rc == 0, removed
    wait_for(lambda: objects_in(kube_admin, new) == {}, 60, what="the removal")


def test_another_instances_objects_are_never_taken_over(testbed, kube_admin, make_namespace, tmp_path):
    namespace = make_namespace()
    env = env_of(testbed)
    first, second = "first-" + uuid.uuid4().hex[:6], "second-" + uuid.uuid4().hex[:6]
    assert deploy(tmp_path, config_of(namespace, first), env).rc == 0
    before = objects_in(kube_admin, namespace)
    deployment = k8s.AppsV1Api(kube_admin).read_namespaced_deployment("prefect-worker", namespace)

    for enabled in (True, False):  # neither a deploy nor a removal touches them
        refused = deploy(tmp_path, config_of(namespace, second, enabled=enabled), env)
        if enabled:
            assert refused.rc != 0
            assert "another QHub deployment (instance %s) owns" % first in refused.output, refused.output[-2000:]
            assert "Deployment %s/prefect-worker" % namespace in refused.output
        else:
            assert refused.rc == 0, refused
        assert objects_in(kube_admin, namespace) == before
        assert k8s.AppsV1Api(kube_admin).read_namespaced_deployment(
            "prefect-worker", namespace).metadata.resource_version == deployment.metadata.resource_version

    forced = deploy(tmp_path, config_of(namespace, second), env, extra={"qhub_prefect_force": True})
    assert forced.rc == 0, forced
    assert k8s.AppsV1Api(kube_admin).read_namespaced_deployment(
        "prefect-worker", namespace).metadata.labels["qhub.prefect/instance"] == second


def test_when_the_new_one_is_refused_the_old_one_stays_and_the_error_says_where(testbed, kube_admin,
                                                                                make_namespace, tmp_path):
    old, new = make_namespace(), make_namespace()
    project = "quota-" + uuid.uuid4().hex[:6]
    env = env_of(testbed)
    assert deploy(tmp_path, config_of(old, project), env).rc == 0
    before = objects_in(kube_admin, old)
    # A quota in the new namespace that admits no Deployment.
    k8s.CoreV1Api(kube_admin).create_namespaced_resource_quota(new, k8s.V1ResourceQuota(
        metadata=k8s.V1ObjectMeta(name="no-deployments"), spec=k8s.V1ResourceQuotaSpec(
            hard={"count/deployments.apps": "0"})))
    failed = deploy(tmp_path, config_of(new, project), env, extra={"qhub_prefect_move_from": old})
    assert failed.rc != 0
    assert "exceeded quota" in failed.output
    assert "Nothing old was deleted: the old agent or worker still runs (Deployment %s/prefect-worker)" % old \
        in failed.output, failed.output[-3000:]
    assert objects_in(kube_admin, old) == before


def hold_lease(kube_admin, namespace, name, holder, renewed):
    k8s.CoordinationV1Api(kube_admin).create_namespaced_lease(namespace, k8s.V1Lease(
        metadata=k8s.V1ObjectMeta(name=name), spec=k8s.V1LeaseSpec(
            holder_identity=holder, lease_duration_seconds=30, acquire_time=renewed, renew_time=renewed)))


def module_args(testbed, namespace, instance, **more):
    return dict({"namespace": namespace, "instance": instance, "api_url": testbed.prefect_api_url,
                 "api_key": "lock-test", "kubeconfig": testbed.kubeconfig, "work_pool": "lock-" + namespace}, **more)


def test_a_held_lease_makes_a_second_run_wait_then_fail_naming_the_holder(testbed, kube_admin, unique_namespace):
    instance = "locked-" + uuid.uuid4().hex[:6]
    name = "qhub-prefect-" + instance
    now = datetime.datetime.now(datetime.timezone.utc)
    hold_lease(kube_admin, unique_namespace, name, "host=elsewhere user=ops pid=42 awx_job=7", now)
    refused = run_module("prefect_agent_config", module_args(testbed, unique_namespace, instance, lock_timeout=3))
    assert refused.rc != 0
    assert "host=elsewhere user=ops pid=42 awx_job=7" in refused.output, refused.output[-2000:]
    assert objects_in(kube_admin, unique_namespace) == {}  # nothing written

    # A run that died: its Lease not renewed for longer than its duration is taken over.
    k8s.CoordinationV1Api(kube_admin).delete_namespaced_lease(name, unique_namespace)
    hold_lease(kube_admin, unique_namespace, name, "host=dead pid=1", now - datetime.timedelta(minutes=5))
    taken = run_module("prefect_agent_config", module_args(testbed, unique_namespace, instance, lock_timeout=3))
    assert taken.rc == 0, taken
    assert taken["lock"] == {"kind": "Lease", "name": name, "namespace": unique_namespace}
    assert read_lease(kube_admin, unique_namespace, name) is None  # released at the end


def test_a_no_op_writes_nothing_not_even_its_lock_but_a_change_takes_the_lock(testbed, kube_admin, unique_namespace):
    instance = "noop-" + uuid.uuid4().hex[:6]
    args = module_args(testbed, unique_namespace, instance)
    assert run_module("prefect_agent_config", args).rc == 0
    before = objects_in(kube_admin, unique_namespace)
    # From here no Lease and no ConfigMap may be created in the namespace: a run that takes its lock fails.
    k8s.CoreV1Api(kube_admin).create_namespaced_resource_quota(unique_namespace, {
        "metadata": {"name": "no-locks"},
        "spec": {"hard": {"count/leases.coordination.k8s.io": "0", "count/configmaps": "0"}}})

    rerun = run_module("prefect_agent_config", args)
    assert rerun.rc == 0 and rerun["changed"] is False, rerun.output[-2000:]
    assert rerun.get("lock") is None
    assert objects_in(kube_admin, unique_namespace) == before

    changed = run_module("prefect_agent_config", dict(args, overrides={"envVars": {"CHANGED": "1"}}, lock_timeout=3))
    assert changed.rc != 0
    assert "run lock" in changed["msg"] and "no-locks" in changed["msg"], changed["msg"]
    assert objects_in(kube_admin, unique_namespace) == before  # nothing written without the lock
    k8s.CoreV1Api(kube_admin).delete_namespaced_resource_quota("no-locks", unique_namespace)


def test_two_runs_started_together_ten_times_one_waits_and_no_object_is_lost(testbed, kube_admin, unique_namespace):
    instance = "race-" + uuid.uuid4().hex[:6]
    for round_number in range(10):
        args = module_args(testbed, unique_namespace, instance,
                           overrides={"envVars": {"ROUND": str(round_number)}}, lock_timeout=120)
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            results = list(pool.map(lambda dummy: run_module("prefect_agent_config", args), range(2)))
        assert [r.rc for r in results] == [0, 0], [r.output[-2000:] for r in results]
        # The round's change is made once, under the lock; the other run finds nothing to do, after the lock
        # or, if it read once the first had finished, without taking it.
        assert sorted(r["changed"] for r in results) == [False, True], round_number
        assert all(r["lock"]["kind"] == "Lease" for r in results if r["changed"])
        assert worker_objects(objects_in(kube_admin, unique_namespace)) == set(WORKER_OBJECTS)
        env = k8s.AppsV1Api(kube_admin).read_namespaced_deployment(
            "prefect-worker", unique_namespace).spec.template.spec.containers[0].env
        assert {"ROUND": str(round_number)}.items() <= dict((e.name, e.value) for e in env).items()
    assert read_lease(kube_admin, unique_namespace, "qhub-prefect-" + instance) is None


def namespace_admin_kubeconfig(testbed, kube_admin, namespace, tmp_path):
    """A kubeconfig for a ServiceAccount bound to the built-in admin ClusterRole in ``namespace`` only."""
    core, rbac = k8s.CoreV1Api(kube_admin), k8s.RbacAuthorizationV1Api(kube_admin)
    core.create_namespaced_service_account(namespace, k8s.V1ServiceAccount(metadata=k8s.V1ObjectMeta(
        name="deployer")))
    rbac.create_namespaced_role_binding(namespace, k8s.V1RoleBinding(
        metadata=k8s.V1ObjectMeta(name="deployer-admin"),
        role_ref=k8s.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="ClusterRole", name="admin"),
        subjects=[k8s.RbacV1Subject(kind="ServiceAccount", name="deployer", namespace=namespace)]))
    token = mint_token(kube_admin, namespace, "deployer")
    return service_account_kubeconfig(str(tmp_path / "admin-of-one.kubeconfig"), testbed.api_server,
                                      testbed.ca_file, token, namespace)


def test_an_admin_of_one_namespace_deploys_reruns_and_disables_there(testbed, kube_admin, unique_namespace, tmp_path):
    kubeconfig = namespace_admin_kubeconfig(testbed, kube_admin, unique_namespace, tmp_path)
    env = env_of(testbed, kubeconfig)
    project = "admin-" + uuid.uuid4().hex[:6]
    pool = {"qhub_prefect_work_pool": "adm-" + unique_namespace}
    first = deploy(tmp_path, config_of(unique_namespace, project), env, extra=pool)
    assert first.rc == 0, first.output[-3000:]
    assert worker_objects(objects_in(kube_admin, unique_namespace)) == set(WORKER_OBJECTS)
    assert "other namespaces not searched" in first.output
    rerun = deploy(tmp_path, config_of(unique_namespace, project), env, extra=pool)
    assert rerun.rc == 0 and rerun["recap"]["changed"] == 0, rerun
    # Its lock: the ConfigMap of the Lease's name (admin has no rights on Leases), gone after the run.
    with pytest.raises(k8s.ApiException):
        k8s.CoreV1Api(kube_admin).read_namespaced_config_map("qhub-prefect-" + project, unique_namespace)
    disabled = deploy(tmp_path, config_of(unique_namespace, project, enabled=False), env, extra=pool)
    assert disabled.rc == 0, disabled.output[-3000:]
    # Foreground deletes: with the wait off the run does not stay for the garbage collector to finish.
    wait_for(lambda: worker_objects(objects_in(kube_admin, unique_namespace)) == set(), 60, what="the removal")
