"""Prints the JSON of one Kubernetes API path, read with the credentials of $KUBECONFIG (molecule verify).

The verify playbook runs against the test bed (token) and against kind (client certificates); the
kubernetes client reads either kind of kubeconfig, so verify needs nothing but KUBECONFIG.
Exit status 1, with the API's answer on stderr, when the object is not there.
"""

import json
import sys

from kubernetes import config, dynamic
from kubernetes.client.rest import ApiException


def main(path):
    # The dynamic client's request() takes a raw path, and keeps its signature across client versions.
    with config.new_client_from_config() as api_client:
        try:
            data = dynamic.DynamicClient(api_client).request("GET", path).to_dict()
        except ApiException as error:
            print(f"GET {path}: {error.status} {error.reason}: {error.body}", file=sys.stderr)
            return 1
    json.dump(data, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
