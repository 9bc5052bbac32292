"""The execution environment (EE) AWX runs the collection in, built here with ansible-builder and podman.

No registry is reachable, so the EE's base image is made here too:

  base  ``localhost/qhub-prefect-ee-base:<key>`` (also tagged ``:bookworm``, the name
        meta/ee/execution-environment.yml gives): the Debian bookworm root filesystem tests/testbed/images.py
        bootstraps for the Prefect 3 worker image (python3, pip, tini, ca-certificates; the same cached
        directory, so no second debootstrap), imported with ``podman import``, plus /usr/local/sbin/apt-as-dnf,
        which turns the package manager calls ansible-builder's scripts make (dnf's ``install -y PKG...`` and
        ``clean all``) into apt-get's.
  EE    ``localhost/qhub-prefect-ee:<key>``: ``ansible-builder build`` of meta/ee/execution-environment.yml with
        the collection tarball of ``ansible-galaxy collection build`` beside it, unchanged but for the base
        (``--build-arg EE_BASE_IMAGE``).

pip inside the build reaches the index as the host's pip does: the host's HTTP(S) ``index-url`` and
``extra-index-url`` and its CA bundle (``pip config list``, PIP_CERT) go into a pip.conf that is mounted into
every RUN step of the build (``podman build -v``, an empty /etc/xdg/pip is all the image keeps of it); file://
indexes of the host do not exist in a container and are left out.

Podman on these machines needs ``--network host`` and rlimits below the current ones (see PODMAN_OPTIONS) for
every ``build`` and ``run``.

Cache: the key hashes the definition, the collection's runtime files (plugins/, roles/, playbooks/, meta/,
requirements.txt, bindep.txt, galaxy.yml, as ``ansible-galaxy collection build`` packs them: tests and docs do
not change the EE), the base and ansible-builder's version; an image tagged with the key is not rebuilt.
Podman's own storage (/var/lib/containers) holds the images and the layer cache, which keeps the base stage
(ansible-core and ansible-runner from pip) across rebuilds of a changed collection. ``~/.cache/qhub-prefect/ee``
holds the build log and a record per build (seconds, image size). Older builds' tags are removed after a build.

    python tests/testbed/ee.py build       # builds what is missing, prints the reference, seconds and size
"""

import argparse
import contextlib
import dataclasses
import fcntl
import hashlib
import io
import json
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))
import images  # noqa: E402  (tests/testbed/images.py: the cache root, the Debian root filesystem, pip settings)

EE_CACHE = images.CACHE / "ee"
DEFINITION = REPO / "meta" / "ee" / "execution-environment.yml"
BASE_REPOSITORY = "localhost/qhub-prefect-ee-base"
EE_REPOSITORY = "localhost/qhub-prefect-ee"
# Bump when the way the base or the EE is made changes.
EE_REVISION = 1
# podman build and run here: the sandbox refuses raising NOFILE and NPROC (even to the current values), so
# they are set below them; host networking reaches the package index, the test bed's API server and Prefect
# server, and keeps traffic on this machine (see /work/shared/reference/podman.md).
PODMAN_OPTIONS = ("--network=host", "--ulimit=nofile=4096:4096", "--ulimit=nproc=4096:4096")
# The collection's files that end up doing something in the EE; the rest (tests, docs) does not key it.
RUNTIME_PREFIXES = ("plugins/", "roles/", "playbooks/", "meta/", "requirements.txt", "bindep.txt", "galaxy.yml")
PIP_MOUNT = "/etc/xdg/pip"

APT_AS_DNF = r'''#!/bin/sh
# ansible-builder's scripts (assemble, install-from-bindep) call the package manager with dnf's arguments:
# "install -y [options] PACKAGE..." for what bindep finds missing, and "clean all". This does the same with
# apt-get on a Debian base image.
set -eu
command=${1:-}
[ $# -gt 0 ] && shift
case "$command" in
  install)
    packages=""
    for arg in "$@"; do
      case "$arg" in -*) ;; *) packages="$packages $arg" ;; esac
    done
    [ -n "$packages" ] || exit 0
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $packages
    ;;
  clean)
    apt-get clean
    rm -rf /var/lib/apt/lists/*
    ;;
  *)
    echo "apt-as-dnf: not supported: $command $*" >&2
    exit 2
    ;;
esac
'''


class EEBuildError(RuntimeError):
    pass


@dataclasses.dataclass
class EE:
    reference: str          # localhost/qhub-prefect-ee:<key>
    key: str
    built: bool             # built by this call (False: found in podman's storage)
    seconds: float          # this call's time (the build's, when built)
    size: int               # bytes, as `podman image inspect` gives it (uncompressed layers)
    tarball: Path           # the collection tarball the key was computed from (kept in the cache)


def podman(*args, log=None, check=True, capture=True, timeout=None):
    argv = ["podman", *[str(a) for a in args]]
    if log is not None:
        log.say("$ " + " ".join(shlex.quote(a) for a in argv))
    done = subprocess.run(argv, capture_output=capture, text=True, check=False, stdin=subprocess.DEVNULL,
                          timeout=timeout)
    if check and done.returncode != 0:
        raise EEBuildError("%s failed (%d): %s" % (" ".join(argv[:3]), done.returncode,
                                                   (done.stderr or "")[-3000:]))
    return done


