"""The run lock on the test bed's real API server: Leases for a cluster admin, a ConfigMap for a namespace admin.

Each RunLock gets its own KubeClient, as two runs would. The namespace-only deployer is a ServiceAccount
bound in one namespace to the built-in ``admin`` ClusterRole, which grants nothing on Leases.
"""

import concurrent.futures
import datetime
import json
import uuid

import pytest
from kubernetes import client as k8s

from ansible_collections.qhub.prefect.plugins.module_utils._kube.client import KubeClient, KubeError
from ansible_collections.qhub.prefect.plugins.module_utils._kube.lock import (
    LEADER_ANNOTATION, LockError, RunLock, lease_name,
)
from tests.support.cluster_objects import read_configmap, read_lease
from tests.support.pod_client import mint_token, wait_for

LEASE_PATH = "/apis/coordination.k8s.io/v1/namespaces/%s/leases/%s"


def admin_client(testbed):
    if testbed.admin_token is None:  # an existing cluster: its kubeconfig says how to authenticate
        return KubeClient(kubeconfig=testbed.kubeconfig)
    return KubeClient(host=testbed.api_server, token=testbed.admin_token, ca_cert=testbed.ca_file)


@pytest.fixture
def name():
    return lease_name("lock-" + uuid.uuid4().hex[:6])


def test_an_uncontended_lock_costs_four_requests_and_the_lease_lives_only_while_held(testbed, kube_admin,
                                                                                     unique_namespace, name):
    client = admin_client(testbed)
    # A long duration: no renewal falls inside this test to change the count.
    lock = RunLock(client, unique_namespace, name, "host=first user=ops pid=1", duration=300).acquire()
    try:
        assert lock.kind == "Lease" and client.requests == 3
        lease = read_lease(kube_admin, unique_namespace, name)
        assert lease.spec.holder_identity == "host=first user=ops pid=1"
        assert lease.spec.lease_duration_seconds == 300 and lease.spec.lease_transitions == 0
        assert lease.metadata.labels == {"app.kubernetes.io/managed-by": "qhub.prefect"}
    finally:
        lock.release()
    assert client.requests == 4 and lock.release_error is None
    assert read_lease(kube_admin, unique_namespace, name) is None


def test_a_second_run_waits_then_fails_naming_the_first_and_gets_the_lock_once_it_is_released(
        testbed, kube_admin, unique_namespace, name):
    first = RunLock(admin_client(testbed), unique_namespace, name, "host=first user=ops pid=1 awx_job=11")
    second = RunLock(admin_client(testbed), unique_namespace, name, "host=second user=ops pid=2", timeout=3)
    with first:
        with pytest.raises(LockError) as refused:
            second.acquire()
        message = str(refused.value)
        assert ("another run holds the lock %s in namespace %s: host=first user=ops pid=1 awx_job=11, since "
                % (name, unique_namespace)) in message
        assert "waited 3 s" in message and "expires 30 s after its last renewal" in message, message
        assert read_lease(kube_admin, unique_namespace, name).spec.holder_identity.startswith("host=first")
    assert read_lease(kube_admin, unique_namespace, name) is None
    with second:
        assert second.kind == "Lease"
        assert read_lease(kube_admin, unique_namespace, name).spec.holder_identity == "host=second user=ops pid=2"
    assert read_lease(kube_admin, unique_namespace, name) is None


def test_a_waiting_run_takes_the_lock_when_the_holder_releases_it(testbed, kube_admin, unique_namespace, name):
    first = RunLock(admin_client(testbed), unique_namespace, name, "host=first").acquire()
    second = RunLock(admin_client(testbed), unique_namespace, name, "host=second", timeout=60)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(second.acquire)
        # Released only once the second run has been refused at least once: it read the Lease twice.
        wait_for(lambda: second.client.requests >= 2, 30, interval=0.2, what="the second run to poll")
        assert not waiting.done()
        first.release()
        waiting.result(timeout=60)
    try:
        assert second.held and second.waited > 0
        assert read_lease(kube_admin, unique_namespace, name).spec.holder_identity == "host=second"
    finally:
        second.release()


