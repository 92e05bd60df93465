"""The etcd pane: members with leader, health, latency, raft term and index, db size and version.

It refreshes on a timer and sooner when the watch reports a change (the App forwards it).
"""
from __future__ import annotations

from rich.markup import escape
from rich.text import Text
from textual.binding import Binding

from core.model import EtcdCluster, EtcdMember
from tui.console import console
from tui.messages import EtcdLoaded
from tui.panes.base import Pane

DASH = Text("—", style="dim")


def human_bytes(n: float | None) -> Text:
    if n is None:
        return DASH
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return Text(f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}", justify="right")
        n /= 1024
    return DASH  # pragma: no cover


def health_text(m: EtcdMember) -> Text:
    """A short health word (the column is narrow; the member's detail has the whole error)."""
    if m.healthy:
        return Text("● ok", style="bold green")
    err = m.error or ""
    if err.startswith("unknown"):
        return Text("? unknown", style="bold yellow")
    if err.startswith("no answer") or "unavailable" in err or "not started" in err:
        return Text("✗ down", style="bold red")
    return Text("✗ unhealthy", style="bold red")


def member_cells(m: EtcdMember) -> tuple[object, ...]:
    """One table row for a member."""
    health = health_text(m)
    num = lambda v: Text(str(v), justify="right") if v is not None else DASH  # noqa: E731
    name = Text.assemble(("★ ", "bold yellow") if m.leader else "  ", (m.name or "(unstarted)", "bold"))
    return (name, health, Text(f"{m.latency_ms:.1f} ms", justify="right") if m.latency_ms is not None else DASH,
            num(m.raft_term), num(m.raft_index), human_bytes(m.db_size), Text(m.version) if m.version else DASH,
            Text(m.id, style="dim"))


def transport_title(title: str, tls: bool | None, warning: str | None) -> str | Text:
    """The pane title, saying when the store is open to the underlay (plaintext) or protected (TLS)."""
    if warning and tls is False:
        return Text.assemble(title + " · ", ("⚠ PLAINTEXT: store open to the underlay (Enter: details)", "bold red"))
    if warning:
        return Text.assemble(title + " · TLS ", ("⚠ certificates need renewing (Enter: details)", "bold yellow"))
    if tls:
        return Text.assemble(title + " · ", ("TLS", "green"))
    return title


class EtcdPane(Pane):
    """The etcd cluster's members, kept current by a periodic refresh and the watch."""

    PANE_TITLE = "etcd members"
    COLUMNS = (("name", "Member (★ leader)"), ("health", "Health"), ("latency", "Latency"), ("term", "Term"),
               ("index", "Index"), ("db", "DB size"), ("version", "Version"), ("id", "ID"))
    REFRESH_SECONDS = 3.0
    BINDINGS = [
        Binding("r", "refresh", "Refresh", id="etcd.refresh"),
        Binding("k", "keys", "Browse keys", id="etcd.keys"),
        Binding("enter", "detail", "Detail", show=False, id="etcd.detail"),
    ]

    def __init__(self, *, id: str) -> None:
        super().__init__(id=id)
        self.cluster: EtcdCluster | None = None  #: the last EtcdCluster loaded

    async def load(self) -> EtcdLoaded:
        return EtcdLoaded(await console(self).service.etcd_cluster())

    def on_etcd_loaded(self, msg: EtcdLoaded) -> None:
        msg.stop()
        c = self.cluster = msg.cluster
        healthy = sum(m.healthy for m in c.members)
        leader = next((m.name for m in c.members if m.leader), "none")
        summary = f"{'healthy' if c.healthy else 'UNHEALTHY'} · {healthy}/{len(c.members)} members ok · leader {leader}"
        self.show_rows([(m.id, member_cells(m)) for m in c.members], summary)
        self.border_title = transport_title(self.PANE_TITLE, c.tls, c.warning)
        if c.error or not c.healthy:
            self.border_subtitle = Text(summary + (f" · {c.error}" if c.error else ""), style="bold red")

    def action_detail(self) -> None:
        """The member's URLs and status, and the whole cluster's health lines (as `etcdctl cluster-health`)."""
        from tui.screens.detail import DetailScreen

        if self.cluster is None:
            return
        m = next((m for m in self.cluster.members if m.id == self.selected_key), None)
        if m is None:
            return
        cells = member_cells(m)
        rows = [("id", m.id), ("leader", "yes" if m.leader else "no"), ("health", cells[1]), ("latency", cells[2]),
                ("raft term / index", f"{m.raft_term} / {m.raft_index}" if m.raft_term is not None else None),
                ("db size", cells[5]), ("version", m.version),
                ("peer URLs", ", ".join(m.peer_urls)), ("client URLs", ", ".join(m.client_urls)),
                ("error", Text(m.error, style="red") if m.error else None),
                ("cluster health", "\n".join(self.cluster.summary) or self.cluster.error)]
        if self.cluster.warning:              # plaintext (the store is open to the underlay) or certificates due
            rows.insert(-1, ("transport", Text(self.cluster.warning, style="bold red")))
        elif self.cluster.tls:
            rows.insert(-1, ("transport", "TLS: https with client certificates"))
        self.app.push_screen(DetailScreen(f"[b]{escape(m.name or m.id)}[/b]  etcd member", rows))

    def action_keys(self) -> None:
        from tui.screens.key_browser import KeyBrowserScreen

        self.app.push_screen(KeyBrowserScreen())