def image_exists(reference):
    return podman("image", "exists", reference, check=False).returncode == 0


def image_size(reference):
    return int(podman("image", "inspect", "--format", "{{.Size}}", reference).stdout.strip())


@contextlib.contextmanager
def _locked(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


# -- the collection tarball ---------------------------------------------------------------------------------------
def collection_tarball(out_dir, log):
    """``ansible-galaxy collection build`` of the working tree into out_dir; the tarball's path."""
    galaxy = Path(sys.executable).parent / "ansible-galaxy"
    argv = [str(galaxy if galaxy.exists() else "ansible-galaxy"), "collection", "build", "--force",
            "--output-path", str(out_dir), str(REPO)]
    if log.run(argv) != 0:
        raise EEBuildError("ansible-galaxy collection build failed (log %s):\n%s" % (log.path, images._tail(log.path)))
    found = sorted(Path(out_dir).glob("qhub-prefect-*.tar.gz"))
    if len(found) != 1:
        raise EEBuildError("expected one qhub-prefect-*.tar.gz in %s, found %s" % (out_dir, found))
    return found[0]


def runtime_digest(tarball):
    """A hash of the files of the tarball that matter in an EE, from its FILES.json checksums."""
    with tarfile.open(tarball) as tar:
        files = json.load(tar.extractfile("FILES.json"))["files"]
    entries = sorted((f["name"], f.get("chksum_sha256") or "") for f in files
                     if f["ftype"] == "file" and f["name"].startswith(RUNTIME_PREFIXES))
    return hashlib.sha256(json.dumps(entries).encode()).hexdigest()


# -- pip settings for the build -----------------------------------------------------------------------------------
def host_pip_ca():
    """The CA bundle the host's pip verifies the index with (PIP_CERT, pip's `cert` setting, the system's)."""
    candidates = [os.environ.get("PIP_CERT")]
    candidates += [value for option, value in images.host_pip_config() if option == "cert"]
    candidates += [os.environ.get("SSL_CERT_FILE"), "/etc/ssl/certs/ca-certificates.crt"]
    return next((Path(c) for c in candidates if c and os.path.isfile(c)), None)


def pip_settings_dir(work):
    """A directory holding pip.conf (the host's HTTP(S) indexes, its CA bundle) for PIP_MOUNT in the build."""
    directory = Path(work) / "pip"
    directory.mkdir(parents=True, exist_ok=True)
    lines = ["[global]", "timeout = 180", "retries = 5", "disable-pip-version-check = true"]
    ca = host_pip_ca()
    if ca:
        shutil.copyfile(ca, directory / "ca.crt")
        lines.append("cert = %s/ca.crt" % PIP_MOUNT)
    for env_name, value in sorted(images._host_pip_indexes().items()):
        lines.append("%s = %s" % (env_name[len("PIP_"):].lower().replace("_", "-"), value))
    (directory / "pip.conf").write_text("\n".join(lines) + "\n")
    return directory


# -- the base image -----------------------------------------------------------------------------------------------
def _bookworm_recipe():
    for recipe in images.recipes():
        if recipe.suite == "bookworm":
            return recipe
    raise EEBuildError("tests/testbed/images.py has no bookworm recipe to take the root filesystem from")


def base_image(log):
    """The base image's reference (built from the cached Debian root filesystem when missing)."""
    recipe = _bookworm_recipe()
    image_cache = images.DEFAULT_IMAGE_CACHE
    with _locked(image_cache / ".lock"):  # the images builder's lock: the root filesystem is shared
        rootfs = images._base_rootfs(recipe, image_cache, log)
    key = hashlib.sha256(json.dumps([EE_REVISION, rootfs.name, APT_AS_DNF]).encode()).hexdigest()[:12]
    reference = "%s:%s" % (BASE_REPOSITORY, key)
    if not image_exists(reference):
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="ee-base-", dir=EE_CACHE) as work:
            layer = Path(work) / "rootfs.tar"
            images._must(log, ["tar", "--create", "--file", layer, "--directory", rootfs, "--numeric-owner",
                               "--exclude=./dev/*", "--exclude=./proc/*", "--exclude=./sys/*", "--exclude=./run/*",
                               "--exclude=./tmp/*", "--exclude=./etc/resolv.conf", "--exclude=./etc/hostname",
                               "--exclude=./var/lib/apt/lists/*", "--exclude=./var/cache/apt/*", "."],
                         "packing the base root filesystem")
            with tarfile.open(layer, "a") as tar:
                for name, mode, text in (("etc/resolv.conf", 0o644, ""), ("etc/hostname", 0o644, ""),
                                         ("usr/local/sbin/apt-as-dnf", 0o755, APT_AS_DNF)):
                    data = text.encode()
                    info = tarfile.TarInfo("./" + name)
                    info.size, info.mode, info.mtime = len(data), mode, images.SOURCE_DATE_EPOCH
                    tar.addfile(info, io.BytesIO(data))
            podman("import", "--change", "ENV " + images.PATH_ENV, "--change", "ENV LANG=C.UTF-8",
                   "--change", "ENV LC_ALL=C.UTF-8", "--change", 'CMD ["/bin/bash"]',
                   "--change", "LABEL io.qhub-prefect.recipe=tests/testbed/ee.py base (%s)" % rootfs.name,
                   layer, reference, log=log)
        log.say("base image %s in %.0f s" % (reference, time.monotonic() - started))
    podman("tag", reference, BASE_REPOSITORY + ":bookworm", log=log)
    return reference


