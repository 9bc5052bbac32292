"""The container images the test bed's node runs, built here: no Docker engine, no image registry.

Each image is a Debian root filesystem made by mmdebstrap, Python packages installed by pip inside it
(chroot, as root), a few files, and an image config; packed as a one-layer docker-archive tar. Built:

  prefect3  Prefect's own recipe for ``prefecthq/prefect:3-python3.11-kubernetes`` (PrefectHQ/prefect
            Dockerfile and scripts/entrypoint.sh): Debian bookworm (Python 3.11), the SAME prefect version as
            the test bed's server venv plus prefect-kubernetes and uv, /usr/bin/tini, /opt/prefect/entrypoint.sh
            (EXTRA_PIP_PACKAGES, then exec "$@"), WORKDIR /opt/prefect. A user ``prefect`` (1000:1000, HOME
            /home/prefect) exists for the collection's pod security context, and /opt/prefect/flows/hello.py
            is a flow the end-to-end test deploys (entrypoint ``/opt/prefect/flows/hello.py:hello``).
  prefect1  ``prefect[kubernetes]==1.4.1`` the way the 1.x Dockerfile made ``prefecthq/prefect:1.4.1-python3.9``,
            on Debian bullseye, whose Python is 3.9 (1.x's dependencies predate 3.11).
  prefect0  ``prefect[kubernetes]==0.14.22``, QHub's old default image ``prefecthq/prefect:0.14.22-python3.8``.
            Debian ships no 3.8: this image really has Python 3.9; its ``io.prefect.python-version`` label says so.

``build_images(cache_dir, log)`` returns one dict per image reference:

    {"reference": "docker.io/prefecthq/prefect:3-python3.11-kubernetes",   # the full reference
     "archive": Path(".../prefect3-<key>.tar"),                            # docker-archive tar
     "private": False}

- Public references are ``docker.io/...``; the references of one image share one archive whose manifest.json
  holds a single image with all of them in ``RepoTags``. ``ctr -n k8s.io images import ARCHIVE`` imports the
  image under all of those names; ``skopeo copy docker-archive:ARCHIVE:REFERENCE docker://HOST/PATH`` pushes one.
- The private copy (``"private": True``) has a reference WITHOUT a registry host,
  ``qhub-private/prefect:3-python3.11-kubernetes``: its repository path and tag are what matter, and the node
  picks the registry host (push with ``skopeo copy docker-archive:ARCHIVE docker://HOST/<reference>``).
  It has an archive of its own whose only RepoTag is that reference, so importing a public archive never
  makes the private name present on the node.

Cache: ``cache_dir/<name>-<key>.json`` records a finished image, ``<key>`` a hash of its recipe (Debian suite
and packages, pip requirements and constraints, files, config, BUILDER_REVISION); an image whose key is
recorded is not rebuilt, so a warm call only hashes recipes and checks files. Downloads are kept across
rebuilds: Debian packages in ``cache_dir/debs/<suite>``, wheels in ``cache_dir/wheels/<suite>`` (pip installs
from there offline first). The root filesystem stays in ``cache_dir/<name>-<key>.rootfs`` for tests that run
an image's programs under chroot.

    python tests/testbed/images.py build [--cache DIR]    # builds what is missing, prints what it has

Needs root, mmdebstrap (tests/testbed/install-image-tools.sh), chroot and GNU tar. Mounts nothing.
"""

