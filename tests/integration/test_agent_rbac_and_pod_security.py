"""What the agent's ServiceAccount may do, asked of the real RBAC authorizer, and its pod's security."""

import pytest
from kubernetes import client as k8s

from tests.support.ansible_cli import run_module
from tests.support.pod_security_checker import check_restricted
from tests.support.pod_client import mint_token

IMAGES = {"prefect1": "prefecthq/prefect:1.4.1", "prefect3": "prefecthq/prefect:3-python3.11-kubernetes"}
NAMES = {"prefect1": "prefect-agent", "prefect3": "prefect-worker"}


def may(api_client, user, verb, resource, namespace=None, group="", subresource=None):
    review = k8s.V1SubjectAccessReview(spec=k8s.V1SubjectAccessReviewSpec(
        user=user, groups=["system:serviceaccounts", "system:serviceaccounts:%s" % namespace, "system:authenticated"],
        resource_attributes=k8s.V1ResourceAttributes(verb=verb, resource=resource, namespace=namespace, group=group,
                                                     subresource=subresource)))
    return k8s.AuthorizationV1Api(api_client).create_subject_access_review(review).status.allowed


@pytest.fixture(params=["prefect1", "prefect3"])
def deployed(request, testbed, kube_admin, unique_namespace):
    generation = request.param
    result = run_module("prefect_agent_config", {
        "namespace": unique_namespace, "image": IMAGES[generation], "api_key": "access-test",
        "api_url": testbed.prefect_api_url, "kubeconfig": testbed.kubeconfig})
    assert result.rc == 0, result
    return generation, NAMES[generation], unique_namespace


def test_service_account_access_matrix(kube_admin, deployed):
    _generation, name, namespace = deployed
    user = "system:serviceaccount:%s:%s" % (namespace, name)
    allowed = [("create", "jobs", namespace, "batch", None), ("delete", "jobs", namespace, "batch", None),
               ("watch", "jobs", namespace, "batch", None), ("get", "pods", namespace, "", None),
               ("list", "pods", namespace, "", None), ("get", "pods", namespace, "", "log"),
               ("list", "events", namespace, "", None)]
    denied = [("get", "secrets", namespace, "", None), ("list", "secrets", namespace, "", None),
              ("create", "jobs", "default", "batch", None), ("create", "jobs", None, "batch", None),
              ("list", "pods", None, "", None), ("get", "namespaces", None, "", None),
              ("create", "pods", namespace, "", None), ("create", "pods", namespace, "", "exec"),
              ("create", "roles", namespace, "rbac.authorization.k8s.io", None),
              ("create", "rolebindings", namespace, "rbac.authorization.k8s.io", None),
              ("patch", "deployments", namespace, "apps", None)]
    for verb, resource, where, group, sub in allowed:
        assert may(kube_admin, user, verb, resource, where, group, sub), (verb, resource, where, sub)
    for verb, resource, where, group, sub in denied:
        assert not may(kube_admin, user, verb, resource, where, group, sub), (verb, resource, where, sub)


def test_a_real_token_of_the_service_account_is_refused_secrets(testbed, kube_admin, deployed):
    _generation, name, namespace = deployed
    token = mint_token(kube_admin, namespace, name)
    configuration = k8s.Configuration()
    configuration.host = testbed.api_server
    configuration.ssl_ca_cert = testbed.ca_file
    configuration.api_key = {"authorization": "Bearer " + token, "BearerToken": "Bearer " + token}
    as_agent = k8s.ApiClient(configuration)
    k8s.CoreV1Api(as_agent).list_namespaced_pod(namespace)
    with pytest.raises(k8s.ApiException) as refused:
        k8s.CoreV1Api(as_agent).list_namespaced_secret(namespace)
    assert refused.value.status == 403
    with pytest.raises(k8s.ApiException) as elsewhere:
        k8s.BatchV1Api(as_agent).list_namespaced_job("default")
    assert elsewhere.value.status == 403


def test_applied_pod_spec_meets_the_restricted_profile(kube_admin, deployed):
    _generation, name, namespace = deployed
    deployment = k8s.AppsV1Api(kube_admin).read_namespaced_deployment(name, namespace)
    pod = kube_admin.sanitize_for_serialization(deployment.spec.template.spec)
    assert check_restricted(pod) == []
