"""Converge speed and scale of deploy.yml, side by side with its anchors, in one run (issue 19).

Prints, with each target beside its figure:

1. One deployment: the floor (a one-task play), deploy.yml first apply and no-op rerun, the anchor (the same
   objects with kubernetes.core.k8s, one task per object), alternated round by round; medians; the ratios;
   controller CPU seconds and peak controller memory of each.
2. The API requests of one no-op run (the apiserver's audit log; a counting proxy in front of the Prefect server).
3. A fleet (--fleet N deployments spread over --clusters control planes, --forks F): first apply and no-op,
   alternated with one deployment; wall time against one deployment's, controller CPU seconds per deployment,
   peak controller memory, and the requests per deployment of the no-op.
4. With --node-testbed DIR (a test bed with a node): time to ONLINE, from ansible-playbook's start to the worker
   ONLINE in its pool, beside the floor (the same image as a bare `prefect worker start` pod), and the difference
   broken down: apply, image, pod start, worker start, first poll.
5. The scale series, with --agents and --secrets (agents in one run, secretEnvVars entries of one agent).

    .venv/bin/python benchmarks/run.py [--testbed DIR] [--repeat 5] [--fleet 32] [--forks 8] [--clusters 3]
        [--fleet-repeat 3] [--node-testbed .testbed] [--node-repeat 1] [--agents 1,10,50] [--secrets 1,200]

Without --testbed a control plane and Prefect server (no node) are started for the run; with it, that test bed is
used (it needs an audit log: testbed.py up --audit-log). The fleet's other control planes are started here. The
controller's CPU seconds are the user and system time of ansible-playbook and every process it forked (getrusage
of the reaped children); its memory is the peak, sampled every 0.1 s, of the summed RSS (and PSS, which counts the
pages the forks share with their parent once) of ansible-playbook and its descendants.
"""

import argparse
import json
import os
import pathlib
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid

import yaml

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / ".collections")]

from benchmarks.counting_proxy import CountingProxy  # noqa: E402
from tests.testbed.testbed import Testbed  # noqa: E402

CACHE_ROOT = pathlib.Path(os.environ.get("QHUB_PREFECT_CACHE", pathlib.Path.home() / ".cache" / "qhub-prefect"))
BENCH_VENV = CACHE_ROOT / "bench-venv"
OURS_BIN = pathlib.Path(sys.executable).parent
SYSTEM_AGENTS = ("kube-controller-manager", "kube-apiserver")
READ_VERBS = {"get", "list", "watch"}
IMAGE = "prefecthq/prefect:3-python3.11-kubernetes"
TARGET_NOOP_FLOOR = 1.5
TARGET_ANCHOR = 5.0
TARGET_FLEET = 8.0


def ensure_anchor_venv():
    """kubernetes.core comes with the 'ansible' package; its own venv keeps our ansible-core untouched."""
    # The stamp is written last, so an interrupted install is redone rather than half used.
    stamp = BENCH_VENV / ".installed"
    if not stamp.exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(BENCH_VENV)], check=True)
        subprocess.run([str(BENCH_VENV / "bin" / "pip"), "install", "-q", "ansible>=10,<12", "kubernetes", "pyyaml"],
                       check=True)
        stamp.write_text("ansible>=10,<12 kubernetes pyyaml\n")
    return BENCH_VENV / "bin" / "ansible-playbook"


class TreeMemory:
    """The peak summed RSS and PSS (KiB) of a process and its descendants, sampled every `interval` seconds."""

    def __init__(self, pid, interval=0.1):
        self.pid, self.interval = pid, interval
        self.peak_rss = self.peak_pss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _tree(self):
        found, todo = [], [self.pid]
        while todo:
            pid = todo.pop()
            found.append(pid)
            try:
                for task in os.listdir("/proc/%d/task" % pid):
                    with open("/proc/%d/task/%s/children" % (pid, task)) as handle:
                        todo += [int(child) for child in handle.read().split()]
            except OSError:
                pass
        return found

    def _sample(self):
        rss = pss = 0
        for pid in self._tree():
            try:
                with open("/proc/%d/smaps_rollup" % pid) as handle:
                    for line in handle:
                        if line.startswith("Rss:"):
                            rss += int(line.split()[1])
                        elif line.startswith("Pss:"):
                            pss += int(line.split()[1])
            except OSError:
                pass
        self.peak_rss, self.peak_pss = max(self.peak_rss, rss), max(self.peak_pss, pss)

    def _run(self):
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def stop(self):
        self._stop.set()
        self._thread.join()


