"""The service on real nodes: composed of one mixin per concern, each in its own module.

``LiveService.open(path)`` resolves the inventory (the lab's when none is given) and keeps one
SSH pool for everything it does.
"""
from __future__ import annotations

from core.capture_service import CaptureMixin
from core.docker_service import DockerMixin
from core.errors import ReadOnlyError
from core.etcd_service import EtcdMixin
from core.inventory import load_inventory
from core.model import Inventory
from core.nodes_service import NodesMixin
from core.runbook_service import RunbookMixin
from core.ssh import SSHPool


class LiveService(NodesMixin, EtcdMixin, DockerMixin, RunbookMixin, CaptureMixin):
    """Implements :class:`core.service.Service` over SSH, etcd and the Docker SDK."""

    def __init__(self, inventory: Inventory, *, read_only: bool = False) -> None:
        self.inventory = inventory
        self.read_only = read_only
        self.pool = SSHPool(inventory.nodes)
        self._closers: list = []

    @classmethod
    def open(cls, inventory_path: str | None = None, *, read_only: bool = False) -> "LiveService":
        return cls(resolve_inventory(inventory_path), read_only=read_only)

    def require_writable(self, action: str) -> None:
        if self.read_only:
            raise ReadOnlyError(f"{action} is not available: this console is read-only")

    async def close(self) -> None:
        for closer in reversed(self._closers):
            try:
                await closer()
            except Exception:  # noqa: BLE001 - best effort on shutdown
                pass
        self._closers.clear()
        await self.pool.close()


def resolve_inventory(path: str | None) -> Inventory:
    """``path`` if given, else $OVERLAY_TUI_INVENTORY, else the default lab's inventory when it is up."""
    import os

    from core.errors import NoInventoryError
    from core.paths import lab_dir

    path = path or os.environ.get("OVERLAY_TUI_INVENTORY")
    if path:
        return load_inventory(path)
    lab_inv = lab_dir("lab") / "inventory.toml"
    if lab_inv.is_file():
        return load_inventory(lab_inv)
    raise NoInventoryError("no inventory given and no lab is up: pass --inventory FILE (see README, "
                           "'Your own hosts') or start the local lab with `overlay-tui lab up`")
