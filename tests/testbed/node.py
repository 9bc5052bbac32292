"""The test bed's node: the machine-level parts that testbed.py starts and tears down around its processes.

One node test bed per machine at a time: kube-proxy and the kubelet own iptables chains with fixed names
(KUBE-*), the bridge has a fixed name and range, and the kubelet uses /kubepods cgroups and /var/log/pods.
A lock file names the run directory of the node that runs; a second one fails with that directory.

Network: a Linux bridge with a private /24 that exists only on this machine; the bridge's address is the
gateway, where the apiserver, the Prefect server and the registries listen. Pods get an address on the
bridge and a route to the Service range only (no default route, no masquerading), so nothing a pod sends
can leave the machine.

Images: the pause image (the pod sandbox, built from the Kubernetes source tree) and a probe image (a
static network probe, tests/testbed/probe.c) are built here with gcc and packed as docker-archives.
Two docker-registry instances serve images to containerd: one mirrors docker.io (no credentials), the
other needs htpasswd credentials and is addressed by its own host:port, so an image pull secret for it
is matched by containerd against the host it talks to.
"""

import base64
import fcntl
import hashlib
import io
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import tarfile
import time
import urllib.error
import urllib.request
from pathlib import Path

BRIDGE = "qhubpf0"
SUBNET_PREFIX = "10.213.77"
SUBNET = SUBNET_PREFIX + ".0/24"
GATEWAY = SUBNET_PREFIX + ".1"
NODE_NAME = "qhub-node"
# The bridge address belongs to the one node test bed of the machine, so its servers can use the ports
# their programs are known by: the URLs are the same in every run (molecule's environment, a user's
# prefect.image naming the private registry), for the host and for pods alike.
PORTS = {"kube-apiserver": 6443, "prefect-server": 4200, "docker-registry": 5000, "docker-registry-private": 5001,
         "kubelet": 10250}
CNI_NETWORK = "qhub-testbed"
LOCK_FILE = Path("/run/qhub-prefect-testbed-node.lock")
CNI_BIN_DIR = "/usr/lib/cni"
POD_LOG_DIRS = (Path("/var/log/pods"), Path("/var/log/containers"))
NETNS_DIR = Path("/run/netns")
# containerd 1.6 keeps its shims' sockets in /run/containerd/s whatever its state dir; the kubelet makes the
# pod log directories. Those the node made are removed at teardown once empty.
SHIM_SOCKET_DIR = Path("/run/containerd/s")
MACHINE_DIRS = (Path("/run/containerd"), SHIM_SOCKET_DIR, NETNS_DIR, *POD_LOG_DIRS)
# Set under the names users and Kubernetes write: the sandbox image the 1.20 build tree makes (TAG = 3.4
# in build/pause/Makefile), and a tool image that the mirror serves as if it came from docker.io.
PAUSE_IMAGE = "k8s.gcr.io/pause:3.4"
PROBE_REPOSITORY = "qhub-testbed/probe"
PROBE_TAG = "1"
REGISTRY_USERNAME = "qhub-testbed"
# What the kubelet, kube-proxy and the CNI bridge plugin change machine-wide; put back at teardown.
SYSCTLS = ("vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
           "kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes", "net/ipv4/conf/all/route_localnet",
           "net/ipv4/ip_forward")
IPTABLES_TABLES = ("filter", "nat", "mangle", "raw")
# Chains the kubelet, kube-proxy and CNI plugins make; nothing else on a test machine uses these prefixes.
OWN_CHAIN = re.compile(r"^(KUBE-|CNI-)")
NODE_PROCESS_NAMES = ("kubelet", "kube-proxy", "kube-scheduler", "containerd", "containerd-shim",
                      "containerd-shim-runc-v2", "docker-registry")
# /proc/PID/comm is cut to 15 characters.
NODE_COMMS = {name[:15] for name in NODE_PROCESS_NAMES}
STATE_FILE = "node.json"


class NodeError(RuntimeError):
    pass


