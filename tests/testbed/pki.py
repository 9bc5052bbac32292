"""The test bed's PKI: a fresh CA, the apiserver's serving certificate, the apiserver's kubelet client certificate
(with a node) and the ServiceAccount signing key pair, made with the openssl command into DIR/pki.
"""

import secrets
import shutil

try:
    from tests.testbed.common import TestbedError, run_tool
except ImportError:  # run as a script: this directory is on sys.path
    from common import TestbedError, run_tool

# Every extension strict verifiers (Go, Python 3.13's VERIFY_X509_STRICT) insist on is set here,
# and nothing comes from the system's openssl.cnf.
OPENSSL_CONFIG = """\
[req]
distinguished_name = subject
prompt = no

[subject]
CN = unused

[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign, digitalSignature
subjectKeyIdentifier = hash

[apiserver]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
subjectAltName = IP:127.0.0.1, DNS:localhost, DNS:kubernetes, DNS:kubernetes.default, \
DNS:kubernetes.default.svc, IP:{service_ip}{extra_sans}

[client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
"""


def make_pki(run_dir, host, service_ip, kubelet_client):
    """A CA, the apiserver's serving certificate (127.0.0.1, localhost, `host`, the `service_ip`) and the
    ServiceAccount key pair in run_dir/pki; with `kubelet_client`, the apiserver's client certificate for kubelets.
    """
    openssl = shutil.which("openssl")
    if openssl is None:
        raise TestbedError("the openssl command is missing (apt-get install openssl)")
    pki = run_dir / "pki"
    pki.mkdir(mode=0o700)
    log = run_dir / "logs" / "openssl.log"
    config = pki / "openssl.cnf"
    extra_sans = f", IP:{host}" if host != "127.0.0.1" else ""
    config.write_text(OPENSSL_CONFIG.format(service_ip=service_ip, extra_sans=extra_sans))
    run_tool([openssl, "req", "-x509", "-new", "-newkey", "rsa:2048", "-nodes", "-days", "30",
              "-subj", "/CN=qhub-prefect test bed CA", "-config", config, "-extensions", "ca",
              "-keyout", pki / "ca.key", "-out", pki / "ca.crt"], log)
    run_tool([openssl, "req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=kube-apiserver",
              "-config", config, "-keyout", pki / "apiserver.key", "-out", pki / "apiserver.csr"], log)
    run_tool([openssl, "x509", "-req", "-in", pki / "apiserver.csr", "-CA", pki / "ca.crt",
              "-CAkey", pki / "ca.key", "-set_serial", "0x" + secrets.token_hex(8), "-days", "30",
              "-extfile", config, "-extensions", "apiserver", "-out", pki / "apiserver.crt"], log)
    if kubelet_client:
        run_tool([openssl, "req", "-new", "-newkey", "rsa:2048", "-nodes",
                  "-subj", "/O=system:masters/CN=kube-apiserver-kubelet-client", "-config", config,
                  "-keyout", pki / "kubelet-client.key", "-out", pki / "kubelet-client.csr"], log)
        run_tool([openssl, "x509", "-req", "-in", pki / "kubelet-client.csr", "-CA", pki / "ca.crt",
                  "-CAkey", pki / "ca.key", "-set_serial", "0x" + secrets.token_hex(8), "-days", "30",
                  "-extfile", config, "-extensions", "client", "-out", pki / "kubelet-client.crt"], log)
    run_tool([openssl, "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
              "-out", pki / "service-account.key"], log)
    run_tool([openssl, "pkey", "-in", pki / "service-account.key", "-pubout",
              "-out", pki / "service-account.pub"], log)
    for key in pki.glob("*.key"):
        key.chmod(0o600)
    return pki