import argparse
import dataclasses
import datetime
import fcntl
import glob
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("QHUB_PREFECT_CACHE") or Path.home() / ".cache" / "qhub-prefect")
DEFAULT_IMAGE_CACHE = CACHE / "images"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
# Bump when the build procedure (not a recipe) changes in a way that changes images.
BUILDER_REVISION = 3
UID = 1000
# Layer file times; a fixed value keeps a rebuilt layer's digest equal when nothing else changed.
SOURCE_DATE_EPOCH = 1700000000
# The uv Prefect's Dockerfile copies in; also what installs every image's packages here.
UV_REQUIREMENT = "uv==0.12.5"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# PrefectHQ/prefect scripts/entrypoint.sh (Apache-2.0), as the 3.x images run it.
PREFECT3_ENTRYPOINT = r'''#!/usr/bin/env bash
# This is the default entrypoint for the official Prefect Docker image

set -e

if [ -f ~/.bashrc ]; then
  . ~/.bashrc
fi

if [ ! -z "$EXTRA_PIP_PACKAGES" ]; then
  echo "+uv pip install $EXTRA_PIP_PACKAGES"
  uv pip install --system $EXTRA_PIP_PACKAGES > /tmp/pip_install.log 2>&1 || {
    uv_exit_code=$?
    cat /tmp/pip_install.log
    python -m prefect._internal.send_entrypoint_logs /tmp/pip_install.log
    exit $uv_exit_code
  }
fi

if [ -z "$*" ]; then
  echo "\
  ___ ___ ___ ___ ___ ___ _____
 | _ \ _ \ __| __| __/ __|_   _|
 |  _/   / _|| _|| _| (__  | |
 |_| |_|_\___|_| |___\___| |_|

"
  exec bash --login
else
  exec "$@"
fi
'''

# PrefectHQ/prefect entrypoint.sh at tags 0.14.22 and 1.4.1 (Apache-2.0), banner shortened.
PREFECT1_ENTRYPOINT = r'''#!/bin/bash
set -e
if [ ! -z "$EXTRA_PIP_PACKAGES" ]; then
  echo "+pip install $EXTRA_PIP_PACKAGES"
  pip install $EXTRA_PIP_PACKAGES
fi
if [ -z "$*" ]; then
  echo "This is the official docker image for Prefect Core, intended for executing Prefect Flows."
  exec bash --login
else
  exec "$@"
fi
'''

HELLO_FLOW = '''"""A flow for the end-to-end test: it proves a flow run happened in this image, and that an environment
variable (a secretEnvVars value) is readable in the flow-run pod, without ever logging the value itself."""

import hashlib
import os
import socket

from prefect import flow, get_run_logger


@flow(name="qhub-hello")
def hello(env_var: str = "QHUB_PREFECT_E2E_SECRET"):
    logger = get_run_logger()
    value = os.environ.get(env_var)
    if value is None:
        logger.info("hello from %s as uid %d: %s is not set", socket.gethostname(), os.getuid(), env_var)
        return None
    digest = hashlib.sha256(value.encode("utf-8")).hexdigest()
    logger.info("hello from %s as uid %d: %s has length %d and sha256 %s",
                socket.gethostname(), os.getuid(), env_var, len(value), digest)
    return digest
'''

# Prefect 1.x pins its dependencies from below only; these caps keep them at what was current for 1.4.1
# (December 2022), before releases that broke it (marshmallow 4, pendulum 3, packaging 22's LegacyVersion
# removal, urllib3 2 with kubernetes clients of that time, python-box 7).
PREFECT1_CONSTRAINTS = (
    "marshmallow<3.20", "marshmallow-oneofschema<3.1", "pendulum<3", "dask<2023.1", "distributed<2023.1",
    "click<8.2", "urllib3<2", "python-box<7", "docker<7", "kubernetes<26", "croniter<2", "cloudpickle<3",
    "msgpack<1.1", "packaging<22", "requests<2.32", "pyyaml<7", "tornado<6.3", "setuptools<70",
)
PREFECT0_CONSTRAINTS = PREFECT1_CONSTRAINTS + ("kubernetes<=13.0", "dask<2021.07", "distributed<2021.07")


class ImageBuildError(RuntimeError):
    pass


@dataclasses.dataclass(frozen=True)
class Recipe:
    name: str
    suite: str
    python: str                 # the Python the suite really has (major.minor)
    debs: tuple
    requirements: tuple
    constraints: tuple
    files: tuple                # (path, mode, text)
    config: dict
    references: tuple           # public, full references
    private_references: tuple = ()
    smoke: tuple = ()           # a command that must succeed in the finished root filesystem as UID 1000

    def key(self):
        text = json.dumps([BUILDER_REVISION, dataclasses.asdict(self)], sort_keys=True)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@dataclasses.dataclass