# -- the EE -------------------------------------------------------------------------------------------------------
def _builder_version():
    from importlib.metadata import version
    return version("ansible-builder")


def build_ee(log_path=None):
    """The EE built from meta/ee/execution-environment.yml and the working tree's collection (cached)."""
    bin_dir = Path(sys.executable).parent
    missing = [tool for tool in ("podman", "ansible-builder", "ansible-runner")
               if not (shutil.which(tool) or (bin_dir / tool).exists())]
    if missing:
        raise EEBuildError("%s not installed: run tests/testbed/install-ee-tools.sh (scripts/setup.sh does)"
                           % ", ".join(missing))
    EE_CACHE.mkdir(parents=True, exist_ok=True)
    log = images.Log(log_path or EE_CACHE / "build.log")
    started = time.monotonic()
    tarballs = EE_CACHE / "tarball"
    with _locked(EE_CACHE / ".lock"):
        shutil.rmtree(tarballs, ignore_errors=True)
        tarball = collection_tarball(tarballs, log)
        base = base_image(log)
        definition = DEFINITION.read_text()
        if "collections/%s" % tarball.name not in definition:
            raise EEBuildError("%s installs no collections/%s, the tarball galaxy.yml's version makes: update its "
                               "galaxy requirement" % (DEFINITION.relative_to(REPO), tarball.name))
        key = hashlib.sha256(json.dumps([EE_REVISION, definition, runtime_digest(tarball), base,
                                         _builder_version()]).encode()).hexdigest()[:16]
        reference = "%s:%s" % (EE_REPOSITORY, key)
        if image_exists(reference):
            return EE(reference, key, False, time.monotonic() - started, image_size(reference), tarball)
        with tempfile.TemporaryDirectory(prefix="ee-build-", dir=EE_CACHE) as work:
            work = Path(work)
            shutil.copyfile(DEFINITION, work / DEFINITION.name)
            shutil.copyfile(DEFINITION.parent / "requirements.txt", work / "requirements.txt")  # the link's target
            shutil.copyfile(tarball, work / tarball.name)
            pip_dir = pip_settings_dir(work)
            extra = list(PODMAN_OPTIONS) + ["--volume=%s:%s:ro" % (pip_dir, PIP_MOUNT)]
            builder = str(Path(sys.executable).parent / "ansible-builder")
            argv = [builder, "build", "--file", str(work / DEFINITION.name), "--context", str(work / "context"),
                    "--container-runtime", "podman", "--tag", reference, "--build-arg", "EE_BASE_IMAGE=" + base,
                    "--extra-build-cli-args", " ".join(extra), "-v3"]
            log.say("building %s" % reference)
            if log.run(argv, cwd=work) != 0:
                raise EEBuildError("ansible-builder build failed (log %s):\n%s"
                                   % (log.path, images._tail(log.path, 40)))
        seconds = time.monotonic() - started
        size = image_size(reference)
        (EE_CACHE / ("ee-%s.json" % key)).write_text(json.dumps({
            "reference": reference, "base": base, "seconds": round(seconds, 1), "size": size,
            "built": time.strftime("%Y-%m-%dT%H:%M:%S")}, indent=1) + "\n")
        log.say("built %s in %.0f s, %d MB" % (reference, seconds, size // 10**6))
        _prune(reference, log)
        return EE(reference, key, True, seconds, size, tarball)


def _prune(keep, log):
    """Older EE builds' tags and records go: one EE is kept, as one build per image in images.py."""
    listing = podman("images", "--format", "{{.Repository}}:{{.Tag}}", "--filter", "reference=" + EE_REPOSITORY)
    for reference in listing.stdout.split():
        if reference != keep and reference.startswith(EE_REPOSITORY + ":"):
            podman("rmi", reference, log=log, check=False)
    for record in EE_CACHE.glob("ee-*.json"):
        if record.name != "ee-%s.json" % keep.rsplit(":", 1)[1]:
            record.unlink()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="build the EE unless an image of the same inputs is there")
    build.add_argument("--log", type=Path)
    args = parser.parse_args(argv)
    try:
        ee = build_ee(args.log)
    except (EEBuildError, images.ImageBuildError) as exc:
        print("ee: %s" % exc, file=sys.stderr)
        return 1
    print("%s %s %.1f s, %.0f MB" % (ee.reference, "built " if ee.built else "cached", ee.seconds, ee.size / 1e6))
    return 0


if __name__ == "__main__":
    sys.exit(main())
