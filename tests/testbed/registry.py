"""The node's two image registries (docker-registry): a public one and a private one behind htpasswd, on the
bridge's address, their storage cached across test beds so that a warm start pushes nothing; and the pushes of
the node's probe image and the Prefect images (tests/testbed/images.py) into them.
"""

import shutil
import time

try:
    from tests.testbed import node
    from tests.testbed.common import CACHE, http_request
    from tests.testbed.control_plane import KUBE_READY_TIMEOUT
except ImportError:  # run as a script: this directory is on sys.path
    import node
    from common import CACHE, http_request
    from control_plane import KUBE_READY_TIMEOUT

REGISTRY_STORAGE = CACHE / "registry"
REGISTRIES = ("docker-registry", "docker-registry-private")


class Registries:
    """The part of ``Testbed`` that runs the node's registries (their addresses are in ``self.node``)."""

    def _launch_registries(self, log):
        """Launches both registries without waiting: ``_push_images`` waits for them."""
        public, private = self.node["registry"], self.node["private_registry"]
        # Two registries, storage cached across test beds so that a warm start pushes nothing.
        registry_dir = self.run_dir / "registry"
        registry_dir.mkdir(mode=0o700)
        htpasswd = registry_dir / "htpasswd"
        node.make_htpasswd(htpasswd, node.REGISTRY_USERNAME, self.node["registry_password"], log)
        storage = REGISTRY_STORAGE
        for name, address, kind, auth in (("docker-registry", public, "public", None),
                                          ("docker-registry-private", private, "private", htpasswd)):
            (storage / kind).mkdir(parents=True, exist_ok=True)
            config = node.registry_config(registry_dir / f"{kind}.yml", storage / kind, address, auth)
            self._launch(name, [shutil.which("docker-registry"), "serve", config], wait=False)

    def _push_images(self, probe_tar, built, log):
        """Once both registries answer: the probe image into both, each built image into its registry."""
        public, private = self.node["registry"], self.node["private_registry"]
        registry_dir, storage = self.run_dir / "registry", REGISTRY_STORAGE
        self._await_ready("docker-registry")
        self._await_ready("docker-registry-private")
        started = time.monotonic()
        credentials = (node.REGISTRY_USERNAME, self.node["registry_password"])
        auth_file = node.write_auth_file(registry_dir / "auth.json", private, credentials)
        _registry, probe_repository, probe_tag = node.split_reference(self.node["probe_image"])
        node.push(probe_tar, public, probe_repository, probe_tag, storage / "public" / "pushed.json", log)
        node.push(probe_tar, private, probe_repository, probe_tag, storage / "private" / "pushed.json", log,
                  auth=credentials, auth_file=auth_file)
        for image in built:
            _registry, repository, tag = node.split_reference(image["reference"])
            kind = "private" if image.get("private") else "public"
            address = private if image.get("private") else public
            node.push(image["archive"], address, repository, tag, storage / kind / "pushed.json", log,
                      auth=credentials if image.get("private") else None, auth_file=auth_file)
            pull = f"{private}/{repository}:{tag}" if image.get("private") else image["reference"]
            self.node["images"].append({"reference": image["reference"], "pull": pull,
                                        "private": bool(image.get("private"))})
        self.startup_seconds["images pushed"] = round(time.monotonic() - started, 1)

    def _registry_readiness(self, name):
        """(a check that is true once registry `name` serves, how long to wait for it), or None if not ours."""
        if name in REGISTRIES:
            address = self.node["registry" if name == "docker-registry" else "private_registry"]
            # The private one answers 401 without credentials: it serves, and asks for them.
            return lambda: http_request(f"http://{address}/v2/")[0] in (200, 401), KUBE_READY_TIMEOUT
        return None
