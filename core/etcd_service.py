"""The etcd part of :class:`core.live_service.LiveService`."""
from __future__ import annotations


class EtcdMixin:
    """Etcd methods of the live service (filled in by the etcd work)."""
