"""The kubeconfig forms users have, against the test bed's API server (TLS, token auth, RBAC).

The static forms are read by the collection itself; an exec plugin is handed to the kubernetes client.
Each run applies the objects of an agent, so a wrong host, CA or token would fail the run.
"""

import base64
import json
import pathlib
import stat

import pytest
import yaml

from tests.support.ansible_cli import run_module, run_playbook
from tests.integration.test_prefect_agent_config import args_for, read_all


def kubeconfig_with_user(testbed, tmp_path, user, ca_as_file=False):
    document = yaml.safe_load(pathlib.Path(testbed.kubeconfig).read_text())
    cluster = document["clusters"][0]["cluster"]
    if ca_as_file:
        # A relative path resolves against the kubeconfig's directory, as kubectl does.
        (tmp_path / "ca.crt").write_bytes(base64.b64decode(cluster.pop("certificate-authority-data")))
        cluster["certificate-authority"] = "ca.crt"
    document["users"][0]["user"] = user
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(document))
    return str(path)


def exec_plugin(tmp_path, token):
    script = tmp_path / "credential-plugin"
    credential = {"apiVersion": "client.authentication.k8s.io/v1beta1", "kind": "ExecCredential",
                  "status": {"token": token}}
    script.write_text("#!/bin/sh\necho '%s'\n" % json.dumps(credential))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return {"exec": {"apiVersion": "client.authentication.k8s.io/v1beta1", "command": str(script),
                     "interactiveMode": "Never"}}


@pytest.mark.parametrize("form", ["token-file-and-ca-file", "exec-plugin"])
def test_kubeconfig_forms_deploy_the_agent(testbed, kube_admin, unique_namespace, tmp_path, form):
    if testbed.admin_token is None:
        pytest.skip("an existing cluster: its own kubeconfig is the only form we can use")
    if form == "exec-plugin":
        kubeconfig = kubeconfig_with_user(testbed, tmp_path, exec_plugin(tmp_path, testbed.admin_token))
    else:
        (tmp_path / "token").write_text(testbed.admin_token + "\n")
        kubeconfig = kubeconfig_with_user(testbed, tmp_path, {"tokenFile": "token"}, ca_as_file=True)
    result = run_module("prefect_agent_config", args_for(testbed, unique_namespace, kubeconfig=kubeconfig))
    assert result.rc == 0, result
    assert set(read_all(kube_admin, unique_namespace)) == {"ServiceAccount", "Role", "RoleBinding", "Secret",
                                                           "Deployment"}


def test_a_wrong_token_is_refused_by_the_api_server(testbed, unique_namespace, tmp_path):
    if testbed.admin_token is None:
        pytest.skip("an existing cluster: no token of ours to spoil")
    kubeconfig = kubeconfig_with_user(testbed, tmp_path, {"token": "not-a-token"})
    result = run_module("prefect_agent_config", args_for(testbed, unique_namespace, kubeconfig=kubeconfig))
    assert result.rc != 0
    assert "Unauthorized" in result.get("msg", ""), result
    assert "not-a-token" not in result.output


def test_awx_style_credentials_from_the_environment_only(testbed, kube_admin, unique_namespace, tmp_path):
    """What an AWX credential injects: K8S_AUTH_* variables and no KUBECONFIG; the config as an extra var."""
    if testbed.admin_token is None:
        pytest.skip("an existing cluster: no admin token to inject")
    env = {"K8S_AUTH_HOST": testbed.api_server, "K8S_AUTH_API_KEY": testbed.admin_token,
           "K8S_AUTH_SSL_CA_CERT": testbed.ca_file, "HOME": str(tmp_path),
           "QHUB_SECRET_PREFECT_TOKEN": "awx-style-token", "PREFECT_API_URL": testbed.prefect_api_url}
    config = {"namespace": unique_namespace,
              "prefect": {"enabled": True, "image": "prefecthq/prefect:3-python3.11-kubernetes"}}
    extra = {"qhub_config": config, "qhub_prefect_work_pool": "awx-%s" % unique_namespace,
             "qhub_prefect_wait": False}
    first = run_playbook("playbooks/deploy.yml", extra, env=env)
    assert first.rc == 0, first
    assert "Deployment" in read_all(kube_admin, unique_namespace)
    again = run_playbook("playbooks/deploy.yml", extra, env=env)
    assert again.rc == 0 and again["recap"]["changed"] == 0, again
