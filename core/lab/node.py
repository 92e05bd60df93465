"""One lab node: its files, its process tree, and how that tree is stopped.

A node is one process tree started as::

    nsenter --net=/run/netns/ot-LAB-nI unshare --uts --mount --pid --fork --kill-child --mount-proc sh init.sh

``init.sh`` (pid 1 of the node's own pid namespace) gives the node a private /run and node-local
/etc/ssh, /etc/docker, /etc/etcd, /var/lib/docker, /var/lib/etcd, /var/log, /etc/hosts, /tmp and /var/tmp, an
empty /root/.bashrc and the hostname ``docker-nodeI``; then it starts dockerd exactly as the Docker
service would (default paths: /var/run/docker.pid, /var/run/docker.sock, /var/log/dockerd.log) and
OpenSSH's sshd with its default config path. So whatever connects over SSH sees an ordinary host:
no lab-specific path anywhere.

Killing ``unshare`` (or pid 1) takes the whole pid namespace down with it, containers included.
"""
from __future__ import annotations

import glob
import json
import os
import shlex
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from core.errors import LabError

DAEMON_JSON = {
    # Keep every address Docker picks inside 198.18.0.0/15 (isolated per node namespace, never routed).
    "bip": "198.19.255.1/24",
    "default-address-pools": [{"base": "198.19.192.0/18", "size": 24}],
}
# Host paths the node gets its own copy of (source dir name under the node dir -> mount point).
NODE_LOCAL_DIRS = {"etc-ssh": "/etc/ssh", "etc-docker": "/etc/docker", "var-lib-docker": "/var/lib/docker",
                   "var-lib-etcd": "/var/lib/etcd", "var-log": "/var/log",
                   "etc-etcd": "/etc/etcd"}     # etcd's certificates and etcdctl.env, per node as on a real host
# Mounted last, once nothing more is read from the lab's state dir (which may live below /tmp).
NODE_LOCAL_TMP = {"var-tmp": "/var/tmp", "tmp": "/tmp"}     # /tmp last of all
# Paths hidden inside the node before its mounts are done (so the lab's own files must not live below them).
MASKED_PATHS = ["/run", "/var/run", *NODE_LOCAL_DIRS.values()]

# A service's environment (not the caller's: no venv, proxies or test variables leak into the node).
SERVICE_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HOME": "/root"}

SSHD_CONFIG = """\
# sshd of lab node {name} (lab {lab}); written by `overlay-tui lab up`.
ListenAddress {address}:22
HostKey /etc/ssh/ssh_host_ed25519_key
PidFile /run/sshd.pid
AuthorizedKeysFile /etc/ssh/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
AllowTcpForwarding yes
AllowStreamLocalForwarding yes
X11Forwarding no
PrintMotd no
PrintLastLog no
UseDNS no
AcceptEnv LANG LC_*
Subsystem sftp /usr/lib/openssh/sftp-server
"""

INIT_SCRIPT = """\
#!/bin/sh
# pid 1 of lab node {name} (lab {lab}); written by `overlay-tui lab up`.
set -e
mount --make-rprivate /
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run
mkdir -p /run/sshd /run/lock
{mounts}
hostname {name}
# dockerd as the Docker service starts it: default paths, detached from this script
nohup setsid dockerd >> /var/log/dockerd.log 2>&1 < /dev/null &
/usr/sbin/sshd
echo "node {name} started"
set +e
# stay pid 1; a foreground child makes sh reap orphans (waitpid(-1)) while it waits
while :; do sleep 3600; done
"""


@dataclass(frozen=True)
class NodePlan:
    """Everything needed to create and start node ``i`` of a lab."""

    lab: str
    i: int
    address: str
    netns: str
    dir: Path            # node-local files: sshd config, host key, mounted dirs, init script, log
    lab_dir: Path

    @property
    def name(self) -> str:
        return f"docker-node{self.i}"

    @property
    def host_key(self) -> Path:
        return self.dir / "etc-ssh" / "ssh_host_ed25519_key"


