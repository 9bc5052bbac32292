"""The built collection installs from its tarball and runs deploy.yml as the playbook qhub.prefect.deploy."""

import os
import pathlib
import subprocess
import sys

import pytest
import yaml

from tests.support.ansible_cli import REPO, ansible_env

BIN = pathlib.Path(sys.executable).parent


def outside_the_repository():
    """The environment of a user who installs the tarball: not the repository's ansible.cfg, whose
    collections path already holds qhub.prefect (ansible-galaxy would skip the install)."""
    env = dict(os.environ)
    for key in ("ANSIBLE_CONFIG", "ANSIBLE_COLLECTIONS_PATH", "ANSIBLE_COLLECTIONS_PATHS"):
        env.pop(key, None)
    return env


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The collection as a user gets it: built into a tarball, installed into a collections directory."""
    work = tmp_path_factory.mktemp("packaging")
    built = subprocess.run([str(BIN / "ansible-galaxy"), "collection", "build", "--output-path", str(work),
                            str(REPO)], capture_output=True, text=True, cwd=work, env=outside_the_repository(),
                           check=False)
    assert built.returncode == 0, built.stdout + built.stderr
    tarball = next(work.glob("qhub-prefect-*.tar.gz"))
    collections = work / "collections"
    done = subprocess.run([str(BIN / "ansible-galaxy"), "collection", "install", "-p", str(collections),
                           str(tarball)], capture_output=True, text=True, cwd=work, env=outside_the_repository(),
                          check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return collections


def test_tarball_installs_and_runs_the_collection_playbook(testbed, kube_admin, unique_namespace, tmp_path,
                                                           installed):
    root = installed / "ansible_collections" / "qhub" / "prefect"
    assert (root / "playbooks" / "deploy.yml").exists() and (root / "roles" / "prefect_agent").exists()
    assert not (root / ".venv").exists() and not (root / "scripts").exists()

    config = tmp_path / "qhub-config.yml"
    config.write_text(yaml.safe_dump({"namespace": unique_namespace, "prefect": {"enabled": True}}))
    env = ansible_env({"KUBECONFIG": testbed.kubeconfig, "PREFECT_API_URL": testbed.prefect_api_url,
                       "QHUB_SECRET_PREFECT_TOKEN": "packaging-token-0b1c",
                       "ANSIBLE_COLLECTIONS_PATH": str(installed)})
    env.pop("ANSIBLE_CONFIG")
    # Outside the repository, with only the installed collection on the path.
    ran = subprocess.run([str(BIN / "ansible-playbook"), "qhub.prefect.deploy", "-e",
                          "qhub_config_file=%s" % config, "-e", "qhub_prefect_work_pool=pkg-%s" % unique_namespace,
                          # About the package, not the pods (tests/support/ansible_cli.py run_playbook does the same).
                          "-e", '{"qhub_prefect_wait": false}'],
                         capture_output=True, text=True, cwd=tmp_path, env=env, check=False)
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-2000:]
    # One task converged the deployment (the module qhub_deployment): it changed, and the summary says what.
    assert "changed=1" in ran.stdout
    assert "prefect3, changed" in ran.stdout
    assert os.path.realpath(str(root)) != os.path.realpath(str(REPO))


def test_ansible_builder_finds_what_an_execution_environment_needs(installed):
    """What ansible-builder installs into an EE for this collection (it runs the same introspection in its build)."""
    found = subprocess.run([str(BIN / "ansible-builder"), "introspect", "--sanitize", str(installed)],
                           capture_output=True, text=True, env=outside_the_repository(), check=False)
    assert found.returncode == 0, found.stdout + found.stderr
    assert "kubernetes" in found.stdout and "from collection qhub.prefect" in found.stdout, found.stdout
    assert "ca-certificates [platform:dpkg platform:rpm]  # from collection qhub.prefect" in found.stdout
