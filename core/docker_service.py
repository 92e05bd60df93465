"""The docker part of :class:`core.live_service.LiveService`."""
from __future__ import annotations


class DockerMixin:
    """Docker methods of the live service (filled in by the docker work)."""
