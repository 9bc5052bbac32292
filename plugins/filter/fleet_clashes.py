# -*- coding: utf-8 -*-
# Copyright: (c) 2026, qhub.prefect contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""fleet_clashes: the deployments of a fleet that would overwrite each other, found before anything is written.

deploy.yml's check play records what each deployment claims and calls this once per host. All three kinds
of clash are found in one pass over the claims, in Python rather than Jinja, so the check play has one task
for them and the rule has unit tests (tests/unit/plugins/filter/test_fleet_clashes.py). The documentation is in
fleet_clashes.yml beside this file.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from urllib.parse import urlsplit, urlunsplit

from ansible.errors import AnsibleFilterError
from ansible.module_utils.parsing.convert_bool import boolean

DEFAULT_PORTS = {"http": 80, "https": 443}
PREFECT1 = "prefect1"
NOTHING_WRITTEN = " (nothing was written for any of them)"


def normalise_url(url):
    """``url`` as a key: scheme and host lowercased, no user:password, no default port, no trailing slash.

    Two spellings of one server (``HTTPS://Prefect.example:443/api/``, ``https://prefect.example/api``) are one
    server; the path keeps its case, since servers may tell paths apart by it.
    """
    text = str(url).strip()
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        return text.rstrip("/")
    if not parts.scheme or not parts.hostname:
        return text.rstrip("/")
    scheme = parts.scheme.lower()
    netloc = "[%s]" % parts.hostname if ":" in parts.hostname else parts.hostname
    if port is not None and port != DEFAULT_PORTS.get(scheme):
        netloc += ":%d" % port
    return urlunsplit((scheme, netloc, parts.path.rstrip("/"), parts.query, ""))


def _names(hosts):
    hosts = sorted(hosts)
    return hosts[0] if len(hosts) == 1 else "%s and %s" % (", ".join(hosts[:-1]), hosts[-1])


def _text(claim, key):
    value = claim.get(key)
    # A template of a null value can come back as "None", depending on the Ansible version.
    return None if value is None or str(value).strip() in ("", "None") else str(value).strip()


def _enabled(claim):
    try:
        return boolean(claim.get("enabled", True), strict=False)
    except TypeError:
        return True


def _keys(claim):
    """(kind, key, what is shared) for each thing this claim holds that no other deployment may hold."""
    cluster = _text(claim, "cluster")
    keys = []
    if cluster:
        cluster = normalise_url(cluster)
        namespace, instance = _text(claim, "namespace"), _text(claim, "instance")
        if namespace:
            keys.append(("namespace", (cluster, namespace), (namespace, cluster)))
        if instance:
            keys.append(("instance", (cluster, instance), (instance, cluster)))
    api_url, work_pool = _text(claim, "api_url"), _text(claim, "work_pool")
    # Prefect 1 has projects, not work pools, and deployments may share a project; a disabled deployment only
    # removes its objects, and polls no pool.
    if api_url and work_pool and _text(claim, "generation") != PREFECT1 and _enabled(claim):
        api_url = normalise_url(api_url)
        keys.append(("work_pool", (api_url, work_pool), (work_pool, api_url)))
    return keys


MESSAGES = {
    "namespace": "%s deploy to the same namespace %s on the cluster %s; give each its own namespace",
    "instance": "%s are the same instance %s on the cluster %s, so each would remove the other's objects; give each "
                "its own project_name (or qhub_prefect_instance)",
    "work_pool": "%s use the same work pool %s of the Prefect API %s, so the flow runs of one could run on the "
                 "cluster of another; give each its own qhub_prefect_work_pool",
}


def fleet_clashes(claims):
    """{host: why it may not run} for every host whose claim another host shares; hosts without a clash are absent.

    ``claims`` is one mapping per deployment that passed its checks: ``host``, ``cluster`` (the API server URL),
    ``namespace``, ``instance``, ``api_url`` (the public Prefect API URL the run uses), ``work_pool``,
    ``generation`` and ``enabled``. Anything that is not a mapping (a host that failed its checks, and so
    claims nothing) is skipped. Every host of a clash gets a message naming all of them.
    """
    if not isinstance(claims, (list, tuple)):
        raise AnsibleFilterError("fleet_clashes: want a list of claims, not %s" % type(claims).__name__)
    holders = {}
    for claim in claims:
        if not isinstance(claim, dict) or not _text(claim, "host"):
            continue
        for kind, key, shown in _keys(claim):
            holders.setdefault((kind, key), (shown, set()))[1].add(_text(claim, "host"))
    found = {}
    # Sorted, so that a host in several clashes always lists them in the same order.
    order = list(MESSAGES)
    ranked = sorted(holders.items(), key=lambda item: (order.index(item[0][0]), item[0][1]))
    for (kind, dummy), (shown, hosts) in ranked:
        if len(hosts) < 2:
            continue
        message = MESSAGES[kind] % ((_names(hosts),) + shown)
        for host in hosts:
            found.setdefault(host, []).append(message)
    return dict((host, "; ".join(messages) + NOTHING_WRITTEN) for host, messages in found.items())


class FilterModule(object):
    def filters(self):
        return {"fleet_clashes": fleet_clashes}