class Image:
    recipe: Recipe
    key: str
    archive: Path
    private_archive: Path
    rootfs: Path
    built: bool                 # built by this call (False: found in the cache)
    seconds: float

    def entries(self):
        out = [{"reference": ref, "archive": self.archive, "private": False} for ref in self.recipe.references]
        out += [{"reference": ref, "archive": self.private_archive, "private": True}
                for ref in self.recipe.private_references]
        return out


# -- recipes -----------------------------------------------------------------------------------------------------
def server_venv():
    return Path(os.environ.get("QHUB_PREFECT_SERVER_VENV") or CACHE / "prefect-venv")


def installed_version(venv, distribution):
    """The version of a distribution installed in a venv, read from its dist-info (no interpreter start)."""
    pattern = str(venv / "lib" / "python3*" / "site-packages" / "*.dist-info")
    wanted = re.sub(r"[-_.]+", "_", distribution).lower()
    for path in glob.glob(pattern):
        stem = Path(path).name[:-len(".dist-info")]
        name, version = stem.rsplit("-", 1) if "-" in stem else (stem, "")
        if re.sub(r"[-_.]+", "_", name).lower() == wanted:
            return version
    return None


def recipes(venv=None):
    venv = venv or server_venv()
    prefect3 = installed_version(venv, "prefect")
    if not prefect3:
        raise ImageBuildError("no prefect installed in the test bed's server venv %s: the worker image must hold "
                              "the same version (run tests/testbed/install-venvs.sh first)" % venv)
    kubernetes3 = installed_version(venv, "prefect-kubernetes")
    # python-is-python3: the python:slim images Prefect builds on have `python`, and its entrypoint calls it.
    base_debs = ("python3", "python-is-python3", "python3-pip", "tini", "ca-certificates")
    labels3 = {"maintainer": "qhub-prefect test bed", "io.prefect.python-version": "3.11",
               "org.label-schema.name": "prefect", "org.label-schema.version": prefect3,
               "org.label-schema.schema-version": "1.0",
               "io.qhub-prefect.recipe": "tests/testbed/images.py prefect3 (Debian bookworm)"}
    tags3 = ["3-python3.11-kubernetes", "%s-python3.11-kubernetes" % prefect3, "3-python3.11", "3-latest",
             "%s-python3.11" % prefect3]
    prefect3_recipe = Recipe(
        name="prefect3", suite="bookworm", python="3.11", debs=base_debs,
        requirements=("prefect==%s" % prefect3,
                      "prefect-kubernetes==%s" % kubernetes3 if kubernetes3 else "prefect-kubernetes",
                      UV_REQUIREMENT),
        constraints=(),
        files=(("/opt/prefect/entrypoint.sh", 0o755, PREFECT3_ENTRYPOINT),
               ("/opt/prefect/flows/hello.py", 0o644, HELLO_FLOW)),
        config={"Env": [PATH_ENV, "LC_ALL=C.UTF-8", "LANG=C.UTF-8", "UV_LINK_MODE=copy", "UV_SYSTEM_PYTHON=1"],
                "Entrypoint": ["/usr/bin/tini", "-g", "--", "/opt/prefect/entrypoint.sh"],
                "WorkingDir": "/opt/prefect", "Labels": labels3},
        references=tuple("docker.io/prefecthq/prefect:" + tag for tag in tags3),
        private_references=("qhub-private/prefect:3-python3.11-kubernetes",),
        smoke=("prefect", "version"),
    )

    def prefect1(name, version, tags, constraints):
        labels = {"maintainer": "qhub-prefect test bed", "io.prefect.python-version": "3.9",
                  "org.label-schema.name": "prefect", "org.label-schema.version": version,
                  "org.label-schema.schema-version": "1.0",
                  "io.qhub-prefect.recipe": "tests/testbed/images.py %s (Debian bullseye, Python 3.9)" % name}
        return Recipe(
            name=name, suite="bullseye", python="3.9", debs=base_debs,
            requirements=("prefect[kubernetes]==%s" % version,), constraints=constraints,
            files=(("/usr/local/bin/entrypoint.sh", 0o755, PREFECT1_ENTRYPOINT),),
            config={"Env": [PATH_ENV, "LC_ALL=C.UTF-8", "LANG=C.UTF-8"],
                    "Entrypoint": ["tini", "-g", "--", "entrypoint.sh"], "Labels": labels},
            references=tuple("docker.io/prefecthq/prefect:" + tag for tag in tags),
            smoke=("prefect", "version"),
        )

    return [
        prefect3_recipe,
        prefect1("prefect1", "1.4.1", ("1.4.1-python3.9", "1.4.1", "latest-python3.9"), PREFECT1_CONSTRAINTS),
        prefect1("prefect0", "0.14.22", ("0.14.22-python3.8", "0.14.22-python3.9", "0.14.22"),
                 PREFECT0_CONSTRAINTS),
    ]


