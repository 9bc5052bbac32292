"""What every part of the test bed uses: its paths, its error, files, ports, HTTP to its servers, setup commands.

Only the standard library; no part of the test bed is imported here, so every part may import this.
"""

import json
import os
import shlex
import socket
import ssl
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CACHE = Path(os.environ.get("QHUB_PREFECT_CACHE") or Path.home() / ".cache" / "qhub-prefect")
# The command line of the test bed (`testbed.py up|down|status|leftovers`), which env.sh and `up` name for `down`.
TESTBED_PY = HERE / "testbed.py"
LOG_TAIL_LINES = 30


class TestbedError(RuntimeError):
    """A part of the test bed failed; the message names the part and quotes the end of its log."""

    __test__ = False  # not a pytest test class, despite the name

    def __init__(self, message, log=None):
        if log is not None:
            message = f"{message}\n--- last {LOG_TAIL_LINES} lines of {log} ---\n{log_tail(log)}"
        super().__init__(message)


def log_tail(path, lines=LOG_TAIL_LINES):
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 64 * 1024))
            text = handle.read().decode("utf-8", "replace")
    except OSError as error:
        return f"(no log: {error})"
    return "\n".join(text.splitlines()[-lines:])


# The test bed lives on loopback: a proxy from the environment must never see its requests.
_NO_PROXY = urllib.request.ProxyHandler({})


def http_request(url, method="GET", token=None, ca_file=None, body=None, timeout=5):
    """(status, body bytes) of one request. HTTP errors are answers too; failing to connect raises OSError."""
    headers = {"Accept": "application/json"}
    data = None
    if token:
        headers["Authorization"] = "Bearer " + token
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    handlers = [_NO_PROXY]
    if url.startswith("https:"):
        handlers.append(urllib.request.HTTPSHandler(context=ssl.create_default_context(cafile=ca_file)))
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.build_opener(*handlers).open(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def free_ports(count):
    """Ports nobody listens on now; held open together so that they differ from each other."""
    sockets = []
    try:
        for dummy in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def flag_value(argv, flag):
    """The value of `--flag=value` in a command line."""
    return next(arg.split("=", 1)[1] for arg in argv if arg.startswith(flag + "="))


def write_private(path, text):
    path = Path(path)
    path.write_text(text)
    path.chmod(0o600)
    return path


def read_json(path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def run_tool(argv, log):
    """Runs a setup command with its stderr appended to `log`; a failure raises with the log's end."""
    argv = [str(arg) for arg in argv]
    with open(log, "ab") as handle:
        handle.write(f"$ {shlex.join(argv)}\n".encode())
        handle.flush()
        done = subprocess.run(argv, check=False, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=handle,
                              text=True)
    if done.returncode != 0:
        raise TestbedError(f"{Path(argv[0]).name} {argv[1]} failed with exit code {done.returncode}", log)
    return done.stdout
