"""AWX as it runs jobs: the collection's execution environment (EE), built here, on the test bed.

- The EE: ``ansible-builder build`` of meta/ee/execution-environment.yml with podman, on a Debian base made from
  the test bed's root filesystem (tests/testbed/ee.py; cached, so only a changed collection rebuilds it).
- A job on a podman execution node: AWX's process isolation (``ansible-runner worker`` here, ``ansible-playbook``
  in the EE) runs ``qhub.prefect.deploy`` with the credential types of docs/awx.md injected as AWX injects them.
- A job in a container group: the EE, pushed to the test bed's registry, runs as a pod whose ServiceAccount is the
  job's only Kubernetes identity (in-cluster, no kubeconfig), bound as docs/awx.md says; it deploys into another
  namespace and the worker comes ONLINE.
- An inventory sync: ``ansible-inventory --list`` of the fleet file of docs/awx.md inside the EE.

AWX's own part (credential injection, the job's private data directory, ansible-runner's stream) is
tests/support/awx_emulation.py.
Secret values are canaries, looked for as they are and base64-encoded in everything the job leaves.
"""

import base64
import json
import os
import re
import subprocess
import uuid
from pathlib import Path

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes import utils as k8s_utils
from kubernetes.stream import stream as k8s_stream

from tests.support.awx_emulation import (AWX_CONTAINER_OPTIONS, LOCALHOST_VARS, REPO, Job, artifact_files, doc_block,
                                         doc_credential_type, job_events)
from tests.support.node_presence import NO_NODE_REASON, has_node
from tests.testbed import ee as ee_build
from tests.testbed import node as testbed_node
from tests.support.pod_client import mint_token, prefect_api, wait_for

# A 2-core machine runs the test bed, the job and the worker pod at once.
TIMEOUT = 600
GALAXY = yaml.safe_load((REPO / "galaxy.yml").read_text())
PODMAN_RUN = ("podman", "run", "--rm", *ee_build.PODMAN_OPTIONS)


@pytest.fixture(scope="module")
def ee():
    """The EE image (built unless an image of the same definition and collection is in podman's storage)."""
    return ee_build.build_ee()


def canaries():
    return {"prefect_token": "awx-prefect-key-" + uuid.uuid4().hex, "database_password": "awx-db-" + uuid.uuid4().hex}


def leaks(files, secrets):
    """{file: sorted names of the secrets it holds, as they are or base64-encoded}."""
    forms = dict((name, (value, base64.b64encode(value.encode()).decode())) for name, value in secrets.items())
    found = {}
    for path, text in files.items():
        names = sorted(name for name, values in forms.items() if any(v in text for v in values))
        if names:
            found[path] = names
    return found


def example_config(namespace):
    config = yaml.safe_load((REPO / "examples" / "qhub-config.yml").read_text())
    config["namespace"] = namespace
    config["project_name"] = namespace  # its own QHub deployment, not the example's "demo"
    return config


def new_job(tmp_path, namespace, extra_vars):
    """An AWX job of the two-line playbook of docs/awx.md on the example config, on the localhost inventory."""
    job = Job(tmp_path / "awx")
    job.add_project_file("deploy-prefect.yml", doc_block("# deploy-prefect.yml"))
    job.add_project_file("qhub-config.yml", yaml.safe_dump(example_config(namespace)))
    job.set_inventory({"localhost": LOCALHOST_VARS})
    job.set_extra_vars(dict({"qhub_config_file": "qhub-config.yml"}, **extra_vars))
    job.set_cmdline("--diff")  # Show changes
    return job


