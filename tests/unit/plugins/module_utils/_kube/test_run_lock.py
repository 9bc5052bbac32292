"""The run lock: one run per deployment, on a Lease, or on a ConfigMap for a deployer who may not use Leases.

The cluster below keeps objects in memory and behaves as the API server does for what the lock relies on:
resourceVersion bumps on every write, 409 for a stale one or an existing name, DeleteOptions preconditions,
404 with details.kind "namespaces" for a missing namespace, 403 on Leases for a namespace-only deployer.
Each client is one run's view of the cluster, with its own permissions and request log. Time is fake:
sleep() advances the clock and lets the test act as the other run meanwhile.
"""

import copy
import json
import re
import threading

import pytest

from ansible_collections.qhub.prefect.plugins.module_utils._kube.client import KubeClient, KubeError
from ansible_collections.qhub.prefect.plugins.module_utils._kube.lock import (
    LEADER_ANNOTATION, LockError, RunLock, holder_identity, lease_name, micro_time, parse_time, rfc3339,
)

NS = "dev"
NAME = "qhub-prefect-prod"
LEASES = "/apis/coordination.k8s.io/v1/namespaces/dev/leases"
LEASE = LEASES + "/" + NAME
CONFIGMAPS = "/api/v1/namespaces/dev/configmaps"
CONFIGMAP = CONFIGMAPS + "/" + NAME
EPOCH = 1767225600.0  # 2026-01-01T00:00:00Z
PATH = re.compile(r"^/(?:api/v1|apis/coordination\.k8s\.io/v1)/namespaces/([^/]+)/(leases|configmaps)(?:/([^/]+))?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


class Time:
    """clock, now and sleep of one test; during each sleep the test may act as another run."""

    def __init__(self):
        self.t = 0.0
        self.sleeps = 0
        self.during_sleep = []

    def clock(self):
        return self.t

    def now(self):
        return EPOCH + self.t

    def sleep(self, seconds):
        self.t += seconds
        self.sleeps += 1
        for action in list(self.during_sleep):
            action(self.sleeps)


class Cluster:
    def __init__(self, namespaces=(NS,)):
        self.namespaces = set(namespaces)
        self.objects = {}
        self.version = 100
        self.serial = 0
        self.mutex = threading.Lock()
        self.put_seen = threading.Event()
        self.puts = 0

    def _bump(self, obj):
        self.version += 1
        obj["metadata"]["resourceVersion"] = str(self.version)
        return copy.deepcopy(obj)

    def handle(self, method, path, body):
        match = PATH.match(path)
        assert match, path
        namespace, plural, name = match.groups()
        with self.mutex:
            if method == "POST":
                key = (plural, namespace, body["metadata"]["name"])
                if namespace not in self.namespaces:
                    raise KubeError('namespaces "%s" not found' % namespace, status=404,
                                    body={"reason": "NotFound", "details": {"name": namespace, "kind": "namespaces"}})
                if key in self.objects:
                    raise KubeError("%s %r already exists" % (plural, key[2]), status=409,
                                    body={"reason": "AlreadyExists"})
                obj = copy.deepcopy(body)
                self.serial += 1
                obj["metadata"].update(uid="uid-%d" % self.serial, namespace=namespace)
                self.objects[key] = obj
                return 201, self._bump(obj)
            key = (plural, namespace, name)
            obj = self.objects.get(key)
            if obj is None:
                raise KubeError('%s "%s" not found' % (plural, name), status=404,
                                body={"reason": "NotFound", "details": {"name": name, "kind": plural}})
            if method == "GET":
                return 200, copy.deepcopy(obj)
            if method == "PUT":
                if body["metadata"].get("resourceVersion") != obj["metadata"]["resourceVersion"]:
                    raise KubeError("the object has been modified", status=409, body={"reason": "Conflict"})
                new = copy.deepcopy(body)
                new["metadata"]["uid"] = obj["metadata"]["uid"]
                self.objects[key] = new
                self.puts += 1
                self.put_seen.set()
                return 200, self._bump(new)
            if method == "DELETE":
                preconditions = (body or {}).get("preconditions") or {}
                for field in ("uid", "resourceVersion"):
                    if preconditions.get(field) not in (None, obj["metadata"][field]):
                        raise KubeError("Precondition failed: %s" % field, status=409, body={"reason": "Conflict"})
                del self.objects[key]
                return 200, {"kind": "Status", "status": "Success"}
        raise AssertionError(method)

    # The test acting as someone else, straight on the store.

    def put_object(self, plural, obj):
        with self.mutex:
            self.serial += 1
            obj = copy.deepcopy(obj)
            obj["metadata"].setdefault("uid", "uid-%d" % self.serial)
            obj["metadata"]["namespace"] = NS
            self.objects[(plural, NS, obj["metadata"]["name"])] = obj
            self._bump(obj)

    def edit(self, plural, change):
        with self.mutex:
            obj = self.objects[(plural, NS, NAME)]
            change(obj)
            self._bump(obj)

    def remove(self, plural):
        with self.mutex:
            self.objects.pop((plural, NS, NAME), None)

    def lease(self):
        return copy.deepcopy(self.objects.get(("leases", NS, NAME)))

    def configmap(self):
        return copy.deepcopy(self.objects.get(("configmaps", NS, NAME)))


class Client:
    """One run's KubeClient: request() and get() as in _kube/client.py, with this run's permissions."""

    def __init__(self, cluster, leases_forbidden=False, fail=None):
        self.cluster = cluster
        self.leases_forbidden = leases_forbidden
        self.log = []
        self.bodies = []
        # (method, plural) -> KubeError raised by the next such request (transient faults)
        self.fail = fail if fail is not None else {}
        self.before = []

    def request(self, method, path, query=None, body=None, content_type="application/json", accept=None):
        plural = "leases" if "/leases" in path else "configmaps"
        self.log.append((method, plural))
        self.bodies.append(copy.deepcopy(body))
        for hook in list(self.before):
            hook(method, plural)
        if self.leases_forbidden and plural == "leases":
            raise KubeError('leases.coordination.k8s.io "%s" is forbidden: User "system:serviceaccount:dev:deployer" '
                            'cannot %s resource "leases"' % (NAME, method.lower()), status=403,
                            body={"reason": "Forbidden"})
        error = self.fail.pop((method, plural), None)
        if error is not None:
            raise error
        return self.cluster.handle(method, path, body)

    # The real client's: a 404 is None, as the lock expects.
    get = KubeClient.get


def make_lock(client, time_, holder="host=a user=ops pid=1", **kwargs):
    return RunLock(client, NS, NAME, holder, clock=time_.clock, sleep=time_.sleep, now=time_.now, **kwargs)


def held_lease(holder, renewed, duration=30, transitions=0):
    stamp = micro_time(renewed)
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": NAME},
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": duration, "acquireTime": stamp,
                     "renewTime": stamp, "leaseTransitions": transitions}}


