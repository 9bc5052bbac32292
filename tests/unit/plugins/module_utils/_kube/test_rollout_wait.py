"""Waiting for a Deployment means waiting for running, ready pods, and a failure names the pod's cause.

The pods, events and Deployment statuses are the API server's own JSON shapes (rollout_fixtures.py beside this file);
the client below answers the requests the waiter makes from them and records each one, since the no-op path
must stay at one read per object.
"""

from urllib.parse import unquote

import pytest

from ansible_collections.qhub.prefect.plugins.module_utils._kube.client import KubeError
from ansible_collections.qhub.prefect.plugins.module_utils._kube.pod_diagnosis import (
    CONFIG_ERROR_GRACE_SECONDS, Masker, pod_problems,
)
from ansible_collections.qhub.prefect.plugins.module_utils._kube.rollout import (
    deployment_available, old_pods_left, wait_for_rollout,
)
from tests.unit.plugins.module_utils._kube import rollout_fixtures as fx

MANIFEST = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": fx.NAME, "namespace": fx.NAMESPACE}}
DEPLOYMENT_PATH = "/apis/apps/v1/namespaces/dev/deployments/prefect-worker"
PODS_PATH = "/api/v1/namespaces/dev/pods"
EVENTS_PATH = "/api/v1/namespaces/dev/events"
SECRET = "db-pass-7f3a9c"
TOKEN = "pnu_canaryTOKEN0123456789"


def main_deployment_rolled_out(deployment):
    """main's criterion before this change (then plugins/module_utils/_kube.py, commit 7abc09c), kept for comparison."""
    status = deployment.get("status") or {}
    wanted = deployment.get("spec", {}).get("replicas", 1)
    return (status.get("observedGeneration", 0) >= deployment["metadata"].get("generation", 0)
            and status.get("updatedReplicas", 0) >= wanted)


class Cluster:
    """Answers the waiter's requests from fixtures, one answer per poll (the last one repeats)."""

    def __init__(self, deployments, pods=(), events=None, logs=None, events_error=None):
        self.deployments = list(deployments)
        self.pods = [fx.pod_list(*p) for p in pods]
        self.events = events or {}
        self.logs = logs or {}
        self.events_error = events_error
        self.requests = []

    @staticmethod
    def _next(answers):
        return answers.pop(0) if len(answers) > 1 else answers[0]

    def get(self, path):
        self.requests.append(("GET", path, None))
        assert path == DEPLOYMENT_PATH
        return self._next(self.deployments)

    def request(self, method, path, query=None, body=None, **kwargs):
        query = dict((k, unquote(v)) for k, v in query or [])
        self.requests.append((method, path, query))
        if path == PODS_PATH:
            assert query == {"labelSelector": "app.kubernetes.io/instance=prefect-worker,"
                                              "app.kubernetes.io/managed-by=qhub.prefect"}
            return 200, self._next(self.pods)
        if path == EVENTS_PATH:
            if self.events_error:
                raise self.events_error
            selector = dict(part.split("=", 1) for part in query["fieldSelector"].split(","))
            assert selector["involvedObject.kind"] == "Pod"
            return 200, fx.event_list(self.events.get(selector["involvedObject.uid"], []))
        raise AssertionError("unexpected request %s %s" % (method, path))

    def text(self, path, query=None):
        query = dict(query or [])
        self.requests.append(("GET", path, query))
        return self.logs[(path.rsplit("/", 2)[1], query.get("previous") == "true")]

    def paths(self):
        return [path for _method, path, _query in self.requests]


class Clock:
    def __init__(self):
        self.now = 0.0
        self.sleeps = 0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds
        self.sleeps += 1


def wait(cluster, timeout=120, current=None, secrets=(SECRET, TOKEN)):
    clock = Clock()
    result = wait_for_rollout(cluster, MANIFEST, timeout, current=current, secrets=secrets, interval=2,
                              clock=clock, sleep=clock.sleep)
    return result, clock


def failure(cluster, timeout=120, current=None):
    clock = Clock()
    with pytest.raises(KubeError) as error:
        wait_for_rollout(cluster, MANIFEST, timeout, current=current, secrets=(SECRET, TOKEN), interval=2,
                         clock=clock, sleep=clock.sleep)
    return str(error.value), clock


# The "before this change's wait, a crash-looping agent would have been reported as ok".

