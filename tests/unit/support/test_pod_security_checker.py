"""The restricted-profile checker finds each kind of violation (so a clean result means something)."""

import copy

import pytest

from ansible_collections.qhub.prefect.plugins.module_utils._qhub.images import PREFECT1, PREFECT3
from ansible_collections.qhub.prefect.plugins.module_utils._qhub.overrides import parse_overrides
from ansible_collections.qhub.prefect.plugins.module_utils._render.objects import render_deployment
from ansible_collections.qhub.prefect.plugins.module_utils._render.spec import AgentSpec
from tests.support.pod_security_checker import check_restricted


def rendered_pod(generation):
    job, dummy = parse_overrides({}, {})
    spec = AgentSpec("p", "dev", generation, "prefecthq/prefect:3", job, token="t", api_url="http://x/api")
    return render_deployment(spec)["spec"]["template"]["spec"]


@pytest.mark.parametrize("generation", [PREFECT1, PREFECT3])
def test_rendered_pods_meet_the_restricted_profile(generation):
    assert check_restricted(rendered_pod(generation)) == []


@pytest.mark.parametrize("mutate,rule", [
    (lambda p: p.update(hostNetwork=True), "host namespaces"),
    (lambda p: p["volumes"].append({"name": "h", "hostPath": {"path": "/"}}), "volume types"),
    (lambda p: p["containers"][0]["securityContext"].update(privileged=True), "privileged"),
    (lambda p: p["containers"][0]["securityContext"].pop("allowPrivilegeEscalation"), "privilege escalation"),
    (lambda p: p["containers"][0]["securityContext"].update(capabilities={"add": ["SYS_ADMIN"], "drop": ["ALL"]}),
     "capabilities"),
    (lambda p: p["containers"][0]["securityContext"].update(capabilities={}), "capabilities"),
    (lambda p: [p["securityContext"].pop("runAsNonRoot"), p["containers"][0]["securityContext"].pop("runAsNonRoot")],
     "running as non-root"),
    (lambda p: p["securityContext"].update(runAsUser=0), "running as non-root user"),
    (lambda p: p["securityContext"].pop("seccompProfile"), "seccomp"),
    (lambda p: p["containers"][0].update(ports=[{"containerPort": 80, "hostPort": 80}]), "host ports"),
    (lambda p: p["securityContext"].update(sysctls=[{"name": "kernel.msgmax", "value": "1"}]), "sysctls"),
])
def test_each_rule_catches_its_violation(mutate, rule):
    pod = copy.deepcopy(rendered_pod(PREFECT3))
    mutate(pod)
    assert any(problem.startswith(rule) for problem in check_restricted(pod))