# -- building ----------------------------------------------------------------------------------------------------
class Log:
    def __init__(self, path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def say(self, text):
        with open(self.path, "a") as handle:
            handle.write("[images %s] %s\n" % (datetime.datetime.now().strftime("%H:%M:%S"), text))

    def run(self, argv, **kwargs):
        self.say("$ " + " ".join(str(a) for a in argv))
        with open(self.path, "a") as handle:
            result = subprocess.run([str(a) for a in argv], stdout=handle, stderr=subprocess.STDOUT, check=False,
                                    stdin=subprocess.DEVNULL, **kwargs)
        return result.returncode


def _tail(path, lines=30):
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _must(log, argv, what, **kwargs):
    if log.run(argv, **kwargs) != 0:
        raise ImageBuildError("%s failed (log %s):\n%s" % (what, log.path, _tail(log.path)))


def _pip_env(root):
    """Environment for pip inside the chroot: the host's CA bundle and HTTP(S) index settings, nothing else."""
    env = {"HOME": "/root", "LC_ALL": "C.UTF-8", "PIP_DISABLE_PIP_VERSION_CHECK": "1",
           "PIP_ROOT_USER_ACTION": "ignore", "PIP_DEFAULT_TIMEOUT": "180", "PATH": PATH_ENV.split("=", 1)[1]}
    ca = os.environ.get("PIP_CERT") or os.environ.get("SSL_CERT_FILE") or "/etc/ssl/certs/ca-certificates.crt"
    if os.path.isfile(ca):
        shutil.copyfile(ca, root / "tmp" / "build" / "ca.crt")
        env["PIP_CERT"] = "/tmp/build/ca.crt"
    env.update(_host_pip_indexes())
    return env


def host_pip_config():
    """[(option, value)] of the host's `pip config list` (``global.index-url`` gives ``index-url``)."""
    try:
        listing = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True,
                                 check=False, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        listing = ""
    out = []
    for line in listing.splitlines():
        key, value = line.split("=", 1) if "=" in line else (line, "")
        out.append((key.split(".", 1)[-1], value.strip().strip("'\"")))
    return out


def _host_pip_indexes():
    """The host's index settings that also work from a chroot (HTTP(S) URLs; file:// paths do not exist there)."""
    settings = dict((option, value) for option, value in host_pip_config()
                    if option in ("index-url", "extra-index-url"))
    for option in ("index-url", "extra-index-url"):
        env_value = os.environ.get("PIP_" + option.replace("-", "_").upper())
        if env_value:
            settings[option] = env_value
    out = {}
    for option, value in settings.items():
        urls = [url for url in value.split() if url.startswith(("http://", "https://"))]
        if urls:
            out["PIP_" + option.replace("-", "_").upper()] = " ".join(urls)
    return out


def _base_rootfs(recipe, cache_dir, log):
    """The Debian root filesystem of a suite and package list, cached; a fresh copy is made from it per image."""
    base_key = hashlib.sha256(json.dumps([BUILDER_REVISION, recipe.suite, recipe.debs]).encode()).hexdigest()[:12]
    base = cache_dir / "base" / ("%s-%s" % (recipe.suite, base_key))
    if (base / "etc" / "os-release").exists():
        return base
    debs = cache_dir / "debs" / recipe.suite
    debs.mkdir(parents=True, exist_ok=True)
    (cache_dir / "base").mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="base-%s-" % recipe.suite, dir=cache_dir / "base"))
    try:
        started = time.monotonic()
        _must(log, ["mmdebstrap", "--mode=root", "--variant=minbase", "--format=directory",
                    "--aptopt=Acquire::Check-Valid-Until \"false\"", "--aptopt=Acquire::Retries \"3\"",
                    # The root filesystem is thrown away if the build fails: no need for dpkg's fsyncs.
                    "--dpkgopt=force-unsafe-io",
                    "--include=" + ",".join(recipe.debs), "--skip=download/empty",
                    # Debian packages are kept across builds: copied in before apt runs, copied back after.
                    "--setup-hook=mkdir -p \"$1\"/var/cache/apt/archives/",
                    "--setup-hook=sync-in %s /var/cache/apt/archives/" % debs,
                    "--customize-hook=sync-out /var/cache/apt/archives %s" % debs,
                    "--customize-hook=rm -f \"$1\"/var/cache/apt/archives/*.deb",
                    recipe.suite, work / "rootfs", DEBIAN_MIRROR], "mmdebstrap %s" % recipe.suite)
        for leftover in ("partial", "lock"):
            path = debs / leftover
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
        os.rename(work / "rootfs", base)
        log.say("base %s in %.0f s" % (base.name, time.monotonic() - started))
        for other in (cache_dir / "base").glob(recipe.suite + "-*"):
            if other != base:
                remove_tree(other)
    finally:
        remove_tree(work)
    return base


