# -*- coding: utf-8 -*-
# Copyright: (c) 2026, qhub.prefect contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""fleet_summary: deploy.yml's closing lines, one per deployment, from what each deployment's run registered.

In Python rather than a Jinja loop in the playbook, so the one task that prints it templates one expression and
the wording has unit tests (tests/unit/plugins/filter/test_fleet_summary.py). The documentation is in
fleet_summary.yml beside this file.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError
from ansible.module_utils.parsing.convert_bool import boolean


def _get(variables, key):
    try:
        value = variables[key]
    except KeyError:
        return {}
    return {} if value is None else value


def _mapping(value):
    return value if isinstance(value, dict) else {}


def _true(value):
    try:
        return boolean(value, strict=False)
    except TypeError:
        return False


def _status(generation, agent, worker):
    if generation == "prefect1":
        return "agent (Prefect 1: no worker status)"
    # The apply waited until a worker was ONLINE (wait_online), or the status was asked after it.
    if agent.get("workers_online") or worker.get("online"):
        return "worker ONLINE"
    if _true(worker.get("failed", False)) or "msg" in worker:
        return "worker status unknown (%s)" % worker.get("msg", "not asked")
    return "worker not online"


def summary_line(host, variables, refused=None):
    """``<host>: cluster <server> (context <name>), namespace <ns>, <what happened>``.

    What happened is what the converge task registered (``qhub_prefect_deployment``, the module qhub_deployment's
    result); a deployment the checks refused has only what its check registered (``qhub_prefect_check``).
    ``refused`` is why the check refused this deployment (fleet_plan's ``failures``), if it did.
    """
    converged = _mapping(_get(variables, "qhub_prefect_deployment"))
    checked = _mapping(_get(variables, "qhub_prefect_check"))
    cluster = _mapping(converged.get("cluster") or checked.get("cluster"))
    where = str(cluster.get("server") or "?")
    if cluster.get("context"):
        where += " (context %s)" % cluster["context"]
    settings = _mapping(converged.get("settings") or checked.get("settings"))
    prefect = _mapping(settings.get("prefect"))
    failure = refused or _get(variables, "__qhub_fleet_failure")
    generation = prefect.get("generation") or "?"
    if failure:
        line = "FAILED: %s" % failure
    elif not _true(prefect.get("enabled", False)):
        removed = _true(_mapping(converged.get("removal")).get("changed", False))
        line = "%s, disabled, %s" % (generation, "removed" if removed else "nothing to remove")
    else:
        agent = _mapping(converged.get("agent"))
        line = "%s, %s, %s" % (generation, "changed" if _true(converged.get("changed", False)) else "unchanged",
                               _status(generation, agent, _mapping(converged.get("worker_status"))))
    return "%s: cluster %s, namespace %s, %s" % (host, where, settings.get("namespace") or "?", line)


def fleet_summary(hosts, hostvars, plan=None):
    """One line per host, sorted by name (see summary_line); ``plan`` is fleet_plan's answer."""
    if isinstance(hosts, (str, bytes)) or not hasattr(hosts, "__iter__"):
        raise AnsibleFilterError("fleet_summary: want a list of host names, not %s" % type(hosts).__name__)
    plan = _mapping(plan)
    refused, unchecked = _mapping(plan.get("failures")), set(plan.get("unchecked") or [])
    # What the checks of a deployment without a config of its own read is not its cluster or namespace.
    return [summary_line(host, {} if host in unchecked else hostvars[host], refused.get(host))
            for host in sorted(set(str(host) for host in hosts))]


class FilterModule(object):
    def filters(self):
        return {"fleet_summary": fleet_summary}
