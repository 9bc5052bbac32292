"""The Prefect 3 server: `prefect server start` on SQLite from the Prefect venv (tests/testbed/install-venvs.sh),
with its own PREFECT_HOME in the run directory and no UI or analytics.
"""

import os
from pathlib import Path

try:
    from tests.testbed import node
    from tests.testbed.common import CACHE, HERE, free_ports, http_request, run_tool
except ImportError:  # run as a script: this directory is on sys.path
    import node
    from common import CACHE, HERE, free_ports, http_request, run_tool

PREFECT_READY_TIMEOUT = 120


def prefect_venv_python(log):
    """The Prefect venv's interpreter; the venv is made the first time."""
    venv = Path(os.environ.get("QHUB_PREFECT_SERVER_VENV") or CACHE / "prefect-venv")
    if os.access(venv / "bin" / "prefect", os.X_OK):
        return venv / "bin" / "python"
    # The script prints the tools venv's python, then the Prefect venv's.
    return Path(run_tool(["bash", HERE / "install-venvs.sh"], log).strip().splitlines()[-1])


class PrefectServer:
    """The part of ``Testbed`` that launches the Prefect server (``Testbed.start`` waits for it last)."""

    def _launch_prefect(self):
        python = prefect_venv_python(self.run_dir / "logs" / "install.log")
        self.prefect_python = str(python)
        self.prefect_bin = str(python.parent / "prefect")
        (port,) = [node.PORTS["prefect-server"]] if "node" in self.components else free_ports(1)
        self.prefect_api_url = f"http://{self.host}:{port}/api"
        home = self.run_dir / "prefect-home"
        home.mkdir()
        env = {
            "PREFECT_HOME": str(home),
            "PREFECT_SERVER_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{self.run_dir / 'prefect.db'}",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_UI_ENABLED": "false",
            "PREFECT_SERVER_API_HOST": self.host,
            "PREFECT_SERVER_API_PORT": str(port),
            "PREFECT_API_URL": self.prefect_api_url,
        }
        self._launch("prefect-server", [self.prefect_bin, "server", "start", "--host", self.host,
                                        "--port", str(port)], env=env, wait=False)

    def _prefect_readiness(self, name):
        """(a check that is true once the Prefect server serves, how long to wait for it), or None if not ours."""
        if name == "prefect-server":
            return lambda: http_request(self.prefect_api_url + "/health")[0] == 200, PREFECT_READY_TIMEOUT
        return None
