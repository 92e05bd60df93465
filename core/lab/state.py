"""The lab's bookkeeping: its recorded state, name checks, prerequisites and locks.

State of lab NAME lives in ``lab_dir(NAME)``: ``state.json`` (pids, namespaces, links, index),
the client key ``id_ed25519``, ``known_hosts``, ``inventory.toml`` and one directory per node
(init script and log, and the node-local /etc/ssh, /etc/docker, /var/lib/docker, /var/log, /tmp...).
Kernel-visible names (namespaces, the seat link) are global, so a lab name is taken machine-wide:
``/run/overlay-tui/labs/NAME.json`` records which state dir owns it.
"""
from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from core.errors import LabError, UsageError
from core.inventory import load_inventory
from core.model import Inventory
from core.paths import lab_dir, labs_dir

RUN_DIR = Path("/run/overlay-tui")
GLOBAL_LOCK = Path("/run/overlay-tui-lab.lock")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")
# binary -> Debian package that brings it (`make run` installs them)
REQUIRED_BINARIES = {"ip": "iproute2", "nsenter": "util-linux", "unshare": "util-linux", "mount": "mount",
                     "dockerd": "docker.io", "containerd": "containerd", "docker": "docker.io",
                     "sshd": "openssh-server", "ssh-keygen": "openssh-client"}


@dataclass(frozen=True)
class LabNodeInfo:
    """One node of an up lab."""

    name: str
    address: str
    netns: str
    pid: int                   # `unshare` in the root pid namespace; killing it ends the node
    init_pid: int | None       # the node's pid 1, as seen from the root pid namespace


@dataclass(frozen=True)
class LabInfo:
    """An up lab, as ``lab_up`` and ``lab_state`` describe it."""

    name: str
    index: int
    subnet: str
    seat_address: str
    seat_link: str
    switch_ns: str
    dir: str
    inventory_path: str
    key: str
    known_hosts: str
    nodes: tuple[LabNodeInfo, ...]
    seconds: float = 0.0       # how long `lab up` took (0 when it found the lab already up)
    healed: tuple[str, ...] = ()   # what `lab up` repaired or added on a lab that was up (one line each)

    def inventory(self) -> Inventory:
        return load_inventory(self.inventory_path)


def check_name(name: str) -> None:
    if not NAME_RE.match(name):
        raise UsageError(f"invalid lab name {name!r}: use letters, digits, '-' or '_' (at most 32, starting with a letter or digit)")


def check_can_run(teardown: bool = False) -> None:
    """Raise :class:`LabError` if this process cannot build (or, with ``teardown``, remove) a lab."""
    if os.geteuid() != 0:
        raise LabError("the lab needs root (network namespaces, mounts, daemons): run it with sudo, or as root")
    needed = {"ip": "iproute2"} if teardown else REQUIRED_BINARIES
    missing = sorted({pkg for binary, pkg in needed.items() if not _which(binary)})
    if missing:
        raise LabError(f"missing programs for the lab: install the Debian package(s) {' '.join(missing)} "
                       f"(`make run` does it, or `apt-get install {' '.join(missing)}`)")


def _which(binary: str) -> str | None:
    return shutil.which(binary, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin:/usr/bin:/bin")


class FileLock:
    """An exclusive flock on ``path`` (lock files stay in /run; they are empty)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: TextIO | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = self._fh = open(self.path, "a")
        fcntl.flock(fh, fcntl.LOCK_EX)

    def release(self) -> None:
        if self._fh is not None:
            self._fh.close()        # closing drops the lock
            self._fh = None

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def lab_lock(name: str) -> FileLock:
    return FileLock(RUN_DIR / "locks" / f"{name}.lock")


def owner_file(name: str) -> Path:
    return RUN_DIR / "labs" / f"{name}.json"


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def check_owner(name: str, d: Path) -> None:
    """Refuse a lab name that another state dir's live lab holds."""
    owner = read_json(owner_file(name))
    if owner and owner.get("dir") != str(d) and (Path(owner["dir"]) / "state.json").is_file():
        raise LabError(f"lab {name!r} is already up from another state dir ({owner['dir']}): pick another "
                       f"--name, or take it down with OVERLAY_TUI_STATE={Path(owner['dir']).parent.parent} "
                       f"overlay-tui lab down --name {name}")


def all_states() -> list[dict]:
    states = [s for p in labs_dir().glob("*/state.json") if (s := read_json(p))]
    for p in (RUN_DIR / "labs").glob("*.json"):
        owner = read_json(p)
        if owner and (s := read_json(Path(owner.get("dir", "/nonexistent")) / "state.json")):
            states.append(s)
    return states


def info_from_state(state: dict) -> LabInfo:
    d = Path(state["dir"])
    return LabInfo(
        name=state["name"], index=state["index"], subnet=state["subnet"], seat_address=state["seat_address"],
        seat_link=state["seat_link"], switch_ns=state["switch_ns"], dir=str(d),
        inventory_path=str(d / "inventory.toml"), key=str(d / "id_ed25519"), known_hosts=str(d / "known_hosts"),
        nodes=tuple(LabNodeInfo(n["name"], n["address"], n["netns"], n["pid"], n.get("init_pid"))
                    for n in state["nodes"]),
        seconds=state.get("seconds", 0.0))


def lab_state(name: str = "lab") -> LabInfo | None:
    """The lab's recorded state if ``lab up`` finished building it, else None."""
    state = read_json(lab_dir(name) / "state.json")
    if not state or state.get("phase") != "up":
        return None
    return info_from_state(state)


def not_up(name: str) -> LabError:
    if (lab_dir(name) / "state.json").is_file():
        return LabError(f"lab {name!r} is half-built (a failed or interrupted `lab up`): clean it with "
                        f"`overlay-tui lab down --name {name}`, then `overlay-tui lab up --name {name}`")
    return LabError(f"lab {name!r} is not up: start it with `overlay-tui lab up --name {name}`")