def test_an_expired_lease_is_taken_over(testbed, kube_admin, unique_namespace, name):
    long_ago = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=5)
    k8s.CoordinationV1Api(kube_admin).create_namespaced_lease(unique_namespace, k8s.V1Lease(
        metadata=k8s.V1ObjectMeta(name=name), spec=k8s.V1LeaseSpec(
            holder_identity="host=dead pid=1", lease_duration_seconds=30, acquire_time=long_ago,
            renew_time=long_ago, lease_transitions=2)))
    with RunLock(admin_client(testbed), unique_namespace, name, "host=next", timeout=0) as lock:
        lease = read_lease(kube_admin, unique_namespace, name)
        assert lease.spec.holder_identity == "host=next" and lease.spec.lease_transitions == 3
        assert lease.spec.renew_time > long_ago + datetime.timedelta(minutes=4)
        assert lock.waited < 1  # taken at the first look, not after waiting
    assert read_lease(kube_admin, unique_namespace, name) is None


def test_the_holder_renews_and_notices_when_the_lease_is_taken_from_it(testbed, kube_admin, unique_namespace, name):
    lock = RunLock(admin_client(testbed), unique_namespace, name, "host=holder", duration=3).acquire()
    try:
        first = read_lease(kube_admin, unique_namespace, name).spec.renew_time
        wait_for(lambda: read_lease(kube_admin, unique_namespace, name).spec.renew_time > first, 30, interval=0.2,
                 what="a renewal")
        assert not lock.lost
        k8s.CoordinationV1Api(kube_admin).patch_namespaced_lease(
            name, unique_namespace, {"spec": {"holderIdentity": "host=thief"}})
        wait_for(lambda: lock.lost, 30, interval=0.2, what="the holder to notice")
        with pytest.raises(LockError, match="it is now held by host=thief"):
            lock.check()
    finally:
        lock.release()
    # Not its Lease any more: left to the thief.
    assert read_lease(kube_admin, unique_namespace, name).spec.holder_identity == "host=thief"


def test_release_deletes_a_lease_edited_while_held_but_no_stale_delete_passes(
        testbed, kube_admin, unique_namespace, name):
    client = admin_client(testbed)
    lock = RunLock(client, unique_namespace, name, "host=holder", duration=300).acquire()
    lease = read_lease(kube_admin, unique_namespace, name)
    k8s.CoordinationV1Api(kube_admin).patch_namespaced_lease(
        name, unique_namespace, {"metadata": {"labels": {"team": "data"}}})
    # The API server honours a resourceVersion precondition on delete (what release relies on not to
    # delete a Lease taken over since its last write).
    with pytest.raises(KubeError) as stale:
        client.request("DELETE", LEASE_PATH % (unique_namespace, name), body={
            "apiVersion": "v1", "kind": "DeleteOptions", "preconditions": {
                "uid": lease.metadata.uid, "resourceVersion": lease.metadata.resource_version}})
    assert stale.value.status == 409
    lock.release()
    assert lock.release_error is None and read_lease(kube_admin, unique_namespace, name) is None


def test_a_missing_namespace_is_named(testbed, name):
    missing = "t-missing-" + uuid.uuid4().hex[:6]
    with pytest.raises(LockError, match="the namespace %s does not exist" % missing):
        RunLock(admin_client(testbed), missing, name, "host=a").acquire()


@pytest.fixture
def namespace_admin_token(kube_admin, unique_namespace):
    """A token of a ServiceAccount bound to the built-in admin ClusterRole in the test's namespace only."""
    core, rbac = k8s.CoreV1Api(kube_admin), k8s.RbacAuthorizationV1Api(kube_admin)
    core.create_namespaced_service_account(unique_namespace, k8s.V1ServiceAccount(
        metadata=k8s.V1ObjectMeta(name="deployer")))
    rbac.create_namespaced_role_binding(unique_namespace, k8s.V1RoleBinding(
        metadata=k8s.V1ObjectMeta(name="deployer-admin"),
        role_ref=k8s.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="ClusterRole", name="admin"),
        subjects=[k8s.RbacV1Subject(kind="ServiceAccount", name="deployer", namespace=unique_namespace)]))
    return mint_token(kube_admin, unique_namespace, "deployer")


