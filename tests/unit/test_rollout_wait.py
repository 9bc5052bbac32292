"""Waiting for a Deployment's rollout: no read when the apply already shows it done, a clear timeout otherwise."""

import pytest

from ansible_collections.qhub.prefect.plugins.module_utils._kube import KubeError, wait_for_rollout

MANIFEST = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "w", "namespace": "dev"}}


def deployment(generation, observed, updated, conditions=()):
    return {"metadata": {"name": "w", "generation": generation}, "spec": {"replicas": 1},
            "status": {"observedGeneration": observed, "updatedReplicas": updated, "conditions": list(conditions)}}


class Reads:
    def __init__(self, *answers):
        self.answers = list(answers)
        self.paths = []

    def get(self, path):
        self.paths.append(path)
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def test_an_unchanged_rolled_out_deployment_needs_no_read():
    client = Reads(None)
    current = deployment(3, 3, 1)
    assert wait_for_rollout(client, MANIFEST, 10, current=current) is current
    assert client.paths == []


def test_a_changed_deployment_is_read_until_the_controller_has_caught_up():
    client = Reads(deployment(4, 3, 1), deployment(4, 4, 0), deployment(4, 4, 1))
    clock = Clock()
    done = wait_for_rollout(client, MANIFEST, 10, clock=clock, sleep=clock.sleep, current=deployment(4, 3, 1))
    assert done["status"]["observedGeneration"] == 4
    assert client.paths == ["/apis/apps/v1/namespaces/dev/deployments/w"] * 3


def test_the_timeout_error_quotes_the_deployment_conditions():
    stuck = deployment(2, 2, 0, [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                                  "message": "ReplicaSet w-1 has timed out progressing."}])
    clock = Clock()
    with pytest.raises(KubeError) as error:
        wait_for_rollout(Reads(stuck), MANIFEST, 5, clock=clock, sleep=clock.sleep)
    message = str(error.value)
    assert "Deployment dev/w did not roll out within 5 s" in message
    assert "Progressing=False (ProgressDeadlineExceeded: ReplicaSet w-1 has timed out progressing.)" in message


def test_without_conditions_the_error_points_at_the_controller_manager():
    clock = Clock()
    with pytest.raises(KubeError, match="is kube-controller-manager running"):
        wait_for_rollout(Reads(deployment(1, 0, 0)), MANIFEST, 3, clock=clock, sleep=clock.sleep)
