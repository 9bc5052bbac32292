"""The command line of the test bed, `tests/testbed/testbed.py up|status|down|leftovers [--dir DIR]`.

`up` starts a detached test bed whose processes outlive the command; the others find it through DIR/pids.json
and DIR/testbed.json. testbed.py runs ``main`` here; scripts/*.sh, molecule and the CI call it that way.
"""

import argparse
import shutil
import sys
import time
from pathlib import Path

try:
    from tests.testbed import node, testbed
    from tests.testbed.common import REPO, TESTBED_PY, read_json
    from tests.testbed.process import recorded_children, stop_testbed_processes
except ImportError:  # run as a script: this directory is on sys.path
    import node
    import testbed
    from common import REPO, TESTBED_PY, read_json
    from process import recorded_children, stop_testbed_processes

DEFAULT_CLI_DIR = REPO / ".testbed"


def cli_up(args):
    run_dir = Path(args.dir).resolve()
    if testbed.Testbed.attach(run_dir) is not None:
        print(f"testbed: already running in {run_dir}", file=sys.stderr)
        print(run_dir / "env.sh")
        return 0
    bed = testbed.Testbed(run_dir=run_dir, components=args.components, keep=True, audit_log=args.audit_log,
                          detached=True, use_existing_kubeconfig=True if args.use_existing_kubeconfig else None)
    started = time.monotonic()
    try:
        bed.start()
    except testbed.TestbedError as error:
        print(f"testbed: {error}", file=sys.stderr)
        return 1
    for name, seconds in bed.startup_seconds.items():
        what = name if name.startswith("images") else f"{name} ready"
        print(f"testbed: {what} after {seconds} s", file=sys.stderr)
    stop_command = f"{sys.executable} {TESTBED_PY} down --dir {run_dir}"
    print(f"testbed: up in {time.monotonic() - started:.1f} s; stop it with: {stop_command}", file=sys.stderr)
    print(run_dir / "env.sh")
    return 0


def cli_status(args):
    run_dir = Path(args.dir).resolve()
    children = recorded_children(run_dir)
    if read_json(run_dir / "testbed.json") is None:
        half = " (but with processes of a half-started one: run down)" if any(c.running() for c in children) else ""
        print(f"no test bed in {run_dir}{half}")
        return 1
    for child in children:
        print(f"{child.name:<24} {'running' if child.running() else 'stopped':<8} pid {child.pid}")
    bed = testbed.Testbed.attach(run_dir)
    if bed is None:
        print(f"not healthy; the logs are in {run_dir / 'logs'}")
        return 1
    for key in ("api_server", "prefect_api_url", "kubeconfig"):
        if getattr(bed, key):
            print(f"{key:<24} {getattr(bed, key)}")
    return 0


def cli_down(args):
    run_dir = Path(args.dir).resolve()
    if not (run_dir / "pids.json").exists():
        if (run_dir / "testbed.json").exists():
            # Without the pid list its processes cannot be found: removing the directory would orphan them.
            print(f"testbed: {run_dir} has a testbed.json but no pids.json; left alone", file=sys.stderr)
            return 1
        print(f"testbed: no test bed in {run_dir}", file=sys.stderr)
        return 0
    stop_testbed_processes(run_dir, recorded_children(run_dir))
    if args.keep:
        (run_dir / "testbed.json").unlink(missing_ok=True)
        print(f"testbed: stopped; logs and data stay in {run_dir}", file=sys.stderr)
    else:
        shutil.rmtree(run_dir, ignore_errors=True)
        print(f"testbed: stopped and removed {run_dir}", file=sys.stderr)
    return 0


def cli_leftovers(args):
    run_dir = Path(args.dir).resolve() if args.dir else None
    found = node.leftovers(run_dir)
    for line in found:
        print(line)
    if found:
        print(f"testbed: {len(found)} leftovers of a node test bed (stop it with testbed.py down --dir DIR)",
              file=sys.stderr)
        return 1
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="testbed.py", description=testbed.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, function, text in (("up", cli_up, "start a test bed that keeps running after this command"),
                                 ("status", cli_status, "exit status 0 when the test bed runs and answers"),
                                 ("down", cli_down, "stop the test bed and remove its directory"),
                                 ("leftovers", cli_leftovers,
                                  "exit status 1, listing them, when a node test bed left processes, mounts, iptables "
                                  "chains, the bridge, network namespaces, cgroups or pod logs behind")):
        command = commands.add_parser(name, help=text, description=text)
        command.set_defaults(function=function)
        if name == "leftovers":
            command.add_argument("--dir", help="also the processes and mounts of the test bed in this directory")
        else:
            command.add_argument("--dir", default=str(DEFAULT_CLI_DIR),
                                 help="the run directory (default: %(default)s)")
        if name == "up":
            command.add_argument("--components", default=None,
                                 help=f"comma-separated, of: {', '.join(testbed.COMPONENTS)} (default: all; "
                                      f"kube,prefect with QHUB_PREFECT_TESTBED_NODE=0)")
            command.add_argument("--audit-log", action="store_true",
                                 help="make the apiserver log every request to DIR/audit.log")
            command.add_argument("--use-existing-kubeconfig", action="store_true",
                                 help="use the cluster in KUBECONFIG instead of starting one")
        if name == "down":
            command.add_argument("--keep", action="store_true", help="keep the directory (logs, data)")
    args = parser.parse_args(argv)
    return args.function(args)