def _chroot(root, argv, env, userspec=None):
    command = ["chroot"]
    if userspec:
        command.append("--userspec=" + userspec)
    return command + [str(root), "/usr/bin/env", "-i"] + ["%s=%s" % item for item in sorted(env.items())] + argv


def _install_python_packages(recipe, root, cache_dir, log):
    """pip downloads (only what the wheelhouse lacks), uv installs from the wheelhouse offline.

    uv is what Prefect's Dockerfile installs with, and it installs and byte-compiles in parallel: about half
    pip's time here. The Prefect 1 recipes get the same packages; uv is removed from them afterwards."""
    wheels = cache_dir / "wheels" / recipe.suite
    wheels.mkdir(parents=True, exist_ok=True)
    build = root / "tmp" / "build"
    (build / "wheels").mkdir(parents=True)
    shutil.copytree(wheels, build / "wheels", dirs_exist_ok=True)
    (build / "requirements.txt").write_text("\n".join(recipe.requirements) + "\n")
    (build / "constraints.txt").write_text("\n".join(recipe.constraints) + "\n")
    (build / "uv.txt").write_text(UV_REQUIREMENT + "\n")
    for marker in root.glob("usr/lib/python3*/EXTERNALLY-MANAGED"):
        # A container is the whole environment: packages go system-wide, as in the python:slim images Prefect
        # builds on (and as the entrypoint's EXTRA_PIP_PACKAGES install does).
        marker.unlink()
    # pip resolves the index's host inside the chroot with the build host's resolver (the image ends up with
    # an empty resolv.conf: the runtime provides the pod's).
    if os.path.isfile("/etc/resolv.conf"):
        shutil.copyfile("/etc/resolv.conf", root / "etc" / "resolv.conf")
    env = _pip_env(root)
    pip = ["python3", "-m", "pip"]
    find = ["--find-links", "/tmp/build/wheels"]
    reqs = ["-r", "/tmp/build/requirements.txt", "-c", "/tmp/build/constraints.txt"]
    uv_install = ["uv", "pip", "install", "--system", "--offline", "--no-index", "--compile-bytecode"] + find + reqs

    def download(requirements):
        log.say("the wheelhouse lacks something: downloading into it")
        _must(log, _chroot(root, pip + ["wheel", "--wheel-dir", "/tmp/build/wheels"] + find + requirements, env),
              "pip wheel for %s" % recipe.name)
        for wheel in (build / "wheels").iterdir():
            if not (wheels / wheel.name).exists():
                shutil.copyfile(wheel, wheels / wheel.name)

    uv = pip + ["install", "--no-index"] + find + ["-r", "/tmp/build/uv.txt"]
    if log.run(_chroot(root, uv, env)) != 0:
        download(["-r", "/tmp/build/uv.txt"])
        _must(log, _chroot(root, uv, env), "installing uv for %s" % recipe.name)
    uv_env = dict(env, UV_LINK_MODE="copy", UV_NO_CACHE="1")
    if log.run(_chroot(root, uv_install, uv_env)) != 0:
        download(reqs)
        _must(log, _chroot(root, uv_install, uv_env), "uv pip install for %s" % recipe.name)
    if UV_REQUIREMENT not in recipe.requirements:
        _must(log, _chroot(root, pip + ["uninstall", "--yes", "uv"], env), "removing uv from %s" % recipe.name)
    _must(log, _chroot(root, pip + ["check"], env), "pip check for %s" % recipe.name)
    shutil.rmtree(build)


