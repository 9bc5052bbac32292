"""Deployments, pods and events as a v1.20 API server returns them (kubectl get -o json), one per failure.

The field names and the kubelet's and scheduler's messages follow the Kubernetes sources:
pkg/kubelet/images/image_manager.go ("Failed to pull image %q: %v", "Back-off pulling image %q"),
pkg/kubelet/kuberuntime/kuberuntime_manager.go ("back-off %s restarting failed container=%s pod=%s"),
pkg/kubelet/kubelet_pods.go ("couldn't find key %v in Secret %v/%v"), pkg/kubelet/prober/prober.go
("%s probe failed: %s", reason Unhealthy) and the default scheduler's FailedScheduling message.
"""

import copy
import hashlib

NAMESPACE = "dev"
NAME = "prefect-worker"
IMAGE = "prefecthq/prefect:3-python3.11-kubernetes"
SELECTOR = {"app.kubernetes.io/instance": NAME, "app.kubernetes.io/managed-by": "qhub.prefect"}
NEW_HASH, OLD_HASH = "6b7f9c8d5", "58d4f7b9c6"
NODE = "qhub-node"


def _uid(name):
    digest = hashlib.sha256(name.encode()).hexdigest()
    return "%s-%s-%s-%s-%s" % (digest[:8], digest[8:12], digest[12:16], digest[16:20], digest[20:32])


def deployment(generation=2, status=None, replicas=1):
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": NAME, "namespace": NAMESPACE, "generation": generation,
                     "uid": "0b8f3c9e-8a8e-4c47-9b52-1f6a3b2f7d10", "resourceVersion": "48211",
                     "annotations": {"deployment.kubernetes.io/revision": str(generation)},
                     "labels": dict(SELECTOR, **{"app.kubernetes.io/component": "worker"})},
        "spec": {"replicas": replicas, "selector": {"matchLabels": dict(SELECTOR)},
                 "strategy": {"type": "Recreate"}, "revisionHistoryLimit": 10, "progressDeadlineSeconds": 600,
                 "template": {"metadata": {"labels": dict(SELECTOR)},
                              "spec": {"containers": [{"name": NAME, "image": IMAGE}]}}},
        "status": status if status is not None else {},
    }


AVAILABLE = {
    "observedGeneration": 2, "replicas": 1, "updatedReplicas": 1, "readyReplicas": 1, "availableReplicas": 1,
    "conditions": [
        {"type": "Available", "status": "True", "lastUpdateTime": "2026-11-27T09:41:12Z",
         "lastTransitionTime": "2026-11-27T09:41:12Z", "reason": "MinimumReplicasAvailable",
         "message": "Deployment has minimum availability."},
        {"type": "Progressing", "status": "True", "lastUpdateTime": "2026-11-27T09:41:12Z",
         "lastTransitionTime": "2026-11-27T09:40:31Z", "reason": "NewReplicaSetAvailable",
         "message": 'ReplicaSet "prefect-worker-6b7f9c8d5" has successfully progressed.'},
    ],
}

# What the Deployment of a crash-looping worker says about itself: its one pod exists and is of the current
# template (updated), but it is neither ready nor available. Zero counts are left out (omitempty).
CRASH_LOOPING = {
    "observedGeneration": 2, "replicas": 1, "updatedReplicas": 1, "unavailableReplicas": 1,
    "conditions": [
        {"type": "Available", "status": "False", "lastUpdateTime": "2026-11-27T09:40:31Z",
         "lastTransitionTime": "2026-11-27T09:40:31Z", "reason": "MinimumReplicasUnavailable",
         "message": "Deployment does not have minimum availability."},
        {"type": "Progressing", "status": "True", "lastUpdateTime": "2026-11-27T09:40:31Z",
         "lastTransitionTime": "2026-11-27T09:40:31Z", "reason": "ReplicaSetUpdated",
         "message": 'ReplicaSet "prefect-worker-6b7f9c8d5" is progressing.'},
    ],
}

# Every failure below leaves the Deployment reporting the same: one updated pod, not available.
NOT_AVAILABLE = CRASH_LOOPING

# Generation 3 applied; the controller has not got round to it (kube-controller-manager down).
NOT_OBSERVED = dict(AVAILABLE, observedGeneration=2)


