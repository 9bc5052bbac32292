"""Fixtures shared by the tests: the test bed, an admin client for its API server, a namespace per test.

The test bed (tests/testbed/testbed.py) starts once per session. With QHUB_PREFECT_TESTBED_DIR naming
the directory of a test bed that `testbed.py up` started, that one is used and left running, so that
molecule and pytest can share it.
"""

import os
import sys
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
COLLECTIONS = REPO / ".collections"


def _link_collection():
    """Makes `import ansible_collections.qhub.prefect` load this repository, as Ansible would."""
    link = COLLECTIONS / "ansible_collections" / "qhub" / "prefect"
    if link.is_symlink() or link.exists():
        return
    link.parent.mkdir(parents=True, exist_ok=True)
    try:
        link.symlink_to(Path("..", "..", ".."))
    except FileExistsError:  # a parallel run made it first
        pass


_link_collection()
for path in (str(COLLECTIONS), str(REPO)):
    if path not in sys.path:
        sys.path.insert(0, path)

# Imported only now: it needs the repository on sys.path.
from tests.support.node_presence import NO_NODE_REASON, has_node
from tests.testbed.testbed import Testbed


@pytest.fixture(scope="session")
def testbed():
    """A running test bed: Kubernetes control plane, its node, and Prefect server (see tests/testbed/testbed.py).

    The node is the default; QHUB_PREFECT_TESTBED_NODE=0 starts the control plane alone, and the tests that
    need pods to run skip (testbed.node is None).
    """
    shared_dir = os.environ.get("QHUB_PREFECT_TESTBED_DIR")
    if shared_dir:
        shared = Testbed.attach(shared_dir)
        if shared is None:
            raise RuntimeError(f"QHUB_PREFECT_TESTBED_DIR={shared_dir} holds no running test bed: start one with "
                               f"tests/testbed/testbed.py up --dir {shared_dir}, or unset the variable")
        yield shared  # it belongs to whoever started it: not stopped here
        return
    # A test bed that cannot start makes the tests that use it error, with the reason and the part's log.
    with Testbed() as bed:
        yield bed


@pytest.fixture(scope="session")
def kube_admin(testbed):
    """A kubernetes ApiClient with the test bed's admin token (group system:masters), TLS verified by its CA."""
    from kubernetes import client, config

    if testbed.admin_token is None:  # an existing cluster: its kubeconfig says how to authenticate
        api_client = config.new_client_from_config(config_file=testbed.kubeconfig)
    else:
        configuration = client.Configuration()
        configuration.host = testbed.api_server
        configuration.ssl_ca_cert = testbed.ca_file
        configuration.verify_ssl = True
        configuration.api_key = {"authorization": testbed.admin_token}
        configuration.api_key_prefix = {"authorization": "Bearer"}
        api_client = client.ApiClient(configuration)
    yield api_client
    api_client.close()


@pytest.fixture
def unique_namespace(kube_admin):
    """A fresh namespace for one test, deleted after it."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    name = "t-" + uuid.uuid4().hex[:8]
    core = client.CoreV1Api(kube_admin)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(
        name=name, labels={"qhub-prefect-test": "true"})))
    yield name
    try:
        core.delete_namespace(name)
    except ApiException as error:
        if error.status != 404:
            raise


@pytest.fixture
def node(testbed):
    """The test bed, for a test about running pods; skipped on a control-plane-only test bed."""
    if not has_node(testbed):
        pytest.skip(NO_NODE_REASON)
    return testbed


@pytest.fixture
def make_namespace(kube_admin):
    """Makes fresh namespaces for one test (``make(prefix="t-")``); deletes them after it."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    core = client.CoreV1Api(kube_admin)
    made = []

    def make(prefix="t-"):
        name = prefix + uuid.uuid4().hex[:8]
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(
            name=name, labels={"qhub-prefect-test": "true"})))
        made.append(name)
        return name

    yield make
    for name in made:
        try:
            core.delete_namespace(name)
        except ApiException as error:
            if error.status != 404:
                raise
