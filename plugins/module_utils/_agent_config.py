# -*- coding: utf-8 -*-
# Copyright: (c) 2026, qhub.prefect contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the prefect_agent_config module does, kept apart from its documentation."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible.module_utils.basic import env_fallback

from ansible_collections.qhub.prefect.plugins.module_utils._kube import Applier, KubeError, object_path
from ansible_collections.qhub.prefect.plugins.module_utils._kube_common import kube_auth_argument_spec, kube_client
from ansible_collections.qhub.prefect.plugins.module_utils._qhub_config import (
    DEFAULT_IMAGE, PREFECT1, ConfigError, generation_of_image, parse_overrides, resolve_secret_ref,
    validate_image, validate_namespace,
)
from ansible_collections.qhub.prefect.plugins.module_utils._render import (
    AgentSpec, owned_object_stubs, render_objects, secret_data,
)
from ansible_collections.qhub.prefect.plugins.module_utils._rollout import wait_for_rollout

KUBE_SYSTEM = "/api/v1/namespaces/kube-system"


def _yaml_dump(value):
    import yaml

    class BlockDumper(yaml.SafeDumper):
        pass

    def text(dumper, data):
        # Multi-line values (the Prefect 1 job template) read best, and diff line by line, as blocks.
        style = "|" if "\n" in data else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)

    BlockDumper.add_representer(str, text)
    return yaml.dump(value, Dumper=BlockDumper, default_flow_style=False, sort_keys=False)


def build_spec(params, environ):
    """An AgentSpec from module parameters; every ConfigError names the key at fault."""
    namespace = validate_namespace(params["namespace"], "namespace")
    image = validate_image(params["image"] or DEFAULT_IMAGE, "image")
    generation = params["generation"]
    if generation == "auto":
        generation = generation_of_image(image, "image")
    overrides = params["overrides"] or {}
    if "secretEnvVars" in overrides:
        raise ConfigError("overrides.secretEnvVars", "pass secret env vars in the no_log option secret_env, "
                          "so their values stay out of logs")
    job, dummy = parse_overrides(overrides, environ, path="overrides")
    dummy, secret_env = parse_overrides({"secretEnvVars": params["secret_env"] or {}}, environ, path="secret_env")
    secret_env = dict((name, value) for name, value in secret_env.items())
    for name in secret_env:
        if name in job.env:
            raise ConfigError("secret_env.%s" % name, "shadows the plain variable overrides.envVars.%s" % name)
    job.secret_env_names = sorted(secret_env)
    token = params["api_key"]
    if token:
        token = resolve_secret_ref(token, "api_key", environ)
    api_url = params["api_url"]
    if generation != PREFECT1 and not api_url and params["state"] == "present":
        raise ConfigError("api_url", "a Prefect 2/3 worker needs the API URL: set api_url or PREFECT_API_URL")
    name = params["name"] or ("prefect-agent" if generation == PREFECT1 else "prefect-worker")
    validate_namespace(name, "name")
    queues = job.labels if generation != PREFECT1 else []
    return AgentSpec(name=name, namespace=namespace, generation=generation, image=image, job=job,
                     secret_env=secret_env, token=token, api_url=api_url,
                     work_pool=params["work_pool"] or name, work_queues=queues,
                     replicas=params["replicas"], job_service_account=params["job_service_account"])


def _ensure_namespace(applier, spec, create):
    path = "/api/v1/namespaces/" + spec.namespace
    if applier.client.get(path) is not None:
        return
    if not create:
        raise KubeError("namespace %s does not exist (set create_namespace: true to create it)" % spec.namespace)
    # Created, not owned: state=absent never deletes a namespace.
    applier.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": spec.namespace}}, read=False)


def _cluster_uid(client, live_deployment):
    """kube-system's UID, read once per cluster: a live worker Deployment already carries it."""
    for container in (((live_deployment or {}).get("spec") or {}).get("template") or {}).get("spec", {}).get(
            "containers") or []:
        for item in container.get("env") or []:
            if item.get("name") == "PREFECT_KUBERNETES_CLUSTER_UID" and item.get("value"):
                return item["value"]
    kube_system = client.get(KUBE_SYSTEM)
    return (kube_system or {}).get("metadata", {}).get("uid")


def apply_present(applier, spec, params):
    """One read per managed object (the namespace and kube-system only when something is missing)."""
    client = applier.client
    objects = render_objects(spec)
    live = [client.get(object_path(manifest)) for manifest in objects]
    if any(obj is None for obj in live):
        _ensure_namespace(applier, spec, params["create_namespace"])
    if not spec.is_agent:
        spec.cluster_uid = _cluster_uid(client, live[-1])
        objects = render_objects(spec)
    applied = [applier.apply(manifest, existing=existing, read=False) for manifest, existing in zip(objects, live)]
    return objects, applied


def argument_spec():
    """The options of prefect_agent_config (its DOCUMENTATION says what each does)."""
    spec = dict(
        name=dict(type="str"),
        namespace=dict(type="str", required=True),
        state=dict(type="str", default="present", choices=["present", "absent"]),
        image=dict(type="str"),
        generation=dict(type="str", default="auto", choices=["auto", "prefect1", "prefect3"]),
        overrides=dict(type="dict"),
        secret_env=dict(type="dict", no_log=True),
        api_url=dict(type="str", fallback=(env_fallback, ["PREFECT_API_URL"])),
        api_key=dict(type="str", no_log=True,
                     fallback=(env_fallback, ["QHUB_SECRET_PREFECT_TOKEN", "TF_VAR_prefect_token", "PREFECT_API_KEY"])),
        work_pool=dict(type="str"),
        job_service_account=dict(type="str"),
        replicas=dict(type="int", default=1),
        create_namespace=dict(type="bool", default=True),
        wait=dict(type="bool", default=False),
        wait_timeout=dict(type="int", default=120),
        force=dict(type="bool", default=False),
    )
    spec.update(kube_auth_argument_spec())
    return spec


def run(module):
    params = module.params
    try:
        spec = build_spec(params, os.environ)
    except ConfigError as exc:
        module.fail_json(msg=str(exc), key=exc.path)
    client = kube_client(module)
    applier = Applier(client, check_mode=module.check_mode, force=params["force"])
    result = {"name": spec.name, "namespace": spec.namespace, "generation": spec.generation}
    try:
        if params["state"] == "absent":
            for stub in owned_object_stubs(spec.name, spec.namespace):
                applier.delete_owned(stub, spec.name)
        else:
            objects, applied = apply_present(applier, spec, params)
            # Check mode changed nothing, so there is no rollout to wait for.
            if params["wait"] and not module.check_mode:
                # The Deployment as the apply left it: an unchanged, available one needs no further read.
                # The Secret's values are masked in whatever the pods say (their logs above all).
                wait_for_rollout(client, objects[-1], params["wait_timeout"], current=applied[-1],
                                 secrets=secret_data(spec).values())
    except KubeError as exc:
        module.fail_json(msg=str(exc), objects=_summary(applier), api_requests=client.requests, **result)
    result.update(changed=applier.changed, objects=_summary(applier), api_requests=client.requests)
    if module._diff:
        result["diff"] = applier.diffs(_yaml_dump)
    module.exit_json(**result)


def _summary(applier):
    return [dict((key, item[key]) for key in ("kind", "namespace", "name", "action")) for item in applier.results]
