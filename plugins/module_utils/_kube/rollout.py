# -*- coding: utf-8 -*-
# Copyright: (c) 2026, qhub.prefect contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Waiting until a Deployment's pods run, and naming why they do not.

A rollout is done when the Deployment controller has observed the current generation and every desired
pod is updated, available and ready, with no pod of an older ReplicaSet left. Until then the reason is in
the pods, as ``kubectl describe pod`` shows it: container states, conditions, events and the log of a
container that keeps exiting. Secret values the module applied never appear in what is reported.

Reads stay cheap: an unchanged, available Deployment costs nothing more; pods are listed only while the
Deployment is not available (and once to confirm no old pod is left); events and logs are read only for a
pod that is in trouble.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import time
from urllib.parse import quote

from ansible_collections.qhub.prefect.plugins.module_utils._kube.apply import MASK, describe, object_path
from ansible_collections.qhub.prefect.plugins.module_utils._kube.client import KubeError

LOG_TAIL_LINES = 15
LOG_LIMIT_BYTES = 16384
# At most this many pods are described in an error, the newest first; the others are alike.
PODS_DESCRIBED = 3
EVENTS_SHOWN = 4
# Two failed pulls, with the kubelet's back-off between them, rule out a registry blip.
PULL_FAILURES_BEFORE_GIVING_UP = 2
# The kubelet retries a pod whose container it could not configure about every 10 s, and its Secret
# and ConfigMap caches may trail an apply by a moment; an error that outlives one retry is not that.
CONFIG_ERROR_GRACE_SECONDS = 15

IMAGE_REASONS = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull", "RegistryUnavailable")
# These will never pull, whatever the registry does: the name is malformed, or the policy forbids pulling.
IMAGE_REASONS_FINAL = ("InvalidImageName", "ErrImageNeverPull")
CREATE_REASONS = ("CreateContainerConfigError", "CreateContainerError", "RunContainerError", "PreCreateHookError",
                  "PreStartHookError", "PostStartHookError")
TERMINAL_PHASES = ("Succeeded", "Failed")
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


# A line of a multi-line secret is masked on its own only with this many non-space characters: the lines
# of a JSON key or a PEM block such as "{" or "}" stand for nothing and are everywhere in a log.
MIN_SECRET_LINE_CHARS = 4


def _escaped(value):
    """A value as it stands inside a JSON string: how a structured log line quotes it (newlines as \\n)."""
    return [json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]]


def secret_forms(value):
    """Every string that gives ``value`` away in a log: itself, JSON-escaped, and each line of substance.

    A log prints a multi-line secret (a PEM key, a JSON service-account key) line by line, with its own
    prefix on each, so the whole value never stands on one line to be found.
    """
    forms = [value] + _escaped(value)
    lines = value.splitlines()
    if len(lines) > 1:
        for line in lines:
            line = line.strip()
            if len("".join(line.split())) >= MIN_SECRET_LINE_CHARS:
                forms += [line] + _escaped(line)
    return forms


class Masker:
    """Replaces secret values in text read back from the cluster (logs, events, kubelet messages)."""

    def __init__(self, values=()):
        forms = set()
        for value in values:
            if value:
                forms.update(form for form in secret_forms(value) if form.strip())
        # Longest first, so a value containing another is masked whole.
        self.values = sorted(forms, key=len, reverse=True)

    def __call__(self, text):
        if not text:
            return text
        for value in self.values:
            text = text.replace(value, MASK)
        return text


