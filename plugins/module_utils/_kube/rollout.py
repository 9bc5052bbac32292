# -*- coding: utf-8 -*-
# Copyright: (c) 2026, qhub.prefect contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Waiting until a Deployment's pods run; why they do not is pod_diagnosis.py's.

A rollout is done when the Deployment controller has observed the current generation and every desired
pod is updated, available and ready, with no pod of an older ReplicaSet left. Until then the reason is in
the pods (pod_diagnosis.py). Secret values the module applied never appear in what is reported.

Reads stay cheap: an unchanged, available Deployment costs nothing more; pods are listed only while the
Deployment is not available (and once to confirm no old pod is left); events and logs are read only for a
pod that is in trouble.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time
from urllib.parse import quote

from ansible_collections.qhub.prefect.plugins.module_utils._kube.apply import describe, object_path
from ansible_collections.qhub.prefect.plugins.module_utils._kube.client import KubeError
from ansible_collections.qhub.prefect.plugins.module_utils._kube.pod_diagnosis import (
    TERMINAL_PHASES, PodDiagnosis, is_terminating, selector_of,
)

TEMPLATE_HASH_LABEL = "pod-template-hash"


def rollout_state(deployment):
    """(done, what is missing) from the Deployment's own status, without reading anything else."""
    meta = deployment.get("metadata") or {}
    status = deployment.get("status") or {}
    wanted = (deployment.get("spec") or {}).get("replicas", 1)
    generation = meta.get("generation", 0)
    observed = status.get("observedGeneration", 0)
    if observed < generation:
        return False, ("the Deployment controller has not observed generation %d yet (it last saw %d)"
                       % (generation, observed))
    missing = ["%d of %d pods %s" % (status.get(field, 0), wanted, word)
               for field, word in (("updatedReplicas", "updated"), ("availableReplicas", "available"),
                                   ("readyReplicas", "ready"))
               if status.get(field, 0) != wanted]
    old = status.get("replicas", 0) - status.get("updatedReplicas", 0)
    if old > 0:
        missing.append("%d pods of an older ReplicaSet left" % old)
    return not missing, ", ".join(missing)


def deployment_available(deployment):
    """Observed, and every desired pod updated, available and ready, none of an older ReplicaSet counted."""
    return rollout_state(deployment)[0]


def current_template_hash(pods):
    """The pod-template-hash of the pods that are not on their way out, if they agree on one."""
    hashes = set(p["metadata"].get("labels", {}).get(TEMPLATE_HASH_LABEL) for p in pods
                 if not p["metadata"].get("deletionTimestamp")
                 and (p.get("status") or {}).get("phase") not in TERMINAL_PHASES)
    return hashes.pop() if len(hashes) == 1 else None


def old_pods_left(pods):
    """Pods of another ReplicaSet that may still run: the Recreate strategy promises there are none.

    The Deployment's counts leave out terminating pods, so only the pods themselves tell.
    """
    current = current_template_hash(pods)
    return [p for p in pods if (p.get("status") or {}).get("phase") not in TERMINAL_PHASES
            and (is_terminating(p) or p["metadata"].get("labels", {}).get(TEMPLATE_HASH_LABEL) != current)]


class RolloutWaiter:
    """Polls one Deployment until it is available, gives up early on a state no wait will mend.

    Hopeless at once: an image name that cannot pull, an image that failed to pull twice (the kubelet
    backs off up to 5 minutes between tries), a container in CrashLoopBackOff (it exited, was restarted
    and exited again; the back-off only grows), and a container the kubelet could not configure for
    CONFIG_ERROR_GRACE_SECONDS (a missing Secret key stays missing until someone adds it).
    Waited for until the timeout: an unschedulable pod (a node may be added or freed, and the scheduler
    retries on its own), a failing readiness probe (a slow start on a small node is normal), a single failed
    pull (a registry blip), a silent kubelet or a pod stuck terminating (the node may come back).
    """

    def __init__(self, client, manifest, timeout, secrets=(), interval=2.0, clock=time.monotonic, sleep=time.sleep):
        self.client = client
        self.manifest = manifest
        self.timeout = timeout
        self.interval = interval
        self.clock = clock
        self.sleep = sleep
        self.namespace = manifest["metadata"]["namespace"]
        self.diagnosis = PodDiagnosis(client, self.namespace, secrets, clock)
        self.started = None

    def wait(self, current=None):
        """The available Deployment; ``current`` (as last read or applied) saves every read when it is available."""
        if current is not None and deployment_available(current):
            return current
        self.started = self.clock()
        deadline = self.started + self.timeout
        path = object_path(self.manifest)
        while True:
            deployment = self.client.get(path)
            if deployment is None:
                raise KubeError("%s was deleted while waiting for its rollout" % describe(self.manifest))
            done, missing = rollout_state(deployment)
            pods, hopeless = None, []
            observed = not missing.startswith("the Deployment controller")
            if observed:
                pods = self._pods(deployment)
                if done:
                    left = old_pods_left(pods)
                    if not left:
                        return deployment
                    missing = "%d pods of an older ReplicaSet still terminating" % len(left)
                else:
                    hopeless = self.diagnosis.hopeless(pods)
            if hopeless:
                raise KubeError(self._message(deployment, missing, pods, hopeless))
            if self.clock() >= deadline:
                raise KubeError(self._message(deployment, missing, pods))
            self.sleep(self.interval)

    def _pods(self, deployment):
        query = [("labelSelector", quote(selector_of(deployment), safe=""))]
        data = self.client.request("GET", "/api/v1/namespaces/%s/pods" % self.namespace, query=query)[1] or {}
        pods = data.get("items") or []
        # The pods that block the rollout first: the newest, which the current ReplicaSet made.
        return sorted(pods, key=lambda p: p["metadata"].get("creationTimestamp") or "", reverse=True)

    def _message(self, deployment, missing, pods, hopeless=()):
        return self.diagnosis.message(self.manifest, self.timeout, self.clock() - self.started, deployment, missing,
                                      pods, hopeless)


def wait_for_rollout(client, manifest, timeout, current=None, secrets=(), **kwargs):
    """Wait until the Deployment is available; KubeError naming the cause when it will not be."""
    return RolloutWaiter(client, manifest, timeout, secrets=secrets, **kwargs).wait(current)
