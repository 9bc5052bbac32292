"""Prints what a deploy left in the test bed: the objects in the config's namespace and the Prefect pool or project."""

import argparse
import json
import ssl
import sys
import urllib.request

import yaml

KINDS = (
    ("ServiceAccount", "/api/v1/namespaces/{ns}/serviceaccounts"),
    ("Role", "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles"),
    ("RoleBinding", "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings"),
    ("Secret", "/api/v1/namespaces/{ns}/secrets"),
    ("ConfigMap", "/api/v1/namespaces/{ns}/configmaps"),
    ("Deployment", "/apis/apps/v1/namespaces/{ns}/deployments"),
)
OWNED = "app.kubernetes.io/managed-by=qhub.prefect"


def get_json(url, token=None, ca_file=None):
    request = urllib.request.Request(url, headers={"Authorization": "Bearer " + token} if token else {})
    context = ssl.create_default_context(cafile=ca_file) if ca_file else None
    with urllib.request.urlopen(request, context=context, timeout=10) as response:
        return json.load(response)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dir", required=True, help="the test bed directory")
    parser.add_argument("--config", required=True, help="the QHub config that was deployed")
    args = parser.parse_args()
    with open(args.dir + "/testbed.json") as handle:
        testbed = json.load(handle)
    with open(args.config) as handle:
        config = yaml.safe_load(handle)
    namespace = config.get("namespace", "dev")
    print("Kubernetes objects owned by qhub.prefect in namespace %s (%s):" % (namespace, testbed["api_server"]))
    for kind, path in KINDS:
        url = testbed["api_server"] + path.format(ns=namespace) + "?labelSelector=" + OWNED
        for item in get_json(url, testbed["admin_token"], testbed["ca_file"])["items"]:
            extra = ""
            if kind == "Deployment":
                container = item["spec"]["template"]["spec"]["containers"][0]
                extra = "  image=%s  command: %s" % (container["image"], " ".join(container.get("args", [])))
            if kind == "Secret":
                extra = "  keys: %s" % ", ".join(sorted(item.get("data", {})))
            print("  %-15s %s%s" % (kind, item["metadata"]["name"], extra))
    print("Pods of the agent or worker:")
    url = testbed["api_server"] + "/api/v1/namespaces/%s/pods?labelSelector=%s" % (namespace, OWNED)
    for pod in get_json(url, testbed["admin_token"], testbed["ca_file"])["items"]:
        ready = [c["status"] for c in pod["status"].get("conditions", []) if c["type"] == "Ready"]
        print("  %-40s %s  Ready=%s" % (pod["metadata"]["name"], pod["status"].get("phase"), "".join(ready) or "?"))
    pools = prefect_post(testbed["prefect_api_url"], "/work_pools/filter")
    print("Work pools on the Prefect server (%s):" % testbed["prefect_api_url"])
    for pool in pools:
        variables = pool["base_job_template"].get("variables", {}).get("properties", {})
        resources = {name: variables[name].get("default") for name in
                     ("cpu_request", "cpu_limit", "memory_request", "memory_limit") if name in variables}
        workers = prefect_post(testbed["prefect_api_url"], "/work_pools/%s/workers/filter" % pool["name"])
        print("  %-15s type=%s  flow-run resources=%s" % (pool["name"], pool["type"], json.dumps(resources)))
        for worker in workers:
            print("    worker %-30s %s" % (worker["name"], worker["status"]))
    return 0


def prefect_post(api_url, path):
    request = urllib.request.Request(api_url + path, data=b"{}", headers={"Content-Type": "application/json"},
                                     method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


if __name__ == "__main__":
    sys.exit(main())