def summary_line(stdout):
    """The "One line per deployment" line of deploy.yml's output (colours removed: a podman job has a tty)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", stdout)
    lines = [line.strip().strip('",') for line in text.splitlines() if line.strip().startswith('"localhost: ')]
    assert len(lines) == 1, text[-3000:]
    return lines[0]


def stats(artifacts):
    (event,) = [e for e in job_events(artifacts) if e["event"] == "playbook_on_stats"]
    return event["event_data"]


def test_the_ee_holds_the_collection_ansible_runner_and_the_collections_requirements(ee):
    script = ("import json, os, ansible, ansible_runner, kubernetes, yaml; "
              "print(json.dumps({'uid': os.getuid(), 'ansible': ansible.__version__}))")
    done = subprocess.run([*PODMAN_RUN, ee.reference, "python3", "-c", script], capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    facts = json.loads(done.stdout.strip().splitlines()[-1])
    assert facts["uid"] != 0, "the EE runs as root by default"
    assert tuple(int(part) for part in facts["ansible"].split(".")[:2]) >= (2, 16), facts
    listed = subprocess.run([*PODMAN_RUN, ee.reference, "ansible-galaxy", "collection", "list", "qhub.prefect",
                             "--format", "json"], capture_output=True, text=True, timeout=300, check=False)
    assert listed.returncode == 0, listed.stderr[-3000:]
    collections = json.loads(listed.stdout)
    assert collections == {"/usr/share/ansible/collections/ansible_collections": {
        "qhub.prefect": {"version": GALAXY["version"]}}}, collections
    runner = subprocess.run([*PODMAN_RUN, ee.reference, "ansible-runner", "--version"], capture_output=True,
                            text=True, timeout=300, check=False)
    assert runner.returncode == 0 and runner.stdout.startswith("2.4."), runner


def test_a_job_on_a_podman_execution_node_deploys_and_no_secret_is_in_its_events_or_stdout(
        ee, testbed, kube_admin, unique_namespace, tmp_path):
    secrets = canaries()
    core, rbac = k8s.CoreV1Api(kube_admin), k8s.RbacAuthorizationV1Api(kube_admin)
    # The Kubernetes credential: a ServiceAccount token bound to admin in the QHub namespace (Permissions).
    core.create_namespaced_service_account(unique_namespace, k8s.V1ServiceAccount(
        metadata=k8s.V1ObjectMeta(name="awx-deployer")))
    rbac.create_namespaced_role_binding(unique_namespace, k8s.V1RoleBinding(
        metadata=k8s.V1ObjectMeta(name="awx-deployer-admin"),
        role_ref=k8s.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="ClusterRole", name="admin"),
        subjects=[k8s.RbacV1Subject(kind="ServiceAccount", name="awx-deployer", namespace=unique_namespace)]))
    secrets["k8s_token"] = mint_token(kube_admin, unique_namespace, "awx-deployer")
    pool = "awx-" + unique_namespace
    job = new_job(tmp_path, unique_namespace, {"qhub_prefect_work_pool": pool,
                                               # The worker pod's start is the container group test's business.
                                               "qhub_prefect_wait": False})
    env = job.inject([
        (*doc_credential_type("QHub Prefect"), {
            "prefect_api_url": testbed.prefect_api_url, "prefect_token": secrets["prefect_token"],
            "k8s_host": testbed.api_server, "k8s_token": secrets["k8s_token"],
            "k8s_ca_cert": Path(testbed.ca_file).read_text()}),
        (*doc_credential_type("QHub flow secrets"), {"database_password": secrets["database_password"]}),
    ])
    stream = job.transmit("deploy-prefect.yml", env, process_isolation=True, process_isolation_executable="podman",
                          container_image=ee.reference,
                          container_options=[*AWX_CONTAINER_OPTIONS, *ee_build.PODMAN_OPTIONS])
    artifacts = job.process(job.work_on_this_machine(stream, TIMEOUT))
    files = artifact_files(artifacts)

    assert files["status"] == "successful" and files["rc"] == "0", files["stdout"][-4000:]
    assert stats(artifacts)["failures"] == {}, stats(artifacts)
    assert summary_line(files["stdout"]).startswith(
        "localhost: cluster %s, namespace %s, prefect3, changed" % (testbed.api_server, unique_namespace))
    assert k8s.AppsV1Api(kube_admin).read_namespaced_deployment("prefect-worker", unique_namespace)
    assert prefect_api(testbed.prefect_api_url, "GET", "/work_pools/%s" % pool)["name"] == pool
    # Show changes: the Secret's diff is in the output, its values masked.
    assert "kind: Secret" in files["stdout"]

    # Nothing of the job shows a secret: no event, not stdout. ansible-runner's copies of the job's environment,
    # `command` and the env file it hands podman, hold every credential value (docs/awx.md says so).
    assert leaks(files, secrets) == {"command": sorted(secrets), "env.list": sorted(secrets)}
    env_file = dict(line.split("=", 1) for line in files["env.list"].splitlines())
    assert sorted(name for name, value in env_file.items() if value in secrets.values()) == [
        "DATABASE_PASSWORD", "K8S_AUTH_API_KEY", "QHUB_SECRET_PREFECT_TOKEN"]


def doc_rbac(jobs_namespace, target_namespace):
    """The container group's ServiceAccount and RoleBinding of docs/awx.md, in the test's namespaces."""
    names = {"awx-jobs": jobs_namespace, "dev": target_namespace}
    documents = list(yaml.safe_load_all(doc_block("# Container group RBAC")))
    for document in documents:
        document["metadata"]["namespace"] = names[document["metadata"]["namespace"]]
        for subject in document.get("subjects", []):
            subject["namespace"] = names[subject["namespace"]]
    return documents


def container_group_job(pod, image, jobs_namespace, name):
    """The pod spec of docs/awx.md as AWX completes it (the job's EE as the image, stdin open for receptor's
    stream), run by a Job: AWX makes a bare pod with its own credential; the test bed's admin makes a Job."""
    spec = pod["spec"]
    (container,) = spec["containers"]
    container.update({"image": image, "stdin": True, "stdinOnce": True, "tty": False})
    spec["restartPolicy"] = "Never"
    assert pod["metadata"]["namespace"] == "awx-jobs"
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "namespace": jobs_namespace},
            "spec": {"backoffLimit": 0, "template": {"metadata": {"labels": {"awx-job": name}}, "spec": spec}}}


