# -*- coding: utf-8 -*-
# Copyright: (c) 2026, qhub.prefect contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which Kubernetes objects a QHub deployment owns, and what a run may do with the others.

An object belongs to a QHub deployment when it carries the collection's managed-by label, the
deployment's instance label (or the label an earlier version gave it) *and* sits in the deployment's
namespace. Objects of the same instance elsewhere are another deployment sharing the name, or this one
before a namespace move: the run stops and asks which, unless ``move_from`` names the namespace.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.qhub.prefect.plugins.module_utils._kube.apply import (
    FIELD_MANAGER, MANAGED_BY_LABEL, OWNED_KINDS, OWNER_LABEL, describe, list_deployments_everywhere, list_labelled,
)
from ansible_collections.qhub.prefect.plugins.module_utils._qhub.config import legacy_instance
from ansible_collections.qhub.prefect.plugins.module_utils._qhub.errors import ConfigError


def object_key(obj):
    meta = obj["metadata"]
    return (obj["kind"], meta.get("namespace"), meta["name"])


class Ownership:
    """The label values that are this deployment's, and the questions asked of an object's labels."""

    def __init__(self, instance, namespace):
        self.instance = instance
        legacy = legacy_instance(instance, namespace)
        self.values = (instance,) + ((legacy,) if legacy else ())

    @property
    def selector(self):
        owner = ("%s=%s" % (OWNER_LABEL, self.instance) if len(self.values) == 1
                 else "%s in (%s)" % (OWNER_LABEL, ",".join(self.values)))
        return "%s=%s,%s" % (MANAGED_BY_LABEL, FIELD_MANAGER, owner)

    @property
    def instance_selector(self):
        """This instance's own label, for the search in other namespaces (the legacy label is the namespace)."""
        return "%s=%s,%s=%s" % (MANAGED_BY_LABEL, FIELD_MANAGER, OWNER_LABEL, self.instance)

    def claimant(self, obj):
        """The other QHub deployment an object is labelled for, or None (ours, unlabelled, or not the collection's).

        Objects from before the instance label (managed-by the collection, no instance) are adopted.
        """
        labels = ((obj or {}).get("metadata") or {}).get("labels") or {}
        owner = labels.get(OWNER_LABEL)
        if labels.get(MANAGED_BY_LABEL) != FIELD_MANAGER or owner in (None, "") or owner in self.values:
            return None
        return owner


# The kinds a deployment owns where its flow runs go (worker.config.jobNamespace).
RBAC_KINDS = tuple(kind for kind in OWNED_KINDS if kind[1] in ("Role", "RoleBinding"))


def owned_in(client, ownership, namespace, kinds=OWNED_KINDS):
    """{key: object} of the deployment's objects in ``namespace``: one list per kind, in that namespace only."""
    return dict((object_key(obj), obj) for obj in list_labelled(client, ownership.selector, namespace, kinds))


def search_elsewhere(client, ownership, namespace, move_from):
    """(Deployments of this instance in other namespaces not named by move_from, a note or None).

    Deployments only, metadata only; a deployer who may not list them across namespaces goes on, told
    that other namespaces were not searched.
    """
    found = list_deployments_everywhere(client, ownership.instance_selector)
    if found is None:
        return [], ("not searched: the deployer may not list Deployments in all namespaces (403), so an agent or "
                    "worker of this QHub deployment in another namespace would go unnoticed")
    return [(where, name) for where, name in found if where != namespace and where not in move_from], None


def refuse_elsewhere(instance, namespace, found):
    """The ConfigError of a run that found this instance's agent or worker in other namespaces."""
    namespaces = sorted(set(where for where, dummy in found))
    listing = ", ".join("%s/%s" % item for item in found)
    return ConfigError("namespace", (
        "the QHub deployment %s already has an agent or worker in the namespace %s (Deployment %s), and this "
        "config names the namespace %s; nothing was written. If it moved, rerun with -e qhub_prefect_move_from=%s "
        "(the module option move_from): the new one starts in %s, and the old one is removed once it runs. "
        "If this is another QHub deployment that shares the name, give it its own: set qhub_prefect_instance, "
        "or a distinct project_name" % (instance, ", ".join(namespaces), listing, namespace, ",".join(namespaces),
                                        namespace)))


def refuse_takeover(objects, ownership):
    """The ConfigError naming the objects at this run's names that another QHub deployment owns, or None."""
    taken = [(obj, ownership.claimant(obj)) for obj in objects if obj is not None and ownership.claimant(obj)]
    if not taken:
        return None
    return ConfigError("instance", (
        "another QHub deployment (%s) owns %s; nothing was written. Give this one another name (qhub_prefect_name) "
        "or namespace, or set qhub_prefect_force: true to take %s over" % (
            ", ".join(sorted(set("instance %s" % owner for dummy, owner in taken))),
            ", ".join(describe(obj) for obj, dummy in taken), "it" if len(taken) == 1 else "them")))
