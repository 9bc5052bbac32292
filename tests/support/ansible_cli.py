"""Runs modules and playbooks the way users do: through the ansible and ansible-playbook commands."""

import json
import os
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[2]
BIN = pathlib.Path(sys.executable).parent


class Result:
    def __init__(self, completed, data=None):
        self.rc = completed.returncode
        self.stdout = completed.stdout
        self.stderr = completed.stderr
        self.data = data or {}

    @property
    def output(self):
        return self.stdout + self.stderr

    def __getitem__(self, key):
        return self.data[key]

    def get(self, key, default=None):
        return self.data.get(key, default)

    def __repr__(self):
        return "Result(rc=%s)\n%s" % (self.rc, self.output[-4000:])


def ansible_env(extra=None):
    env = dict(os.environ)
    env.update({"ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0",
                "ANSIBLE_PYTHON_INTERPRETER": sys.executable, "ANSIBLE_LOCALHOST_WARNING": "0",
                "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0", "PATH": "%s:%s" % (BIN, env.get("PATH", ""))})
    for key in ("QHUB_SECRET_PREFECT_TOKEN", "TF_VAR_prefect_token", "PREFECT_API_KEY", "PREFECT_API_URL",
                "KUBECONFIG"):
        env.pop(key, None)
    env.update(extra or {})
    return env


def run_module(module, args, env=None, check=False, diff=False, verbosity=0, timeout=300):
    """Run one module ad hoc on localhost; ``data`` is its parsed result."""
    command = [str(BIN / "ansible"), "localhost", "-m", "qhub.prefect." + module, "-a", json.dumps(args)]
    if check:
        command.append("--check")
    if diff:
        command.append("--diff")
    if verbosity:
        command.append("-" + "v" * verbosity)
    completed = subprocess.run(command, cwd=REPO, env=ansible_env(env), capture_output=True, text=True,
                               timeout=timeout, check=False)
    marker = completed.stdout.rfind("localhost | ")
    data = {}
    if marker >= 0:
        head, dummy, body = completed.stdout[marker:].partition(" => ")
        try:
            data = json.loads(body)
        except ValueError:
            data = {}
        data.setdefault("changed", "CHANGED" in head)
        data["_status"] = head.split("|", 1)[1].strip()
    return Result(completed, data)


def run_playbook(playbook, extra_vars=None, env=None, check=False, diff=False, verbosity=0, timeout=600,
                 extra_args=(), wait=False):
    """Run a playbook; the role's rollout wait is off unless ``wait`` (or the extra vars) turn it on.

    Most tests are about the objects, not the pods: on a test bed with a node each would otherwise wait
    for a real pod, and without a node the wait could only time out. Tests about the rollout pass wait=True.
    """
    command = [str(BIN / "ansible-playbook"), str(playbook)]
    extra_vars = dict(extra_vars or {})
    extra_vars.setdefault("qhub_prefect_wait", bool(wait))
    command += ["-e", json.dumps(extra_vars)]
    if check:
        command.append("--check")
    if diff:
        command.append("--diff")
    if verbosity:
        command.append("-" + "v" * verbosity)
    command += list(extra_args)
    completed = subprocess.run(command, cwd=REPO, env=ansible_env(env), capture_output=True, text=True,
                               timeout=timeout, check=False)
    return Result(completed, {"recap": _recap(completed.stdout)})


def _recap(stdout):
    """The localhost line of PLAY RECAP as a dict of counters."""
    for line in stdout.splitlines()[::-1]:
        if line.startswith("localhost") and "ok=" in line:
            return dict((key, int(value)) for key, value in
                        (item.split("=") for item in line.split(":", 1)[1].split()))
    return {}
