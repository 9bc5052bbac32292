"""Fleet converge time: deploy.yml over an inventory of N deployments at F forks, beside kubernetes.core.k8s.

For each fleet size and forks, on one test bed with an audit log (each deployment its own namespace and work
pool): the first apply and the no-op rerun of `ansible-playbook -i FLEET.qhub_deployments.yml deploy.yml`, the
same fleet with the anchor (one kubernetes.core.k8s task per object, one inventory host per deployment, the
same forks), and the API requests per deployment of the no-op run (apiserver audit log, Prefect counting
proxy). The anchor venv, the timing and the request counting are benchmarks/run.py's, whose fleet section
measures one size over several clusters with the controller's CPU and memory; this is the sweep.

    .venv/bin/python benchmarks/fleet.py [--sizes 1,4,8,16] [--forks 1,4,8] [--repeat 1] [--anchor-forks 1,4,8]
"""

import argparse
import os
import pathlib
import sys
import tempfile
import uuid

import yaml

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / ".collections")]

from benchmarks.run import (  # noqa: E402
    BENCH_VENV, OURS_BIN, Bench, classify, ensure_anchor_venv, median,
)
from tests.testbed.testbed import Testbed  # noqa: E402

PLACEHOLDER = "qhub-fleet-placeholder-ns"


class FleetBench(Bench):
    def fleet(self, size, tag):
        """An inventory of `size` deployments, each in its own directory, namespace and work pool."""
        folder = self.work / ("fleet-%s" % tag)
        deployments = []
        for index in range(size):
            name = "d%02d-%s" % (index, tag)
            (folder / name).mkdir(parents=True)
            (folder / name / "qhub-config.yml").write_text(yaml.safe_dump({
                "project_name": name, "namespace": name, "prefect": {
                    "enabled": True, "image": "prefecthq/prefect:3-python3.11-kubernetes",
                    "overrides": {"JOB_CPU_LIMIT": "2", "JOB_MEM_LIMIT": "4Gi", "envVars": {"ENVIRONMENT": "bench"},
                                  "secretEnvVars": {"SECRET_000": "value-0"}}}}))
            deployments.append({"config": "%s/qhub-config.yml" % name, "vars": {"qhub_prefect_work_pool": name}})
        path = folder / "fleet.qhub_deployments.yml"
        path.write_text(yaml.safe_dump({"plugin": "qhub.prefect.qhub_deployments", "deployments": deployments,
                                        "kubeconfig": self.testbed.kubeconfig, "prefect_api_url": self.api_url}))
        return path, [d["config"].split("/")[0] for d in deployments]

    def deploy_fleet(self, inventory, forks):
        # The objects' converge is measured, as the anchor's is: the control plane here has no node to run pods.
        return [str(OURS_BIN / "ansible-playbook"), "-i", str(inventory), "playbooks/deploy.yml", "--forks", str(forks),
                "-e", "qhub_prefect_wait=false"]

    def anchor_fleet(self, namespaces, tag):
        """The anchor for the same fleet: one host per deployment, its objects as kubernetes.core.k8s tasks."""
        single = yaml.safe_load(self.anchor_playbook(PLACEHOLDER).read_text())
        playbook = self.work / ("anchor-fleet-%s.yml" % tag)
        # Every place the namespace appears (metadata, RoleBinding subjects, env) becomes the host's own.
        play = per_host(dict(single[0], name="Anchor fleet", hosts="all"))
        playbook.write_text(yaml.safe_dump([play]))
        inventory = self.work / ("anchor-fleet-%s.yml.inventory.yml" % tag)
        inventory.write_text(yaml.safe_dump({"all": {"hosts": dict((ns, {}) for ns in namespaces), "vars": {
            "ansible_connection": "local", "ansible_python_interpreter": str(BENCH_VENV / "bin" / "python")}}}))
        return playbook, inventory