def held_configmap(holder, renewed, duration=30, transitions=0):
    record = {"holderIdentity": holder, "leaseDurationSeconds": duration, "acquireTime": rfc3339(renewed),
              "renewTime": rfc3339(renewed), "leaderTransitions": transitions}
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": NAME, "annotations": {LEADER_ANNOTATION: json.dumps(record)}}}


def leader_record(configmap):
    return json.loads(configmap["metadata"]["annotations"][LEADER_ANNOTATION])


@pytest.fixture
def time_():
    return Time()


@pytest.fixture
def cluster():
    return Cluster()


# Names and identities.

@pytest.mark.parametrize("instance, expected", [
    ("prod", "qhub-prefect-prod"),
    ("my-project", "qhub-prefect-my-project"),
    ("team.a", "qhub-prefect-team.a"),
    ("My_Project", "qhub-prefect-my-project"),
    ("data science!", "qhub-prefect-data-science"),
    ("a..b.", "qhub-prefect-a.b"),
    ("x.-y-", "qhub-prefect-x.y"),
    ("", "qhub-prefect"),
])
def test_lease_name_is_the_instance_prefixed_as_a_dns_subdomain(instance, expected):
    assert lease_name(instance) == expected
    assert DNS1123_SUBDOMAIN.match(expected)


def test_a_long_instance_gives_a_name_of_at_most_253_characters():
    name = lease_name("p" * 300 + "-" + "q" * 10)
    assert len(name) <= 253 and DNS1123_SUBDOMAIN.match(name) and name.startswith("qhub-prefect-ppp")
    assert DNS1123_SUBDOMAIN.match(lease_name("a" * 239 + "-----" + "b" * 20))


