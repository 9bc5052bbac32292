# -*- coding: utf-8 -*-
# Copyright: (c) 2026, qhub.prefect contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""fleet_plan: what each deployment of a fleet does next, decided once for the whole fleet.

deploy.yml's check play reads every deployment's config and kubeconfig context, then calls this once (a
run_once task): every deployment that may not run gets why (the inventory could not read it, no config,
its credential source, a failed check, a clash with another deployment: plugins/filter/fleet_clashes.py),
and every other one the kind of play that converges it (Prefect 2/3 worker, Prefect 1 agent, removal). So
the plays after it hold only the deployments they apply to, and no host runs a task only to skip it. The
documentation is in fleet_plan.yml beside this file; the unit tests are tests/unit/plugins/filter/test_fleet_plan.py.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible.errors import AnsibleFilterError
from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.test.core import vault_encrypted

from ansible_collections.qhub.prefect.plugins.filter.fleet_clashes import fleet_clashes

# The kinds of deployment, each converged by a play of deploy.yml of its own.
KINDS = ("prefect3", "prefect1", "disabled")
# Each refusal starts with the name of the task that made it before this filter did, so the summary lines and
# the final failures read as they did.
NO_CONFIG = (
    "Refuse a run given no QHub config at all: no QHub config: give one with -e qhub_config_file=qhub-config.yml "
    "(or -e qhub_config=...), or an inventory of qhub.prefect.qhub_deployments with -i (an inventory that fails "
    "to parse has no hosts)")
INVENTORY_ERROR = "Refuse a deployment the inventory could not read: %s"
TOKEN_ENV_UNSET = (
    "Check the environment variable named as this deployment's credential source is set: %s: the Prefect API key "
    "comes from the environment variable %s (qhub_prefect_token_env), which is not set on the controller")
PLAIN_KEY = (
    "Refuse a Prefect API key kept in plain text: %s: qhub_prefect_api_key is plain text; encrypt it with "
    "ansible-vault encrypt_string, or name the environment variable holding it with qhub_prefect_token_env")


def _get(variables, key, default=None):
    """A host's variable; hostvars hands out a mapping that templates on access."""
    try:
        value = variables[key]
    except KeyError:
        return default
    return default if value is None else value


def _mapping(value):
    return value if isinstance(value, dict) else {}


def _enabled(value):
    try:
        return boolean(value, strict=False)
    except TypeError:
        return False


def _unchecked(variables):
    """Why this deployment may not run whatever its checks said (they read nothing of its own), or None."""
    error = _get(variables, "qhub_inventory_error")
    if error:
        return INVENTORY_ERROR % error
    if not _get(variables, "qhub_config_file") and not _get(variables, "qhub_config"):
        return NO_CONFIG
    return None


def _refusal(host, variables, environ):
    """Why this deployment may not run, found without looking at any other deployment; None when it may."""
    unchecked = _unchecked(variables)
    if unchecked:
        return unchecked
    # The credential source comes before what the check recorded: an unset variable is the reason a Prefect
    # Cloud config then fails its read for want of a token.
    token_env = _get(variables, "qhub_prefect_token_env")
    if token_env:
        if not environ.get(token_env):
            return TOKEN_ENV_UNSET % (host, token_env)
    else:
        key = _get(variables, "qhub_prefect_api_key")
        # Asked before the value is looked at: an encrypted value is never decrypted here.
        if key is not None and not vault_encrypted(key) and str(key):
            return PLAIN_KEY % (host, )
    return _get(variables, "__qhub_fleet_check_failure") or None


def _checked(variables):
    """What the check registered (qhub_deployment with check_only): settings (the config read), cluster."""
    return _mapping(_get(variables, "qhub_prefect_check"))


def _claim(host, variables):
    settings = _mapping(_checked(variables).get("settings"))
    prefect = _mapping(settings.get("prefect"))
    return {"host": host, "cluster": _mapping(_checked(variables).get("cluster")).get("server"),
            "namespace": settings.get("namespace"), "instance": prefect.get("instance"),
            "api_url": prefect.get("api_url"), "work_pool": _get(variables, "qhub_prefect_work_pool", "qhub"),
            "generation": prefect.get("generation"), "enabled": prefect.get("enabled")}


def _kind(variables):
    prefect = _mapping(_mapping(_checked(variables).get("settings")).get("prefect"))
    if not _enabled(prefect.get("enabled")):
        return "disabled"
    return "prefect1" if prefect.get("generation") == "prefect1" else "prefect3"


def fleet_plan(hosts, hostvars, environ=None):
    """``{converge: [...], prefect3: [...], prefect1: [...], disabled: [...], failed: [...], failures: {host: why},
    unchecked: [...]}``.

    ``converge`` are the hosts that may run (the three kinds together). Every list sorted; ``unchecked`` are the
    failed hosts whose config is not theirs to read (an inventory error, no config at all).

    ``hostvars`` maps each host to its variables: what deploy.yml's check play registered
    (``qhub_prefect_check``, ``__qhub_fleet_check_failure``) and its inventory's
    (``qhub_inventory_error``, ``qhub_config_file`` or ``qhub_config``, ``qhub_prefect_token_env``,
    ``qhub_prefect_api_key``, ``qhub_prefect_work_pool``). ``environ`` is the controller's environment.
    """
    if isinstance(hosts, (str, bytes)) or not hasattr(hosts, "__iter__"):
        raise AnsibleFilterError("fleet_plan: want a list of host names, not %s" % type(hosts).__name__)
    environ = os.environ if environ is None else environ
    hosts = sorted(set(str(host) for host in hosts))
    failures, claims = {}, []
    for host in hosts:
        variables = hostvars[host]
        failure = _refusal(host, variables, environ)
        if failure:
            failures[host] = failure
        else:
            # Only a deployment that passed its own checks claims anything, so it clashes with no failed one.
            claims.append(_claim(host, variables))
    failures.update(fleet_clashes(claims))
    plan = dict((kind, []) for kind in KINDS)
    for host in hosts:
        if host not in failures:
            plan[_kind(hostvars[host])].append(host)
    # Their checks read no config of theirs: what those said is no summary's business.
    unchecked = [host for host in hosts if _unchecked(hostvars[host])]
    plan.update(converge=[host for host in hosts if host not in failures], failed=sorted(failures),
                failures=failures, unchecked=unchecked)
    return plan


class FilterModule(object):
    def filters(self):
        return {"fleet_plan": fleet_plan}