def keygen(path: Path, comment: str) -> subprocess.Popen:
    """Start ssh-keygen for a fresh ed25519 key at ``path`` (caller waits)."""
    return subprocess.Popen(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def write_node_files(plan: NodePlan, all_nodes: list[tuple[str, str]]) -> None:
    """Node-local dirs, daemon.json, /etc/hosts, sshd config and init script (host key made separately)."""
    for src in NODE_LOCAL_DIRS:
        (plan.dir / src).mkdir(parents=True, exist_ok=True)
    for src in NODE_LOCAL_TMP:
        (plan.dir / src).mkdir(parents=True, exist_ok=True)
        (plan.dir / src).chmod(0o1777)
    if os.path.isfile("/etc/ssh/ssh_config"):     # so `ssh` on the node behaves as on the host
        shutil.copy("/etc/ssh/ssh_config", plan.dir / "etc-ssh" / "ssh_config")
    (plan.dir / "etc-docker" / "daemon.json").write_text(json.dumps(DAEMON_JSON, indent=2) + "\n")
    hosts = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    hosts += [f"{addr}\t{name}" for name, addr in all_nodes]
    (plan.dir / "hosts").write_text("\n".join(hosts) + "\n")
    (plan.dir / "etc-ssh" / "sshd_config").write_text(SSHD_CONFIG.format(name=plan.name, lab=plan.lab,
                                                                          address=plan.address))
    mounts = []
    for src, dst in NODE_LOCAL_DIRS.items():
        mounts.append(f"mkdir -p {dst} && mount --bind {shlex.quote(str(plan.dir / src))} {dst}")
    mounts.append(f"mount --bind {shlex.quote(str(plan.dir / 'hosts'))} /etc/hosts")
    if os.path.isfile("/root/.bashrc"):   # Debian root's rc may be slow (pyenv): give sessions an empty one
        mounts.append(f"mount --bind {shlex.quote(str(plan.lab_dir / 'empty_rc'))} /root/.bashrc")
    for src, dst in NODE_LOCAL_TMP.items():
        mounts.append(f"mkdir -p {dst} && mount --bind {shlex.quote(str(plan.dir / src))} {dst}")
    (plan.dir / "init.sh").write_text(INIT_SCRIPT.format(name=plan.name, lab=plan.lab, mounts="\n".join(mounts)))


def start_node(plan: NodePlan) -> subprocess.Popen:
    """Start the node's process tree (returns at once); its pid is ``unshare``'s, in the root pid namespace."""
    log = open(plan.dir / "init.log", "wb")
    try:
        return subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{plan.netns}", "unshare", "--uts", "--mount", "--pid", "--fork",
             "--kill-child", "--mount-proc", "sh", str(plan.dir / "init.sh")],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, close_fds=True,
            cwd="/", env=SERVICE_ENV)
    finally:
        log.close()