def namespace_admin_client(testbed, token):
    return KubeClient(host=testbed.api_server, token=token, ca_cert=testbed.ca_file)


def test_a_namespace_admin_locks_with_a_configmap_that_excludes_every_other_run(
        testbed, kube_admin, unique_namespace, name, namespace_admin_token):
    client = namespace_admin_client(testbed, namespace_admin_token)
    # The premise: admin in one namespace may not even read a Lease there.
    with pytest.raises(KubeError) as forbidden:
        client.get(LEASE_PATH % (unique_namespace, name))
    assert forbidden.value.status == 403
    client.requests = 0

    first = RunLock(client, unique_namespace, name, "host=adm user=ops pid=1", duration=300).acquire()
    try:
        assert first.kind == "ConfigMap" and "forbidden" in first.fallback_reason
        assert client.requests == 3  # GET Lease (403), GET ConfigMap (404), POST ConfigMap
        configmap = read_configmap(kube_admin, unique_namespace, name)
        record = json.loads(configmap.metadata.annotations[LEADER_ANNOTATION])
        assert record["holderIdentity"] == "host=adm user=ops pid=1" and record["leaseDurationSeconds"] == 300
        assert sorted(record) == ["acquireTime", "holderIdentity", "leaderTransitions", "leaseDurationSeconds",
                                  "renewTime"]
        assert configmap.metadata.labels == {"app.kubernetes.io/managed-by": "qhub.prefect"}

        other_admin = RunLock(namespace_admin_client(testbed, namespace_admin_token), unique_namespace, name,
                              "host=adm2 pid=2", timeout=2)
        with pytest.raises(LockError, match="another run holds the lock %s in namespace %s: host=adm user=ops pid=1"
                                            % (name, unique_namespace)):
            other_admin.acquire()
        # A deployer who may use Leases honours the ConfigMap, and gives back the Lease it took to look.
        cluster_admin = RunLock(admin_client(testbed), unique_namespace, name, "host=root pid=3", timeout=2)
        with pytest.raises(LockError, match="host=adm user=ops pid=1.*its ConfigMap expires"):
            cluster_admin.acquire()
        assert read_lease(kube_admin, unique_namespace, name) is None
    finally:
        first.release()
    assert client.requests == 4 and first.release_error is None
    assert read_configmap(kube_admin, unique_namespace, name) is None

    with RunLock(namespace_admin_client(testbed, namespace_admin_token), unique_namespace, name,
                 "host=adm2 pid=2", timeout=2) as second:
        assert second.kind == "ConfigMap"
        assert json.loads(read_configmap(kube_admin, unique_namespace, name).metadata.annotations[
            LEADER_ANNOTATION])["holderIdentity"] == "host=adm2 pid=2"
    assert read_configmap(kube_admin, unique_namespace, name) is None


def test_a_namespace_admin_renews_its_configmap_lock(testbed, kube_admin, unique_namespace, name,
                                                     namespace_admin_token):
    lock = RunLock(namespace_admin_client(testbed, namespace_admin_token), unique_namespace, name, "host=adm",
                   duration=3)
    with lock:
        def renewed():
            configmap = read_configmap(kube_admin, unique_namespace, name)
            record = json.loads(configmap.metadata.annotations[LEADER_ANNOTATION])
            return record["renewTime"] != record["acquireTime"]
        wait_for(renewed, 30, interval=0.2, what="a renewal of the ConfigMap lock")
        lock.check()
    assert read_configmap(kube_admin, unique_namespace, name) is None