def _finish_rootfs(recipe, root):
    for path, mode, text in recipe.files:
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        target.chmod(mode)
    # The collection's pods run as 1000:1000; a passwd entry gives the process a name and HOME.
    with open(root / "etc" / "passwd", "a") as handle:
        handle.write("prefect:x:%d:%d:prefect:/home/prefect:/bin/bash\n" % (UID, UID))
    with open(root / "etc" / "group", "a") as handle:
        handle.write("prefect:x:%d:\n" % UID)
    home = root / "home" / "prefect"
    home.mkdir(parents=True, exist_ok=True)
    os.chown(home, UID, UID)
    # The runtime mounts these; the image carries empty files, not the build host's.
    for name in ("resolv.conf", "hostname"):
        (root / "etc" / name).write_text("")
        (root / "etc" / name).chmod(0o644)
    for junk in ("root/.cache", "var/cache/apt/archives/partial", "var/lib/apt/lists"):
        shutil.rmtree(root / junk, ignore_errors=True)
    for child in (root / "tmp").iterdir():
        shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()


def _smoke(recipe, root, log):
    """The image's own program runs as the pods run it: UID 1000, HOME on a writable directory."""
    if not recipe.smoke:
        return
    env = {"HOME": "/tmp/smoke-home", "PATH": PATH_ENV.split("=", 1)[1], "LC_ALL": "C.UTF-8"}
    home = root / "tmp" / "smoke-home"
    home.mkdir(parents=True)
    os.chown(home, UID, UID)
    try:
        _must(log, _chroot(root, list(recipe.smoke), env, userspec="%d:%d" % (UID, UID)),
              "smoke test %s of %s" % (" ".join(recipe.smoke), recipe.name))
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _layer_tar(root, out, log):
    _must(log, ["tar", "--create", "--file", out, "--directory", root, "--numeric-owner", "--sort=name",
                "--mtime=@%d" % SOURCE_DATE_EPOCH, "--xattrs", "--xattrs-include=security.capability",
                # The runtime provides these; device nodes made by mmdebstrap stay out of the image.
                "--exclude=./dev/*", "--exclude=./proc/*", "--exclude=./sys/*", "--exclude=./run/*", "."],
          "packing the layer")


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_archive(out, layer, layer_digest, config, repo_tags):
    """A docker-archive (the `docker save` layout) with one image of one layer."""
    config_bytes = json.dumps(config, sort_keys=True).encode("utf-8")
    config_digest = hashlib.sha256(config_bytes).hexdigest()
    manifest = [{"Config": config_digest + ".json", "RepoTags": list(repo_tags),
                 "Layers": [layer_digest + "/layer.tar"]}]
    tmp = out.with_name(out.name + ".tmp")

    def add_bytes(tar, name, data):
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode = len(data), SOURCE_DATE_EPOCH, 0o644
        tar.addfile(info, fileobj=io.BytesIO(data))

    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        directory = tarfile.TarInfo(layer_digest)
        directory.type, directory.mode, directory.mtime = tarfile.DIRTYPE, 0o755, SOURCE_DATE_EPOCH
        tar.addfile(directory)
        with open(layer, "rb") as handle:
            info = tarfile.TarInfo(layer_digest + "/layer.tar")
            info.size, info.mtime, info.mode = os.path.getsize(layer), SOURCE_DATE_EPOCH, 0o644
            tar.addfile(info, fileobj=handle)
        add_bytes(tar, config_digest + ".json", config_bytes)
        add_bytes(tar, "manifest.json", json.dumps(manifest).encode("utf-8"))
        add_bytes(tar, "repositories", json.dumps(_repositories(repo_tags, layer_digest)).encode("utf-8"))
    os.replace(tmp, out)


