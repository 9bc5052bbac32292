"""Fixtures shared by the integration tests: one test bed per session, an admin client, fresh namespaces."""

import os
import pathlib
import sys
import uuid

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
COLLECTIONS = REPO / ".collections"
LINK = COLLECTIONS / "ansible_collections" / "qhub" / "prefect"
if not LINK.exists():
    LINK.parent.mkdir(parents=True, exist_ok=True)
    LINK.symlink_to(pathlib.Path("..", "..", ".."))
for path in (str(REPO), str(COLLECTIONS)):
    if path not in sys.path:
        sys.path.insert(0, path)

from tests.testbed.testbed import Testbed  # noqa: E402


@pytest.fixture(scope="session")
def testbed():
    """The running test bed named by QHUB_PREFECT_TESTBED_DIR (shared with molecule), or a new one."""
    shared = os.environ.get("QHUB_PREFECT_TESTBED_DIR")
    if shared:
        bed = Testbed.attach(shared)
        if bed is None:
            raise RuntimeError("QHUB_PREFECT_TESTBED_DIR=%s holds no running test bed" % shared)
        yield bed
        return
    with Testbed() as bed:
        yield bed


@pytest.fixture(scope="session")
def kube_admin(testbed):
    from kubernetes import config
    return config.new_client_from_config(testbed.kubeconfig)


@pytest.fixture
def unique_namespace(kube_admin):
    from kubernetes import client as k8s
    name = "t-" + uuid.uuid4().hex[:10]
    core = k8s.CoreV1Api(kube_admin)
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name)