def test_main_criterion_called_a_crash_looping_deployment_rolled_out_the_new_one_does_not():
    crash_looping = fx.deployment(status=fx.CRASH_LOOPING)
    assert main_deployment_rolled_out(crash_looping) is True
    assert deployment_available(crash_looping) is False
    # ...and the wait says why instead of returning, on the first poll.
    looping_pod = fx.crash_loop_backoff()
    cluster = Cluster([crash_looping], [[looping_pod]], logs={(looping_pod["metadata"]["name"], True): "boom\n"})
    message, clock = failure(cluster)
    assert "container prefect-worker keeps exiting" in message and clock.sleeps == 0


def test_available_means_updated_available_ready_and_no_old_pods():
    assert deployment_available(fx.deployment(status=fx.AVAILABLE))
    for missing in ("updatedReplicas", "availableReplicas", "readyReplicas"):
        status = dict(fx.AVAILABLE)
        del status[missing]
        assert not deployment_available(fx.deployment(status=status)), missing
    assert not deployment_available(fx.deployment(status=dict(fx.AVAILABLE, replicas=2)))  # an old pod counted
    assert not deployment_available(fx.deployment(generation=3, status=fx.AVAILABLE))
    assert deployment_available(fx.deployment(status=dict(fx.AVAILABLE, observedGeneration=2), replicas=1))
    scaled_to_zero = fx.deployment(status={"observedGeneration": 2}, replicas=0)
    assert deployment_available(scaled_to_zero)


# Cheap reads.

def test_an_unchanged_available_deployment_needs_no_read_at_all():
    cluster = Cluster([None])
    current = fx.deployment(status=fx.AVAILABLE)
    assert wait(cluster, current=current)[0] is current
    assert cluster.requests == []


def test_a_rollout_reads_the_deployment_and_its_pods_until_they_are_ready():
    updating = fx.deployment(generation=3, status=fx.NOT_OBSERVED)
    starting = fx.deployment(generation=3, status=dict(fx.NOT_AVAILABLE, observedGeneration=3))
    done = fx.deployment(generation=3, status=dict(fx.AVAILABLE, observedGeneration=3))
    creating = fx.pod(conditions=[], container_statuses=[{
        "name": fx.NAME, "state": {"waiting": {"reason": "ContainerCreating"}}, "lastState": {}, "ready": False,
        "restartCount": 0, "image": fx.IMAGE, "imageID": "", "started": False}])
    cluster = Cluster([updating, starting, done], [[creating], [fx.RUNNING_READY]])
    result, clock = wait(cluster, current=updating)
    assert result["status"]["observedGeneration"] == 3
    # The controller had not caught up: no pod list until it has; then one list a poll, no events, no logs.
    assert cluster.paths() == [DEPLOYMENT_PATH, DEPLOYMENT_PATH, PODS_PATH, DEPLOYMENT_PATH, PODS_PATH]
    assert clock.sleeps == 2


def test_an_old_pod_still_terminating_keeps_the_wait_going_and_is_named_at_the_timeout():
    old = fx.old_terminating()
    assert [p["metadata"]["name"] for p in old_pods_left([fx.RUNNING_READY, old])] == [old["metadata"]["name"]]
    assert old_pods_left([fx.RUNNING_READY]) == []
    cluster = Cluster([fx.deployment(status=fx.AVAILABLE)], [[fx.RUNNING_READY, old]])
    message, clock = failure(cluster, timeout=10)
    assert "did not roll out within 10 s: 1 pods of an older ReplicaSet still terminating" in message
    assert "pod %s is still terminating" % old["metadata"]["name"] in message
    assert "kubelet on qhub-node" in message
    assert clock.sleeps == 5


# Causes that no wait mends: the wait stops early and says why.

def test_an_image_that_failed_to_pull_once_is_waited_for_twice_is_hopeless():
    backing_off = fx.image_pull_backoff()
    uid = backing_off["metadata"]["uid"]
    once = Cluster([fx.deployment(status=fx.NOT_AVAILABLE)], [[backing_off]], events={uid: fx.pull_events(uid, 1)})
    message, clock = failure(once, timeout=6)
    assert "did not roll out within 6 s" in message and clock.sleeps == 3

    twice = Cluster([fx.deployment(status=fx.NOT_AVAILABLE)], [[fx.err_image_pull()], [backing_off]],
                    events={uid: fx.pull_events(uid, 2)})
    message, clock = failure(twice)
    assert clock.sleeps == 1, "ErrImagePull alone is retried by the kubelet; ImagePullBackOff after two failures is not"
    assert "cannot become available" in message
    assert ("container prefect-worker cannot pull its image prefecthq/prefect:3-python3.11-does-not-exist "
            "(ImagePullBackOff)") in message
    assert 'Failed (x2): Failed to pull image "prefecthq/prefect:3-python3.11-does-not-exist"' in message
    assert "not found" in message


