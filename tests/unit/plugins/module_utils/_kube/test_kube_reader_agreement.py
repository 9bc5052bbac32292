"""The fleet check and the client read a kubeconfig alike: the same server, or the same error (issue 17).

kube_context_info (``_kube/target.py``) tells the check play which cluster a deployment writes to; KubeClient
(``_kube/client.py``) is what then writes. Each kubeconfig below goes through both, from the same environment.
They used to have a reader each and disagreed: a context naming a missing user passed the check and failed the
client; a KUBECONFIG list was merged by the check (current-context from the first file that sets one) and by
the kubernetes client for the other (from the first file, or from KUBECONFIG when the list was the kubeconfig
option); the in-cluster case passed the check without a ServiceAccount token the client needs; a host
without a token skipped the kubeconfig the client then read.

What only the client reads, the credentials' content (a token file, base64 data), is not in this comparison:
the check never reads credentials.
"""

import json
import os
import pathlib
import stat

import certifi
import pytest
import yaml

from ansible_collections.qhub.prefect.plugins.module_utils._kube import kubeconfig as kubeconfig_module
from ansible_collections.qhub.prefect.plugins.module_utils._kube.client import KubeClient, KubeError
from ansible_collections.qhub.prefect.plugins.module_utils._kube.target import KubeTargetError, kube_target


def document(clusters=None, users=None, contexts=None, current=None):
    """A kubeconfig: clusters {name: server}, users {name: user}, contexts {name: (cluster, user)}."""
    found = {"apiVersion": "v1", "kind": "Config",
             "clusters": [{"name": name, "cluster": {"server": server} if server else {}}
                          for name, server in (clusters or {}).items()],
             "users": [{"name": name, "user": user} for name, user in (users or {}).items()],
             "contexts": [{"name": name, "context": dict({"cluster": cluster}, **({"user": user} if user else {}))}
                          for name, (cluster, user) in (contexts or {}).items()]}
    if current:
        found["current-context"] = current
    return found


TOKEN = {"token": "never-compared"}
PLAIN = document({"c": "https://plain:6443"}, {"u": TOKEN}, {"main": ("c", "u")}, current="main")


def exec_user(tmp_path):
    script = tmp_path / "credential-plugin"
    credential = {"apiVersion": "client.authentication.k8s.io/v1beta1", "kind": "ExecCredential",
                  "status": {"token": "from-the-plugin"}}
    script.write_text("#!/bin/sh\necho '%s'\n" % json.dumps(credential))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return {"exec": {"apiVersion": "client.authentication.k8s.io/v1beta1", "command": str(script),
                     "interactiveMode": "Never"}}


