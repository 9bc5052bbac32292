#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, qhub.prefect contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: qhub_config_info
short_description: Read and validate the prefect block of a QHub config
version_added: 0.1.0
author: qhub.prefect contributors (@qhub-prefect)
description:
  - Reads a C(qhub-config.yml) (duplicate keys and YAML errors fail with the line), validates its C(namespace)
    and C(prefect) block and resolves C(QHUB_SECRET_) references against the environment.
  - Runs on the controller (an action plugin), like the file lookups it replaces, so O(path) and the
    environment are the controller's.
  - Fails with the key path and what is wrong, before anything talks to a server.
  - "Returns no secret value: secret env vars by name only, the token by where it came from."
extends_documentation_fragment:
  - qhub.prefect.attributes
  - qhub.prefect.attributes.info_module
options:
  path:
    description: Path of the QHub config file. Exactly one of O(path) and O(config) is required.
    type: path
  config:
    description: The QHub config as a mapping (for example an AWX extra var).
    type: dict
  generation:
    description: C(prefect1) or C(prefect3), or C(auto) to decide from the image tag.
    type: str
    choices: [auto, prefect1, prefect3]
    default: auto
  require_token:
    description:
      - Fail when C(prefect.enabled) is true, the API is Prefect Cloud (C(api.prefect.io), C(api.prefect.cloud))
        and no API token is found. A self-hosted server never requires one.
      - The token comes from E(QHUB_SECRET_PREFECT_TOKEN), then E(TF_VAR_prefect_token), then E(PREFECT_API_KEY),
        then C(prefect.token) (a C(QHUB_SECRET_NAME) value there stands for E(NAME)). A source that is set but
        empty fails, naming it. Every module of the collection applies the same rule.
    type: bool
    default: true
  api_url:
    description:
      - The Prefect API URL the deployment will use, which decides whether a token is required.
      - Defaults to E(PREFECT_API_URL) for Prefect 2/3; to E(PREFECT__CLOUD__API), then E(PREFECT_API_URL), then
        Prefect Cloud 1 for Prefect 1.
    type: str
  instance:
    description:
      - The stable identity of this QHub deployment that the collection's objects are labelled with and ownership
        is keyed on. Defaults to the config's C(project_name), else its C(namespace).
      - Must be a valid Kubernetes label value.
    type: str
'''

EXAMPLES = r'''
- name: Validate the QHub config
  qhub.prefect.qhub_config_info:
    path: qhub-config.yml
  register: qhub
'''

RETURN = r'''
path:
  description: Absolute path of the file read.
  returned: when O(path) is given
  type: str
namespace:
  description: The namespace QHub deploys to.
  returned: always
  type: str
  sample: dev
prefect:
  description: The validated C(prefect) block.
  returned: always
  type: dict
  contains:
    enabled:
      description: Whether Prefect is deployed.
      type: bool
    image:
      description: The agent or worker image (the default when the config has none).
      type: str
    generation:
      description: C(prefect1) or C(prefect3).
      type: str
    overrides:
      description: The overrides as given, without C(secretEnvVars).
      type: dict
    job:
      description: The normalised job settings (quantities, pull policy, pull secrets, labels, plain env).
      type: dict
    secret_env_names:
      description: Names of the secret env vars.
      type: list
      elements: str
    token_source:
      description: Where the API token was found (an environment variable or C(prefect.token)), or null.
      type: str
    token_required:
      description: Whether the API (Prefect Cloud) requires a token.
      type: bool
    prefect_cloud:
      description: Whether the API URL is Prefect Cloud (1, 2 or 3).
      type: bool
    api_url:
      description: The Prefect API URL (without any user:password), or null for Prefect 2/3 when none is set.
      type: str
    api_url_source:
      description: Where the API URL came from (O(api_url), an environment variable or the Prefect 1 default).
      type: str
    auth_string_source:
      description: Where the Prefect 2/3 basic auth string came from (E(PREFECT_API_AUTH_STRING)), or null.
      type: str
    instance:
      description: The identity ownership is keyed on (O(instance), C(project_name) or the namespace).
      type: str
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.qhub.prefect.plugins.module_utils._runners import qhub_config_info as runner
from ansible_collections.qhub.prefect.plugins.module_utils._runners.options import module_spec


def main():
    # plugins/action/qhub_config_info.py runs the same runner inside the controller when the task runs there.
    runner.run(AnsibleModule(**module_spec(runner)))


if __name__ == "__main__":
    main()