@pytest.mark.parametrize("reason", ["InvalidImageName", "ErrImageNeverPull"])
def test_an_image_that_can_never_be_pulled_fails_at_once(reason):
    item = fx.image_pull_backoff("prefecthq/prefect:3-python3.11-kubernetes")
    item["status"]["containerStatuses"][0]["state"] = {"waiting": {"reason": reason, "message": "refused"}}
    message, clock = failure(Cluster([fx.deployment(status=fx.NOT_AVAILABLE)], [[item]]))
    assert clock.sleeps == 0 and "(%s): refused" % reason in message


def test_crash_loop_fails_at_once_with_the_previous_containers_log_tail_secrets_masked():
    looping = fx.crash_loop_backoff()
    uid, name = looping["metadata"]["uid"], looping["metadata"]["name"]
    log = "\n".join(["Starting worker...", "line %d" % 0] + ["noise %d" % i for i in range(30)] + [
        "pydantic_core._pydantic_core.ValidationError: 1 validation error for Settings",
        "worker.query_seconds",
        "  Input should be a valid number, unable to parse string as a number [type=float_parsing, "
        "input_value='%s', input_type=str]" % SECRET,
        "PREFECT_API_KEY=%s was rejected" % TOKEN, ""])
    cluster = Cluster([fx.deployment(status=fx.CRASH_LOOPING)], [[looping]], events={uid: fx.crash_events(uid)},
                      logs={(name, True): log})
    message, clock = failure(cluster)
    assert clock.sleeps == 0
    assert "pod %s container prefect-worker keeps exiting (exit code 1, Error; restarted 3 times)" % name in message
    assert "BackOff (x6): Back-off restarting failed container" in message
    assert "input_value='********'" in message and "PREFECT_API_KEY=******** was rejected" in message
    assert SECRET not in message and TOKEN not in message
    # The last lines only, of the container that exited (the current one is waiting to be restarted).
    assert "noise 14" not in message and "noise 29" in message
    log_requests = [q for _m, p, q in cluster.requests if p.endswith("/log")]
    assert log_requests == [{"container": "prefect-worker", "tailLines": "15", "limitBytes": "16384",
                             "previous": "true"}]


def test_a_container_that_exited_once_and_runs_again_is_not_hopeless_but_its_log_is_shown_at_the_timeout():
    restarted = fx.restarted_running()
    name = restarted["metadata"]["name"]
    cluster = Cluster([fx.deployment(status=fx.NOT_AVAILABLE)], [[restarted]],
                      logs={(name, True): "Traceback (most recent call last):\nhttpx.ConnectError: refused\n"})
    message, clock = failure(cluster, timeout=8)
    assert clock.sleeps == 4 and "did not roll out within 8 s" in message
    assert "container prefect-worker exited (exit code 1, Error; restarted 1 times)" in message
    assert "httpx.ConnectError: refused" in message


def test_a_missing_secret_key_fails_once_it_outlives_the_kubelets_retry():
    broken = fx.create_container_config_error()
    uid = broken["metadata"]["uid"]
    cluster = Cluster([fx.deployment(status=fx.NOT_AVAILABLE)], [[broken]], events={uid: fx.config_error_events(uid)})
    message, clock = failure(cluster)
    assert CONFIG_ERROR_GRACE_SECONDS <= clock.now <= CONFIG_ERROR_GRACE_SECONDS + 2
    assert ("container prefect-worker cannot be started (CreateContainerConfigError): couldn't find key "
            "DATABASE_PASSWORD in Secret dev/prefect-worker") in message


def test_a_config_error_that_clears_starts_its_grace_period_again():
    broken, fine = fx.create_container_config_error(), fx.RUNNING_READY
    not_yet = fx.deployment(status=fx.NOT_AVAILABLE)
    answers = [[broken]] * 5 + [[fine]] + [[broken]] * 5 + [[fine]]
    cluster = Cluster([not_yet] * 12 + [fx.deployment(status=fx.AVAILABLE)], answers)
    result, clock = wait(cluster)
    assert result["status"]["readyReplicas"] == 1


# Causes a wait may still mend: named at the timeout, not before.