def run(argv, log=None, check=True, input_text=None):
    argv = [str(arg) for arg in argv]
    done = subprocess.run(argv, input=input_text, capture_output=True, text=True, check=False,
                          stdin=None if input_text is not None else subprocess.DEVNULL)
    if log is not None:
        with open(log, "a") as handle:
            handle.write(f"$ {' '.join(argv)}  -> {done.returncode}\n{done.stdout[-4000:]}{done.stderr[-4000:]}")
    if check and done.returncode != 0:
        raise NodeError(f"{' '.join(argv[:3])} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return done


# --- the lock: one node per machine -------------------------------------------------------------------

def _locked(function):
    def wrapper(*args, **kwargs):
        # flock on the lock file's directory: no second file to leave behind.
        descriptor = os.open(LOCK_FILE.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            return function(*args, **kwargs)
        finally:
            os.close(descriptor)
    return wrapper


def lock_holder():
    try:
        return json.loads(LOCK_FILE.read_text())
    except (OSError, ValueError):
        return None


@_locked
def acquire(run_dir, is_running):
    """Makes `run_dir` the machine's node test bed; fails naming the one that runs.

    `is_running(run_dir)` tells whether a recorded holder still has processes. A holder that died
    without its teardown (SIGKILL, reboot) is cleaned up here first, so the new node starts clean.
    """
    holder = lock_holder()
    if holder and holder.get("run_dir") != str(run_dir):
        other = Path(holder["run_dir"])
        if is_running(other):
            raise NodeError(
                f"another node test bed runs on this machine, in {other}; only one can run at a time (iptables "
                f"chains, the {BRIDGE} bridge and /kubepods are machine-wide). Stop it with: testbed.py down --dir "
                f"{other}, or start this one without the node: --components kube,prefect or "
                f"QHUB_PREFECT_TESTBED_NODE=0")
    if holder:
        cleanup_machine(Path(holder["run_dir"]), holder, log=None)
    record = {"run_dir": str(run_dir), "pid": os.getpid(), "started": time.time(), "sysctls": read_sysctls(),
              "made_dirs": [str(path) for path in MACHINE_DIRS if not path.exists()]}
    LOCK_FILE.write_text(json.dumps(record))
    return record


@_locked
def release(run_dir):
    holder = lock_holder()
    if holder and holder.get("run_dir") == str(run_dir):
        LOCK_FILE.unlink(missing_ok=True)


def read_sysctls():
    values = {}
    for name in SYSCTLS:
        try:
            values[name] = Path("/proc/sys", name).read_text().strip()
        except OSError:
            pass
    return values


def restore_sysctls(values):
    for name, value in (values or {}).items():
        try:
            path = Path("/proc/sys", name)
            if path.read_text().strip() != value:
                path.write_text(value)
        except OSError:
            pass


# --- network --------------------------------------------------------------------------------------------

def check_ports():
    """Fails naming a port on the bridge address that a program listening on all addresses holds."""
    import socket
    taken = []
    for name, port in PORTS.items():
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            # As the servers do: connections of the last test bed in TIME_WAIT do not hold the port,
            # a listener does.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((GATEWAY, port))
            except OSError as error:
                taken.append(f"{port} ({name}): {error.strerror}")
    if taken:
        raise NodeError(f"ports on {GATEWAY} the node needs are taken (a program listening on 0.0.0.0?): "
                        + ", ".join(taken))


def bridge_exists():
    return Path("/sys/class/net", BRIDGE).exists()


def create_bridge(log):
    if bridge_exists():
        run(["ip", "link", "del", BRIDGE], log)
    run(["ip", "link", "add", BRIDGE, "type", "bridge"], log)
    run(["ip", "addr", "add", GATEWAY + "/24", "dev", BRIDGE], log)
    run(["ip", "link", "set", BRIDGE, "up"], log)


def cni_config(run_dir, service_range):
    """The CNI network: pods on the bridge, a route to the Service range only, no masquerading."""
    conf_dir = run_dir / "cni" / "net.d"
    conf_dir.mkdir(parents=True, exist_ok=True)
    config = {
        "cniVersion": "0.4.0",
        "name": CNI_NETWORK,
        "plugins": [{
            "type": "bridge", "bridge": BRIDGE, "isGateway": True, "ipMasq": False, "hairpinMode": True,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": SUBNET, "rangeStart": SUBNET_PREFIX + ".16",
                             "rangeEnd": SUBNET_PREFIX + ".254", "gateway": GATEWAY}]],
                # No default route: a pod reaches the bridge's /24 and, through kube-proxy, the Services.
                "routes": [{"dst": service_range}],
                "dataDir": str(run_dir / "cni" / "ipam"),
            },
        }],
    }
    (conf_dir / "10-qhub-testbed.conflist").write_text(json.dumps(config, indent=2))
    return conf_dir


