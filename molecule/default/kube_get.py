"""Prints the JSON of one Kubernetes API path, read with the credentials of $KUBECONFIG (molecule verify).

The verify playbook runs against the test bed (token) and against kind (client certificates); the
kubernetes client reads either kind of kubeconfig, so verify needs nothing but KUBECONFIG.
Exit status 1, with the API's answer on stderr, when the object is not there.
"""

import json
import sys

from kubernetes import config
from kubernetes.client.rest import ApiException


def main(path):
    with config.new_client_from_config() as api_client:
        try:
            data = api_client.call_api(path, "GET", auth_settings=["BearerToken"], response_type="object",
                                       _return_http_data_only=True)
        except ApiException as error:
            print(f"GET {path}: {error.status} {error.reason}: {error.body}", file=sys.stderr)
            return 1
    json.dump(data, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