# name: (files {name: document or text}, options, environment, expected server or a piece of the error).
# Paths in options and the environment are relative to the test's directory; "@" is the test's directory.
CASES = {
    "current context": ({"kc": PLAIN}, {"kubeconfig": "kc"}, {}, "https://plain:6443"),
    "named context": ({"kc": document({"c": "https://c:1", "d": "https://d:2/"}, {"u": TOKEN},
                                      {"one": ("c", "u"), "two": ("d", "u")}, current="one")},
                      {"kubeconfig": "kc", "context": "two"}, {}, "https://d:2"),
    "missing context": ({"kc": PLAIN}, {"kubeconfig": "kc", "context": "gone"}, {},
                        "the context 'gone' does not exist in the kubeconfig"),
    "no current context": ({"kc": document({"c": "https://c:1"}, {"u": TOKEN}, {"main": ("c", "u")})},
                           {"kubeconfig": "kc"}, {}, "sets no current-context and no context was given"),
    "current context missing": ({"kc": document({"c": "https://c:1"}, {"u": TOKEN}, {"main": ("c", "u")},
                                                current="gone")},
                                {"kubeconfig": "kc"}, {}, "the context 'gone' does not exist"),
    "missing cluster entry": ({"kc": document({}, {"u": TOKEN}, {"main": ("c", "u")}, current="main")},
                              {"kubeconfig": "kc"}, {}, "names the cluster 'c', which does not exist"),
    "cluster without server": ({"kc": document({"c": None}, {"u": TOKEN}, {"main": ("c", "u")}, current="main")},
                               {"kubeconfig": "kc"}, {}, "names the cluster 'c', which has no server"),
    "missing user entry": ({"kc": document({"c": "https://c:1"}, {}, {"main": ("c", "u")}, current="main")},
                           {"kubeconfig": "kc"}, {}, "names the user 'u', which does not exist"),
    "context without user": ({"kc": document({"c": "https://c:1"}, {}, {"main": ("c", None)}, current="main")},
                             {"kubeconfig": "kc"}, {}, "https://c:1"),
    "KUBECONFIG list, current context from the second file": (
        {"one": document({"c": "https://first:1"}, {"u": TOKEN}, {"main": ("c", "u")}),
         "two": document({"c": "https://second:2"}, {"u": TOKEN}, {"main": ("c", "u")}, current="main")},
        {}, {"KUBECONFIG": "one:two"}, "https://first:1"),
    "kubeconfig option naming a list": (
        {"one": document({"c": "https://first:1"}, {"u": TOKEN}, {"main": ("c", "u")}, current="main"),
         "two": document({"d": "https://second:2"}, {"u": TOKEN}, {"other": ("d", "u")}),
         "env": document({"e": "https://from-env:3"}, {"u": TOKEN}, {"main": ("e", "u")}, current="main")},
        {"kubeconfig": "one:two", "context": "other"}, {"KUBECONFIG": "env"}, "https://second:2"),
    "KUBECONFIG list with a missing and an empty file": (
        {"empty": "", "kc": PLAIN}, {}, {"KUBECONFIG": "absent:empty:kc"}, "https://plain:6443"),
    "KUBECONFIG list of missing files": ({}, {}, {"KUBECONFIG": "absent:gone"}, "the kubeconfig @/absent nor "
                                                                                "@/gone does not exist"),
    "kubeconfig option missing": ({"kc": PLAIN}, {"kubeconfig": "absent"}, {"KUBECONFIG": "kc"},
                                  "the kubeconfig @/absent does not exist"),
    "not YAML": ({"kc": "clusters: [\n"}, {"kubeconfig": "kc"}, {}, "is not valid YAML"),
    "not a mapping": ({"kc": "- a\n- b\n"}, {"kubeconfig": "kc"}, {}, "is not a mapping with clusters"),
    "the default kubeconfig": ({"home/.kube/config": PLAIN}, {}, {}, "https://plain:6443"),
    "no kubeconfig, not in a cluster": ({}, {}, {"KUBERNETES_SERVICE_HOST": "10.0.0.1"},
                                        "@/home/.kube/config does not exist, KUBECONFIG is not set"),
    "in a cluster": ({"sa/token": "pod-token", "sa/ca.crt": "CA"}, {},
                     {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}, "https://10.0.0.1:443"),
    "in a cluster, IPv6": ({"sa/token": "pod-token", "sa/ca.crt": "CA"}, {},
                           {"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "443"},
                           "https://[fd00::1]:443"),
    "in a cluster without a ServiceAccount token": (
        {"sa/ca.crt": "CA"}, {}, {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"},
        "this is not a pod with a ServiceAccount"),
    "in a cluster without its CA": (
        {"sa/token": "pod-token"}, {}, {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"},
        "this is not a pod with a ServiceAccount"),
    "host and token, no kubeconfig read": (
        {"kc": "not: [yaml\n"}, {"kubeconfig": "kc", "host": "https://h:1/", "token": "t"}, {}, "https://h:1"),
    "host without token, kubeconfig broken": ({"kc": document({"c": "https://c:1"}, {}, {"main": ("c", "u")},
                                                              current="main")},
                                              {"kubeconfig": "kc", "host": "https://h:1"}, {},
                                              "names the user 'u', which does not exist"),
    "host without token, kubeconfig fine": ({"kc": PLAIN}, {"kubeconfig": "kc", "host": "https://h:1"}, {},
                                            "https://h:1"),
    "exec plugin from the second file of a list": (
        {"one": document({"c": "https://first:1"}, {}, {}),
         "two": document({"c": "https://second:2"}, {"e": "EXEC"}, {"main": ("c", "e")}, current="main")},
        {}, {"KUBECONFIG": "one:two"}, "https://first:1"),
}


def materialise(tmp_path, files, options, environment):
    for name, content in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, dict):
            for entry in content.get("users", []):
                if entry["user"] == "EXEC":
                    entry["user"] = exec_user(tmp_path)
            content = yaml.safe_dump(content)
        elif content == "CA":
            # A CA bundle that loads: the client sets up TLS as it starts.
            content = pathlib.Path(certifi.where()).read_text()
        path.write_text(content)

    def located(value):
        if value.startswith("https:") or value == "t":
            return value
        return os.pathsep.join(str(tmp_path / part) for part in value.split(":"))

    options = dict((key, located(value) if key in ("kubeconfig",) else value) for key, value in options.items())
    environment = dict((key, located(value) if key == "KUBECONFIG" else value) for key, value in environment.items())
    return options, environment


def outcome(call):
    try:
        return "server", call()
    except (KubeTargetError, KubeError) as exc:
        return "error", str(exc)


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_check_and_the_client_agree(tmp_path, monkeypatch, name):
    files, options, environment, expected = CASES[name]
    options, environment = materialise(tmp_path, files, options, environment)
    for variable in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for variable, value in environment.items():
        monkeypatch.setenv(variable, value)
    monkeypatch.setattr(kubeconfig_module, "SERVICE_ACCOUNT_DIR", str(tmp_path / "sa"))

    check = outcome(lambda: kube_target(options.get("kubeconfig"), options.get("context"), options.get("host"),
                                        token=options.get("token"))["server"])
    client = outcome(lambda: KubeClient(kubeconfig=options.get("kubeconfig"), context=options.get("context"),
                                        host=options.get("host"), token=options.get("token")).host)
    assert check == client
    expected = expected.replace("@", str(tmp_path))
    assert check == ("server", expected) if expected.startswith("https:") else expected in check[1], check
