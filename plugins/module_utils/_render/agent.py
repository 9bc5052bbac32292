# -*- coding: utf-8 -*-
# Copyright: (c) 2026, qhub.prefect contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What only a Prefect 1 agent's objects hold: its env, its command and the flow-run job template it mounts. Pure."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

from ansible_collections.qhub.prefect.plugins.module_utils._qhub.credentials import PREFECT_CLOUD1_API, is_prefect_cloud
from ansible_collections.qhub.prefect.plugins.module_utils._kube.apply import digest
from ansible_collections.qhub.prefect.plugins.module_utils._qhub.job_options import AGENT_ENV
from ansible_collections.qhub.prefect.plugins.module_utils._render.flow_run import FlowRun, literal_job
from ansible_collections.qhub.prefect.plugins.module_utils._render.spec import (
    PROBE_PORT, api_url_env, object_meta, plain, probes, secret_ref, token_keys,
)

JOB_TEMPLATE_DIGEST_ANNOTATION = "qhub.prefect/job-template-digest"
JOB_TEMPLATE_DIR = "/etc/prefect-agent"
JOB_TEMPLATE_FILE = "job_template.yaml"


def flow_run(spec):
    """What the agent's flow-run pods get: the same builder as the Prefect 2/3 work pool's template."""
    return FlowRun(spec.job, sorted(spec.secret_env), secret_name=spec.secret_name,
                   service_account=spec.job_service_account)


def prefect1_job_template(spec):
    """The Job template the Prefect 1 agent merges into every flow-run Job."""
    return literal_job(flow_run(spec))


def render_job_template(spec):
    import yaml  # late, as in _qhub_config: module_utils import with the standard library and ansible only

    config_map = object_meta(spec, spec.job_template_name, "ConfigMap", "v1")
    config_map["data"] = {JOB_TEMPLATE_FILE: yaml.safe_dump(prefect1_job_template(spec), default_flow_style=False,
                                                            sort_keys=True)}
    return config_map


# The env 0.x agents read the flow-run settings from (job_options.JOB_OPTIONS), in the order agents always had.
AGENT_0X_ENV = tuple((name, field) for field in ("memory_request", "memory_limit", "cpu_request", "cpu_limit",
                                                 "image_pull_policy")
                     for name, declared in AGENT_ENV if declared == field) + (
    ("SERVICE_ACCOUNT_NAME", "service_account_name"),)


def own_env(spec):
    """The agent's own env entries, before the overrides' plain and secret env."""
    job = spec.job
    api_url = spec.api_url or PREFECT_CLOUD1_API
    env = [
        api_url_env(spec, api_url),
        plain("PREFECT__BACKEND", "cloud" if is_prefect_cloud(api_url) else "server"),
        plain("NAMESPACE", spec.namespace),
        plain("PREFECT__CLOUD__AGENT__AGENT_ADDRESS", "http://0.0.0.0:%d" % PROBE_PORT),
    ]
    if job.labels:
        env.append(plain("PREFECT__CLOUD__AGENT__LABELS", json.dumps(job.labels)))
    pod = flow_run(spec)
    if pod.image_pull_secrets:
        env.append(plain("IMAGE_PULL_SECRETS", ",".join(item["name"] for item in pod.image_pull_secrets)))
    # 0.x agents read these; 1.x takes the same values from the job template.
    for name, variable in AGENT_0X_ENV:
        if pod.values[variable]:
            env.append(plain(name, pod.values[variable]))
    if spec.token:
        env += [secret_ref(spec, key) for key in token_keys(spec)]
    return env


# The same for every agent: what differs between agents is in the env and the mounted job template.
AGENT_ARGS = ("prefect", "agent", "kubernetes", "start",
              "--job-template", "%s/%s" % (JOB_TEMPLATE_DIR, JOB_TEMPLATE_FILE))


def configure_container(spec, container, volumes, annotations):
    """The agent's part of its Deployment: its command, its health checks, the mounted job template."""
    container["args"] = list(AGENT_ARGS)
    # The agent's own health server (PREFECT__CLOUD__AGENT__AGENT_ADDRESS), up once it has reached the API.
    container.update(probes("/api/health", spec.chart["worker.livenessProbe"]))
    container["volumeMounts"].append({"name": "job-template", "mountPath": JOB_TEMPLATE_DIR, "readOnly": True})
    volumes.append({"name": "job-template", "configMap": {"name": spec.job_template_name}})
    annotations[JOB_TEMPLATE_DIGEST_ANNOTATION] = digest(prefect1_job_template(spec))


def own_objects(spec):
    """(apiVersion, kind, name) of the objects only an agent has: the job template's ConfigMap."""
    return [("v1", "ConfigMap", spec.job_template_name)]


def prefect_objects(spec):
    """The Prefect 1 project the agent's flows are registered in, when one is named."""
    return {"project": spec.project} if spec.project else {}


def copies_key_to_flow_runs(spec):
    """Prefect 1 agents copy their key into every flow-run Job."""
    return True
