"""The console's etcd pane says when the store is open to the underlay (plaintext) or behind TLS."""
from __future__ import annotations

from rich.text import Text
from tui_fixtures import SIZE, STATE, press, settle, steady

from core.etcd.tls import OPEN_STORE_WARNING
from core.recorded.service import RecordedService
from tui.app import OverlayApp


def title(app) -> str:
    return Text.from_markup(str(app.query_one("#etcd").border_title)).plain


class PlaintextService(RecordedService):
    """The recorded lab, with etcd in plaintext ([cluster] etcd_tls = false)."""

    async def etcd_cluster(self):
        cluster = await super().etcd_cluster()
        cluster.tls, cluster.warning = False, OPEN_STORE_WARNING
        return cluster


class TlsService(RecordedService):
    async def etcd_cluster(self):
        cluster = await super().etcd_cluster()
        cluster.tls = True
        return cluster


async def test_a_plaintext_store_is_said_in_the_pane_title_and_the_member_card():
    app = steady(OverlayApp(PlaintextService.load(STATE), refresh_timers=False))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert title(app).startswith("etcd members · ⚠ PLAINTEXT: store open to the underlay")
        await press(pilot, "2", "enter")
        rows = dict((k, str(v)) for k, v in app.screen.rows)
        assert rows["transport"] == OPEN_STORE_WARNING
        assert "anyone who reaches a node's underlay address" in rows["transport"]


async def test_a_tls_store_says_tls_and_an_unknown_one_nothing():
    app = steady(OverlayApp(TlsService.load(STATE), refresh_timers=False))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert title(app) == "etcd members · TLS"
        await press(pilot, "2", "enter")
        assert dict((k, str(v)) for k, v in app.screen.rows)["transport"] == "TLS: https with client certificates"
    app = steady(OverlayApp(RecordedService.load(STATE), refresh_timers=False))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert title(app) == "etcd members"


class RenewService(RecordedService):
    async def etcd_cluster(self):
        cluster = await super().etcd_cluster()
        cluster.tls, cluster.warning = True, "etcd's TLS certificates need renewing (docker-node1 server: missing)"
        return cluster


async def test_certificates_due_are_said_without_calling_the_store_plaintext():
    app = steady(OverlayApp(RenewService.load(STATE), refresh_timers=False))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert title(app) == "etcd members · TLS ⚠ certificates need renewing (Enter: details)"
