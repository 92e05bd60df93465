"""etcd over TLS on the nodes: where the certificates live there, the flags, and how they get there.

Each node keeps its files in :data:`NODE_PKI_DIR` (0700; keys 0600, certificates 0644): ``ca.crt``,
``server.crt|key`` (client URLs), ``peer.crt|key`` (peer URLs), ``client.crt|key`` (dockerd and
etcdctl on the node). :data:`ENV_FILE` lets an operator on the node run ``etcdctl`` after
``. /etc/etcd/etcdctl.env`` (v3; etcdctl v3 warns about v2's variables, so the file does not set
them: the tutorial's v2 ``cluster-health`` is ``ETCDCTL_API=2 etcdctl --ca-file "$ETCDCTL_CACERT"
--cert-file "$ETCDCTL_CERT" --key-file "$ETCDCTL_KEY" cluster-health``).

Files travel on the SSH session's stdin (never on a command line, where ``ps`` would show a key),
and are written only when their content differs: a fresh temp file (``set -C``: O_EXCL), then
``mv`` over the final name, which replaces a symlink there instead of following it. A symlinked
/etc/etcd/pki is refused.
"""
from __future__ import annotations

import base64
import hashlib
import shlex

from core.errors import EtcdError
from core.pki.cluster import NodeCerts

NODE_PKI_DIR = "/etc/etcd/pki"
ENV_FILE = "/etc/etcd/etcdctl.env"
CA, SERVER_CRT, SERVER_KEY = f"{NODE_PKI_DIR}/ca.crt", f"{NODE_PKI_DIR}/server.crt", f"{NODE_PKI_DIR}/server.key"
PEER_CRT, PEER_KEY = f"{NODE_PKI_DIR}/peer.crt", f"{NODE_PKI_DIR}/peer.key"
CLIENT_CRT, CLIENT_KEY = f"{NODE_PKI_DIR}/client.crt", f"{NODE_PKI_DIR}/client.key"

OPEN_STORE_WARNING = ("etcd runs in plaintext without authentication ([cluster] etcd_tls = false): the store is "
                      "open to the underlay, so anyone who reaches a node's underlay address, containers "
                      "included, can read and rewrite Docker's overlay state and the cluster membership")
PLAINTEXT_WHILE_TLS_WANTED = (
    "etcd runs in plaintext (http URLs, no client certificates), made by an earlier apply, although the inventory "
    "wants TLS: the store is open to the underlay (anyone who reaches a node's underlay address, containers "
    "included, can read and rewrite Docker's overlay state). `overlay-tui runbook apply --force` migrates it to "
    "TLS on the same data dirs, keeping Docker's keys, then points dockerd at it again")


def tls_flags() -> tuple[str, ...]:
    """etcd's TLS flags: certificates on client and peer URLs, client certificates required on both."""
    return ("--cert-file", SERVER_CRT, "--key-file", SERVER_KEY, "--trusted-ca-file", CA, "--client-cert-auth",
            "--peer-cert-file", PEER_CRT, "--peer-key-file", PEER_KEY, "--peer-trusted-ca-file", CA,
            "--peer-client-cert-auth")


def etcdctl_env(client_url: str) -> str:
    """The text of /etc/etcd/etcdctl.env for a node whose member serves ``client_url``."""
    q = shlex.quote
    return "\n".join([
        "# etcdctl on this node, over TLS with the node's client certificate; written by overlay-tui.",
        f"# Use: . {ENV_FILE} && etcdctl member list",
        '# v2:  ETCDCTL_API=2 etcdctl --ca-file "$ETCDCTL_CACERT" --cert-file "$ETCDCTL_CERT" '
        '--key-file "$ETCDCTL_KEY" cluster-health',
        "export ETCDCTL_API=3",
        f"export ETCDCTL_ENDPOINTS={q(client_url)}",
        f"export ETCDCTL_CACERT={CA}", f"export ETCDCTL_CERT={CLIENT_CRT}", f"export ETCDCTL_KEY={CLIENT_KEY}",
        "",
    ])


def node_files(certs: NodeCerts, client_url: str) -> dict[str, tuple[bytes, int]]:
    """Absolute path on the node -> (content, mode)."""
    out = {f"{NODE_PKI_DIR}/{name}": v for name, v in certs.files().items()}
    out[ENV_FILE] = (etcdctl_env(client_url).encode(), 0o644)
    return out


# Reads "<mode> <sha256> <path> <base64>" lines from stdin; writes each file whose sha256 differs
# (one sha256sum for all of them, then only shell builtins per file that is current).
_WRITE = r"""set -e
umask 077
[ -L /etc/etcd ] && { echo "/etc/etcd is a symlink; refusing to write certificates through it" >&2; exit 3; }
[ -L {dir} ] && { echo "{dir} is a symlink; refusing to write certificates through it" >&2; exit 3; }
mkdir -p /etc/etcd {dir}
chmod 700 {dir}
sums=$(sha256sum {paths} 2>/dev/null) || true
while read -r mode sum path data; do
  case "$sums" in *"$sum  $path"*) [ -f "$path" ] && [ ! -L "$path" ] && continue ;; esac
  tmp="$path.overlay-tui.$$.tmp"
  rm -f -- "$tmp"
  ( set -C; printf '%s' "$data" | base64 -d > "$tmp" )
  chmod "$mode" "$tmp"
  sync "$tmp" 2>/dev/null || true
  mv -f -- "$tmp" "$path"
  echo "wrote $path"
done
"""


def push_input(files: dict[str, tuple[bytes, int]]) -> str:
    lines = []
    for path, (data, mode) in sorted(files.items()):
        if not path.startswith("/etc/etcd/") or any(c.isspace() for c in path):
            raise EtcdError(f"refusing to write {path!r} on a node")
        lines.append(f"{mode:o} {hashlib.sha256(data).hexdigest()} {path} {base64.b64encode(data).decode()}")
    return "\n".join(lines) + "\n"


async def push(pool, node: str, certs: NodeCerts, client_url: str) -> list[str]:
    """Install the node's certificates and etcdctl.env; returns the paths written (none: all current)."""
    files = node_files(certs, client_url)
    script = _WRITE.replace("{dir}", NODE_PKI_DIR).replace("{paths}", " ".join(shlex.quote(p) for p in sorted(files)))
    res = await pool.run(node, script, input=push_input(files))
    if not res.ok:
        raise EtcdError(f"{node}: could not install the etcd certificates in {NODE_PKI_DIR}: "
                        f"{(res.stderr or res.stdout).strip() or f'exit {res.exit_status}'}")
    return [ln[len("wrote "):] for ln in res.stdout.splitlines() if ln.startswith("wrote ")]


def etcdctl_command(client_url: str, tls: bool, args: str) -> str:
    """``etcdctl`` against ``client_url`` on a node, with the node's client certificate when ``tls``."""
    creds = f" --cacert {CA} --cert {CLIENT_CRT} --key {CLIENT_KEY}" if tls else ""
    return f"ETCDCTL_API=3 etcdctl --endpoints {shlex.quote(client_url)}{creds} {args}"
