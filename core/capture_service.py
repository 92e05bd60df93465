"""The capture part of :class:`core.live_service.LiveService`."""
from __future__ import annotations


class CaptureMixin:
    """Capture methods of the live service (filled in by the capture work)."""