def test_holder_identity_names_host_user_pid_and_the_awx_job(monkeypatch):
    monkeypatch.setattr("socket.gethostname", lambda: "awx-ee 7")
    monkeypatch.setattr("os.getpid", lambda: 4242)
    assert holder_identity({"USER": "runner", "JOB_ID": "318"}) == "host=awx-ee_7 user=runner pid=4242 awx_job=318"
    assert holder_identity({"LOGNAME": "ops"}) == "host=awx-ee_7 user=ops pid=4242"


def test_holder_identity_without_a_user_in_the_environment_still_names_one(monkeypatch):
    monkeypatch.setattr("os.getpid", lambda: 7)
    identity = holder_identity({})
    assert re.match(r"^host=\S+ user=\S+ pid=7$", identity), identity
    assert len(holder_identity({"USER": "u" * 400, "JOB_ID": "1"})) <= 253


def test_times_are_written_as_micro_time_and_rfc3339_and_read_back():
    assert micro_time(EPOCH + 5.25) == "2026-01-01T00:00:05.250000Z"
    assert rfc3339(EPOCH + 5.25) == "2026-01-01T00:00:05Z"
    assert parse_time("2026-01-01T00:00:05.250000Z") == EPOCH + 5.25
    assert parse_time("2026-01-01T01:00:05+01:00") == EPOCH + 5
    assert parse_time("2026-01-01T00:00:05Z") == EPOCH + 5
    assert parse_time(None) is None and parse_time("yesterday") is None and parse_time(5) is None


# Leases.