def _repositories(repo_tags, layer_digest):
    out = {}
    for ref in repo_tags:
        repo, tag = ref.rsplit(":", 1)
        out.setdefault(repo, {})[tag] = layer_digest
    return out


def _image_config(recipe, layer_digest):
    return {
        "architecture": "amd64", "os": "linux",
        "created": datetime.datetime.fromtimestamp(SOURCE_DATE_EPOCH, datetime.timezone.utc).strftime(
            "%Y-%m-%dT%H:%M:%SZ"),
        "config": dict(recipe.config),
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + layer_digest]},
        "history": [{"created_by": "tests/testbed/images.py %s (recipe %s)" % (recipe.name, recipe.key())}],
    }


def _paths(recipe, cache_dir):
    stem = cache_dir / ("%s-%s" % (recipe.name, recipe.key()))
    return {"stamp": stem.with_suffix(".json"), "archive": Path(str(stem) + ".tar"),
            "private": Path(str(stem) + "-private.tar"), "rootfs": Path(str(stem) + ".rootfs")}


def build_image(recipe, cache_dir, log):
    paths = _paths(recipe, cache_dir)
    started = time.monotonic()
    if _cached(recipe, cache_dir):
        return Image(recipe, recipe.key(), paths["archive"], paths["private"], paths["rootfs"], False,
                     time.monotonic() - started)
    log.say("building %s (recipe %s)" % (recipe.name, recipe.key()))
    base = _base_rootfs(recipe, cache_dir, log)
    work = Path(tempfile.mkdtemp(prefix="build-%s-" % recipe.name, dir=cache_dir))
    try:
        root = work / "rootfs"
        _must(log, ["cp", "-a", "--reflink=auto", base, root], "copying the base root filesystem")
        _install_python_packages(recipe, root, cache_dir, log)
        _finish_rootfs(recipe, root)
        _smoke(recipe, root, log)
        layer = work / "layer.tar"
        _layer_tar(root, layer, log)
        layer_digest = _sha256(layer)
        config = _image_config(recipe, layer_digest)
        _write_archive(paths["archive"], layer, layer_digest, config, recipe.references)
        if recipe.private_references:
            _write_archive(paths["private"], layer, layer_digest, config, recipe.private_references)
        if paths["rootfs"].exists():
            remove_tree(paths["rootfs"])
        os.rename(root, paths["rootfs"])
        seconds = time.monotonic() - started
        paths["stamp"].write_text(json.dumps({"recipe": dataclasses.asdict(recipe), "key": recipe.key(),
                                              "layer": "sha256:" + layer_digest, "seconds": round(seconds, 1),
                                              "built": time.strftime("%Y-%m-%dT%H:%M:%S")}, indent=1) + "\n")
        log.say("built %s in %.0f s" % (recipe.name, seconds))
    finally:
        remove_tree(work)
    _prune(recipe, cache_dir)
    return Image(recipe, recipe.key(), paths["archive"], paths["private"], paths["rootfs"], True, seconds)


def _prune(recipe, cache_dir):
    """Older builds of the same image (other recipe keys) are removed: one build per image is kept."""
    keep = _paths(recipe, cache_dir)
    for path in cache_dir.glob(recipe.name + "-*"):
        if path in keep.values() or not re.match(re.escape(recipe.name) + r"-[0-9a-f]{16}(\.|-private\.)", path.name):
            continue
        remove_tree(path) if path.is_dir() else path.unlink()


