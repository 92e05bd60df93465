"""Watch etcd as an async stream of :class:`ClusterEvent`: v3 keys, members, and Docker's v2 tree.

The v3 watch is etcd3's gRPC Watch stream iterated in a thread of our own (so cancelling the call
ends the thread: nothing leaks); events cross to the event loop with ``call_soon_threadsafe``.
Members and the v2 tree (Docker writes through v2, which v3 watches do not see) are polled about
every 2 s and diffed. Events wait in a bounded :class:`EventQueue` (a reader that falls behind
loses the oldest, and is told how many); v3 values travel as the raw text etcd holds, formatted
only where they are shown.
"""
from __future__ import annotations

import asyncio
import json
import queue
import threading
from collections import deque
from dataclasses import asdict
from typing import Any

import grpc
from etcd3 import etcdrpc
from etcd3.etcdrpc import kv_pb2

from core.etcd.read import rpc_error_text
from core.model import ClusterEvent, EtcdCluster, KeyEntry

#: events held for a reader that falls behind; beyond it the oldest are dropped (and counted)
QUEUE_EVENTS = 10_000


class EventQueue:
    """A bounded queue of events for one watch stream, filled on the event loop.

    When full, the oldest event is dropped; the reader then gets a ``ClusterEvent("watch",
    "dropped", "queue", "<n> ...")`` before the events that followed. :meth:`fail` makes the next
    :meth:`get` raise (a bug in a producer ends the stream instead of stalling it).
    """

    def __init__(self, maxlen: int = QUEUE_EVENTS) -> None:
        self._items: deque[ClusterEvent] = deque()
        self.maxlen = maxlen
        self.dropped = 0                  #: events dropped in all
        self._unreported = 0
        self._error: BaseException | None = None
        self._ready = asyncio.Event()

    def put_nowait(self, event: ClusterEvent) -> None:
        if len(self._items) >= self.maxlen:
            self._items.popleft()
            self.dropped += 1
            self._unreported += 1
        self._items.append(event)
        self._ready.set()

    def fail(self, error: BaseException | None) -> None:
        if error is not None and self._error is None:
            self._error = error
            self._ready.set()

    def __len__(self) -> int:
        return len(self._items)

    async def get(self) -> ClusterEvent:
        while not self._items and self._error is None:
            self._ready.clear()
            await self._ready.wait()
        if self._error is not None:
            raise self._error
        if self._unreported:
            n, self._unreported = self._unreported, 0
            return ClusterEvent("watch", "dropped", "queue", f"{n} events dropped: the reader fell behind "
                                f"(at most {self.maxlen:,} wait)")
        return self._items.popleft()


class KeyWatchThread:
    """One gRPC Watch over every v3 key (key "\\0", range_end "\\0"), iterated in its own thread."""

    def __init__(self, client, loop: asyncio.AbstractEventLoop, out: EventQueue, start_revision: int = 0,
                 where: str = "") -> None:
        self.client, self.loop, self.out, self.where = client, loop, out, where
        self.start_revision = start_revision
        self.revision = 0                 # last revision seen: a new watch resumes after it
        self._requests: queue.Queue = queue.Queue()
        self._call: Any = None              # the gRPC streaming call, once started
        self._cancelled = threading.Event()
        self._lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, name="overlay-tui-etcd-watch", daemon=True)
        self.ended = asyncio.Event()

    def start(self) -> None:
        create = etcdrpc.WatchCreateRequest(key=b"\0", range_end=b"\0", start_revision=self.start_revision)
        self._requests.put(etcdrpc.WatchRequest(create_request=create))
        self.thread.start()

    def _request_iter(self):
        while True:
            req = self._requests.get()
            if req is None:
                return
            yield req

    def _emit(self, event: ClusterEvent) -> None:
        try:
            self.loop.call_soon_threadsafe(self.out.put_nowait, event)
        except RuntimeError:      # loop closed
            pass

    def _run(self) -> None:
        with self._lock:
            if self._cancelled.is_set():
                return
            call = self._call = etcdrpc.WatchStub(self.client.channel).Watch(self._request_iter())
        try:
            for resp in call:
                self.revision = max(self.revision, resp.header.revision)
                if resp.created:
                    self._emit(ClusterEvent(kind="watch", action="started", key="v3", value=self.where))
                if resp.canceled and resp.cancel_reason:
                    self._emit(ClusterEvent(kind="watch", action="error", key="v3", value=resp.cancel_reason))
                for ev in resp.events:
                    deleted = ev.type == kv_pb2.Event.DELETE
                    self._emit(ClusterEvent(kind="key", action="delete" if deleted else "put",
                                            key=ev.kv.key.decode(errors="replace"),
                                            value=None if deleted else ev.kv.value.decode(errors="replace"),
                                            source="v3"))
        except grpc.RpcError as e:
            if not self._cancelled.is_set():
                self._emit(ClusterEvent(kind="watch", action="error", key="v3", value=rpc_error_text(e)))
        except Exception as e:  # noqa: BLE001 - a bug in this thread: hand it to the stream's reader, who raises it
            try:
                self.loop.call_soon_threadsafe(self.out.fail, e)
            except RuntimeError:      # loop closed
                pass
        finally:
            self._requests.put(None)
            try:
                self.loop.call_soon_threadsafe(self.ended.set)
            except RuntimeError:
                pass

    def cancel(self, join: float = 2.0) -> None:
        """Cancel the gRPC call and wait for the thread to end."""
        with self._lock:
            self._cancelled.set()
            if self._call is not None:
                self._call.cancel()
        self._requests.put(None)
        if self.thread.is_alive():
            self.thread.join(join)


def diff_members(old: dict[str, dict], cluster: EtcdCluster) -> tuple[dict[str, dict], list[ClusterEvent]]:
    """Events for members added, removed, or changed (URLs, health, leader) since ``old``."""
    new = {(m.id or m.name): {k: v for k, v in asdict(m).items() if k not in ("latency_ms", "db_size", "raft_index")}
           for m in cluster.members}
    events = []
    for key, m in new.items():
        if key not in old:
            events.append(ClusterEvent("member", "added", m["name"] or key, json.dumps(m)))
        elif old[key] != m:
            events.append(ClusterEvent("member", "changed", m["name"] or key, json.dumps(m)))
    for key, m in old.items():
        if key not in new:
            events.append(ClusterEvent("member", "removed", m["name"] or key, json.dumps(m)))
    return new, events


def diff_keys(old: dict[str, str | None], entries: list[KeyEntry], source: str) -> tuple[dict, list[ClusterEvent]]:
    """put/delete events for a polled key tree (directories are skipped)."""
    new = {e.key: e.value for e in entries if not e.is_dir}
    events = [ClusterEvent("key", "put", k, v, source=source) for k, v in new.items() if old.get(k, object()) != v]
    events += [ClusterEvent("key", "delete", k, None, source=source) for k in old if k not in new]
    return new, events
