"""Which objects a run may treat as its QHub deployment's: the instance label and the namespace."""

import pytest

from ansible_collections.qhub.prefect.plugins.module_utils._kube.apply import Applier, KubeError
from ansible_collections.qhub.prefect.plugins.module_utils._qhub.config import fallback_instance
from ansible_collections.qhub.prefect.plugins.module_utils._runners.ownership import (
    Ownership, refuse_elsewhere, refuse_takeover, search_elsewhere,
)


def deployment(namespace, name, instance=None, managed=True, uid="u1"):
    labels = {"app.kubernetes.io/managed-by": "qhub.prefect"} if managed else {}
    if instance is not None:
        labels["qhub.prefect/instance"] = instance
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace, "labels": labels, "uid": uid}}


class ListingClient:
    """Answers the cluster-wide Deployment list with ``found``, or 403; records the requests."""

    def __init__(self, found=(), refuse=False):
        self.found = list(found)
        self.refuse = refuse
        self.sent = []

    def request(self, method, path, query=None, body=None, accept="application/json", **kwargs):
        self.sent.append((method, path, query, body, accept))
        if self.refuse:
            raise KubeError("forbidden", status=403)
        if method == "DELETE":
            return 200, {}
        return 200, {"items": [{"metadata": {"namespace": ns, "name": name}} for ns, name in self.found]}

    def get(self, path):
        return None


def test_fallback_instance_never_equals_a_project_name_and_stays_a_label_value():
    assert fallback_instance("dev") == "dev.ns"
    long = fallback_instance("n" * 63)
    assert len(long) <= 63 and long.endswith(".ns") and long != fallback_instance("n" * 62 + "m")


def test_objects_of_the_old_fallback_label_are_this_deployments_in_its_own_namespace():
    ownership = Ownership(fallback_instance("dev"), "dev")
    assert ownership.values == ("dev.ns", "dev")
    assert "qhub.prefect/instance in (dev.ns,dev)" in ownership.selector
    # The search elsewhere uses the new label only: the bare namespace is not this deployment's elsewhere.
    assert ownership.instance_selector.endswith("qhub.prefect/instance=dev.ns")
    assert Ownership("prod", "prod").values == ("prod",)


def test_claimant_is_another_instance_only():
    ownership = Ownership("mine", "ns")
    assert ownership.claimant(deployment("ns", "w", "other")) == "other"
    assert ownership.claimant(deployment("ns", "w", "mine")) is None
    # From before the instance label: adopted.
    assert ownership.claimant(deployment("ns", "w")) is None
    # Not the collection's at all: not an instance claim (server-side apply's field ownership decides).
    assert ownership.claimant(deployment("ns", "w", "other", managed=False)) is None


def test_takeover_refusal_names_the_object_and_the_other_instance():
    error = refuse_takeover([None, deployment("ns", "prefect-worker", "staging")], Ownership("prod", "ns"))
    assert error.path == "instance"
    assert "another QHub deployment (instance staging) owns Deployment ns/prefect-worker" in error.message
    assert "qhub_prefect_force" in error.message and "nothing was written" in error.message
    assert refuse_takeover([deployment("ns", "prefect-worker", "prod")], Ownership("prod", "ns")) is None


def test_search_elsewhere_skips_this_namespace_and_the_ones_moved_from():
    client = ListingClient([("prod", "prefect-worker"), ("old", "prefect-worker"), ("staging", "prefect-agent")])
    found, note = search_elsewhere(client, Ownership("x", "prod"), "prod", ["old"])
    assert found == [("staging", "prefect-agent")] and note is None
    method, path, query, dummy, accept = client.sent[0]
    # One request: Deployments across namespaces, metadata only; never Secrets.
    assert (method, path) == ("GET", "/apis/apps/v1/deployments") and len(client.sent) == 1
    assert "PartialObjectMetadataList" in accept


def test_a_deployer_who_may_not_list_across_namespaces_goes_on_told_so():
    found, note = search_elsewhere(ListingClient(refuse=True), Ownership("x", "prod"), "prod", [])
    assert found == [] and "not searched" in note and "403" in note


def test_refusal_names_the_namespaces_and_both_ways_out():
    error = refuse_elsewhere("shop", "prod", [("staging", "prefect-worker")])
    assert error.path == "namespace"
    for text in ("staging", "staging/prefect-worker", "qhub_prefect_move_from=staging", "qhub_prefect_instance",
                 "project_name", "nothing was written"):
        assert text in error.message


def test_delete_carries_the_uid_read_and_is_foreground():
    client = ListingClient()
    applier = Applier(client)
    obj = deployment("ns", "w", "mine", uid="abc")
    applier.delete_owned(obj, "mine", existing=obj, label="qhub.prefect/instance")
    method, path, dummy, body, dummy = client.sent[-1]
    assert method == "DELETE" and path == "/apis/apps/v1/namespaces/ns/deployments/w"
    assert body["preconditions"] == {"uid": "abc"} and body["propagationPolicy"] == "Foreground"


def test_a_role_is_deleted_at_once_not_left_to_the_garbage_collector():
    client = ListingClient()
    role = dict(deployment("ns", "w", "mine", uid="abc"), kind="Role", apiVersion="rbac.authorization.k8s.io/v1")
    Applier(client).delete_owned(role, "mine", existing=role, label="qhub.prefect/instance")
    method, path, dummy, body, dummy = client.sent[-1]
    assert method == "DELETE" and path == "/apis/rbac.authorization.k8s.io/v1/namespaces/ns/roles/w"
    assert body["preconditions"] == {"uid": "abc"} and body["propagationPolicy"] == "Background"


@pytest.mark.parametrize("owner", ["other", None])
def test_delete_leaves_what_is_not_this_instances(owner):
    client = ListingClient()
    obj = deployment("ns", "w", owner, managed=owner is not None)
    Applier(client).delete_owned(obj, "mine", existing=obj, label="qhub.prefect/instance")
    assert [s for s in client.sent if s[0] == "DELETE"] == []


def test_a_check_mode_delete_is_a_dry_run_in_the_body_where_the_server_reads_it():
    # With DeleteOptions in the body the API server ignores ?dryRun=All: a check run deleted for real.
    client = ListingClient()
    obj = deployment("ns", "w", "mine")
    Applier(client, check_mode=True).delete_owned(obj, "mine", existing=obj, label="qhub.prefect/instance")
    method, dummy, query, body, dummy = client.sent[-1]
    assert method == "DELETE" and body["dryRun"] == ["All"] and not query