def per_host(value):
    if isinstance(value, dict):
        return dict((key, per_host(item)) for key, item in value.items())
    if isinstance(value, list):
        return [per_host(item) for item in value]
    if isinstance(value, str):
        return value.replace(PLACEHOLDER, "{{ inventory_hostname }}")
    return value


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1,4,8,16")
    parser.add_argument("--forks", default="1,4,8")
    parser.add_argument("--anchor-forks", default=None, help="forks for the anchor (default: the same as --forks)")
    parser.add_argument("--anchor-sizes", default=None,
                        help="fleet sizes for the anchor (default: the same as --sizes); it takes minutes per size")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    forks_list = [int(x) for x in args.forks.split(",")]
    anchor_forks = [int(x) for x in (args.anchor_forks or args.forks).split(",") if x]
    anchor_sizes = [int(x) for x in (args.anchor_sizes or args.sizes).split(",") if x]
    anchor_bin = ensure_anchor_venv()
    work = tempfile.mkdtemp(prefix="qhub-prefect-fleet-bench-")
    anchor_cfg = pathlib.Path(work) / "anchor.cfg"
    anchor_cfg.write_text("[defaults]\nlocalhost_warning = False\ninventory_unparsed_warning = False\n"
                          "host_key_checking = False\n")
    rows = []
    with Testbed(audit_log=True) as testbed:
        bench = FleetBench(testbed, work)
        anchor_env = dict(bench.env(), ANSIBLE_CONFIG=str(anchor_cfg), PATH=os.environ["PATH"])
        for size in sizes:
            for forks in sorted(set(forks_list) | set(anchor_forks)):
                row = {"size": size, "forks": forks}
                if forks in forks_list:
                    firsts, noops, per = [], [], None
                    for dummy in range(args.repeat):
                        inventory, dummy_names = bench.fleet(size, uuid.uuid4().hex[:5])
                        command = bench.deploy_fleet(inventory, forks)
                        firsts.append(bench.timed(command).seconds)
                        measured = bench.timed(command)
                        noops.append(measured.seconds)
                        reads, writes = classify(measured.events)
                        per = (len(reads) / size, len(writes) / size, len(measured.prefect) / size)
                    row.update(first=median(firsts), noop=median(noops), per=per)
                if forks in anchor_forks and size in anchor_sizes:
                    firsts, noops, per = [], [], None
                    for dummy in range(args.repeat):
                        tag = uuid.uuid4().hex[:5]
                        playbook, inventory = bench.anchor_fleet(["a%02d-%s" % (i, tag) for i in range(size)], tag)
                        command = [str(anchor_bin), "-i", str(inventory), str(playbook), "--forks", str(forks)]
                        firsts.append(bench.timed(command, env=anchor_env).seconds)
                        measured = bench.timed(command, env=anchor_env)
                        noops.append(measured.seconds)
                        reads, writes = classify(measured.events)
                        per = (len(reads) / size, len(writes) / size)
                    row.update(anchor_first=median(firsts), anchor_noop=median(noops), anchor_per=per)
                rows.append(row)
                print_row(row, flush=True)
        bench.proxy.close()
    print_table(rows)


def cell(row, key, fmt="%6.2f"):
    return fmt % row[key] if row.get(key) is not None else "     -"


def print_row(row, flush=False):
    per = "%.1f reads, %.1f writes, %.1f Prefect requests" % row["per"] if row.get("per") else "-"
    print("  %2d deployments, forks %d: ours first %s no-op %s; anchor first %s no-op %s; ours per deployment on "
          "no-op: %s" % (row["size"], row["forks"], cell(row, "first"), cell(row, "noop"), cell(row, "anchor_first"),
                         cell(row, "anchor_noop"), per), flush=flush)


def print_table(rows):
    single = next((r["noop"] for r in rows if r["size"] == 1 and r.get("noop") is not None and r["forks"] == 1), None)
    print("\n## Fleet converge, seconds of wall time (median of --repeat runs)")
    print("| deployments | forks | ours first apply | ours no-op | no-op / single no-op | anchor first apply "
          "| anchor no-op | anchor no-op / ours no-op | ours per deployment on no-op (apiserver reads, writes, "
          "Prefect requests) | anchor per deployment on no-op (apiserver reads, writes) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        ratio = "%.2f" % (row["noop"] / single) if single and row.get("noop") else "-"
        both = row.get("anchor_noop") and row.get("noop")
        anchor_ratio = "%.2f" % (row["anchor_noop"] / row["noop"]) if both else "-"
        per = "%.1f, %.1f, %.1f" % row["per"] if row.get("per") else "-"
        anchor_per = "%.1f, %.1f" % row["anchor_per"] if row.get("anchor_per") else "-"
        print("| %d | %d | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            row["size"], row["forks"], cell(row, "first").strip(), cell(row, "noop").strip(), ratio,
            cell(row, "anchor_first").strip(), cell(row, "anchor_noop").strip(), anchor_ratio, per, anchor_per))
    target = next((r for r in rows if r["size"] == 16 and r["forks"] == 8 and r.get("noop")), None)
    if single and target:
        print("\n16 deployments no-op at forks 8: %.2f s = %.2fx the single no-op (%.2f s); target <= 4x: %s" % (
            target["noop"], target["noop"] / single, single, "met" if target["noop"] <= 4 * single else "NOT met"))


if __name__ == "__main__":
    main()