# --- containerd -------------------------------------------------------------------------------------------

def containerd_paths(run_dir):
    base = run_dir / "containerd"
    return {"base": base, "config": base / "config.toml", "root": base / "root", "state": base / "state",
            "socket": base / "containerd.sock", "hosts": base / "certs.d", "opt": base / "opt"}


def containerd_config(run_dir, cni_conf_dir, registries):
    """containerd's own configuration: everything under the run dir, and the CRI settings this machine needs.

    registries: {registry host as written in image names: http URL of the local registry serving it}.
    """
    paths = containerd_paths(run_dir)
    for key in ("root", "state", "hosts", "opt"):
        paths[key].mkdir(parents=True, exist_ok=True)
    for host, url in registries.items():
        # hosts.toml `server` replaces the upstream: a name not in the local registry fails here at once,
        # and no pull ever goes to the internet (registry.mirrors would fall back to registry-1.docker.io).
        directory = paths["hosts"] / host
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "hosts.toml").write_text(
            f'server = "{url}"\n\n[host."{url}"]\n  capabilities = ["pull", "resolve"]\n')
    text = f"""\
version = 2
root = "{paths['root']}"
state = "{paths['state']}"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
                    "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs",
                    "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "{paths['socket']}"

[ttrpc]
  address = "{paths['socket']}.ttrpc"

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{paths['opt']}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  # Without it every sandbox fails here: runc cannot set the sandbox's negative oom_score_adj.
  restrict_oom_score_adj = true
  # This kernel has no AppArmor.
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{paths['base'] / 'runc'}"

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN_DIR}"
    conf_dir = "{cni_conf_dir}"

  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "{paths['hosts']}"
"""
    paths["config"].write_text(text)
    return paths


def ctr(socket_path, *args, log=None, check=True):
    return run(["ctr", "--address", socket_path, "--namespace", "k8s.io", *args], log, check=check)


def kill_containers(socket_path, log):
    """SIGKILLs and deletes every container task and container, pods' sandboxes included; quick."""
    if not Path(socket_path).exists():
        return
    listed = ctr(socket_path, "tasks", "ls", "-q", log=log, check=False)
    if listed.returncode != 0:
        return
    tasks = listed.stdout.split()
    if tasks:
        ctr(socket_path, "tasks", "rm", "-f", *tasks, log=log, check=False)
    containers = ctr(socket_path, "containers", "ls", "-q", log=log, check=False).stdout.split()
    if containers:
        ctr(socket_path, "containers", "rm", *containers, log=log, check=False)


# --- images -----------------------------------------------------------------------------------------------

def _tar_add(tar, name, data, mode):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    info.mtime = 0
    tar.addfile(info, io.BytesIO(data))


