# -*- coding: utf-8 -*-
# Copyright: (c) 2026, qhub.prefect contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # The connection options of every module that talks to a Prefect API; same environment variables
    # as the Prefect client and as QHub's CI.
    DOCUMENTATION = r'''
options:
  api_url:
    description:
      - The Prefect API to talk to.
      - Prefect 2/3, self-hosted C(http://HOST:4200/api); Prefect Cloud
        C(https://api.prefect.cloud/api/accounts/ACCOUNT_ID/workspaces/WORKSPACE_ID).
      - Defaults to the environment variable E(PREFECT_API_URL).
      - Set but empty (here or in the environment) is an error.
    type: str
  api_key:
    description:
      - "The Prefect API key, sent as C(Authorization: Bearer KEY). Never logged or returned."
      - A value C(QHUB_SECRET_NAME) stands for the environment variable C(NAME), as in a QHub config.
      - Defaults to the environment variable E(QHUB_SECRET_PREFECT_TOKEN), then E(TF_VAR_prefect_token),
        then E(PREFECT_API_KEY), then C(prefect.token) of O(qhub_config). Every module and
        M(qhub.prefect.qhub_config_info) resolve it by the same rule.
      - Required for Prefect Cloud (C(api.prefect.io), C(api.prefect.cloud)); optional for a self-hosted server.
      - A source that is set but empty is an error naming it, not skipped.
    type: str
  api_auth_string:
    description:
      - For a self-hosted Prefect 2/3 server protected with C(PREFECT_SERVER_API_AUTH_STRING), the
        C(user:password) string, sent as HTTP basic authentication. Ignored when O(api_key) is set.
      - Defaults to the environment variable E(PREFECT_API_AUTH_STRING).
    type: str
  validate_certs:
    description:
      - Whether to verify the TLS certificate of an C(https://) API URL.
    type: bool
    default: true
  timeout:
    description:
      - Seconds to wait for each HTTP request.
    type: int
    default: 30
  retries:
    description:
      - How many times to retry a request that failed to connect, timed out, or was answered with HTTP 429,
        502, 503 or 504. Retries wait 0.5 s, 1 s, 2 s, ... (at most 8 s), or what a 429's C(Retry-After)
        asks for (at most 30 s). Other errors are not retried.
    type: int
    default: 3
  qhub_config:
    description:
      - A QHub config, as the path of its file (on the host the module runs on; the role runs on the
        controller) or as a mapping, whose C(prefect.token) is the last source of the API key.
      - The module reads it itself, so the role passes the config rather than a secret read from it, and no
        secret value passes through a variable or a registered result.
    type: raw
'''
