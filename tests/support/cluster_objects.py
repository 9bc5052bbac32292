"""The objects this collection writes, as the tests list them from the cluster with the kubernetes client."""

from kubernetes import client as k8s

MANAGED = "app.kubernetes.io/managed-by=qhub.prefect"


def labelled(api_client, selector, namespace=None):
    """[(kind, item)] of the six kinds the collection manages whose labels match ``selector``.

    In every namespace, or in ``namespace`` alone.
    """
    core, rbac, apps = k8s.CoreV1Api(api_client), k8s.RbacAuthorizationV1Api(api_client), k8s.AppsV1Api(api_client)
    kinds = (("ServiceAccount", core.list_service_account_for_all_namespaces, core.list_namespaced_service_account),
             ("Secret", core.list_secret_for_all_namespaces, core.list_namespaced_secret),
             ("ConfigMap", core.list_config_map_for_all_namespaces, core.list_namespaced_config_map),
             ("Role", rbac.list_role_for_all_namespaces, rbac.list_namespaced_role),
             ("RoleBinding", rbac.list_role_binding_for_all_namespaces, rbac.list_namespaced_role_binding),
             ("Deployment", apps.list_deployment_for_all_namespaces, apps.list_namespaced_deployment))
    found = []
    for kind, everywhere, in_namespace in kinds:
        items = (everywhere(label_selector=selector) if namespace is None
                 else in_namespace(namespace, label_selector=selector)).items
        found += [(kind, item) for item in items]
    return found


def read_lease(api_client, namespace, name):
    """The Lease, or None."""
    try:
        return k8s.CoordinationV1Api(api_client).read_namespaced_lease(name, namespace)
    except k8s.ApiException as error:
        if error.status == 404:
            return None
        raise


def read_configmap(api_client, namespace, name):
    """The ConfigMap, or None."""
    try:
        return k8s.CoreV1Api(api_client).read_namespaced_config_map(name, namespace)
    except k8s.ApiException as error:
        if error.status == 404:
            return None
        raise
