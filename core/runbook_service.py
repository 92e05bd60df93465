"""The runbook part of :class:`core.live_service.LiveService`."""
from __future__ import annotations


class RunbookMixin:
    """Runbook methods of the live service (filled in by the runbook work)."""
