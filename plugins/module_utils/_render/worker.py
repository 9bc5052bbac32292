# -*- coding: utf-8 -*-
# Copyright: (c) 2026, qhub.prefect contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What only a Prefect 2/3 worker's objects hold: its env and its ``prefect worker start`` command. Pure."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.qhub.prefect.plugins.module_utils._qhub.chart_values import CHART_KEYS
from ansible_collections.qhub.prefect.plugins.module_utils._qhub.images import image_version
from ansible_collections.qhub.prefect.plugins.module_utils._render.spec import (
    AUTH_STRING_KEY, PROBE_PORT, api_url_env, named_secret_ref, plain, probes,
)


def own_env(spec):
    """The worker's own env entries, before the overrides' plain and secret env."""
    env = [
        plain("HOME", "/home/prefect"),
        api_url_env(spec, spec.api_url or ""),
        # Where the flow-run pods are, whose events the worker watches (the chart sets it to jobNamespace).
        plain("PREFECT_INTEGRATIONS_KUBERNETES_OBSERVER_NAMESPACES", spec.job_namespace),
        plain("PREFECT_WORKER_WEBSERVER_HOST", "0.0.0.0"),
        plain("PREFECT_WORKER_WEBSERVER_PORT", str(PROBE_PORT)),
    ]
    if spec.cluster_uid:
        env.append(plain("PREFECT_KUBERNETES_CLUSTER_UID", spec.cluster_uid))
    for key in CHART_KEYS:
        if key.target[0] == "env" and key.target[1] != "PREFECT_KUBERNETES_CLUSTER_UID" and \
                spec.chart[key.path] is not None:
            value = spec.chart[key.path]
            env.append(plain(key.target[1], ("true" if value else "false") if isinstance(value, bool) else str(value)))
    key_secret, key = spec.api_key_ref
    if spec.token or not spec.uses_own_key_secret:
        env.append(named_secret_ref("PREFECT_API_KEY", key_secret, key))
        # Otherwise the worker copies its API key into every flow-run Job's env as plain text.
        env += [plain("PREFECT_INTEGRATIONS_KUBERNETES_WORKER_API_KEY_SECRET_NAME", key_secret),
                plain("PREFECT_INTEGRATIONS_KUBERNETES_WORKER_API_KEY_SECRET_KEY", key)]
    auth_secret, auth_key = spec.auth_string_ref
    if spec.auth_string or auth_secret != spec.secret_name:
        # The same for a self-hosted server's basic auth: the worker reads it, flow runs get a reference.
        env += [named_secret_ref(AUTH_STRING_KEY, auth_secret, auth_key),
                plain("PREFECT_INTEGRATIONS_KUBERNETES_WORKER_API_AUTH_STRING_SECRET_NAME", auth_secret),
                plain("PREFECT_INTEGRATIONS_KUBERNETES_WORKER_API_AUTH_STRING_SECRET_KEY", auth_key)]
    if spec.replicas > 1:
        # Each pod its own worker name (its pod name); one shared name would make them one worker to Prefect.
        env.append({"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}})
    return env


# prefect-kubernetes 0.5.3 (it needs Prefect 3.1) added the setting that keeps the API key out of flow-run Jobs.
MIN_KEY_BY_REFERENCE_VERSION = (3, 1, 0)
# prefect worker start's --install-policy appeared in Prefect 2.10.18 (src/prefect/cli/worker.py at the tags);
# older workers only install what their pool type lacks, which a -kubernetes image never does.
MIN_INSTALL_POLICY_VERSION = (2, 10, 18)


def worker_args(spec):
    chart = spec.chart
    name = "$(POD_NAME)" if spec.replicas > 1 else spec.worker_name
    args = ["prefect", "worker", "start", "--type", "kubernetes", "--pool", spec.work_pool or spec.name,
            "--name", name]
    version = image_version(spec.image)
    if version is None or version >= MIN_INSTALL_POLICY_VERSION:
        args += ["--install-policy", "never"]
    args.append("--with-healthcheck")
    for queue in spec.work_queues:
        args += ["--work-queue", queue]
    if chart["worker.config.limit"] is not None:
        args += ["--limit", str(chart["worker.config.limit"])]
    return args


def configure_container(spec, container, volumes, annotations):
    """The worker's part of its Deployment: its entrypoint, its command and its health checks."""
    container["command"] = ["/usr/bin/tini", "-g", "--", "/opt/prefect/entrypoint.sh"]
    container["args"] = worker_args(spec)
    # --with-healthcheck: 200 while the worker polls its pool, 503 once it has stopped polling.
    container.update(probes("/health", spec.chart["worker.livenessProbe"]))


def own_objects(spec):
    """A worker has no object of its own beyond those both generations have."""
    return []


def prefect_objects(spec):
    """The work pool and queues the worker polls."""
    return {"work_pool": spec.work_pool or spec.name, "work_queues": sorted(spec.work_queues)}


def copies_key_to_flow_runs(spec):
    """prefect-kubernetes workers before 0.5.3 (Prefect 2.x and 3.0 images) copy their key into every flow-run Job.

    Floating tags are taken to be recent.
    """
    version = image_version(spec.image)
    return version is not None and version < MIN_KEY_BY_REFERENCE_VERSION