def pod(suffix="x2x7q", template_hash=NEW_HASH, phase="Pending", conditions=(), container_statuses=None,
        node=NODE, deleting=False, created="2026-11-27T09:40:31Z", uid=None):
    name = "%s-%s-%s" % (NAME, template_hash, suffix)
    item = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": name, "generateName": "%s-%s-" % (NAME, template_hash), "namespace": NAMESPACE,
            "uid": uid or _uid(name),
            "resourceVersion": "48190", "creationTimestamp": created,
            "labels": dict(SELECTOR, **{"pod-template-hash": template_hash}),
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "%s-%s" % (NAME, template_hash),
                                 "uid": "4f0c2a8e-0d6b-4d3a-a1d2-5b7e9f1c3a%02d" % len(template_hash),
                                 "controller": True, "blockOwnerDeletion": True}],
        },
        "spec": {
            "containers": [{"name": NAME, "image": IMAGE, "imagePullPolicy": "IfNotPresent",
                            "args": ["prefect", "worker", "start", "--type", "kubernetes", "--pool", "qhub"]}],
            "restartPolicy": "Always", "terminationGracePeriodSeconds": 30, "serviceAccountName": NAME,
            "schedulerName": "default-scheduler",
        },
        "status": {"phase": phase, "qosClass": "Burstable", "conditions": list(conditions)},
    }
    if node:
        item["spec"]["nodeName"] = node
        item["status"].update(hostIP="10.244.77.1", podIP="10.244.77.14", podIPs=[{"ip": "10.244.77.14"}],
                              startTime=created)
    if container_statuses is not None:
        item["status"]["containerStatuses"] = container_statuses
    if deleting:
        item["metadata"]["deletionTimestamp"] = "2026-11-27T09:40:58Z"
        item["metadata"]["deletionGracePeriodSeconds"] = 30
    return item


def _conditions(ready, scheduled=True):
    ready_status = "True" if ready else "False"
    reason = {} if ready else {"reason": "ContainersNotReady",
                               "message": "containers with unready status: [%s]" % NAME}
    return [
        {"type": "Initialized", "status": "True", "lastProbeTime": None, "lastTransitionTime": "2026-11-27T09:40:31Z"},
        dict({"type": "Ready", "status": ready_status, "lastProbeTime": None,
              "lastTransitionTime": "2026-11-27T09:40:31Z"}, **reason),
        dict({"type": "ContainersReady", "status": ready_status, "lastProbeTime": None,
              "lastTransitionTime": "2026-11-27T09:40:31Z"}, **reason),
        {"type": "PodScheduled", "status": "True" if scheduled else "False", "lastProbeTime": None,
         "lastTransitionTime": "2026-11-27T09:40:31Z"},
    ]


def _status(state, ready=False, restarts=0, last_state=None, started=False, image_id=""):
    return [{"name": NAME, "state": state, "lastState": last_state or {}, "ready": ready, "restartCount": restarts,
             "image": IMAGE, "imageID": image_id, "started": started,
             **({"containerID": "containerd://9a1e3c5b7d2f4e6a8c0b1d3f5a7c9e1b3d5f7a9c1e3b5d7f9a1c3e5b7d9f1a3c"}
                if image_id else {})}]


IMAGE_ID = "docker.io/prefecthq/prefect@sha256:5f1c0e6ad4c2c9e1a3b7d58e0c24c5b9d9b7f0a6e2f3c4d5e6f7a8b9c0d1e2f3"

RUNNING_READY = pod(phase="Running", conditions=_conditions(True), container_statuses=_status(
    {"running": {"startedAt": "2026-11-27T09:40:33Z"}}, ready=True, started=True, image_id=IMAGE_ID))


def image_pull_backoff(image="prefecthq/prefect:3-python3.11-does-not-exist"):
    item = pod(conditions=_conditions(False), container_statuses=_status(
        {"waiting": {"reason": "ImagePullBackOff", "message": 'Back-off pulling image "%s"' % image}}))
    item["spec"]["containers"][0]["image"] = item["status"]["containerStatuses"][0]["image"] = image
    return item


def err_image_pull(image="prefecthq/prefect:3-python3.11-does-not-exist"):
    item = image_pull_backoff(image)
    item["status"]["containerStatuses"][0]["state"] = {"waiting": {
        "reason": "ErrImagePull",
        "message": 'rpc error: code = NotFound desc = failed to pull and unpack image "docker.io/%s": failed to '
                   'resolve reference "docker.io/%s": docker.io/%s: not found' % (image, image, image)}}
    return item


def pull_events(uid, failures, image="prefecthq/prefect:3-python3.11-does-not-exist"):
    """The kubelet's events for a pull that fails ``failures`` times (the same message is counted, not repeated)."""
    events = [
        _event(uid, "Normal", "Scheduled", "Successfully assigned dev/%s-%s-x2x7q to %s" % (NAME, NEW_HASH, NODE), 1,
               source={"component": "default-scheduler"}),
        _event(uid, "Normal", "Pulling", 'Pulling image "%s"' % image, failures),
        _event(uid, "Warning", "Failed",
               'Failed to pull image "%s": rpc error: code = NotFound desc = failed to pull and unpack image '
               '"docker.io/%s": failed to resolve reference "docker.io/%s": docker.io/%s: not found'
               % (image, image, image, image), failures),
        _event(uid, "Warning", "Failed", "Error: ErrImagePull", failures),
    ]
    if failures:
        events += [_event(uid, "Normal", "BackOff", 'Back-off pulling image "%s"' % image, failures),
                   _event(uid, "Warning", "Failed", "Error: ImagePullBackOff", failures)]
    return [e for e in events if e["count"]]


