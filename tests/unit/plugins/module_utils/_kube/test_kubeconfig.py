"""Reading kubeconfig credentials without the kubernetes client, and knowing when to leave it to the client."""

import base64
import shutil
import ssl
import subprocess
import tempfile

import pytest
import yaml

from ansible_collections.qhub.prefect.plugins.module_utils._kube.kubeconfig import (
    KubeCredentials, KubeconfigError, select, static_credentials,
)


def load_kubeconfig(path, context=None):
    """The credentials the client takes from the kubeconfig at ``path``; None when they need the kubernetes client."""
    return static_credentials(select(path, context, environ={}))


def write(tmp_path, users, clusters=None, current="main", contexts=None):
    document = {
        "apiVersion": "v1", "kind": "Config", "current-context": current,
        "clusters": clusters or [{"name": "c", "cluster": {"server": "https://10.0.0.1:6443",
                                                           "certificate-authority": "pki/ca.crt"}}],
        "users": users,
        "contexts": contexts or [{"name": "main", "context": {"cluster": "c", "user": "u"}},
                                 {"name": "other", "context": {"cluster": "c", "user": "v"}}],
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(document))
    return str(path)


def test_token_and_ca_file_relative_to_the_kubeconfig(tmp_path):
    credentials = load_kubeconfig(write(tmp_path, [{"name": "u", "user": {"token": "abc"}}]))
    assert credentials.host == "https://10.0.0.1:6443"
    assert credentials.ca_file == str(tmp_path / "pki" / "ca.crt")
    assert credentials.verify
    assert credentials.auth_headers() == {"Authorization": "Bearer abc"}


def test_context_option_overrides_current_context(tmp_path):
    path = write(tmp_path, [{"name": "u", "user": {"token": "abc"}}, {"name": "v", "user": {"tokenFile": "t"}}])
    (tmp_path / "t").write_text("from-file\n")
    assert load_kubeconfig(path, "other").auth_headers() == {"Authorization": "Bearer from-file"}


def test_embedded_data_stays_in_memory(tmp_path):
    users = [{"name": "u", "user": {"client-certificate-data": base64.b64encode(b"CERT").decode(),
                                    "client-key-data": base64.b64encode(b"KEY").decode()}}]
    clusters = [{"name": "c", "cluster": {"server": "https://k", "certificate-authority-data":
                                          base64.b64encode(b"CA").decode()}}]
    credentials = load_kubeconfig(write(tmp_path, users, clusters))
    assert (credentials.ca_data, credentials.cert_data, credentials.key_data) == (b"CA", b"CERT", b"KEY")
    assert (credentials.ca_file, credentials.cert_file, credentials.key_file) == (None, None, None)
    assert credentials.auth_headers() == {}


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make a certificate")
def test_a_client_certificate_from_data_loads_and_leaves_no_file(tmp_path, monkeypatch):
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=client", "-days", "1",
                    "-keyout", str(tmp_path / "k.pem"), "-out", str(tmp_path / "c.pem")], check=True,
                   capture_output=True)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    pem = (tmp_path / "c.pem").read_bytes()
    credentials = KubeCredentials("https://k", ca_data=pem, cert_data=pem, key_data=(tmp_path / "k.pem").read_bytes())
    context = credentials.ssl_context()
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert list(scratch.iterdir()) == []


def test_basic_auth_and_insecure_cluster(tmp_path):
    clusters = [{"name": "c", "cluster": {"server": "https://k", "insecure-skip-tls-verify": True}}]
    credentials = load_kubeconfig(write(tmp_path, [{"name": "u", "user": {"username": "a", "password": "b"}}],
                                        clusters))
    assert not credentials.verify
    assert credentials.auth_headers() == {"Authorization": "Basic " + base64.b64encode(b"a:b").decode()}


@pytest.mark.parametrize("user", [
    {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": "aws"}},
    {"auth-provider": {"name": "oidc", "config": {}}},
])
def test_credentials_that_need_code_are_left_to_the_kubernetes_client(tmp_path, user):
    assert load_kubeconfig(write(tmp_path, [{"name": "u", "user": user}])) is None


def test_a_list_of_kubeconfigs_is_merged_here_not_left_to_the_kubernetes_client(tmp_path):
    (tmp_path / "one").mkdir()
    first = write(tmp_path / "one", [{"name": "u", "user": {"token": "first"}}], current="")
    second = write(tmp_path, [{"name": "u", "user": {"token": "second"}}, {"name": "v", "user": {"token": "v"}}])
    credentials = load_kubeconfig(first + ":" + second)
    # current-context from the second file (the first sets none), the user u from the first, as kubectl reads it;
    # the CA file relative to the file holding its cluster entry, the first.
    assert credentials.auth_headers() == {"Authorization": "Bearer first"}
    assert credentials.ca_file == str(tmp_path / "one" / "pki" / "ca.crt")


@pytest.mark.parametrize("change, message", [
    ({"current": ""}, "sets no current-context and no context was given"),
    ({"current": "missing"}, "the context 'missing' does not exist in the kubeconfig"),
    ({"clusters": [{"name": "other", "cluster": {"server": "https://k"}}]}, "names the cluster 'c', which does not "
                                                                            "exist"),
    ({"clusters": [{"name": "c", "cluster": {"certificate-authority-data": "!!"}}]}, "has no server"),
    ({"clusters": [{"name": "c", "cluster": {"server": "https://k", "certificate-authority-data": "!!"}}]},
     "certificate-authority-data of the kubeconfig .* is not valid base64"),
    ({"contexts": [{"name": "main", "context": {"cluster": "c", "user": "gone"}}]}, "names the user 'gone', which "
                                                                                    "does not exist"),
])
def test_broken_kubeconfigs_say_what_is_wrong(tmp_path, change, message):
    path = write(tmp_path, [{"name": "u", "user": {"token": "abc"}}], **change)
    with pytest.raises(KubeconfigError, match=message):
        load_kubeconfig(path)


def test_unreadable_and_non_yaml_files(tmp_path):
    with pytest.raises(KubeconfigError, match="the kubeconfig .*absent does not exist"):
        load_kubeconfig(str(tmp_path / "absent"))
    (tmp_path / "bad").write_text("a: [1\n")
    with pytest.raises(KubeconfigError, match="not valid YAML"):
        load_kubeconfig(str(tmp_path / "bad"))
    path = write(tmp_path, [{"name": "u", "user": {"tokenFile": "no-such-token"}}])
    with pytest.raises(KubeconfigError, match="cannot read the tokenFile of the user 'u'"):
        load_kubeconfig(path)