class Measured:
    """One command's wall seconds, controller CPU seconds, peak memory (MiB), apiserver events, Prefect requests."""

    def __init__(self, seconds, cpu, rss, pss, events, prefect, output):
        self.seconds, self.cpu, self.rss, self.pss = seconds, cpu, rss, pss
        self.events, self.prefect, self.output = events, prefect, output


def kubeconfig_of(bed):
    return yaml.safe_load(pathlib.Path(bed.kubeconfig).read_text())


def merged_kubeconfig(beds, path):
    """One kubeconfig with a context ctx-a, ctx-b, ... per test bed."""
    document = {"apiVersion": "v1", "kind": "Config", "clusters": [], "users": [], "contexts": [],
                "current-context": "ctx-a", "preferences": {}}
    for letter, bed in zip("abcdefghijklmnopqrstuvwxyz", beds):
        own = kubeconfig_of(bed)
        document["clusters"].append({"name": "cluster-" + letter, "cluster": own["clusters"][0]["cluster"]})
        document["users"].append({"name": "admin-" + letter, "user": own["users"][0]["user"]})
        document["contexts"].append({"name": "ctx-" + letter, "context": {
            "cluster": "cluster-" + letter, "user": "admin-" + letter}})
    pathlib.Path(path).write_text(yaml.safe_dump(document))
    os.chmod(path, 0o600)
    return str(path)