def init_pid(unshare_pid: int, timeout: float = 2.0) -> int | None:
    """The host pid of the node's pid 1 (``unshare``'s only child)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            kids = Path(f"/proc/{unshare_pid}/task/{unshare_pid}/children").read_text().split()
        except OSError:
            return None
        if kids:
            return int(kids[0])
        time.sleep(0.01)
    return None


def ns_id(pid: int, kind: str) -> tuple[int, int] | None:
    try:
        st = os.stat(f"/proc/{pid}/ns/{kind}")
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def alive(pid: int) -> bool:
    """True if ``pid`` runs and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def pids_in(netns: tuple[int, int] | None, pidns: tuple[int, int] | None) -> list[int]:
    """Live pids whose network namespace is ``netns`` or whose pid namespace is ``pidns``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        if pid == os.getpid():
            continue
        if (netns and ns_id(pid, "net") == netns) or (pidns and ns_id(pid, "pid") == pidns):
            if alive(pid):
                found.append(pid)
    return found


def kill_node(netns: tuple[int, int] | None, pids: list[int], pidns: tuple[int, int] | None,
              timeout: float = 10.0) -> None:
    """SIGKILL the node's recorded pids (if still its own) and every process left in its namespaces."""
    for pid in pids:
        if netns and ns_id(pid, "net") == netns or pidns and ns_id(pid, "pid") == pidns:
            _kill(pid)
    deadline = time.monotonic() + timeout
    while True:
        left = pids_in(netns, pidns)
        if not left:
            return
        if time.monotonic() > deadline:
            raise LabError(f"processes {left} would not die; kill them by hand (`kill -9 {' '.join(map(str, left))}`)")
        for pid in left:
            _kill(pid)
        time.sleep(0.05)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def remove_container_cgroups(node_dir: Path) -> None:
    """Docker's per-container cgroups (cgroupfs driver) outlive a killed daemon: remove the empty ones."""
    ids = [p.name for p in (node_dir / "var-lib-docker" / "containers").glob("*") if p.is_dir()]
    for cid in ids:
        for d in glob.glob(f"/sys/fs/cgroup/*/docker/{cid}") + glob.glob(f"/sys/fs/cgroup/docker/{cid}"):
            try:
                os.rmdir(d)
            except OSError:
                pass


# ---------------------------------------------------------------- healing a running node

def argv0_in(pidns: tuple[int, int]) -> list[tuple[int, str, str]]:
    """(pid, comm, argv[0]) of every live process in the pid namespace ``pidns``."""
    out = []
    for pid in pids_in(None, pidns):
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
            argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
        except OSError:
            continue
        out.append((pid, comm, argv0))
    return out


def is_sshd_listener(argv0: str) -> bool:
    """OpenSSH >= 9.x retitles its listener "sshd: /usr/sbin/sshd [listener] ..."; older ones keep argv[0]."""
    return argv0 == "/usr/sbin/sshd" or argv0.startswith("sshd: /usr/sbin/sshd [listener]")


def services_running(pidns: tuple[int, int]) -> dict[str, bool]:
    """Whether the node's sshd listener and its dockerd run (sessions' sshd processes do not count)."""
    procs = argv0_in(pidns)
    return {"sshd": any(is_sshd_listener(argv0) for _, _, argv0 in procs),
            "dockerd": any(comm == "dockerd" for _, comm, _ in procs)}


# Same commands as init.sh, run inside the node's namespaces; a stale pidfile of a killed dockerd is removed
# first (dockerd refuses to start while /var/run/docker.pid names a live process).
RESTART = {
    "sshd": "/usr/sbin/sshd",
    "dockerd": ('pid=$(cat /var/run/docker.pid 2>/dev/null); '
                'if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then rm -f /var/run/docker.pid; fi; '
                "nohup setsid dockerd >> /var/log/dockerd.log 2>&1 < /dev/null &"),
}


def restart_service(init: int, service: str) -> None:
    """Start ``service`` ("sshd" or "dockerd") again inside the namespaces of the node whose pid 1 is ``init``."""
    res = subprocess.run(["nsenter", "-t", str(init), "--net", "--uts", "--mount", "--pid", "--", "sh", "-c",
                          RESTART[service]], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                         cwd="/", env=SERVICE_ENV, timeout=30)
    if res.returncode != 0:
        raise LabError(f"could not restart {service} in the node of pid {init}: "
                       f"{(res.stderr or res.stdout).strip() or f'exit {res.returncode}'}")


def write_hosts(plan: NodePlan, all_nodes: list[tuple[str, str]]) -> None:
    """Rewrite the node's /etc/hosts in place (the node bind-mounts this very file)."""
    hosts = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    hosts += [f"{addr}\t{name}" for name, addr in all_nodes]
    with open(plan.dir / "hosts", "r+" if (plan.dir / "hosts").exists() else "w") as fh:
        fh.seek(0)
        fh.write("\n".join(hosts) + "\n")
        fh.truncate()
