#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, qhub.prefect contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: prefect_agent_config
short_description: Run a Prefect 1 agent or a Prefect 2/3 worker on Kubernetes from QHub overrides
version_added: 0.1.0
author: qhub.prefect contributors (@qhub-prefect)
description:
  - Renders the ServiceAccount, Role, RoleBinding, Secret and Deployment of a Prefect agent (Prefect 1,
    C(prefect agent kubernetes start)) or worker (Prefect 2 and 3, C(prefect worker start --type kubernetes)),
    plus for Prefect 1 a ConfigMap holding the flow-run Job template, and applies them with server-side apply
    under the field manager C(qhub.prefect).
  - Nothing is written when the live objects already match; check mode is a server-side dry run, so an invalid
    object fails in check mode as well.
  - The API token and O(secret_env) live only in the Secret. The Deployment and the flow-run Jobs refer to them
    with C(secretKeyRef); a hash of the Secret's data in the pod template rolls the Deployment when they change.
  - With O(state=absent), deletes exactly the objects that carry this collection's labels for O(name) (and, with
    O(instance), for that instance in O(namespace)).
  - With O(instance), an object belongs to this QHub deployment when it carries this collection's
    C(app.kubernetes.io/managed-by) label and C(qhub.prefect/instance=INSTANCE) B(and) sits in O(namespace).
    Those under another name (a generation switch) are removed in the same run, B(after) the new objects are
    applied and, with O(wait), the new pod is Ready and the worker ONLINE; if anything new fails, nothing old is
    deleted and the error says where the old agent or worker still runs. Deletes carry the uid that was read;
    a Deployment's is C(Foreground) (it goes with its pods), the others' C(Background) (gone at once).
  - An agent or worker of this instance in another namespace is never deleted unasked. The run stops before
    writing, naming the namespace. For a namespace move, name the old namespace in O(move_from); for another QHub
    deployment that shares the name, give this one its own O(instance). The search lists Deployments only, metadata
    only, across namespaces; a deployer who may not do that is told other namespaces were not searched, and the run
    goes on.
  - An object at one of this run's names labelled with another instance is left alone and the run fails naming
    that instance, unless O(force). Objects from before the instance label (managed-by C(qhub.prefect), no
    instance) are adopted.
  - One run at a time per QHub deployment, outside check mode. The run holds the C(coordination.k8s.io/v1) Lease
    C(qhub-prefect-INSTANCE) in O(namespace) while it writes and waits, renewed, released at the end (also on
    failure). Its holder names host, user, pid and the AWX job id. A second run waits up to O(lock_timeout) and
    then fails before writing, naming the holder and since when; an expired Lease is taken over. A deployer
    without rights on Leases (the built-in C(admin) role has none) holds a ConfigMap of the same name instead.
  - Work pools, queues and projects an earlier run used and the input no longer names are reported
    (RV(prefect_left_in_place), and a warning), never deleted.
  - The mapping of every override to both generations is in the notes, one override a row.
extends_documentation_fragment:
  - qhub.prefect.attributes
  - qhub.prefect.kube_auth