class Bench:
    def __init__(self, testbed, work, clusters=()):
        self.testbed = testbed
        self.work = pathlib.Path(work)
        host, port = testbed.prefect_api_url.split("//", 1)[1].split("/", 1)[0].split(":")
        self.proxy = CountingProxy(host, int(port))
        self.api_url = "http://127.0.0.1:%d/api" % self.proxy.port
        self.beds = [testbed] + list(clusters)
        self.audits = [pathlib.Path(bed.audit_log) for bed in self.beds if bed.audit_log]
        self.audit = self.audits[0] if self.audits else pathlib.Path("/nonexistent")
        # The fleet's: a context ctx-a, ctx-b, ... per control plane.
        self.kubeconfig = merged_kubeconfig(self.beds, self.work / "kubeconfig")
        # Namespaces (and work pools of the same names) the runs made: removed from the test bed afterwards.
        self.made = []

    def tidy(self):
        """Remove from the main test bed what the runs made: a bed kept for many runs (--testbed) otherwise fills
        with hundreds of namespaces, which slow every later cluster-wide read. The fleet's other beds go whole."""
        from kubernetes import client as k8s
        from kubernetes import config as kube_config
        core = k8s.CoreV1Api(kube_config.new_client_from_config(self.testbed.kubeconfig))
        left = 0
        for namespace in self.made:
            for remove in (lambda: core.delete_namespace(namespace),
                           lambda: prefect_call(self.testbed.prefect_api_url, "DELETE", "/work_pools/%s" % namespace)):
                try:
                    remove()
                except Exception:  # noqa: BLE001 - not there (a pool named otherwise), or the bed is going anyway
                    left += 1
        return left

    def env(self):
        env = dict(os.environ, KUBECONFIG=self.testbed.kubeconfig, PREFECT_API_URL=self.api_url,
                   QHUB_SECRET_PREFECT_TOKEN="bench-token", ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
                   ANSIBLE_PYTHON_INTERPRETER=sys.executable, ANSIBLE_LOCALHOST_WARNING="0",
                   ANSIBLE_INVENTORY_UNPARSED_WARNING="0")
        env["PATH"] = "%s:%s" % (OURS_BIN, env["PATH"])
        return env

    def timed(self, command, env=None):
        """Measured of one command, which must succeed."""
        offsets = [audit.stat().st_size if audit.exists() else 0 for audit in self.audits]
        self.proxy.reset()
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        process = subprocess.Popen(command, cwd=REPO, env=env or self.env(), stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True)
        memory = TreeMemory(process.pid)
        output = process.communicate()[0]
        seconds = time.perf_counter() - start
        memory.stop()
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if process.returncode != 0:
            raise SystemExit("benchmark step failed: %s\n%s" % (" ".join(map(str, command)), output[-3000:]))
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        events = [event for audit, offset in zip(self.audits, offsets) for event in audit_events(audit, offset)]
        return Measured(seconds, cpu, memory.peak_rss / 1024.0, memory.peak_pss / 1024.0, events,
                        list(self.proxy.requests), output)

    def config(self, namespace, secrets=1, folder=None):
        self.made.append(namespace)
        path = (folder or self.work) / ("%s.yml" % namespace)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump({"project_name": namespace, "namespace": namespace, "prefect": {
            "enabled": True, "image": IMAGE,
            "overrides": {"JOB_CPU_LIMIT": "2", "JOB_MEM_LIMIT": "4Gi", "envVars": {"ENVIRONMENT": "bench"},
                          "secretEnvVars": dict(("SECRET_%03d" % i, "value-%d" % i) for i in range(secrets))}}}))
        return path

    def deploy(self, config, pool):
        return [str(OURS_BIN / "ansible-playbook"), "playbooks/deploy.yml", "-e",
                json.dumps({"qhub_config_file": str(config), "qhub_prefect_work_pool": pool,
                            # Without a node no pod ever runs, so the rollout wait could only time out.
                            "qhub_prefect_wait": "node" in self.testbed.components})]

    def fleet(self, size, tag):
        """An inventory of `size` deployments, each in its own namespace and work pool, round robin over the beds."""
        folder = self.work / ("fleet-%s" % tag)
        deployments = []
        for index in range(size):
            name = "f%02d-%s" % (index, tag)
            self.config(name, folder=folder / name)
            deployments.append({"config": "%s/%s.yml" % (name, name), "name": name,
                                "context": "ctx-" + "abcdefghijklmnopqrstuvwxyz"[index % len(self.beds)],
                                "vars": {"qhub_prefect_work_pool": name}})
        path = folder / "fleet.qhub_deployments.yml"
        path.write_text(yaml.safe_dump({"plugin": "qhub.prefect.qhub_deployments", "deployments": deployments,
                                        "kubeconfig": self.kubeconfig, "prefect_api_url": self.api_url}))
        return path

    def deploy_fleet(self, inventory, forks):
        # The objects' converge is measured, as the anchor's is: the control planes here have no node to run pods.
        return [str(OURS_BIN / "ansible-playbook"), "-i", str(inventory), "playbooks/deploy.yml", "--forks",
                str(forks), "-e", "qhub_prefect_wait=false"]

    def anchor_playbook(self, namespace):
        """The same objects deploy.yml applies, each in its own kubernetes.core.k8s task."""
        from ansible_collections.qhub.prefect.plugins.module_utils._qhub.overrides import parse_overrides
        from ansible_collections.qhub.prefect.plugins.module_utils._render.objects import render_objects
        from ansible_collections.qhub.prefect.plugins.module_utils._render.spec import AgentSpec
        job, secret_env = parse_overrides({"JOB_CPU_LIMIT": "2", "JOB_MEM_LIMIT": "4Gi",
                                           "envVars": {"ENVIRONMENT": "bench"},
                                           "secretEnvVars": {"SECRET_000": "value-0"}}, {})
        spec = AgentSpec("prefect-worker", namespace, "prefect3", IMAGE, job,
                         secret_env=secret_env, token="bench-token", api_url=self.api_url, work_pool="anchor")
        self.made.append(namespace)
        tasks = [{"name": "Namespace", "kubernetes.core.k8s": {"definition": {
            "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}}}]
        for manifest in render_objects(spec):
            tasks.append({"name": manifest["kind"], "kubernetes.core.k8s": {"definition": manifest}})
        path = self.work / ("anchor-%s.yml" % namespace)
        path.write_text(yaml.safe_dump([{"name": "Anchor", "hosts": "localhost", "connection": "local",
                                         "gather_facts": False, "tasks": tasks}]))
        return path


def audit_events(audit, offset):
    if not audit.exists():
        return []
    with open(audit, "rb") as handle:
        handle.seek(offset)
        lines = handle.read().decode().splitlines()
    events = []
    for line in lines:
        event = json.loads(line)
        if event.get("stage") != "ResponseComplete":
            continue
        if (event.get("userAgent") or "").startswith(SYSTEM_AGENTS):
            continue
        events.append(event)
    return events


def median(values):
    return statistics.median(values) if values else float("nan")


def classify(events):
    reads = [e for e in events if e["verb"] in READ_VERBS]
    writes = [e for e in events if e["verb"] not in READ_VERBS]
    return reads, writes


def by_resource(events):
    counts = {}
    for event in events:
        key = "%s %s" % (event["verb"], event["objectRef"].get("resource"))
        counts[key] = counts.get(key, 0) + 1
    return ", ".join("%s %s" % (count, key) for key, count in sorted(counts.items())) or "none"


def verdict(value, target, at_most=True):
    met = value <= target if at_most else value >= target
    return "target %s %g: %s" % ("<=" if at_most else ">=", target, "met" if met else "NOT met")


def row(name, runs, unit=""):
    seconds = [run.seconds for run in runs]
    print("  %-34s %6.2f s (min %.2f, max %.2f)   CPU %5.2f s   peak RSS %4.0f MiB (PSS %4.0f)%s" % (
        name, median(seconds), min(seconds), max(seconds), median([r.cpu for r in runs]),
        median([r.rss for r in runs]), median([r.pss for r in runs]), unit))


# -- 1 and 2: one deployment ----------------------------------------------------------------------------------

def one_deployment(bench, args, anchor_bin, work):
    floor_play = pathlib.Path(work) / "floor.yml"
    floor_play.write_text("- hosts: localhost\n  connection: local\n  gather_facts: false\n"
                          "  tasks:\n    - ansible.builtin.debug:\n        msg: floor\n")
    anchor_cfg = pathlib.Path(work) / "anchor.cfg"
    anchor_cfg.write_text("[defaults]\nlocalhost_warning = False\ninventory_unparsed_warning = False\n")
    anchor_env = dict(bench.env(), ANSIBLE_CONFIG=str(anchor_cfg), PATH=os.environ["PATH"],
                      ANSIBLE_PYTHON_INTERPRETER=str(BENCH_VENV / "bin" / "python"))
    runs = dict((name, []) for name in ("floor", "first", "noop", "anchor first", "anchor noop"))
    # Round by round, so that whatever else the machine does falls on every variant alike.
    for index in range(args.repeat):
        runs["floor"].append(bench.timed([str(OURS_BIN / "ansible-playbook"), str(floor_play)]))
        namespace = "bench-%d-%s" % (index, uuid.uuid4().hex[:4])
        command = bench.deploy(bench.config(namespace), namespace)
        runs["first"].append(bench.timed(command))
        runs["noop"].append(bench.timed(command))
        playbook = bench.anchor_playbook("anchor-%d-%s" % (index, uuid.uuid4().hex[:4]))
        runs["anchor first"].append(bench.timed([str(anchor_bin), str(playbook)], env=anchor_env))
        runs["anchor noop"].append(bench.timed([str(anchor_bin), str(playbook)], env=anchor_env))

    print("\n## One deployment (median of %d rounds; CPU and memory: the controller's)" % args.repeat)
    row("floor: a one-task play", runs["floor"])
    row("deploy.yml first apply", runs["first"])
    row("deploy.yml no-op rerun", runs["noop"])
    row("anchor k8s first apply", runs["anchor first"])
    row("anchor k8s no-op rerun", runs["anchor noop"])
    floor, noop = median([r.seconds for r in runs["floor"]]), median([r.seconds for r in runs["noop"]])
    anchor_noop = median([r.seconds for r in runs["anchor noop"]])
    print("  %-34s %6.2f   %s" % ("no-op / floor", noop / floor, verdict(noop / floor, TARGET_NOOP_FLOOR)))
    print("  %-34s %6.2f   %s" % ("anchor no-op / ours no-op", anchor_noop / noop,
                                  verdict(anchor_noop / noop, TARGET_ANCHOR, at_most=False)))
    print("  %-34s %6.2f" % ("anchor first / ours first", median([r.seconds for r in runs["anchor first"]])
                             / median([r.seconds for r in runs["first"]])))

    last = runs["noop"][-1]
    reads, writes = classify(last.events)
    print("\n## API requests of one no-op run")
    print("  ours, apiserver:   %d reads, %d writes" % (len(reads), len(writes)))
    print("      reads:         %s" % by_resource(reads))
    print("      writes:        %s" % by_resource(writes))
    print("  ours, Prefect API: %s" % ", ".join("%s %s" % r for r in last.prefect))
    anchor_reads, anchor_writes = classify(runs["anchor noop"][-1].events)
    print("  anchor, apiserver: %d reads, %d writes (discovery included)" % (len(anchor_reads), len(anchor_writes)))
    return runs


# -- 3: a fleet -----------------------------------------------------------------------------------------------

def a_fleet(bench, args):
    size, forks = args.fleet, args.forks
    runs = dict((name, []) for name in ("one first", "one noop", "fleet first", "fleet noop"))
    for index in range(args.fleet_repeat):
        tag = uuid.uuid4().hex[:4]
        namespace = "one-%d-%s" % (index, tag)
        single = bench.deploy(bench.config(namespace), namespace)
        fleet = bench.deploy_fleet(bench.fleet(size, tag), forks)
        runs["one first"].append(bench.timed(single))
        runs["fleet first"].append(bench.timed(fleet))
        runs["one noop"].append(bench.timed(single))
        runs["fleet noop"].append(bench.timed(fleet))

    print("\n## A fleet: %d deployments over %d clusters, forks %d (median of %d rounds, each beside one "
          "deployment)" % (size, len(bench.beds), forks, args.fleet_repeat))
    print("  %-12s %-10s %-10s %-14s %-16s %-16s %-16s %s" % (
        "", "one (s)", "fleet (s)", "fleet / one", "CPU s, one", "CPU s per dep.", "peak RSS one",
        "peak RSS fleet (PSS)"))
    for what in ("first", "noop"):
        one, many = runs["one " + what], runs["fleet " + what]
        ratio = median([r.seconds for r in many]) / median([r.seconds for r in one])
        print("  %-12s %-10.2f %-10.2f %-14s %-16.2f %-16.2f %-16s %s" % (
            "first apply" if what == "first" else "no-op", median([r.seconds for r in one]),
            median([r.seconds for r in many]), "%.2f" % ratio, median([r.cpu for r in one]),
            median([r.cpu for r in many]) / size, "%.0f MiB" % median([r.rss for r in one]),
            "%.0f MiB (%.0f)" % (median([r.rss for r in many]), median([r.pss for r in many]))))
        print("  %-12s %s" % ("", verdict(ratio, TARGET_FLEET)))
    last = runs["fleet noop"][-1]
    reads, writes = classify(last.events)
    print("  requests per deployment of the fleet's no-op: %.1f apiserver reads, %.1f writes, %.1f Prefect requests"
          % (len(reads) / size, len(writes) / size, len(last.prefect) / size))
    print("      writes (all %d deployments): %s" % (size, by_resource(writes)))
    return runs


# -- 4: time to ONLINE on a node ------------------------------------------------------------------------------

class Watch:
    """First-seen times (time.monotonic) of a namespace's Deployment, pod, scheduling, running container."""

    def __init__(self, api_client, namespace, interval=0.1):
        from kubernetes import client as k8s
        self.core, self.apps = k8s.CoreV1Api(api_client), k8s.AppsV1Api(api_client)
        self.namespace, self.interval = namespace, interval
        self.seen = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _mark(self, key):
        self.seen.setdefault(key, time.monotonic())

    def _run(self):
        while not self._stop.is_set():
            try:
                if self.apps.list_namespaced_deployment(self.namespace).items:
                    self._mark("deployment")
                for pod in self.core.list_namespaced_pod(self.namespace).items:
                    self._mark("pod")
                    if pod.spec.node_name:
                        self._mark("scheduled")
                    for status in pod.status.container_statuses or []:
                        if status.state and status.state.running:
                            self._mark("running")
                        if status.ready:
                            self._mark("ready")
            except Exception:  # noqa: BLE001 - a namespace not there yet, a slow apiserver: look again
                pass
            self._stop.wait(self.interval)

    def stop(self):
        self._stop.set()
        self._thread.join()

    def image_seconds(self):
        """Seconds the kubelet spent pulling the image (0.0 when it was present), from the pod's events."""
        import re
        for event in self.core.list_namespaced_event(self.namespace).items:
            message = event.message or ""
            if event.reason == "Pulled":
                if "already present" in message:
                    return 0.0
                found = re.search(r" in ([0-9.]+)(m?s)", message)
                if found:
                    return float(found.group(1)) / (1000.0 if found.group(2) == "ms" else 1.0)
        return float("nan")


def prefect_call(api_url, method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(api_url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        raw = response.read()
    return json.loads(raw) if raw.strip() else None


# The collection's own requests (ansible's open_url), which are not the worker's.
OURS_AGENTS = ("Python-urllib", "ansible")


def worker_times(proxy, start, pool):
    """(first request of the worker about its pool, its first poll for flow runs) after `start`, from the proxy's log.

    Only requests naming `pool`: the workers of earlier rounds, still running in their namespaces, use the same
    proxy (and, behind the pods' masquerade, the same source address).
    """
    first = poll = None
    mine = "/work_pools/%s/" % pool
    for when, dummy_method, path, agent in list(proxy.log):
        if when < start or agent.startswith(OURS_AGENTS) or mine not in path.split("?")[0] + "/":
            continue
        first = first if first is not None else when
        if poll is None and path.endswith("/work_pools/%s/get_scheduled_flow_runs" % pool):
            poll = when
    return first, poll


class OnlineWatch:
    """When the Prefect API first reports a worker of `pool` ONLINE (asked every `interval` s, past the proxy)."""

    def __init__(self, api_url, pool, interval=0.2):
        self.api_url, self.pool, self.interval = api_url, pool, interval
        self.online = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set() and self.online is None:
            try:
                workers = prefect_call(self.api_url, "POST", "/work_pools/%s/workers/filter" % self.pool, {})
                if any(worker.get("status") == "ONLINE" for worker in workers or []):
                    self.online = time.monotonic()
            except Exception:  # noqa: BLE001 - no pool yet: ask again
                pass
            self._stop.wait(self.interval)

    def stop(self):
        self._stop.set()
        self._thread.join()


def wait_until(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise SystemExit("node benchmark: %s did not happen within %d s" % (what, timeout))


def online_ours(bed, proxy, api_url, api_client, work, tag, made):
    namespace = pool = "online-%s" % tag
    made.append((namespace, pool))
    config = work / ("%s.yml" % namespace)
    config.write_text(yaml.safe_dump({"project_name": namespace, "namespace": namespace,
                                      "prefect": {"enabled": True, "image": IMAGE}}))
    env = dict(os.environ, KUBECONFIG=bed.kubeconfig, PREFECT_API_URL=api_url, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
               ANSIBLE_PYTHON_INTERPRETER=sys.executable, ANSIBLE_LOCALHOST_WARNING="0",
               ANSIBLE_INVENTORY_UNPARSED_WARNING="0", PATH="%s:%s" % (OURS_BIN, os.environ["PATH"]))
    for name in ("QHUB_SECRET_PREFECT_TOKEN", "TF_VAR_prefect_token", "PREFECT_API_KEY"):
        env.pop(name, None)
    # The defaults: the rollout wait, and the wait until the worker is ONLINE.
    command = [str(OURS_BIN / "ansible-playbook"), "playbooks/deploy.yml", "-e", json.dumps({
        "qhub_config_file": str(config), "qhub_prefect_work_pool": pool, "qhub_prefect_wait_timeout": 300,
        "qhub_prefect_worker_timeout": 300})]
    watch, online = Watch(api_client, namespace), OnlineWatch(bed.prefect_api_url, pool)
    start = time.monotonic()
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    end = time.monotonic()
    wait_until(lambda: online.online, 30, "the worker ONLINE as the API reports it")
    watch.stop()
    online.stop()
    if done.returncode != 0:
        raise SystemExit("node benchmark: deploy.yml failed\n%s" % (done.stdout + done.stderr)[-3000:])
    first, poll = worker_times(proxy, start, pool)
    return dict(watch.seen, start=start, end=end, first_request=first, first_poll=poll, online=online.online,
                image=watch.image_seconds(), namespace=namespace, pool=pool)


def online_floor(bed, proxy, api_url, api_client, tag, made):
    from kubernetes import client as k8s
    namespace = pool = "floor-%s" % tag
    core = k8s.CoreV1Api(api_client)
    made.append((namespace, pool))
    core.create_namespace({"metadata": {"name": namespace}})
    # What the worker needs before it polls, made before the clock starts, as deploy.yml's apply makes it: the
    # pool, and the right to watch its namespace's pods and Jobs (prefect-kubernetes' observer; without it the
    # worker never gets to its first heartbeat). Nothing else: no probes, no resources, no Secret.
    prefect_call(bed.prefect_api_url, "POST", "/work_pools/", {"name": pool, "type": "kubernetes"})
    k8s.RbacAuthorizationV1Api(api_client).create_namespaced_role_binding(namespace, {
        "metadata": {"name": "floor-view"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
        "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": namespace}]})
    pod = {"metadata": {"name": "floor-worker"}, "spec": {"restartPolicy": "Never", "containers": [{
        "name": "worker", "image": IMAGE,
        "args": ["prefect", "worker", "start", "--type", "kubernetes", "--pool", pool, "--name", "floor-worker",
                 "--install-policy", "never"],
        "env": [{"name": "PREFECT_API_URL", "value": api_url}, {"name": "HOME", "value": "/tmp"},
                {"name": "PREFECT_INTEGRATIONS_KUBERNETES_OBSERVER_NAMESPACES", "value": namespace}]}]}}
    watch, online = Watch(api_client, namespace), OnlineWatch(bed.prefect_api_url, pool)
    start = time.monotonic()
    core.create_namespaced_pod(namespace, pod)
    wait_until(lambda: online.online, 300, "the bare pod's worker ONLINE")
    wait_until(lambda: worker_times(proxy, start, pool)[1], 60, "the bare pod's worker's first poll")
    watch.stop()
    online.stop()
    first, poll = worker_times(proxy, start, pool)
    return dict(watch.seen, start=start, deployment=start, first_request=first, first_poll=poll,
                online=online.online, image=watch.image_seconds(), namespace=namespace, pool=pool)


def breakdown(seen):
    """Seconds of each step: apply, pod start, image, worker start, first poll; and from the start, the totals."""
    image = seen["image"] if seen["image"] == seen["image"] else 0.0
    return {"apply": seen["deployment"] - seen["start"],
            "pod start": seen["running"] - seen["deployment"] - image,
            "image": image,
            "worker start": seen["first_request"] - seen["running"],
            "first poll": seen["online"] - seen["first_request"],
            "ONLINE": seen["online"] - seen["start"],
            "flow-run poll": (seen["first_poll"] or float("nan")) - seen["start"],
            "ansible-playbook exits": seen["end"] - seen["start"] if "end" in seen else float("nan")}


def node_online(args, work):
    from kubernetes import config as kube_config
    bed = Testbed.attach(args.node_testbed)
    if bed is None or "node" not in bed.components:
        raise SystemExit("--node-testbed %s: no running test bed with a node there" % args.node_testbed)
    host, port = bed.prefect_api_url.split("//", 1)[1].split("/", 1)[0].split(":")
    # On the bridge's address, which the pods reach: every request of the workers passes here, with its time.
    proxy = CountingProxy(host, int(port), listen_host=host)
    api_url = "http://%s:%d/api" % (host, proxy.port)
    api_client = kube_config.new_client_from_config(bed.kubeconfig)
    ours, floors, made = [], [], []
    try:
        # Untimed: a fresh node has no image yet, and only the first pod would pay the pull. The breakdown still shows
        # any pull as its own step.
        online_floor(bed, proxy, api_url, api_client, "warm" + uuid.uuid4().hex[:5], made)
        for dummy in range(args.node_repeat):
            tag = uuid.uuid4().hex[:5]
            ours.append(online_ours(bed, proxy, api_url, api_client, pathlib.Path(work), tag, made))
            floors.append(online_floor(bed, proxy, api_url, api_client, tag, made))
    finally:
        # The node test bed is shared: whatever this made goes, whether or not the run got through.
        from kubernetes import client as k8s
        for namespace, pool in made:
            for what, remove in (("namespace", lambda: k8s.CoreV1Api(api_client).delete_namespace(namespace)),
                                 ("work pool", lambda: prefect_call(bed.prefect_api_url, "DELETE",
                                                                    "/work_pools/%s" % pool))):
                try:
                    remove()
                except Exception as exc:  # noqa: BLE001 - tidying up a shared test bed: say so, go on
                    print("  (could not remove the %s %s: %s)" % (what, namespace, exc))
        proxy.close()
    steps = ("apply", "pod start", "image", "worker start", "first poll", "ONLINE", "flow-run poll",
             "ansible-playbook exits")
    mine = [breakdown(seen) for seen in ours]
    bare = [breakdown(seen) for seen in floors]
    print("\n## Time to ONLINE on the node (seconds, median of %d; image %s)" % (args.node_repeat, IMAGE))
    print("  %-46s %12s %12s %12s" % ("step", "deploy.yml", "floor", "difference"))
    notes = {"apply": "ansible-playbook start -> the Deployment exists (floor: the pod is created at 0)",
             "pod start": "-> container running: controllers, scheduling, sandbox, start (image apart)",
             "image": "pulling the image (0: present on the node)",
             "worker start": "container running -> the worker's first API request about its pool",
             "first poll": "-> the API reports the worker ONLINE (its connection to the pool registered)",
             "ONLINE": "total: start -> worker ONLINE (the sum of the steps above)",
             "flow-run poll": "start -> its first get_scheduled_flow_runs",
             "ansible-playbook exits": "start -> ansible-playbook has seen it and exits"}
    for step in steps:
        a, b = median([m[step] for m in mine]), median([f[step] for f in bare])
        b_text = "%.2f" % b if step != "ansible-playbook exits" else "-"
        diff = "%+.2f" % (a - b) if step != "ansible-playbook exits" else "-"
        print("  %-46s %12.2f %12s %12s" % (step, a, b_text, diff))
    for step in steps:
        print("    %s: %s" % (step, notes[step]))
    return mine, bare


# -- 5: scale -------------------------------------------------------------------------------------------------

def scale(bench, args, work):
    for count in [int(x) for x in args.agents.split(",") if x]:
        firsts, noops, per_agent = [], [], []
        for dummy in range(args.repeat):
            tag = uuid.uuid4().hex[:4]
            configs = [str(bench.config("scale-%d-%d-%s" % (count, i, tag))) for i in range(count)]
            playbook = write_scale_playbook(work, configs, "scale-%s" % tag)
            command = [str(OURS_BIN / "ansible-playbook"), str(playbook)]
            firsts.append(bench.timed(command).seconds)
            measured = bench.timed(command)
            noops.append(measured.seconds)
            reads, writes = classify(measured.events)
            per_agent.append((len(reads) / count, len(writes) / count, len(measured.prefect) / count))
        print("  %3d agents in one play: first %7.2f s (%.2f s/agent), no-op %7.2f s (%.2f s/agent); per agent on "
              "no-op: %.1f apiserver reads, %.1f writes, %.1f Prefect requests" % (
                  count, median(firsts), median(firsts) / count, median(noops), median(noops) / count,
                  *per_agent[-1]))
    for count in [int(x) for x in args.secrets.split(",") if x]:
        firsts, noops = [], []
        for dummy in range(args.repeat):
            namespace = "secrets-%d-%s" % (count, uuid.uuid4().hex[:4])
            command = bench.deploy(bench.config(namespace, secrets=count), namespace)
            firsts.append(bench.timed(command).seconds)
            noops.append(bench.timed(command).seconds)
        print("  %3d secretEnvVars: first %6.2f s, no-op %6.2f s" % (count, median(firsts), median(noops)))


def write_scale_playbook(work, configs, pool_prefix):
    path = pathlib.Path(work) / ("%s.yml" % pool_prefix)
    path.write_text(yaml.safe_dump([{
        "name": "Many agents", "hosts": "localhost", "connection": "local", "gather_facts": False,
        "tasks": [{"name": "Deploy one agent per config", "ansible.builtin.include_role": {
            "name": "qhub.prefect.prefect_agent"}, "loop": configs, "loop_control": {"index_var": "index"},
            # The collection's own cost per agent: on a node, waiting would time how fast it starts N pods.
            "vars": {"qhub_prefect_config_file": "{{ item }}", "qhub_prefect_wait": False,
                     "qhub_prefect_work_pool": "%s-{{ index }}" % pool_prefix}}]}]))
    return path


def start_clusters(count):
    """`count` more control planes (no Prefect, no node), each with an audit log, started side by side."""
    beds, errors = [], []

    def start():
        bed = Testbed(components="kube", audit_log=True)
        try:
            beds.append(bed.start())
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=start) for dummy in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        for bed in beds:
            bed.stop()
        raise errors[0]
    return beds


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--testbed", help="a running test bed's directory (with --audit-log) instead of a new one")
    parser.add_argument("--repeat", type=int, default=5, help="rounds of the one-deployment section (0: skip it)")
    parser.add_argument("--fleet", type=int, default=32, help="deployments in the fleet (0: no fleet)")
    parser.add_argument("--forks", type=int, default=8)
    parser.add_argument("--clusters", type=int, default=3, help="control planes the fleet is spread over")
    parser.add_argument("--fleet-repeat", type=int, default=3)
    parser.add_argument("--node-testbed", help="a running test bed with a node: time to ONLINE")
    parser.add_argument("--node-repeat", type=int, default=1)
    parser.add_argument("--agents", default="", help="the scale series, for example 1,10,50")
    parser.add_argument("--secrets", default="", help="secretEnvVars entries, for example 1,200")
    args = parser.parse_args()
    anchor_bin = ensure_anchor_venv()
    work = tempfile.mkdtemp(prefix="qhub-prefect-bench-")
    # The collection as installed (scripts/setup.sh, the execution environment): its Python compiled, as pip
    # compiles an installed package's. A source edited since is otherwise compiled anew on every run measured.
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "plugins")], check=True)
    print("qhub.prefect benchmarks, %s, %d CPUs, load average %s" % (
        time.strftime("%Y-%m-%d %H:%M"), os.cpu_count(), " ".join("%.2f" % x for x in os.getloadavg())), flush=True)
    # No node for sections 1-3: the numbers are the collection's API calls and time, comparable with earlier
    # runs, and the benchmark does not compete with a node test bed (one per machine) for the machine.
    owned = None
    if args.testbed:
        testbed = Testbed.attach(args.testbed)
        if testbed is None or not testbed.audit_log:
            raise SystemExit("--testbed %s: no running test bed with an audit log there" % args.testbed)
    else:
        owned = testbed = Testbed(components=("kube", "prefect"), audit_log=True).start()
    clusters = []
    try:
        clusters = start_clusters(args.clusters - 1) if args.fleet and args.clusters > 1 else []
        bench = Bench(testbed, work, clusters)
        if args.repeat:
            one_deployment(bench, args, anchor_bin, work)
        if args.fleet:
            a_fleet(bench, args)
        if args.node_testbed:
            node_online(args, work)
        if args.agents or args.secrets:
            print("\n## Scale")
            scale(bench, args, work)
        bench.proxy.close()
        if owned is None:
            bench.tidy()
    finally:
        for bed in clusters:
            bed.stop()
        if owned is not None:
            owned.stop()


if __name__ == "__main__":
    main()