def _selector(deployment):
    labels = ((deployment.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    return ",".join("%s=%s" % item for item in sorted(labels.items()))


def _is_terminating(pod):
    return bool(pod["metadata"].get("deletionTimestamp")) and \
        (pod.get("status") or {}).get("phase") not in TERMINAL_PHASES


def _is_ready(pod):
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


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
            and (_is_terminating(p) or p["metadata"].get("labels", {}).get(TEMPLATE_HASH_LABEL) != current)]


class Problem:
    """One thing wrong with one pod, as read from the pod object alone."""

    def __init__(self, kind, text, container=None, reason=None):
        self.kind = kind
        self.text = text
        self.container = container
        self.reason = reason


def _condition(pod, kind):
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind:
            return condition
    return None


def _container_images(pod):
    spec = pod.get("spec") or {}
    containers = (spec.get("initContainers") or []) + (spec.get("containers") or [])
    return dict((c["name"], c.get("image")) for c in containers)


def pod_problems(pod):
    """What keeps one pod from being ready, from its status (no further reads)."""
    meta, status = pod["metadata"], pod.get("status") or {}
    if status.get("phase") in TERMINAL_PHASES:
        return []  # an evicted or finished pod runs no more; the ReplicaSet has replaced it
    if _is_terminating(pod):
        return [Problem("terminating", "is still terminating (deletion requested, grace period %ss); a pod of an "
                        "older ReplicaSet must stop before the Recreate strategy starts new ones, and only the "
                        "kubelet on %s can confirm it stopped" % (meta.get("deletionGracePeriodSeconds", "?"),
                                                                  (pod.get("spec") or {}).get("nodeName", "its node")))]
    scheduled = _condition(pod, "PodScheduled")
    if scheduled and scheduled.get("status") == "False":
        return [Problem("unschedulable", "cannot be scheduled (%s): %s" % (
            scheduled.get("reason") or "PodScheduled=False", scheduled.get("message") or "no message"),
            reason=scheduled.get("reason"))]
    node = (pod.get("spec") or {}).get("nodeName")
    if not node:
        return [Problem("unscheduled", "is not scheduled to a node, and no scheduler has said why: is "
                        "kube-scheduler running?")]
    images = _container_images(pod)
    problems = []
    statuses = (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or [])
    for item in statuses:
        name = item.get("name")
        state = item.get("state") or {}
        waiting, terminated = state.get("waiting") or {}, state.get("terminated") or {}
        last = (item.get("lastState") or {}).get("terminated") or {}
        reason = waiting.get("reason")
        restarts = item.get("restartCount", 0)
        if reason in IMAGE_REASONS:
            problems.append(Problem("image", "container %s cannot pull its image %s (%s): %s" % (
                name, images.get(name) or item.get("image"), reason, waiting.get("message") or "no message"),
                container=name, reason=reason))
        elif reason in CREATE_REASONS:
            problems.append(Problem("create", "container %s cannot be started (%s): %s" % (
                name, reason, waiting.get("message") or "no message"), container=name, reason=reason))
        elif reason == "CrashLoopBackOff" or (terminated and terminated.get("exitCode", 0) != 0) or \
                (restarts and last and last.get("exitCode", 0) != 0):
            exited = terminated or last
            detail = "exit code %s" % exited.get("exitCode", "?")
            if exited.get("reason"):
                detail += ", %s" % exited["reason"]
            if exited.get("message"):
                detail += ": %s" % exited["message"].strip()
            problems.append(Problem("crash", "container %s %s (%s; restarted %d times)" % (
                name, "keeps exiting" if reason == "CrashLoopBackOff" else "exited", detail, restarts),
                container=name, reason=reason or exited.get("reason") or "Error"))
        elif state.get("running") and not item.get("ready"):
            problems.append(Problem("unready", "container %s runs but is not ready" % name, container=name,
                                    reason="NotReady"))
        elif reason:
            problems.append(Problem("waiting", "container %s is waiting (%s%s)" % (
                name, reason, ": " + waiting["message"] if waiting.get("message") else ""), container=name,
                reason=reason))
    if not statuses and status.get("phase", "Pending") == "Pending":
        problems.append(Problem("silent", "is scheduled to node %s, whose kubelet has not reported on it: is the "
                                "kubelet on %s running?" % (node, node)))
    if not problems and not _is_ready(pod) and status.get("phase") not in TERMINAL_PHASES:
        ready = _condition(pod, "Ready") or {}
        problems.append(Problem("unready", "is not ready (%s)" % (
            ready.get("reason") or ready.get("message") or "phase %s" % status.get("phase", "unknown"))))
    return problems


def pull_failures(events):
    """How often the kubelet failed to pull an image, summed over its (aggregated) Failed events."""
    return sum(e.get("count") or 1 for e in events
               if e.get("reason") == "Failed" and (e.get("message") or "").startswith("Failed to pull image"))


def _event_time(event):
    return event.get("lastTimestamp") or event.get("eventTime") or event.get("firstTimestamp") or ""


def warning_lines(events, mask):
    """The pod's most recent Warning events, one line each, the same message once."""
    seen, lines = set(), []
    for event in sorted(events, key=_event_time, reverse=True):
        if event.get("type") != "Warning":
            continue
        key = (event.get("reason"), event.get("message"))
        if key in seen:
            continue
        seen.add(key)
        count = event.get("count") or 1
        lines.append("%s%s: %s" % (event.get("reason"), " (x%d)" % count if count > 1 else "",
                                   mask((event.get("message") or "").strip())))
        if len(lines) == EVENTS_SHOWN:
            break
    return lines


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
        self.mask = Masker(secrets)
        self.interval = interval
        self.clock = clock
        self.sleep = sleep
        self.namespace = manifest["metadata"]["namespace"]
        self.first_seen = {}
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
                    hopeless = self._hopeless(pods)
            if hopeless:
                raise KubeError(self._message(deployment, missing, pods, hopeless))
            if self.clock() >= deadline:
                raise KubeError(self._message(deployment, missing, pods))
            self.sleep(self.interval)

    def _pods(self, deployment):
        query = [("labelSelector", quote(_selector(deployment), safe=""))]
        data = self.client.request("GET", "/api/v1/namespaces/%s/pods" % self.namespace, query=query)[1] or {}
        pods = data.get("items") or []
        # The pods that block the rollout first: the newest, which the current ReplicaSet made.
        return sorted(pods, key=lambda p: p["metadata"].get("creationTimestamp") or "", reverse=True)

    def _events(self, pod):
        selector = "involvedObject.kind=Pod,involvedObject.uid=%s" % pod["metadata"]["uid"]
        query = [("fieldSelector", quote(selector, safe=""))]
        try:
            data = self.client.request("GET", "/api/v1/namespaces/%s/events" % self.namespace, query=query)[1]
        except KubeError as exc:
            if exc.status != 403:
                raise
            return []  # events only explain; a deployer that may not read them still gets the pod's own story
        return (data or {}).get("items") or []

    def _log_tail(self, pod, container, previous):
        query = [("container", quote(container, safe="")), ("tailLines", str(LOG_TAIL_LINES)),
                 ("limitBytes", str(LOG_LIMIT_BYTES))]
        if previous:
            query.append(("previous", "true"))
        try:
            text = self.client.text("/api/v1/namespaces/%s/pods/%s/log" % (self.namespace, pod["metadata"]["name"]),
                                    query=query)
        except KubeError as exc:
            return "(its log cannot be read: %s)" % self.mask(str(exc))
        lines = [line for line in (text or "").splitlines() if line.strip()][-LOG_TAIL_LINES:]
        if not lines:
            return "(its log is empty)"
        return "last lines of its log:\n" + "\n".join("    " + self.mask(line) for line in lines)

    def _hopeless(self, pods):
        """The problems no wait will mend, per pod; tracks how long a create error has lasted."""
        now = self.clock()
        found, seen = [], set()
        for pod in pods:
            for problem in pod_problems(pod):
                key = (pod["metadata"].get("uid"), problem.container, problem.reason)
                seen.add(key)
                since = self.first_seen.setdefault(key, now)
                if problem.kind == "image":
                    if problem.reason in IMAGE_REASONS_FINAL or (
                            problem.reason == "ImagePullBackOff"
                            and pull_failures(self._events(pod)) >= PULL_FAILURES_BEFORE_GIVING_UP):
                        found.append((pod, problem))
                elif problem.kind == "crash" and problem.reason == "CrashLoopBackOff":
                    found.append((pod, problem))
                elif problem.kind == "create" and now - since >= CONFIG_ERROR_GRACE_SECONDS:
                    found.append((pod, problem))
        # A state that went away and came back starts its grace period again.
        for key in list(self.first_seen):
            if key not in seen:
                del self.first_seen[key]
        return found

    def _describe_pod(self, pod, problems):
        name = pod["metadata"]["name"]
        lines = []
        for problem in problems:
            text = "pod %s %s" % (name, self.mask(problem.text))
            if problem.kind == "crash":
                statuses = ((pod.get("status") or {}).get("initContainerStatuses") or []) + \
                    ((pod.get("status") or {}).get("containerStatuses") or [])
                restarts = next((s.get("restartCount", 0) for s in statuses if s.get("name") == problem.container), 0)
                state = next((s.get("state") or {} for s in statuses if s.get("name") == problem.container), {})
                # The container that exited is the previous one once the kubelet has restarted it.
                previous = restarts > 0 and "terminated" not in state
                text += "; " + self._log_tail(pod, problem.container, previous=previous)
            lines.append(text)
        events = warning_lines(self._events(pod), self.mask)
        if events:
            lines.append("  events of pod %s: %s" % (name, "; ".join(events)))
        return lines

    def _message(self, deployment, missing, pods, hopeless=()):
        elapsed = self.clock() - self.started
        if hopeless:
            head = ("%s cannot become available (%s), and waiting longer will not mend it: stopped after %d s "
                    "of the %s s timeout" % (describe(self.manifest), missing, elapsed, self.timeout))
            by_pod = []
            for pod, dummy in hopeless:
                if all(pod is not seen for seen, dummy in by_pod):
                    by_pod.append((pod, [problem for owner, problem in hopeless if owner is pod]))
        else:
            head = "%s did not roll out within %s s: %s" % (describe(self.manifest), self.timeout, missing)
            by_pod = [(pod, pod_problems(pod)) for pod in pods or []]
            by_pod = [(pod, problems) for pod, problems in by_pod if problems]
        lines = [head + "."]
        for pod, problems in by_pod[:PODS_DESCRIBED]:
            lines += self._describe_pod(pod, problems)
        if len(by_pod) > PODS_DESCRIBED:
            lines.append("(%d more pods alike)" % (len(by_pod) - PODS_DESCRIBED))
        if pods is not None and not pods and not hopeless:
            lines.append("No pod matches its selector %s yet." % _selector(deployment))
        conditions = (deployment.get("status") or {}).get("conditions") or []
        said = "; ".join("%s=%s (%s: %s)" % (c.get("type"), c.get("status"), c.get("reason"), c.get("message"))
                         for c in conditions)
        if said:
            lines.append("Its conditions: %s" % self.mask(said))
        elif pods is None:
            lines.append("It reports no conditions: is kube-controller-manager running?")
        return "\n".join(lines)


def wait_for_rollout(client, manifest, timeout, current=None, secrets=(), **kwargs):
    """Wait until the Deployment is available; KubeError naming the cause when it will not be."""
    return RolloutWaiter(client, manifest, timeout, secrets=secrets, **kwargs).wait(current)
