# -*- coding: utf-8 -*-
# Copyright: (c) 2026, qhub.prefect contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Prefect images: the generation and the version a tag names, and what each version's CLI and worker need. Pure."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.qhub.prefect.plugins.module_utils._common.errors import short
from ansible_collections.qhub.prefect.plugins.module_utils._qhub.errors import ConfigError

DEFAULT_IMAGE = "prefecthq/prefect:3-python3.11-kubernetes"
PREFECT1 = "prefect1"
PREFECT3 = "prefect3"
GENERATIONS = (PREFECT1, PREFECT3)

_IMAGE = re.compile(
    r"^(?P<repo>[a-z0-9]+(?:[._-]{1,2}[a-z0-9]+)*(?::[0-9]+)?(?:/[a-z0-9]+(?:[._-]{1,2}[a-z0-9]+)*)*)"
    r"(?::(?P<tag>[\w][\w.-]{0,127}))?(?:@(?P<digest>sha256:[a-f0-9]{64}))?$"
)


def split_image(image):
    """(repository, tag) of an image reference; the tag is None when absent."""
    match = _IMAGE.match(image)
    if not match:
        return None, None
    return match.group("repo"), match.group("tag")


def generation_of_image(image, path="prefect.image"):
    """Prefect 1 for 0.x and 1.x tags, Prefect 2/3 for 2.x, 3.x and latest-style tags."""
    _repo, tag = split_image(image)
    tag = tag or "latest"
    head = re.split(r"[.\-]", tag, 1)[0]
    if head in ("0", "1"):
        return PREFECT1
    if head in ("2", "3", "latest", "main", "nightly") or head.startswith("3") and head.isdigit():
        return PREFECT3
    raise ConfigError(path, "cannot tell the Prefect version from the tag %r: set the generation explicitly "
                      "(prefect1 for a Prefect 1 agent, prefect3 for a Prefect 2/3 worker)" % tag)


# The oldest images whose CLI has every flag the rendered command needs (checked in each release's prefect/cli):
# --with-healthcheck appeared in Prefect 2.10.12 (--install-policy, in 2.10.18, is passed only from there on).
MIN_IMAGE_VERSIONS = {
    PREFECT1: ((0, 13, 19), "prefect agent kubernetes start --job-template"),
    PREFECT3: ((2, 10, 12), "prefect worker start --with-healthcheck"),
}

# prefect-kubernetes read kube-system's UID at every flow-run submission from its first worker (0.2.2, in Prefect
# 2.9 images) until PrefectHQ/prefect PR #18004 removed the read (prefect-kubernetes 0.6.0, in Prefect 3.4.1).
CLUSTER_UID_READ_VERSIONS = ((2, 9, 0), (3, 4, 1))


def image_version(image):
    """The Prefect version a tag names, as a tuple of ints, or None for floating tags (3-python3.11, latest)."""
    _repo, tag = split_image(image)
    parts = re.match(r"^(\d+)\.(\d+)\.(\d+)", tag or "")
    return tuple(int(part) for part in parts.groups()) if parts else None


def needs_cluster_uid(image):
    """True when the image's worker reads the cluster UID at every flow-run submission (floating 2.x tags too)."""
    version = image_version(image)
    if version is None:
        _repo, tag = split_image(image)
        return (tag or "").split("-")[0].split(".")[0] == "2"
    first, after = CLUSTER_UID_READ_VERSIONS
    return first <= version < after


def check_image_version(image, generation, path="prefect.image"):
    """Refuse an image whose Prefect CLI lacks a flag of the command the collection renders for it."""
    version = image_version(image)
    minimum, command = MIN_IMAGE_VERSIONS[generation]
    if version is not None and version < minimum:
        wanted = ".".join(map(str, minimum))
        component = "agent" if generation == PREFECT1 else "worker"
        found = ".".join(map(str, version))
        raise ConfigError(path, "the image's Prefect %s is older than %s, the first whose CLI has `%s`, which the "
                          "%s runs; use Prefect %s or newer" % (found, wanted, command, component, wanted))


def validate_image(value, path="prefect.image"):
    if not isinstance(value, str) or not value or len(value) > 512 or not _IMAGE.match(value):
        raise ConfigError(path, "%s is not a container image reference" % short(value))
    return value