def test_an_uncontended_run_costs_four_requests_and_leaves_no_lease(cluster, time_):
    client = Client(cluster)
    with make_lock(client, time_) as lock:
        assert lock.kind == "Lease" and lock.held and not lock.lost
        lease = cluster.lease()
        assert lease["spec"]["holderIdentity"] == "host=a user=ops pid=1"
        assert lease["spec"]["leaseDurationSeconds"] == 30 and lease["spec"]["leaseTransitions"] == 0
        assert lease["spec"]["acquireTime"] == lease["spec"]["renewTime"] == "2026-01-01T00:00:00.000000Z"
        assert lease["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "qhub.prefect"}
        lock.check()
    assert client.log == [("GET", "leases"), ("POST", "leases"), ("GET", "configmaps"), ("DELETE", "leases")]
    assert client.bodies[-1] == {"apiVersion": "v1", "kind": "DeleteOptions",
                                 "preconditions": {"uid": lease["metadata"]["uid"],
                                                   "resourceVersion": lease["metadata"]["resourceVersion"]}}
    assert cluster.lease() is None and time_.sleeps == 0


def test_a_second_run_waits_and_takes_the_lock_once_the_first_releases(cluster, time_):
    first = make_lock(Client(cluster), time_, holder="host=a pid=1").acquire()
    time_.during_sleep.append(lambda sleeps: sleeps == 3 and first.release())
    second = make_lock(Client(cluster), time_, holder="host=b pid=2")
    with second:
        assert cluster.lease()["spec"]["holderIdentity"] == "host=b pid=2"
        assert time_.sleeps == 3 and second.waited == 3
    assert cluster.lease() is None


def test_a_run_that_waits_too_long_fails_naming_the_holder_and_what_to_do(cluster, time_):
    cluster.put_object("leases", held_lease("host=elsewhere user=ops pid=42 awx_job=7", EPOCH - 5))
    since = micro_time(EPOCH - 5)
    client = Client(cluster)
    lock = make_lock(client, time_, timeout=5)
    # The holder keeps renewing while we wait.
    time_.during_sleep.append(lambda sleeps: cluster.edit("leases", lambda o: o["spec"].update(
        renewTime=micro_time(time_.now()))))
    with pytest.raises(LockError) as raised:
        lock.acquire()
    message = str(raised.value)
    assert ("another run holds the lock qhub-prefect-prod in namespace dev: host=elsewhere user=ops pid=42 "
            "awx_job=7, since %s (renewed %s); waited 5 s." % (since, micro_time(EPOCH + 5))) in message
    assert "expires 30 s after its last renewal" in message
    assert raised.value.holder == "host=elsewhere user=ops pid=42 awx_job=7"
    assert set(client.log) == {("GET", "leases")} and time_.sleeps == 5
    assert not lock.held and cluster.lease()["spec"]["holderIdentity"].startswith("host=elsewhere")


def test_a_zero_timeout_tries_once(cluster, time_):
    cluster.put_object("leases", held_lease("host=x", EPOCH))
    with pytest.raises(LockError, match="waited 0 s"):
        make_lock(Client(cluster), time_, timeout=0).acquire()
    assert time_.sleeps == 0


def test_an_expired_lease_is_taken_over(cluster, time_):
    cluster.put_object("leases", held_lease("host=dead pid=1", EPOCH - 300, transitions=4))
    client = Client(cluster)
    with make_lock(client, time_) as lock:
        spec = cluster.lease()["spec"]
        assert spec["holderIdentity"] == "host=a user=ops pid=1" and spec["leaseTransitions"] == 5
        assert spec["acquireTime"] == micro_time(EPOCH)
        assert cluster.lease()["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "qhub.prefect"
        assert lock.waited == 0
    assert client.log == [("GET", "leases"), ("PUT", "leases"), ("GET", "configmaps"), ("DELETE", "leases")]
    assert cluster.lease() is None


def test_a_lease_renewed_just_within_its_duration_is_not_taken(cluster, time_):
    cluster.put_object("leases", held_lease("host=alive", EPOCH - 29))
    with pytest.raises(LockError, match="host=alive"):
        make_lock(Client(cluster), time_, timeout=0).acquire()


def test_a_free_lease_is_taken(cluster, time_):
    lease = held_lease("", EPOCH)
    cluster.put_object("leases", lease)
    with make_lock(Client(cluster), time_):
        assert cluster.lease()["spec"]["holderIdentity"] == "host=a user=ops pid=1"


def test_a_record_seen_unchanged_for_longer_than_its_duration_is_expired_whatever_its_clock(cluster, time_):
    # A dead holder whose clock ran ahead: its renewTime is in our future, but it never changes again.
    cluster.put_object("leases", held_lease("host=skewed", EPOCH + 600))
    with make_lock(Client(cluster), time_, timeout=60) as lock:
        assert cluster.lease()["spec"]["holderIdentity"] == "host=a user=ops pid=1"
        assert 30 <= lock.waited <= 32


def test_of_two_runs_creating_the_lease_at_once_the_loser_reads_again_and_waits(cluster, time_):
    client = Client(cluster)
    # The other run's POST lands between our GET and our POST.
    client.before.append(lambda method, plural: method == "POST" and not cluster.lease() and cluster.put_object(
        "leases", held_lease("host=winner", time_.now())))
    with pytest.raises(LockError, match="host=winner"):
        make_lock(client, time_, timeout=2).acquire()
    assert client.log[:3] == [("GET", "leases"), ("POST", "leases"), ("GET", "leases")]


def test_of_two_runs_taking_over_an_expired_lease_the_loser_gets_a_conflict_and_waits(cluster, time_):
    cluster.put_object("leases", held_lease("host=dead", EPOCH - 300))
    client = Client(cluster)
    client.before.append(lambda method, plural: method == "PUT" and cluster.lease()["spec"]["holderIdentity"] ==
                         "host=dead" and cluster.edit("leases", lambda o: o["spec"].update(
                             holderIdentity="host=winner", renewTime=micro_time(time_.now()))))
    with pytest.raises(LockError, match="host=winner"):
        make_lock(client, time_, timeout=2).acquire()
    assert client.log[:3] == [("GET", "leases"), ("PUT", "leases"), ("GET", "leases")]


def test_a_missing_namespace_is_named(time_):
    with pytest.raises(LockError, match="the namespace dev does not exist"):
        make_lock(Client(Cluster(namespaces=())), time_).acquire()


def test_an_unexpected_api_error_is_reported_with_the_lock_it_concerns(cluster, time_):
    client = Client(cluster, fail={("GET", "leases"): KubeError("etcdserver: request timed out", status=500)})
    with pytest.raises(LockError, match="cannot read the run lock Lease qhub-prefect-prod in namespace dev: etcd"):
        make_lock(client, time_).acquire()


# Holding: renewals and losing the lock.

def test_a_renewal_moves_renew_time_only(cluster, time_):
    lock = make_lock(Client(cluster), time_).acquire()
    try:
        before = cluster.lease()
        time_.t += 10
        assert lock.renew() is True
        after = cluster.lease()
        assert after["spec"]["renewTime"] == micro_time(EPOCH + 10)
        assert after["spec"]["acquireTime"] == before["spec"]["acquireTime"]
        assert int(after["metadata"]["resourceVersion"]) > int(before["metadata"]["resourceVersion"])
        assert not lock.lost
    finally:
        lock.release()
    assert cluster.lease() is None


def test_the_renewer_thread_renews_until_released(cluster):
    # Real time here: a 0.03 s lease is renewed every 0.01 s by the thread; nothing below is timed.
    lock = RunLock(Client(cluster), NS, NAME, "host=a", duration=0.03).acquire()
    try:
        for dummy in range(2):
            cluster.put_seen.clear()
            assert cluster.put_seen.wait(30), "no renewal"
        assert not lock.lost
    finally:
        lock.release()
    assert lock._thread is None and cluster.lease() is None
    puts = cluster.puts
    assert puts >= 2 and cluster.puts == puts


def test_a_lease_taken_over_while_held_is_lost_and_not_deleted(cluster, time_):
    lock = make_lock(Client(cluster), time_).acquire()
    cluster.edit("leases", lambda o: o["spec"].update(holderIdentity="host=thief"))
    assert lock.renew() is False
    assert lock.lost and "held by host=thief" in lock.lost_reason
    with pytest.raises(LockError, match="lost the run lock Lease qhub-prefect-prod in namespace dev: it is now held "
                                        "by host=thief"):
        lock.check()
    lock.release()
    assert cluster.lease()["spec"]["holderIdentity"] == "host=thief"


def test_a_lease_deleted_while_held_is_lost(cluster, time_):
    lock = make_lock(Client(cluster), time_).acquire()
    cluster.remove("leases")
    assert lock.renew() is False and lock.lost and "deleted" in lock.lost_reason
    lock.release()


def test_a_lease_recreated_by_another_run_while_held_is_lost(cluster, time_):
    lock = make_lock(Client(cluster), time_).acquire()
    cluster.remove("leases")
    cluster.put_object("leases", held_lease("host=a user=ops pid=1", EPOCH))  # same holder text, another object
    assert lock.renew() is False and lock.lost
    lock.release()
    assert cluster.lease() is not None


def test_a_label_edit_while_held_is_not_a_loss(cluster, time_):
    lock = make_lock(Client(cluster), time_).acquire()
    cluster.edit("leases", lambda o: o["metadata"]["labels"].update(team="data"))
    time_.t += 10
    assert lock.renew() is True and not lock.lost
    assert cluster.lease()["spec"]["renewTime"] == micro_time(EPOCH + 10)
    cluster.edit("leases", lambda o: o["metadata"]["labels"].update(team="ml"))
    lock.release()  # its DELETE conflicts on resourceVersion, reads, finds it still ours, deletes
    assert cluster.lease() is None


def test_failed_renewals_lose_the_lock_only_once_it_may_have_expired(cluster, time_):
    client = Client(cluster)
    lock = make_lock(client, time_).acquire()
    outage = KubeError("cannot reach the Kubernetes API server", status=None)
    for elapsed in (10, 20, 29):
        time_.t = elapsed
        client.fail[("PUT", "leases")] = outage
        assert lock.renew() is False and not lock.lost
    time_.t = 30
    client.fail[("PUT", "leases")] = outage
    assert lock.renew() is False and lock.lost and "not renewed for 30 s" in lock.lost_reason
    lock.release()


def test_a_release_that_cannot_delete_leaves_the_lease_to_expire_without_raising(cluster, time_):
    client = Client(cluster)
    lock = make_lock(client, time_).acquire()
    client.fail[("DELETE", "leases")] = KubeError("connection reset", status=None)
    lock.release()
    assert "expires 30 s after its last renewal" in lock.release_error
    assert cluster.lease() is not None


def test_the_lock_is_released_when_the_block_raises(cluster, time_):
    with pytest.raises(RuntimeError):
        with make_lock(Client(cluster), time_):
            raise RuntimeError("apply failed")
    assert cluster.lease() is None


def test_a_released_lock_can_be_released_again_and_taken_again(cluster, time_):
    lock = make_lock(Client(cluster), time_)
    lock.acquire()
    lock.release()
    lock.release()
    lock.acquire()
    assert cluster.lease() is not None
    lock.release()
    assert cluster.lease() is None


# A deployer who may not use Leases: the ConfigMap.

def test_a_namespace_only_deployer_locks_with_a_configmap(cluster, time_):
    client = Client(cluster, leases_forbidden=True)
    with make_lock(client, time_) as lock:
        assert lock.kind == "ConfigMap" and "forbidden" in lock.fallback_reason
        configmap = cluster.configmap()
        assert configmap["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "qhub.prefect"}
        assert leader_record(configmap) == {"holderIdentity": "host=a user=ops pid=1", "leaseDurationSeconds": 30,
                                            "acquireTime": "2026-01-01T00:00:00Z",
                                            "renewTime": "2026-01-01T00:00:00Z", "leaderTransitions": 0}
        time_.t += 10
        assert lock.renew() is True
        assert leader_record(cluster.configmap())["renewTime"] == "2026-01-01T00:00:10Z"
    assert client.log == [("GET", "leases"), ("GET", "configmaps"), ("POST", "configmaps"), ("PUT", "configmaps"),
                          ("DELETE", "configmaps")]
    assert cluster.configmap() is None and cluster.lease() is None


def test_a_configmap_lock_excludes_a_second_namespace_only_run(cluster, time_):
    first = make_lock(Client(cluster, leases_forbidden=True), time_, holder="host=a pid=1").acquire()
    second_client = Client(cluster, leases_forbidden=True)
    with pytest.raises(LockError, match="another run holds the lock qhub-prefect-prod in namespace dev: host=a pid=1"
                                        ".*its ConfigMap expires 30 s"):
        make_lock(second_client, time_, holder="host=b pid=2", timeout=3).acquire()
    # The 403 on Leases is met once; then only the ConfigMap is read.
    assert second_client.log == [("GET", "leases")] + [("GET", "configmaps")] * 4
    first.release()
    assert cluster.configmap() is None


def test_an_expired_configmap_lock_is_taken_over(cluster, time_):
    cluster.put_object("configmaps", held_configmap("host=dead", EPOCH - 300, transitions=2))
    with make_lock(Client(cluster, leases_forbidden=True), time_):
        record = leader_record(cluster.configmap())
        assert record["holderIdentity"] == "host=a user=ops pid=1" and record["leaderTransitions"] == 3


def test_a_lease_deployer_respects_a_live_configmap_lock_and_gives_the_lease_back(cluster, time_):
    namespace_admin = make_lock(Client(cluster, leases_forbidden=True), time_, holder="host=adm pid=9").acquire()
    client = Client(cluster)
    seen = []
    time_.during_sleep.append(lambda sleeps: seen.append(cluster.lease()))
    with pytest.raises(LockError, match=r"host=adm pid=9, since 2026-01-01T00:00:00Z .* its ConfigMap expires"):
        make_lock(client, time_, timeout=2).acquire()
    assert seen == [None, None]  # the Lease is given back while waiting
    assert client.log[:4] == [("GET", "leases"), ("POST", "leases"), ("GET", "configmaps"), ("DELETE", "leases")]

    time_.during_sleep.append(lambda sleeps: namespace_admin.release())
    with make_lock(client, time_, timeout=5) as lock:
        assert lock.kind == "Lease" and cluster.lease()["spec"]["holderIdentity"] == "host=a user=ops pid=1"


def test_a_lease_deployer_ignores_an_expired_configmap_lock(cluster, time_):
    cluster.put_object("configmaps", held_configmap("host=dead", EPOCH - 300))
    with make_lock(Client(cluster), time_) as lock:
        assert lock.kind == "Lease" and time_.sleeps == 0


def test_a_configmap_of_that_name_that_is_not_a_lock_is_never_taken(cluster, time_):
    cluster.put_object("configmaps", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": NAME},
                                      "data": {"settings": "mine"}})
    with pytest.raises(LockError, match="is not a run lock"):
        make_lock(Client(cluster, leases_forbidden=True), time_).acquire()
    assert cluster.configmap()["data"] == {"settings": "mine"}
    with make_lock(Client(cluster), time_):  # a Lease deployer is not held up by it
        pass
    assert cluster.configmap()["data"] == {"settings": "mine"}


def test_a_missing_namespace_is_named_for_a_namespace_only_deployer(time_):
    with pytest.raises(LockError, match="the namespace dev does not exist"):
        make_lock(Client(Cluster(namespaces=()), leases_forbidden=True), time_).acquire()


def test_an_api_server_without_leases_falls_back_to_the_configmap(time_):
    cluster = Cluster()
    client = Client(cluster, fail={("POST", "leases"): KubeError("the server could not find the requested resource",
                                                                 status=404, body={"reason": "NotFound"})})
    with make_lock(client, time_) as lock:
        assert lock.kind == "ConfigMap" and cluster.configmap() is not None
