"""Who may change the cluster: a read-only console refuses every mutating call.

Every part that changes something is handed the one :class:`WriteGuard` of its service and calls
:meth:`WriteGuard.require` before it acts, so the refusal is the same sentence everywhere.
"""
from __future__ import annotations

from core.errors import ReadOnlyError


class WriteGuard:
    """Refuses changes when the service was opened read-only."""

    def __init__(self, read_only: bool = False) -> None:
        self.read_only = read_only

    def require(self, action: str) -> None:
        if self.read_only:
            raise ReadOnlyError(f"{action} is not available: this console is read-only")
