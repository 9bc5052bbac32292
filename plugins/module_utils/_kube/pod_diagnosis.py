# -*- coding: utf-8 -*-
# Copyright: (c) 2026, qhub.prefect contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Why a Deployment's pods do not run, as ``kubectl describe pod`` would say it, with secret values masked.

Container states, conditions, events and the log of a container that keeps exiting; which of those no
wait will mend. Events and logs are read only for a pod that is in trouble. The wait itself is rollout.py.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import time
from urllib.parse import quote

from ansible_collections.qhub.prefect.plugins.module_utils._kube.apply import MASK, describe
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


def selector_of(deployment):
    """The Deployment's label selector as a query string."""
    labels = ((deployment.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    return ",".join("%s=%s" % item for item in sorted(labels.items()))


def is_terminating(pod):
    return bool(pod["metadata"].get("deletionTimestamp")) and \
        (pod.get("status") or {}).get("phase") not in TERMINAL_PHASES


def is_ready(pod):
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


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
    if is_terminating(pod):
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
    if not problems and not is_ready(pod) and status.get("phase") not in TERMINAL_PHASES:
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


class PodDiagnosis:
    """What is wrong with the pods of one namespace, read from them, their events and their logs.

    It remembers how long each create error has lasted (``hopeless``), so one instance serves one wait.
    """

    def __init__(self, client, namespace, secrets=(), clock=time.monotonic):
        self.client = client
        self.namespace = namespace
        self.mask = Masker(secrets)
        self.clock = clock
        self.first_seen = {}

    def events(self, pod):
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

    def hopeless(self, pods):
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
                            and pull_failures(self.events(pod)) >= PULL_FAILURES_BEFORE_GIVING_UP):
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
        events = warning_lines(self.events(pod), self.mask)
        if events:
            lines.append("  events of pod %s: %s" % (name, "; ".join(events)))
        return lines

    def message(self, manifest, timeout, elapsed, deployment, missing, pods, hopeless=()):
        """The error of a rollout that will not, or did not in time, complete: what each pod says."""
        if hopeless:
            head = ("%s cannot become available (%s), and waiting longer will not mend it: stopped after %d s "
                    "of the %s s timeout" % (describe(manifest), missing, elapsed, timeout))
            by_pod = []
            for pod, dummy in hopeless:
                if all(pod is not seen for seen, dummy in by_pod):
                    by_pod.append((pod, [problem for owner, problem in hopeless if owner is pod]))
        else:
            head = "%s did not roll out within %s s: %s" % (describe(manifest), timeout, missing)
            by_pod = [(pod, pod_problems(pod)) for pod in pods or []]
            by_pod = [(pod, problems) for pod, problems in by_pod if problems]
        lines = [head + "."]
        for pod, problems in by_pod[:PODS_DESCRIBED]:
            lines += self._describe_pod(pod, problems)
        if len(by_pod) > PODS_DESCRIBED:
            lines.append("(%d more pods alike)" % (len(by_pod) - PODS_DESCRIBED))
        if pods is not None and not pods and not hopeless:
            lines.append("No pod matches its selector %s yet." % selector_of(deployment))
        conditions = (deployment.get("status") or {}).get("conditions") or []
        said = "; ".join("%s=%s (%s: %s)" % (c.get("type"), c.get("status"), c.get("reason"), c.get("message"))
                         for c in conditions)
        if said:
            lines.append("Its conditions: %s" % self.mask(said))
        elif pods is None:
            lines.append("It reports no conditions: is kube-controller-manager running?")
        return "\n".join(lines)