def docker_archive(out, reference, files, entrypoint, user="0"):
    """Writes a one-layer docker-archive (what `docker save` writes) holding `files` {path: bytes}.

    Everything is deterministic (mtime 0, sorted), so the same binaries give the same digests and a
    registry that has them already keeps them.
    """
    layer_buffer = io.BytesIO()
    with tarfile.open(fileobj=layer_buffer, mode="w", format=tarfile.USTAR_FORMAT) as layer:
        for path in sorted(files):
            _tar_add(layer, path.lstrip("/"), files[path], 0o755)
    layer_bytes = layer_buffer.getvalue()
    diff_id = "sha256:" + hashlib.sha256(layer_bytes).hexdigest()
    config = {"architecture": "amd64", "os": "linux",
              "config": {"Entrypoint": entrypoint, "User": user, "WorkingDir": "/",
                         "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},
              "rootfs": {"type": "layers", "diff_ids": [diff_id]},
              "history": [{"created_by": "qhub-prefect test bed (tests/testbed/node.py)"}],
              "created": "1970-01-01T00:00:00Z"}
    config_bytes = json.dumps(config, sort_keys=True).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    layer_name = diff_id.split(":")[1] + "/layer.tar"
    manifest = [{"Config": config_name, "RepoTags": [reference], "Layers": [layer_name]}]
    temporary = Path(str(out) + ".tmp")
    with tarfile.open(temporary, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        _tar_add(archive, config_name, config_bytes, 0o644)
        _tar_add(archive, layer_name, layer_bytes, 0o644)
        _tar_add(archive, "manifest.json", json.dumps(manifest).encode(), 0o644)
    temporary.replace(out)
    return out


def build_static(source, out, log, defines=()):
    run(["gcc", "-Os", "-static", "-Wall", "-Werror", *defines, "-o", out, source], log)


def build_node_images(cache_dir, kube_source_tree, log):
    """(pause archive, probe archive), built once per source and cached."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    pause_c = Path(kube_source_tree) / "build" / "pause" / "linux" / "pause.c"
    probe_c = Path(__file__).resolve().parent / "probe.c"
    if not pause_c.is_file():
        raise NodeError(f"no {pause_c}: the Kubernetes source tree is missing "
                        f"(run tests/testbed/install-control-plane.sh)")
    recipe = hashlib.sha256(pause_c.read_bytes() + probe_c.read_bytes()
                            + Path(__file__).read_bytes()).hexdigest()[:16]
    pause_tar = cache_dir / f"pause-{recipe}.tar"
    probe_tar = cache_dir / f"probe-{recipe}.tar"
    if pause_tar.exists() and probe_tar.exists():
        return pause_tar, probe_tar
    for stale in list(cache_dir.glob("pause-*.tar")) + list(cache_dir.glob("probe-*.tar")):
        stale.unlink()
    work = cache_dir / "build"
    work.mkdir(exist_ok=True)
    build_static(pause_c, work / "pause", log, defines=['-DVERSION="3.4-testbed"'])
    build_static(probe_c, work / "probe", log)
    pause = (work / "pause").read_bytes()
    docker_archive(pause_tar, PAUSE_IMAGE, {"/pause": pause}, ["/pause"], user="65535")
    docker_archive(probe_tar, f"docker.io/{PROBE_REPOSITORY}:{PROBE_TAG}",
                   {"/probe": (work / "probe").read_bytes(), "/pause": pause}, ["/probe"], user="65535")
    shutil.rmtree(work)
    return pause_tar, probe_tar


def import_image(socket_path, archive, log):
    ctr(socket_path, "images", "import", archive, log=log)


# --- registries -------------------------------------------------------------------------------------------

def registry_config(path, storage, address, htpasswd=None):
    auth = ""
    if htpasswd:
        auth = f"auth:\n  htpasswd:\n    realm: qhub-prefect-testbed\n    path: {htpasswd}\n"
    path.write_text(f"""\
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {storage}
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: {address}
  secret: {secrets.token_hex(16)}
{auth}""")
    return path


def make_htpasswd(path, username, password, log):
    # bcrypt: the only hash docker-registry's htpasswd accepts.
    done = run(["htpasswd", "-niB", username], None, input_text=password + "\n")
    path.write_text(done.stdout.strip() + "\n")
    path.chmod(0o600)


def split_reference(reference):
    """("docker.io", "prefecthq/prefect", "3-python3.11-kubernetes") from a name as users write it."""
    name, tag = reference.rsplit(":", 1) if ":" in reference.rsplit("/", 1)[-1] else (reference, "latest")
    first, rest = name.split("/", 1) if "/" in name else (name, "")
    if rest and ("." in first or ":" in first or first == "localhost"):
        registry, repository = first, rest
    else:
        registry, repository = "docker.io", name
    if registry == "docker.io" and "/" not in repository:
        repository = "library/" + repository
    return registry, repository, tag or "latest"


def manifest_exists(address, repository, tag, auth=None):
    request = urllib.request.Request(f"http://{address}/v2/{repository}/manifests/{tag}", method="HEAD", headers={
        "Accept": "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json"})
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode())
    try:
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request, timeout=10) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def write_auth_file(path, address, auth):
    """A containers-auth.json for skopeo: credentials in a private file, never on a command line."""
    token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    path.write_text(json.dumps({"auths": {address: {"auth": token}}}))
    path.chmod(0o600)
    return path


def push(archive, address, repository, tag, stamp_file, log, auth=None, auth_file=None):
    """Pushes a docker-archive unless the registry has this very archive under that name already."""
    archive = Path(archive)
    stat = archive.stat()
    fingerprint = f"{archive.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    key = f"{repository}:{tag}"
    stamps = {}
    try:
        stamps = json.loads(stamp_file.read_text())
    except (OSError, ValueError):
        pass
    if stamps.get(key) == fingerprint and manifest_exists(address, repository, tag, auth):
        return False
    argv = ["skopeo", "copy", "--quiet", "--insecure-policy", "--dest-tls-verify=false"]
    if auth:
        argv.append(f"--dest-authfile={auth_file}")
    run(argv + [f"docker-archive:{archive}", f"docker://{address}/{repository}:{tag}"], log)
    stamps[key] = fingerprint
    stamp_file.write_text(json.dumps(stamps, indent=2))
    return True


# --- teardown and the leftover check ---------------------------------------------------------------------

def _mounts():
    """Mount points, deepest last, from /proc/self/mountinfo (octal escapes decoded)."""
    points = []
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return points
    for line in lines:
        point = line.split()[4]
        points.append(re.sub(r"\\([0-7]{3})", lambda match: chr(int(match.group(1), 8)), point))
    return points


def own_mounts(run_dir, since=None, netns=True):
    run_prefix = str(run_dir).rstrip("/") + "/"
    found = [point for point in _mounts() if point.startswith(run_prefix) or point == str(run_dir)]
    if netns:
        found += [str(path) for path in own_netns(since)]
    return found


def own_netns(since=None):
    """The pod network namespaces (containerd's CRI names them cni-*) made since `since` (all if None)."""
    try:
        entries = list(NETNS_DIR.glob("cni-*"))
    except OSError:
        return []
    return [entry for entry in entries if since is None or _mtime(entry) >= since - 1]


def _mtime(path):
    try:
        return path.lstat().st_mtime
    except OSError:
        return 0


def unmount_all(points):
    libc_umount = shutil.which("umount") or "umount"
    for point in sorted(set(points), key=len, reverse=True):
        # Lazy: a mount that something still holds goes once it is let go, and its path is free at once.
        subprocess.run([libc_umount, "-l", point], capture_output=True, check=False)


def own_chains(binary="iptables"):
    """{table: [chain]} of KUBE-*/CNI-* chains, and {table: [rule args]} of built-in chains' jumps to them."""
    chains, jumps = {}, {}
    for table in IPTABLES_TABLES:
        done = subprocess.run([binary + "-save", "-t", table], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            continue
        for line in done.stdout.splitlines():
            if line.startswith(":") and OWN_CHAIN.match(line[1:]):
                chains.setdefault(table, []).append(line[1:].split()[0])
            elif line.startswith("-A "):
                parts = line.split()
                if not OWN_CHAIN.match(parts[1]) and "-j" in parts:
                    target = parts[parts.index("-j") + 1]
                    if OWN_CHAIN.match(target):
                        jumps.setdefault(table, []).append(line[3:])
    return chains, jumps


def remove_chains(log):
    for binary in ("iptables", "ip6tables"):
        if shutil.which(binary) is None:
            continue
        chains, jumps = own_chains(binary)
        for table, rules in jumps.items():
            for rule in rules:
                # iptables-save quotes comments the way a shell would read them.
                run([binary, "-w", "-t", table, "-D", *shlex.split(rule)], log, check=False)
        for table, names in chains.items():
            for name in names:
                run([binary, "-w", "-t", table, "-F", name], log, check=False)
            for name in names:
                run([binary, "-w", "-t", table, "-X", name], log, check=False)


def kubepods_cgroups():
    found = []
    root = Path("/sys/fs/cgroup")
    try:
        hierarchies = [entry for entry in root.iterdir() if entry.is_dir() and not entry.is_symlink()]
    except OSError:
        return found
    for hierarchy in hierarchies:
        candidate = hierarchy / "kubepods"
        if candidate.is_dir():
            found.append(candidate)
    if (root / "kubepods").is_dir():
        found.append(root / "kubepods")
    return found


def remove_cgroups():
    for top in kubepods_cgroups():
        directories = sorted((Path(path) for path, _dirs, _files in os.walk(top)), key=lambda p: len(p.parts),
                             reverse=True)
        for directory in directories:
            try:
                for pid in (directory / "cgroup.procs").read_text().split():
                    try:
                        os.kill(int(pid), signal.SIGKILL)
                    except OSError:
                        pass
            except OSError:
                pass
        for directory in directories:
            for attempt in range(20):
                try:
                    directory.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.05)


def remove_pod_logs(since):
    for directory in POD_LOG_DIRS:
        try:
            entries = list(directory.iterdir())
        except OSError:
            continue
        for entry in entries:
            dangling = entry.is_symlink() and not entry.exists()
            if dangling or since is None or _mtime(entry) >= since - 1:
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)


def own_shim_sockets(since=None):
    try:
        entries = list(SHIM_SOCKET_DIR.iterdir())
    except OSError:
        return []
    return [entry for entry in entries if since is None or _mtime(entry) >= since - 1]


def processes_marked(run_dir=None, node_only=False):
    """{pid: command line} of processes a test bed started (their environment names the run dir).

    Every process the test bed starts carries QHUB_PREFECT_TESTBED_RUN_DIR, and containerd passes its
    environment on to the shims it starts. node_only: only the node's programs (any run dir).
    """
    marker = b"QHUB_PREFECT_TESTBED_RUN_DIR="
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
            comm = Path(f"/proc/{entry}/comm").read_text().strip()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state in "ZX":
            continue
        values = [item[len(marker):].decode(errors="replace") for item in environ if item.startswith(marker)]
        if not values:
            continue
        if run_dir is not None and values[0] != str(run_dir):
            continue
        if node_only and comm not in NODE_COMMS:
            continue
        found[int(entry)] = cmdline.strip()
    return found


def kill_marked(run_dir):
    for pid in processes_marked(run_dir):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def cleanup_machine(run_dir, holder, log, kube_proxy=None):
    """Removes what a node leaves outside its processes: the run dir's mounts, pod netns, iptables chains,
    the bridge, /kubepods cgroups, pod logs, and the sysctls the kubelet and CNI changed."""
    since = (holder or {}).get("started")
    kill_marked(run_dir)
    if kube_proxy and Path(kube_proxy).exists():
        run([kube_proxy, "--cleanup"], log, check=False)
    remove_chains(log)
    unmount_all(own_mounts(run_dir, since))
    for netns in own_netns(since):
        try:
            netns.unlink()
        except OSError:
            pass
    if bridge_exists():
        run(["ip", "link", "del", BRIDGE], log, check=False)
    remove_cgroups()
    remove_pod_logs(since)
    for socket_file in own_shim_sockets(since):
        socket_file.unlink(missing_ok=True)
    for directory in sorted((holder or {}).get("made_dirs", []), key=len, reverse=True):
        try:
            Path(directory).rmdir()
        except OSError:
            pass  # not empty: something else uses it now
    restore_sysctls((holder or {}).get("sysctls"))


def leftovers(run_dir=None):
    """What a node test bed left on this machine: a list of findings, empty when clean.

    Without a run dir: the machine-wide traces (node processes of any test bed, KUBE-*/CNI-* chains, the
    bridge, pod netns, /kubepods cgroups, pod logs). With one, also every process and mount of that test bed.
    """
    found = []
    holder = lock_holder()
    if holder and (run_dir is None or holder.get("run_dir") == str(run_dir)):
        found.append(f"lock {LOCK_FILE} held for {holder.get('run_dir')}")
    for pid, cmdline in processes_marked(node_only=True).items():
        found.append(f"process {pid}: {cmdline[:200]}")
    if run_dir is not None:
        for pid, cmdline in processes_marked(run_dir).items():
            line = f"process {pid}: {cmdline[:200]}"
            if line not in found:
                found.append(line)
        found += [f"mount {point}" for point in own_mounts(run_dir, netns=False)]
    for binary in ("iptables", "ip6tables"):
        if shutil.which(binary + "-save") is None:
            continue
        chains, jumps = own_chains(binary)
        for table, names in chains.items():
            found += [f"{binary} -t {table} chain {name}" for name in names]
        for table, rules in jumps.items():
            found += [f"{binary} -t {table} rule -A {rule}" for rule in rules]
    if bridge_exists():
        found.append(f"network interface {BRIDGE}")
    found += [f"network namespace {path}" for path in own_netns()]
    found += [f"mount {point}" for point in _mounts() if point.startswith(str(NETNS_DIR) + "/cni-")]
    found += [f"cgroup {path}" for path in kubepods_cgroups()]
    found += [f"containerd shim socket {path}" for path in own_shim_sockets()]
    for directory in POD_LOG_DIRS:
        try:
            found += [f"pod log {entry}" for entry in directory.iterdir()]
        except OSError:
            pass
    return list(dict.fromkeys(found))
