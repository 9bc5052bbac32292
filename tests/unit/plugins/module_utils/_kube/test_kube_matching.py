"""Drift detection: when the live object already holds what we would apply, nothing is sent."""

from ansible_collections.qhub.prefect.plugins.module_utils._kube.apply import (
    DIGEST_ANNOTATION, MASK, clean, mask_secret, matches, with_digest,
)


def test_server_defaults_do_not_count_as_drift():
    desired = {"spec": {"containers": [{"name": "a", "image": "x"}]}}
    live = {"spec": {"containers": [{"name": "a", "image": "x", "terminationMessagePath": "/dev/termination-log"}],
                     "dnsPolicy": "ClusterFirst"}}
    assert matches(desired, live)


def test_a_changed_image_is_drift():
    assert not matches({"spec": {"containers": [{"name": "a", "image": "x"}]}},
                       {"spec": {"containers": [{"name": "a", "image": "y"}]}})


def test_named_lists_match_by_name_not_position():
    desired = {"env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]}
    assert matches(desired, {"env": [{"name": "B", "value": "2"}, {"name": "A", "value": "1"}]})
    assert not matches(desired, {"env": [{"name": "A", "value": "1"}]})


def test_quantities_compare_by_value_only_under_resources():
    assert matches({"resources": {"limits": {"cpu": "0.5", "memory": "1024Mi"}}},
                   {"resources": {"limits": {"cpu": "500m", "memory": "1Gi"}}})
    assert not matches({"env": [{"name": "N", "value": "0.5"}]}, {"env": [{"name": "N", "value": "500m"}]})


def test_booleans_are_not_numbers():
    assert not matches({"readOnlyRootFilesystem": True}, {"readOnlyRootFilesystem": 1})


def test_digest_changes_with_any_field_so_removed_fields_are_noticed():
    one = with_digest({"metadata": {"name": "a"}, "data": {"A": "1", "B": "2"}})
    two = with_digest({"metadata": {"name": "a"}, "data": {"A": "1"}})
    assert one["metadata"]["annotations"][DIGEST_ANNOTATION] != two["metadata"]["annotations"][DIGEST_ANNOTATION]


def test_secret_values_are_masked_and_bookkeeping_dropped():
    live = {"kind": "Secret", "metadata": {"name": "s", "resourceVersion": "7", "managedFields": []},
            "data": {"TOKEN": "c2VjcmV0"}}
    shown = mask_secret(clean(live))
    assert shown["data"] == {"TOKEN": MASK}
    assert "resourceVersion" not in shown["metadata"] and "managedFields" not in shown["metadata"]