def test_unschedulable_waits_for_the_timeout_and_quotes_the_scheduler():
    pending = fx.unschedulable()
    uid = pending["metadata"]["uid"]
    message, clock = failure(Cluster([fx.deployment(status=fx.NOT_AVAILABLE)], [[pending]],
                                     events={uid: fx.unschedulable_events(uid)}), timeout=30)
    assert clock.sleeps == 15
    assert "cannot be scheduled (Unschedulable): 0/1 nodes are available: 1 Insufficient memory." in message
    assert "FailedScheduling: 0/1 nodes are available" in message


def test_a_failing_readiness_probe_is_named_from_the_unhealthy_events():
    running = fx.readiness_failing()
    uid = running["metadata"]["uid"]
    message, _clock = failure(Cluster([fx.deployment(status=fx.NOT_AVAILABLE)], [[running]],
                                      events={uid: fx.readiness_events(uid)}), timeout=20)
    assert "container prefect-worker runs but is not ready" in message
    assert "Unhealthy (x9): Readiness probe failed: HTTP probe failed with statuscode: 503" in message


def test_no_scheduler_and_no_kubelet_are_named():
    message, _clock = failure(Cluster([fx.deployment(status=fx.NOT_AVAILABLE)], [[fx.never_scheduled()]]), timeout=4)
    assert "is not scheduled to a node, and no scheduler has said why: is kube-scheduler running?" in message
    message, _clock = failure(Cluster([fx.deployment(status=fx.NOT_AVAILABLE)], [[fx.kubelet_silent()]]), timeout=4)
    assert "is scheduled to node qhub-node, whose kubelet has not reported on it" in message


def test_without_the_controller_no_pod_is_listed_and_the_error_points_at_it():
    stuck = fx.deployment(generation=3, status=dict(fx.NOT_OBSERVED, conditions=[]))
    cluster = Cluster([stuck])
    message, _clock = failure(cluster, timeout=3)
    assert "did not roll out within 3 s: the Deployment controller has not observed generation 3" in message
    assert "is kube-controller-manager running?" in message
    assert set(cluster.paths()) == {DEPLOYMENT_PATH}


def test_the_timeout_error_quotes_the_deployment_conditions():
    cluster = Cluster([fx.deployment(status=fx.NOT_AVAILABLE)], [[]])
    message, _clock = failure(cluster, timeout=5)
    assert "Deployment dev/prefect-worker did not roll out within 5 s: 0 of 1 pods available, 0 of 1 pods ready." \
        in message
    assert "Available=False (MinimumReplicasUnavailable: Deployment does not have minimum availability.)" in message
    assert "No pod matches its selector" in message


def test_events_that_cannot_be_read_leave_the_pods_own_story():
    broken = fx.create_container_config_error()
    cluster = Cluster([fx.deployment(status=fx.NOT_AVAILABLE)], [[broken]],
                      events_error=KubeError('events is forbidden: User "deployer" cannot list resource "events"',
                                             status=403))
    message, _clock = failure(cluster)
    assert "couldn't find key DATABASE_PASSWORD in Secret dev/prefect-worker" in message


def test_a_log_that_cannot_be_read_is_said_so_masked():
    looping = fx.crash_loop_backoff()

    class NoLogs(Cluster):
        def text(self, path, query=None):
            raise KubeError("Get https://10.244.77.1:10250/containerLogs/dev/x?token=%s: connection refused" % TOKEN)

    message, _clock = failure(NoLogs([fx.deployment(status=fx.CRASH_LOOPING)], [[looping]]))
    assert "its log cannot be read: Get https://10.244.77.1:10250" in message and TOKEN not in message


def test_masking_takes_the_longest_value_first_and_ignores_empty_ones():
    mask = Masker(["abc", "abcdef", "", None])
    assert mask("x abcdef y abc z") == "x ******** y ******** z"
    assert Masker([])("nothing to hide") == "nothing to hide"


def test_every_fixture_pod_has_one_named_problem_and_the_ready_one_none():
    assert pod_problems(fx.RUNNING_READY) == []
    for make, kind in ((fx.image_pull_backoff, "image"), (fx.err_image_pull, "image"),
                       (fx.crash_loop_backoff, "crash"), (fx.create_container_config_error, "create"),
                       (fx.unschedulable, "unschedulable"), (fx.never_scheduled, "unscheduled"),
                       (fx.readiness_failing, "unready"), (fx.kubelet_silent, "silent"),
                       (fx.old_terminating, "terminating")):
        assert [p.kind for p in pod_problems(make())] == [kind], make.__name__
    evicted = fx.pod(phase="Failed", node=fx.NODE)
    evicted["status"].update(reason="Evicted", message="The node was low on resource: memory.")
    assert pod_problems(evicted) == []