def pod_like_command(rootfs, argv, env, writable=("/tmp", "/home/prefect")):
    """An argv that runs ``argv`` from an image's root filesystem the way the collection's pods run it.

    UID and GID 1000, the root filesystem read-only, empty tmpfs at ``writable`` (the pods' emptyDirs), only
    ``env`` in the environment, the program as PID 1 of its own PID namespace (as tini is in a container).
    The mounts live in a mount namespace of the command's own, so they vanish with it whatever happens."""
    mounts = ['mount --bind "$r" "$r"', 'mount -o remount,bind,ro "$r"', 'mount -t proc proc "$r/proc"']
    for path in writable:
        owner = "" if path == "/tmp" else ",uid=%d,gid=%d" % (UID, UID)
        mode = "1777" if path == "/tmp" else "0755"
        mounts.append('mount -t tmpfs -o mode=%s%s tmpfs "$r%s"' % (mode, owner, path))
    assignments = " ".join("'%s=%s'" % (key, str(value).replace("'", "'\\''")) for key, value in sorted(env.items()))
    script = 'set -e; r="$1"; shift; %s; exec chroot --userspec=%d:%d "$r" /usr/bin/env -i %s "$@"' % (
        "; ".join(mounts), UID, UID, assignments)
    return ["unshare", "--mount", "--propagation", "private", "--pid", "--fork", "--kill-child",
            "sh", "-c", script, "sh", str(rootfs)] + [str(a) for a in argv]


def _mounts_below(path):
    prefix = os.path.realpath(path).rstrip("/") + "/"
    found = []
    with open("/proc/self/mountinfo") as handle:
        for line in handle:
            point = line.split()[4].encode().decode("unicode_escape")
            if (point + "/").startswith(prefix):
                found.append(point)
    return found


def remove_tree(path):
    """rm -r that first unmounts whatever an interrupted build left mounted below ``path`` (mmdebstrap mounts
    /proc, /sys and /dev pieces in the chroot while it runs); it never deletes through a mount."""
    for point in sorted(_mounts_below(path), key=len, reverse=True):
        subprocess.run(["umount", "--lazy", point], check=False)
    if _mounts_below(path):
        raise ImageBuildError("%s still has mounts below it; not removing it" % path)
    shutil.rmtree(path, ignore_errors=True)


def _cached(recipe, cache_dir):
    paths = _paths(recipe, cache_dir)
    return paths["stamp"].exists() and paths["archive"].exists() and paths["rootfs"].is_dir() and (
        not recipe.private_references or paths["private"].exists())


def build_all(cache_dir, log, names=None):
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    logger = Log(log)
    wanted = [recipe for recipe in recipes() if names is None or recipe.name in names]
    if all(_cached(recipe, cache_dir) for recipe in wanted):
        return [build_image(recipe, cache_dir, logger) for recipe in wanted]
    # One builder per cache at a time; a second caller waits, then finds the images built.
    with open(cache_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        # Holding the lock, any build directory left is from an interrupted build.
        for stale in list(cache_dir.glob("build-*")) + list((cache_dir / "base").glob("base-*")):
            logger.say("removing %s, left by an interrupted build" % stale)
            remove_tree(stale)
        return [build_image(recipe, cache_dir, logger) for recipe in wanted]


def build_images(cache_dir: Path, log: Path) -> list:
    """Builds what is missing or out of date; one dict per image reference (see the module's docstring)."""
    return [entry for image in build_all(cache_dir, log) for entry in image.entries()]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="build the images that are missing or out of date")
    build.add_argument("--cache", type=Path, default=DEFAULT_IMAGE_CACHE)
    build.add_argument("--log", type=Path)
    build.add_argument("--only", action="append", help="build only this image (prefect3, prefect1, prefect0)")
    args = parser.parse_args(argv)
    log = args.log or args.cache / "build.log"
    started = time.monotonic()
    try:
        images = build_all(args.cache, log, names=args.only)
    except ImageBuildError as exc:
        print("images: %s" % exc, file=sys.stderr)
        return 1
    for image in images:
        state = "built " if image.built else "cached"
        print("%-9s %s %6.1f s  %s" % (image.recipe.name, state, image.seconds, image.archive))
        for entry in image.entries():
            print("    %s%s" % (entry["reference"], "  (private: %s)" % entry["archive"].name
                                if entry["private"] else ""))
    print("total %.1f s (log %s)" % (time.monotonic() - started, log))
    return 0


if __name__ == "__main__":
    sys.exit(main())