def push_to_testbed_registry(ee, testbed):
    """The EE in the test bed's registry, as docker.io/qhub-testbed/qhub-prefect-ee:<key> for the node."""
    registry = testbed.node["registry"]
    repository = "qhub-testbed/qhub-prefect-ee"
    if not testbed_node.manifest_exists(registry, repository, ee.key):
        done = subprocess.run(["podman", "push", "--quiet", "--tls-verify=false", ee.reference,
                               "docker://%s/%s:%s" % (registry, repository, ee.key)], capture_output=True, text=True,
                              timeout=TIMEOUT, check=False)
        assert done.returncode == 0, done.stderr[-3000:]
    return "docker.io/%s:%s" % (repository, ee.key)


def send_to_pod_stdin(core, namespace, pod, data):
    """What receptor does: attach to the pod's stdin through the API server, write the job, close it."""
    def attached():
        try:
            return k8s_stream(core.connect_get_namespaced_pod_attach, pod, namespace, container="worker",
                              stdin=True, stdout=False, stderr=False, tty=False, _preload_content=False)
        except k8s.ApiException:
            return None

    connection = wait_for(attached, 120, interval=2, what="an attach to the job pod")
    connection.write_stdin(data)
    connection.close()


def test_a_job_in_a_container_group_deploys_into_another_namespace_with_the_pods_serviceaccount(
        ee, testbed, kube_admin, make_namespace, tmp_path):
    if not has_node(testbed):
        pytest.skip(NO_NODE_REASON)
    secrets = canaries()
    jobs_namespace, target = make_namespace("t-awx-jobs-"), make_namespace()
    core, batch = k8s.CoreV1Api(kube_admin), k8s.BatchV1Api(kube_admin)
    for document in doc_rbac(jobs_namespace, target):
        k8s_utils.create_from_dict(kube_admin, document)
    image = push_to_testbed_registry(ee, testbed)
    pool = "awx-" + target
    job = new_job(tmp_path, target, {"qhub_prefect_work_pool": pool, "qhub_prefect_wait_for_worker": True,
                                     "qhub_prefect_wait_timeout": TIMEOUT, "qhub_prefect_worker_timeout": TIMEOUT})
    env = job.inject([
        (*doc_credential_type("QHub Prefect API"), {"prefect_api_url": testbed.prefect_api_url,
                                                    "prefect_token": secrets["prefect_token"]}),
        (*doc_credential_type("QHub flow secrets"), {"database_password": secrets["database_password"]}),
    ])
    stream = job.transmit("deploy-prefect.yml", env)  # a container group's job: no process isolation

    pod_spec = yaml.safe_load(doc_block("# Container group pod spec"))
    batch.create_namespaced_job(jobs_namespace, container_group_job(pod_spec, image, jobs_namespace, "awx-job-1"))

    def job_pod(phases):
        pods = core.list_namespaced_pod(jobs_namespace, label_selector="awx-job=awx-job-1").items
        return pods[0] if pods and pods[0].status.phase in phases else None

    pod = wait_for(lambda: job_pod(("Running", "Succeeded", "Failed")), TIMEOUT, interval=2,
                   what="the job pod to start (its image pulled from the test bed's registry)")
    send_to_pod_stdin(core, jobs_namespace, pod.metadata.name, stream.read_bytes())
    wait_for(lambda: job_pod(("Succeeded", "Failed")), TIMEOUT, interval=2, what="the job pod to finish")
    log = core.read_namespaced_pod_log(pod.metadata.name, jobs_namespace, container="worker",
                                       _preload_content=False).data
    results = tmp_path / "pod.stream"
    results.write_bytes(log)
    artifacts = job.process(results)
    files = artifact_files(artifacts)

    finished = batch.read_namespaced_job("awx-job-1", jobs_namespace)
    assert finished.status.succeeded == 1, files.get("stdout", log.decode(errors="replace"))[-4000:]
    assert files["status"] == "successful" and files["rc"] == "0", files["stdout"][-4000:]
    # The job's Kubernetes identity was the pod's: no kubeconfig, no K8S_AUTH_*, the in-cluster API server.
    job_env = json.loads(files["command"])["env"]
    assert not [name for name in job_env if name == "KUBECONFIG" or name.startswith("K8S_AUTH_")], sorted(job_env)
    service = core.read_namespaced_service("kubernetes", "default")
    in_cluster = "https://%s:%d" % (service.spec.cluster_ip, service.spec.ports[0].port)
    assert summary_line(files["stdout"]) == (
        "localhost: cluster %s, namespace %s, prefect3, changed, worker ONLINE" % (in_cluster, target))
    # The worker runs in the other namespace and is ONLINE in the test bed's Prefect server.
    pods = core.list_namespaced_pod(target, label_selector="app.kubernetes.io/name=prefect-worker").items
    assert [p.status.phase for p in pods] == ["Running"], [(p.metadata.name, p.status.phase) for p in pods]
    workers = prefect_api(testbed.prefect_api_url, "POST", "/work_pools/%s/workers/filter" % pool, {})
    assert [w["status"] for w in workers] == ["ONLINE"], workers
    # Nothing of it in the container group's namespace but the job.
    assert not k8s.AppsV1Api(kube_admin).list_namespaced_deployment(jobs_namespace).items

    assert leaks(files, secrets) == {"command": sorted(secrets)}


