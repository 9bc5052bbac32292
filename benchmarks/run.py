"""Converge speed and scale of deploy.yml, side by side with kubernetes.core.k8s, on the test bed.

Prints medians over --repeat runs of: the floor (a one-task play), deploy.yml first apply and no-op
rerun, the anchor (the same objects with kubernetes.core.k8s, one task per object), the ratios, the API
requests of a no-op run (from the apiserver's audit log and a counting proxy in front of the Prefect
server), and the scale series (agents per run, secretEnvVars per agent).

    .venv/bin/python benchmarks/run.py [--repeat 5] [--agents 1,10,50] [--secrets 1,200]
"""

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time
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


class Bench:
    def __init__(self, testbed, work):
        self.testbed = testbed
        self.work = pathlib.Path(work)
        host, port = testbed.prefect_api_url.split("//", 1)[1].split("/", 1)[0].split(":")
        self.proxy = CountingProxy(host, int(port))
        self.api_url = "http://127.0.0.1:%d/api" % self.proxy.port
        self.audit = pathlib.Path(testbed.audit_log)

    def env(self):
        env = dict(os.environ, KUBECONFIG=self.testbed.kubeconfig, PREFECT_API_URL=self.api_url,
                   QHUB_SECRET_PREFECT_TOKEN="bench-token", ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
                   ANSIBLE_PYTHON_INTERPRETER=sys.executable)
        env["PATH"] = "%s:%s" % (OURS_BIN, env["PATH"])
        return env

    def timed(self, command, env=None):
        """(seconds, apiserver events, Prefect requests) of one command, which must succeed."""
        offset = self.audit.stat().st_size if self.audit.exists() else 0
        self.proxy.reset()
        start = time.perf_counter()
        done = subprocess.run(command, cwd=REPO, env=env or self.env(), capture_output=True, text=True,
                              check=False)
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            output_tail = (done.stdout + done.stderr)[-3000:]
            raise SystemExit("benchmark step failed: %s\n%s" % (" ".join(map(str, command)), output_tail))
        return seconds, self.audit_events(offset), list(self.proxy.requests)

    def audit_events(self, offset):
        if not self.audit.exists():
            return []
        with open(self.audit, "rb") as handle:
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

    def config(self, namespace, secrets=1):
        path = self.work / ("%s.yml" % namespace)
        path.write_text(yaml.safe_dump({"namespace": namespace, "prefect": {
            "enabled": True, "image": "prefecthq/prefect:3-python3.11-kubernetes",
            "overrides": {"JOB_CPU_LIMIT": "2", "JOB_MEM_LIMIT": "4Gi", "envVars": {"ENVIRONMENT": "bench"},
                          "secretEnvVars": dict(("SECRET_%03d" % i, "value-%d" % i) for i in range(secrets))}}}))
        return path

    def deploy(self, config, pool):
        return [str(OURS_BIN / "ansible-playbook"), "playbooks/deploy.yml", "-e",
                json.dumps({"qhub_config_file": str(config), "qhub_prefect_work_pool": pool,
                            # Without a node no pod ever runs, so the rollout wait could only time out.
                            "qhub_prefect_wait": "node" in self.testbed.components})]

    def anchor_playbook(self, namespace):
        """The same objects deploy.yml applies, each in its own kubernetes.core.k8s task."""
        from ansible_collections.qhub.prefect.plugins.module_utils._qhub.model import parse_overrides
        from ansible_collections.qhub.prefect.plugins.module_utils._render.objects import AgentSpec, render_objects
        job, secret_env = parse_overrides({"JOB_CPU_LIMIT": "2", "JOB_MEM_LIMIT": "4Gi",
                                           "envVars": {"ENVIRONMENT": "bench"},
                                           "secretEnvVars": {"SECRET_000": "value-0"}}, {})
        spec = AgentSpec("prefect-worker", namespace, "prefect3", "prefecthq/prefect:3-python3.11-kubernetes", job,
                         secret_env=secret_env, token="bench-token", api_url=self.api_url, work_pool="anchor")
        tasks = [{"name": "Namespace", "kubernetes.core.k8s": {"definition": {
            "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}}}]
        for manifest in render_objects(spec):
            tasks.append({"name": manifest["kind"], "kubernetes.core.k8s": {"definition": manifest}})
        path = self.work / ("anchor-%s.yml" % namespace)
        path.write_text(yaml.safe_dump([{"name": "Anchor", "hosts": "localhost", "connection": "local",
                                         "gather_facts": False, "tasks": tasks}]))
        return path


def median(values):
    return statistics.median(values) if values else float("nan")


def classify(events):
    reads = [e for e in events if e["verb"] in READ_VERBS]
    writes = [e for e in events if e["verb"] not in READ_VERBS]
    return reads, writes


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--agents", default="1,10,50")
    parser.add_argument("--secrets", default="1,200")
    args = parser.parse_args()
    anchor_bin = ensure_anchor_venv()
    work = tempfile.mkdtemp(prefix="qhub-prefect-bench-")
    floor_play = pathlib.Path(work) / "floor.yml"
    floor_play.write_text("- hosts: localhost\n  connection: local\n  gather_facts: false\n"
                          "  tasks:\n    - ansible.builtin.debug:\n        msg: floor\n")
    # No node: the numbers are the role's API calls and time, comparable with earlier runs, and the
    # benchmark does not compete with a node test bed (one per machine) for the machine.
    with Testbed(components=("kube", "prefect"), audit_log=True) as testbed:
        bench = Bench(testbed, work)
        rows = {}
        rows["floor"] = [bench.timed([str(OURS_BIN / "ansible-playbook"), str(floor_play)])[0]
                         for dummy in range(args.repeat)]
        first, noop, noop_events, noop_prefect = [], [], [], []
        for index in range(args.repeat):
            namespace = "bench-%d-%s" % (index, uuid.uuid4().hex[:4])
            command = bench.deploy(bench.config(namespace), "bench-%d" % index)
            first.append(bench.timed(command)[0])
            seconds, events, prefect = bench.timed(command)
            noop.append(seconds)
            noop_events.append(events)
            noop_prefect.append(prefect)
        rows["deploy.yml first apply"], rows["deploy.yml no-op rerun"] = first, noop
        anchor_cfg = pathlib.Path(work) / "anchor.cfg"
        anchor_cfg.write_text("[defaults]\nlocalhost_warning = False\ninventory_unparsed_warning = False\n")
        anchor_env = dict(bench.env(), ANSIBLE_CONFIG=str(anchor_cfg), PATH=os.environ["PATH"],
                          ANSIBLE_PYTHON_INTERPRETER=str(BENCH_VENV / "bin" / "python"))
        anchor_first, anchor_noop, anchor_events = [], [], []
        for index in range(args.repeat):
            playbook = bench.anchor_playbook("anchor-%d-%s" % (index, uuid.uuid4().hex[:4]))
            anchor_first.append(bench.timed([str(anchor_bin), str(playbook)], env=anchor_env)[0])
            seconds, events, dummy = bench.timed([str(anchor_bin), str(playbook)], env=anchor_env)
            anchor_noop.append(seconds)
            anchor_events.append(events)
        rows["anchor k8s first apply"], rows["anchor k8s no-op rerun"] = anchor_first, anchor_noop

        print("\n## Converge (median of %d runs, seconds)" % args.repeat)
        for name, values in rows.items():
            print("  %-26s %7.2f   (min %.2f, max %.2f)" % (name, median(values), min(values), max(values)))
        floor, ours_noop = median(rows["floor"]), median(noop)
        print("  %-26s %7.2f   target <= 2.5" % ("no-op / floor", ours_noop / floor))
        print("  %-26s %7.2f   target >= 3" % ("anchor no-op / ours no-op", median(anchor_noop) / ours_noop))
        print("  %-26s %7.2f" % ("anchor first / ours first", median(anchor_first) / median(first)))

        reads, writes = classify(noop_events[-1])
        managed = 5
        print("\n## API requests of one no-op run")
        figures = (len(reads), len(reads) / managed, managed, len(writes))
        print("  ours, apiserver:   %d reads (%.1f per managed object, %d objects), "
              "%d writes   target <= 1 read per object, 0 writes" % figures)
        by_resource = sorted("%s %s" % (e["verb"], e["objectRef"].get("resource")) for e in reads)
        print("      by resource:   %s" % ", ".join(by_resource))
        print("  ours, Prefect API: %s" % ", ".join("%s %s" % r for r in noop_prefect[-1]))
        anchor_reads, anchor_writes = classify(anchor_events[-1])
        print("  anchor, apiserver: %d reads, %d writes (discovery included)" % (len(anchor_reads), len(anchor_writes)))

        print("\n## Scale: agents in one run (one namespace each)")
        for count in [int(x) for x in args.agents.split(",")]:
            firsts, noops, per_agent = [], [], []
            for rep in range(args.repeat):
                tag = uuid.uuid4().hex[:4]
                configs = [str(bench.config("scale-%d-%d-%s" % (count, i, tag))) for i in range(count)]
                playbook = write_scale_playbook(work, configs, "scale-%s" % tag)
                command = [str(OURS_BIN / "ansible-playbook"), str(playbook)]
                firsts.append(bench.timed(command)[0])
                seconds, events, prefect = bench.timed(command)
                noops.append(seconds)
                reads, writes = classify(events)
                per_agent.append((len(reads) / count, len(writes) / count, len(prefect) / count))
            print("  %3d agents: first %7.2f s (%.2f s/agent), no-op %7.2f s (%.2f s/agent); per agent on no-op: "
                  "%.1f apiserver reads, %.1f writes, %.1f Prefect requests" % (
                      count, median(firsts), median(firsts) / count, median(noops), median(noops) / count,
                      *per_agent[-1]))

        print("\n## Scale: secretEnvVars entries for one agent")
        for count in [int(x) for x in args.secrets.split(",")]:
            firsts, noops = [], []
            for rep in range(args.repeat):
                namespace = "secrets-%d-%s" % (count, uuid.uuid4().hex[:4])
                command = bench.deploy(bench.config(namespace, secrets=count), namespace)
                firsts.append(bench.timed(command)[0])
                noops.append(bench.timed(command)[0])
            print("  %3d secrets: first %6.2f s, no-op %6.2f s" % (count, median(firsts), median(noops)))
        bench.proxy.close()


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


if __name__ == "__main__":
    main()