def crash_loop_backoff(restarts=3):
    item = pod(phase="Running", conditions=_conditions(False), container_statuses=_status(
        {"waiting": {"reason": "CrashLoopBackOff",
                     "message": "back-off 40s restarting failed container=%s pod=%s_dev(7c1d0e55-3f7a-4b8e-9d61-"
                                "2f0e4c6a8b1d)" % (NAME, "%s-%s-x2x7q" % (NAME, NEW_HASH))}},
        restarts=restarts, image_id=IMAGE_ID,
        last_state={"terminated": {"exitCode": 1, "reason": "Error", "startedAt": "2026-11-27T09:41:40Z",
                                   "finishedAt": "2026-11-27T09:41:44Z",
                                   "containerID": "containerd://2b4d6f8a0c1e3a5c7e9b1d3f5a7c9e1b3d5f7a9c1e3b5d7f9"
                                                  "a1c3e5b7d9f1a3c"}}))
    return item


def restarted_running():
    """Exited with an error once, restarted, running again (not yet ready)."""
    item = crash_loop_backoff(restarts=1)
    item["status"]["containerStatuses"][0]["state"] = {"running": {"startedAt": "2026-11-27T09:41:46Z"}}
    return item


def crash_events(uid):
    return [_event(uid, "Normal", "Pulled", 'Container image "%s" already present on machine' % IMAGE, 4),
            _event(uid, "Normal", "Created", "Created container %s" % NAME, 4),
            _event(uid, "Normal", "Started", "Started container %s" % NAME, 4),
            _event(uid, "Warning", "BackOff", "Back-off restarting failed container", 6)]


def create_container_config_error(key="DATABASE_PASSWORD"):
    return pod(conditions=_conditions(False), container_statuses=_status(
        {"waiting": {"reason": "CreateContainerConfigError",
                     "message": "couldn't find key %s in Secret %s/%s" % (key, NAMESPACE, NAME)}}))


def config_error_events(uid, key="DATABASE_PASSWORD"):
    return [_event(uid, "Normal", "Pulled", 'Container image "%s" already present on machine' % IMAGE, 3),
            _event(uid, "Warning", "Failed", "Error: couldn't find key %s in Secret %s/%s" % (key, NAMESPACE, NAME), 3)]


SCHEDULER_MESSAGE = "0/1 nodes are available: 1 Insufficient memory."


def unschedulable():
    conditions = [{"type": "PodScheduled", "status": "False", "lastProbeTime": None,
                   "lastTransitionTime": "2026-11-27T09:40:31Z", "reason": "Unschedulable",
                   "message": SCHEDULER_MESSAGE}]
    item = pod(conditions=conditions, node=None)
    return item


def unschedulable_events(uid):
    return [_event(uid, "Warning", "FailedScheduling", SCHEDULER_MESSAGE, 1, source={"component": "default-scheduler"})]


def never_scheduled():
    """No scheduler running: the pod exists, has no node and no PodScheduled condition at all."""
    return pod(node=None)


def readiness_failing():
    return pod(phase="Running", conditions=_conditions(False), container_statuses=_status(
        {"running": {"startedAt": "2026-11-27T09:40:33Z"}}, ready=False, started=True, image_id=IMAGE_ID))


def readiness_events(uid):
    return [_event(uid, "Normal", "Started", "Started container %s" % NAME, 1),
            _event(uid, "Warning", "Unhealthy", "Readiness probe failed: HTTP probe failed with statuscode: 503", 9)]


def kubelet_silent():
    """Bound to the node, but its kubelet never picked it up: no container statuses, only PodScheduled."""
    return pod(conditions=[{"type": "PodScheduled", "status": "True", "lastProbeTime": None,
                            "lastTransitionTime": "2026-11-27T09:40:31Z"}])


def old_terminating():
    return pod(suffix="q8k2m", template_hash=OLD_HASH, phase="Running", conditions=_conditions(True),
               container_statuses=_status({"running": {"startedAt": "2026-11-27T09:30:02Z"}}, ready=True,
                                          started=True, image_id=IMAGE_ID),
               deleting=True, created="2026-11-27T09:30:00Z")


def _event(uid, kind, reason, message, count, source=None):
    return {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": "%s-%s-x2x7q.17a2b3c4d5e6f7%02d" % (NAME, NEW_HASH, len(reason)), "namespace": NAMESPACE},
        "involvedObject": {"kind": "Pod", "namespace": NAMESPACE, "name": "%s-%s-x2x7q" % (NAME, NEW_HASH),
                           "uid": uid, "apiVersion": "v1", "resourceVersion": "48190",
                           "fieldPath": "spec.containers{%s}" % NAME},
        "reason": reason, "message": message, "source": source or {"component": "kubelet", "host": NODE},
        "firstTimestamp": "2026-11-27T09:40:33Z", "lastTimestamp": "2026-11-27T09:41:%02dZ" % min(59, 10 + count),
        "count": count, "type": kind, "eventTime": None, "reportingComponent": "", "reportingInstance": "",
    }


def pod_list(*pods):
    return {"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "48230"},
            "items": [copy.deepcopy(p) for p in pods]}


def event_list(events):
    return {"kind": "EventList", "apiVersion": "v1", "metadata": {"resourceVersion": "48231"}, "items": events}