def plain(value):
    """A value of ansible-inventory's JSON as Ansible's JSON decoder reads it: {"__ansible_unsafe": s} is s."""
    if isinstance(value, dict):
        return value["__ansible_unsafe"] if set(value) == {"__ansible_unsafe"} else dict(
            (key, plain(item)) for key, item in value.items())
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


def test_an_inventory_sync_in_the_ee_gives_the_documented_hosts_and_vars_and_no_secret(ee, tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    fleet = doc_block("# fleet.qhub_deployments.yml")
    (project / "fleet.qhub_deployments.yml").write_text(fleet)
    for name in ("dev", "prod"):
        config = {"project_name": name, "namespace": name,
                  "prefect": {"enabled": True, "image": "prefecthq/prefect:3-python3.11-kubernetes",
                              "overrides": {"secretEnvVars": {"DATABASE_PASSWORD": "QHUB_SECRET_DATABASE_PASSWORD"}}}}
        (project / name).mkdir()
        (project / name / "qhub-config.yml").write_text(yaml.safe_dump(config))
    (project / "staging").mkdir()
    (project / "staging" / "qhub-config.yml").write_text(
        "project_name: staging\nnamespace: staging\nprefect:\n  enabled: true\n"
        "  image: prefecthq/prefect:3-python3.11-kubernetes\n"
        "  overrides:\n    prefect_agent:\n      job:\n        resources:\n          limit: {cpu: four}\n")
    # AWX gives a sync none of the job's credentials; were they there, they would still not show.
    secrets = {name: "awx-canary-" + uuid.uuid4().hex for name in (
        "DEV_PREFECT_TOKEN", "STAGING_PREFECT_TOKEN", "PROD_PREFECT_TOKEN", "DATABASE_PASSWORD")}
    env_args = [arg for name in secrets for arg in ("--env", name)]
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    # As AWX runs an inventory update: the source's path in the project, the JSON to a file, verbosity 1.
    done = subprocess.run([*PODMAN_RUN, *AWX_CONTAINER_OPTIONS, *env_args, "--volume=%s:/runner/project:Z" % project,
                           "--volume=%s:/runner/artifacts:Z" % artifacts, "--workdir=/runner/project", ee.reference,
                           "ansible-inventory", "-i", "fleet.qhub_deployments.yml", "--list", "--export",
                           "--output", "/runner/artifacts/output.json", "--playbook-dir", "/runner/project", "-v"],
                          capture_output=True, text=True, timeout=300, check=False, env=dict(os.environ, **secrets))
    assert done.returncode == 0, done.stderr[-3000:]
    output = (artifacts / "output.json").read_text()
    assert leaks({"stdout": done.stdout, "stderr": done.stderr, "output.json": output}, secrets) == {}
    inventory = plain(json.loads(output))
    hostvars = inventory["_meta"]["hostvars"]
    assert sorted(hostvars) == ["dev", "prod", "staging"]
    assert sorted(inventory["prefect3"]["hosts"]) == ["dev", "prod"]
    assert inventory["namespace_dev"]["hosts"] == ["dev"] and inventory["namespace_prod"]["hosts"] == ["prod"]
    assert inventory["qhub_invalid"]["hosts"] == ["staging"]
    error = hostvars["staging"]["qhub_inventory_error"]
    assert "/runner/project/staging/qhub-config.yml" in error and "limit.cpu" in error, error
    entries = dict((entry["config"].split("/")[0], entry) for entry in yaml.safe_load(fleet)["deployments"])
    for host in ("dev", "prod"):
        entry = entries[host]
        assert hostvars[host] == dict(hostvars[host], **{
            "ansible_connection": "local", "qhub_config_file": "/runner/project/%s/qhub-config.yml" % host,
            "qhub_namespace": host, "qhub_generation": "prefect3",
            "qhub_image": "prefecthq/prefect:3-python3.11-kubernetes",
            "qhub_prefect_kube_context": entry["context"], "qhub_prefect_api_url": entry["prefect_api_url"],
            "qhub_prefect_token_env": entry["prefect_token_env"]}), hostvars[host]
