"""The Kubernetes 'restricted' Pod Security Standard as a checker of pod specs (plain dicts).

The test bed's v1.20 API server predates the PodSecurity admission plugin (beta in 1.23), so the
rules are checked here, one by one, as https://kubernetes.io/docs/concepts/security/pod-security-standards/
lists them for the restricted profile.
"""

ALLOWED_VOLUME_TYPES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                        "projected", "secret"}
SAFE_SYSCTLS = {"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
                "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range"}
SELINUX_TYPES = {None, "", "container_t", "container_init_t", "container_kvm_t"}


def check_restricted(pod):
    """A list of violations of the restricted profile; empty when the pod spec meets it."""
    problems = []
    pod_context = pod.get("securityContext") or {}
    containers = [("containers", c) for c in pod.get("containers", [])] + \
                 [("initContainers", c) for c in pod.get("initContainers", [])] + \
                 [("ephemeralContainers", c) for c in pod.get("ephemeralContainers", [])]
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(field):
            problems.append("host namespaces: %s is set" % field)
    for volume in pod.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= ALLOWED_VOLUME_TYPES:
            problems.append("volume types: %s uses %s" % (volume["name"], ", ".join(sorted(kinds))))
    for sysctl in pod_context.get("sysctls") or []:
        if sysctl.get("name") not in SAFE_SYSCTLS:
            problems.append("sysctls: %s is not in the safe set" % sysctl.get("name"))
    if (pod_context.get("seLinuxOptions") or {}).get("type") not in SELINUX_TYPES:
        problems.append("SELinux: pod type not allowed")
    if pod_context.get("runAsUser") == 0:
        problems.append("running as non-root user: pod runAsUser is 0")
    if (pod_context.get("windowsOptions") or {}).get("hostProcess"):
        problems.append("HostProcess: pod sets hostProcess")
    pod_seccomp = (pod_context.get("seccompProfile") or {}).get("type")
    for kind, container in containers:
        where = "%s[%s]" % (kind, container.get("name"))
        context = container.get("securityContext") or {}
        if context.get("privileged"):
            problems.append("privileged containers: %s" % where)
        if context.get("allowPrivilegeEscalation") is not False:
            problems.append("privilege escalation: %s does not set allowPrivilegeEscalation: false" % where)
        capabilities = context.get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            problems.append("capabilities: %s does not drop ALL" % where)
        if set(capabilities.get("add") or []) - {"NET_BIND_SERVICE"}:
            problems.append("capabilities: %s adds more than NET_BIND_SERVICE" % where)
        if not (context.get("runAsNonRoot") or pod_context.get("runAsNonRoot")) or context.get("runAsNonRoot") is False:
            problems.append("running as non-root: %s may run as root" % where)
        if context.get("runAsUser") == 0:
            problems.append("running as non-root user: %s runAsUser is 0" % where)
        seccomp = (context.get("seccompProfile") or {}).get("type") or pod_seccomp
        if seccomp not in ("RuntimeDefault", "Localhost"):
            problems.append("seccomp: %s has no RuntimeDefault or Localhost profile" % where)
        if context.get("procMount") not in (None, "Default"):
            problems.append("/proc mount type: %s" % where)
        if (context.get("seLinuxOptions") or {}).get("type") not in SELINUX_TYPES:
            problems.append("SELinux: %s type not allowed" % where)
        if (context.get("windowsOptions") or {}).get("hostProcess"):
            problems.append("HostProcess: %s" % where)
        for port in container.get("ports") or []:
            if port.get("hostPort"):
                problems.append("host ports: %s uses hostPort %s" % (where, port["hostPort"]))
    return problems