options:
  name:
    description:
      - Name of every object; several agents or workers can share a namespace under different names.
      - Defaults to C(prefect-agent) for Prefect 1 and C(prefect-worker) for Prefect 2/3.
    type: str
  namespace:
    description: Namespace of the objects (QHub's top-level C(namespace), C(dev) by default in QHub).
    type: str
    required: true
  state:
    description: C(present) applies the objects; C(absent) deletes those this collection owns for O(name).
    type: str
    choices: [present, absent]
    default: present
  image:
    description:
      - Image of the agent or worker. Defaults to a current Prefect 3 image with prefect-kubernetes,
        C(prefecthq/prefect:3-python3.11-kubernetes). QHub's old default was C(prefecthq/prefect:0.14.22-python3.8).
    type: str
  generation:
    description:
      - C(prefect1) runs a Prefect 1 agent, C(prefect3) a Prefect 2/3 worker.
      - C(auto) decides from the image tag, 0.x and 1.x for Prefect 1, 2.x, 3.x and C(latest)-style tags for 2/3.
    type: str
    choices: [auto, prefect1, prefect3]
    default: auto
  overrides:
    description:
      - QHub's C(prefect.overrides) mapping without C(secretEnvVars) (see the description for each key).
      - The prefect-worker Helm chart's values are accepted under C(worker), C(serviceAccount) and C(role), with the
        chart's names and meaning (C(worker.nodeSelector), C(worker.resources), C(worker.config.limit),
        C(serviceAccount.annotations), ...; the full list is in docs/configuration.md, "Worker pod"). They merge
        over the defaults as Helm merges values; a C(null) drops a default field.
      - Unknown keys fail, with the list of accepted ones or the nearest known key.
    type: dict
  secret_env:
    description:
      - QHub's C(prefect.overrides.secretEnvVars), variable name to value. A value C(QHUB_SECRET_NAME) is
        replaced by the environment variable C(NAME).
      - Mutually exclusive with O(qhub_config), which holds them.
    type: dict
  qhub_config:
    description:
      - A QHub config, as the path of its file (on the host the module runs on; the role runs on the
        controller) or as a mapping. The module takes C(prefect.overrides.secretEnvVars) from it (instead of
        O(secret_env)) and C(prefect.token) as the last source of the API key.
      - The module reads it itself, so the role passes the config rather than a secret read from it, and no
        secret value passes through a variable or a registered result. Other settings still come from the
        options (the role passes them from M(qhub.prefect.qhub_config_info)).
    type: raw
  api_url:
    description:
      - The Prefect API the agent or worker talks to. Required for Prefect 2/3; for Prefect 1 defaults to
        Prefect Cloud 1 (C(https://api.prefect.io)), frozen since October 2023.
      - Defaults to the environment variable E(PREFECT_API_URL); for Prefect 1 to E(PREFECT__CLOUD__API), then
        E(PREFECT_API_URL) (as M(qhub.prefect.prefect_project) does).
    type: str
  api_key:
    description:
      - The Prefect API token, stored in the Secret. Defaults to E(QHUB_SECRET_PREFECT_TOKEN),
        then E(TF_VAR_prefect_token), then E(PREFECT_API_KEY); a source set but empty fails, naming it.
      - Required for Prefect Cloud, optional for a self-hosted server.
      - Prefect 1 agents, and Prefect 2.x and 3.0 workers (prefect-kubernetes before 0.5.3), copy it into every
        flow-run Job's env as plain text, which this module cannot prevent (RV(api_key_in_flow_run_env)).
    type: str
  api_auth_string:
    description:
      - For a self-hosted Prefect 2/3 server behind basic auth (C(PREFECT_SERVER_API_AUTH_STRING)), the
        C(user:password) string. Stored in the Secret as C(PREFECT_API_AUTH_STRING), which the worker reads by
        C(secretKeyRef) and passes on to flow-run Jobs as a reference too.
      - Defaults to the environment variable E(PREFECT_API_AUTH_STRING). Ignored for Prefect 1.
    type: str
  instance:
    description:
      - The stable identity of the QHub deployment (its C(project_name)); labels every object as
        C(qhub.prefect/instance) and makes this run remove the instance's objects under other names and in other
        namespaces (see the description). Must be a valid label value.
      - Unset, only objects named O(name) in O(namespace) are managed.
    type: str
  project:
    description: The Prefect 1 project the agent serves, recorded so a later run can report it once no longer used.
    type: str
  work_pool:
    description: Work pool a Prefect 2/3 worker polls. Defaults to O(name).
    type: str
  job_service_account:
    description: ServiceAccount of the flow-run Jobs. By default they run as the namespace's default account, not
      with the agent's permissions.
    type: str
  replicas:
    description:
      - Number of agent or worker pods. Above 1, each worker is named after its pod, so Prefect sees them as
        distinct workers.
    type: int
    default: 1
  create_namespace:
    description: Create O(namespace) when it does not exist. It is never deleted by O(state=absent).
    type: bool
    default: true
  wait:
    description:
      - Wait until the Deployment is available, its generation observed and as many pods as O(replicas)
        updated, available and Ready, with no pod of an older ReplicaSet left (not even one terminating).
      - An unchanged Deployment that is already available costs no further request. Never waits in check mode.
      - A failure names the cause from the pods, their events and logs (C(ErrImagePull)/C(ImagePullBackOff) with the
        image, C(CrashLoopBackOff) with the last lines of the container's log, C(CreateContainerConfigError),
        C(Unschedulable) with the scheduler's message, a failing readiness probe), with the values of O(secret_env)
        and O(api_key) masked. Image pull failures, crash loops and lasting config errors end the wait early.
      - Reading the pods, their events and C(pods/log) in O(namespace) is then needed besides the objects' own rights.
    type: bool
    default: false
  wait_timeout:
    description: Seconds to wait with O(wait).
    type: int
    default: 120
  wait_online:
    description:
      - With O(wait), for a Prefect 2/3 worker, also wait until a worker of this deployment is ONLINE in its work
        pool (its name starts with the worker's name). The worker's health check answers before the worker has
        reached the API, so only this says it polls. A rerun where nothing changed pays one API call for it.
      - A move or a generation switch always waits for it before the old agent or worker is removed.
    type: bool
    default: true
  wait_online_timeout:
    description: Seconds to wait with O(wait_online).
    type: int
    default: 120
  force:
    description:
      - Take over fields that another field manager owns instead of failing with their names.
      - Take over objects at this run's names that another QHub deployment (instance) labelled as its own.
    type: bool
    default: false
  move_from:
    description:
      - Namespaces this QHub deployment moves from. Its objects there are removed once the new agent or worker
        runs in O(namespace) (with O(wait), Ready and ONLINE). Without it, finding this O(instance) in another
        namespace stops the run before it writes.
    type: list
    elements: str
  lock_timeout:
    description: Seconds to wait for another run of this QHub deployment to release the lock before failing.
    type: int
    default: 60
attributes:
  check_mode:
    support: full
    details: A server-side dry run of every write.
  diff_mode:
    support: full
    details: Before and after of every object that changes; Secret values are masked.
  idempotent:
    support: full
    details: A rerun with the same input writes nothing and reports no change.
notes:
  - "Override mapping, one row each: B(override) | B(Prefect 1 agent) | B(Prefect 2/3 worker)."
  - "C(JOB_CPU_REQUEST), C(JOB_CPU_LIMIT), C(JOB_MEM_REQUEST), C(JOB_MEM_LIMIT) and their nested form
    C(prefect_agent.job.resources.{request,requests,limit,limits}.{cpu,memory})
    | the flow-run container's C(resources) in the Job template ConfigMap C(<name>-job-template), passed with
    C(--job-template) (read by agents 0.15 to 1.4), and agent env of the flat name (read by 0.x agents)
    | the flow-run container's C(resources) in the work pool's Job manifest (set by M(qhub.prefect.prefect_work_pool),
    so workers older than prefect-kubernetes 0.7.6 apply them too)."
  - "C(IMAGE_PULL_POLICY), C(prefect_agent.job.imagePullPolicy)
    | C(imagePullPolicy) of the flow-run container in the Job template, and agent env C(IMAGE_PULL_POLICY)
    | default of the pool's C(image_pull_policy) variable."
  - "C(IMAGE_PULL_SECRETS), C(prefect_agent.job.imagePullSecrets)
    | pod C(imagePullSecrets) in the Job template, and agent env C(IMAGE_PULL_SECRETS) (comma-joined)
    | pod C(imagePullSecrets) in the pool's Job manifest."
  - "C(PREFECT__CLOUD__AGENT__LABELS), C(prefectLabels)
    | agent env C(PREFECT__CLOUD__AGENT__LABELS) (a JSON list)
    | work queues of the pool, polled with C(--work-queue)."
  - "C(envVars)
    | agent env and flow-run env in the Job template
    | worker env and the default of the pool's C(env) variable."
  - "C(secretEnvVars) (O(secret_env))
    | keys of the Secret O(name), C(secretKeyRef) from the agent env and the Job template
    | keys of the Secret O(name), C(secretKeyRef) from the worker env and the pool's Job manifest."
  - "The API token (O(api_key))
    | Secret keys C(PREFECT__CLOUD__AGENT__AUTH_TOKEN) (read by 0.x agents) and C(PREFECT__CLOUD__API_KEY)
    (read by 1.x agents), each referred to from the agent env of the same name
    | Secret key C(PREFECT_API_KEY), referred to as C(PREFECT_API_KEY) by the worker and, through
    C(PREFECT_INTEGRATIONS_KUBERNETES_WORKER_API_KEY_SECRET_NAME), by the flow-run Jobs."
  - Setting one field both in the flat and the nested form with different values fails.
  - Pods run as user 1001 and meet the C(restricted) Pod Security profile.
  - A Prefect 2/3 worker gets C(PREFECT_KUBERNETES_CLUSTER_UID) (read from the kube-system namespace at deploy
    time, when the deployer may; otherwise RV(cluster_uid) says it was skipped) and
    C(PREFECT_INTEGRATIONS_KUBERNETES_OBSERVER_NAMESPACES), so its namespaced Role suffices.
  - An image tag older than the command needs fails (Prefect 2.11.0 for C(prefect worker start --install-policy
    --with-healthcheck), 0.13.19 for C(prefect agent kubernetes start --job-template)).
seealso:
  - module: qhub.prefect.prefect_work_pool
  - module: qhub.prefect.prefect_project
'''

EXAMPLES = r'''
- name: Run a Prefect 3 worker for the pool "qhub" in the namespace dev
  qhub.prefect.prefect_agent_config:
    namespace: dev
    image: prefecthq/prefect:3-python3.11-kubernetes
    work_pool: qhub
    api_url: http://prefect-server.dev:4200/api
    overrides:
      IMAGE_PULL_POLICY: IfNotPresent
      prefect_agent:
        job:
          resources:
            limit:
              cpu: 4
              memory: 8Gi
      envVars:
        DASK_GATEWAY__ADDRESS: http://dask-gateway.dev
    secret_env:
      DATABASE_PASSWORD: QHUB_SECRET_DATABASE_PASSWORD

- name: Remove it again
  qhub.prefect.prefect_agent_config:
    namespace: dev
    name: prefect-worker
    state: absent
'''

RETURN = r'''
name:
  description: Name of the objects.
  returned: always
  type: str
  sample: prefect-worker
namespace:
  description: Their namespace.
  returned: always
  type: str
  sample: dev
generation:
  description: C(prefect1) (agent) or C(prefect3) (worker).
  returned: always
  type: str
  sample: prefect3
objects:
  description: What happened to each object, in the order of the requests.
  returned: always
  type: list
  elements: dict
  sample:
    - {kind: Deployment, namespace: dev, name: prefect-worker, action: updated}
  contains:
    kind:
      description: The object's kind.
      type: str
    namespace:
      description: Its namespace.
      type: str
    name:
      description: Its name.
      type: str
    action:
      description: One of C(created), C(updated), C(unchanged), C(deleted), C(skipped) (present but not owned).
      type: str
removed:
  description: Objects removed (or, in check mode, that would be) because they belong to this instance under another
    name or in another namespace, or because O(state=absent).
  returned: always
  type: list
  elements: dict
  sample:
    - {kind: Deployment, namespace: dev, name: prefect-agent, action: deleted}
prefect_left_in_place:
  description: Prefect objects an earlier run of this instance used that are no longer named, left in place.
  returned: with O(instance) and O(state=present)
  type: list
  elements: dict
  sample:
    - {kind: work_pool, name: old-pool}
cluster_uid:
  description: Why C(PREFECT_KUBERNETES_CLUSTER_UID) was not set (the kube-system namespace could not be read).
  returned: when it could not be read
  type: str
other_namespaces:
  description: Why other namespaces were not searched for this instance (the deployer may not list Deployments there).
  returned: when the search was refused
  type: str
lock:
  description: The lock this run held (C(Lease), or C(ConfigMap) for a deployer without rights on Leases).
  returned: when a lock was taken (not in check mode)
  type: dict
  sample: {kind: Lease, name: qhub-prefect-prod, namespace: prod}
api_key_in_flow_run_env:
  description: Whether the agent or worker will copy the API key into flow-run Job env as plain text (Prefect 1
    agents; workers on Prefect 2.x or 3.0 images), which no setting prevents.
  returned: with O(state=present)
  type: bool
requests:
  description: Requests sent to the Kubernetes API server.
  returned: always
  type: int
  sample: 7
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.qhub.prefect.plugins.module_utils._runners import prefect_agent_config as runner
from ansible_collections.qhub.prefect.plugins.module_utils._runners.options import module_spec


def main():
    # plugins/action/prefect_agent_config.py runs the same runner inside the controller when the task runs there.
    runner.run(AnsibleModule(**module_spec(runner)))


if __name__ == "__main__":
    main()
