"""Clear reasons where the tool used to be vague: a leader election named as such, "etcd has no quorum"
instead of networks silently vanishing, a stopped etcd with the last fatal line of its log."""
from __future__ import annotations

import grpc
from rich.text import Text
from textual.widgets import DataTable
from tui_fixtures import SIZE, recorded_app, settle

from core.cli.status import _print_control_plane
from core.etcd.health import assemble_cluster, no_quorum_reason
from core.etcd.read import Endpoint, Probe, rpc_error_text
from core.model import EtcdCluster, EtcdMember, NetworkListing, NodeStatus
from tui.panes.nodes import node_cells


class _Rpc(grpc.RpcError):
    def __init__(self, code, details: str) -> None:
        self._code, self._details = code, details

    def code(self):
        return self._code

    def details(self) -> str:
        return self._details


def test_a_leader_election_is_named_not_nothing_answers():
    text = rpc_error_text(_Rpc(grpc.StatusCode.UNAVAILABLE, "etcdserver: leader changed"))
    assert "leader election is in progress" in text and "nothing answers" not in text
    assert "no leader" in rpc_error_text(_Rpc(grpc.StatusCode.UNAVAILABLE, "etcdserver: no leader"))
    refused = rpc_error_text(_Rpc(grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses"))
    assert "nothing answers there" in refused


def _member(mid: str, name: str) -> EtcdMember:
    return EtcdMember(id=mid, name=name, peer_urls=[], client_urls=[f"http://10.0.0.{mid}:2379"])


def test_members_that_answer_but_know_no_leader_are_an_election():
    eps = [Endpoint("n1", "10.0.0.1", 2379), Endpoint("n2", "10.0.0.2", 2379)]
    listed = [_member("1", "n1"), _member("2", "n2")]
    probes = [Probe(eps[0], members=listed, member_id=1, leader_id=0, healthy=False,
                    error="knows no leader: a leader election is in progress (or too few members are up for a quorum)",
                    extra={"election": True}),
              Probe(eps[1], members=listed, member_id=2, leader_id=0, healthy=False, error="x", extra={"election": True})]
    cluster = assemble_cluster(probes, eps)
    assert cluster.error and "leader election is in progress" in cluster.error
    assert "leader election" in (cluster.members[0].error or "")


def test_no_quorum_reason():
    m = [_member("1", "n1"), _member("2", "n2"), _member("3", "n3")]
    m[0].healthy = True
    assert no_quorum_reason(EtcdCluster(m, False, [])) == "etcd has no quorum (1 of 3 members answer, 2 needed)"
    m[1].healthy = True
    assert no_quorum_reason(EtcdCluster(m, False, [])) is None
    gone = EtcdCluster([EtcdMember(id="", name="n1", peer_urls=[], client_urls=[])], False, [], error="no answer")
    assert no_quorum_reason(gone) == "etcd has no quorum: no member answers"


def test_status_prints_why_networks_are_missing(capsys):
    extra = {"etcd": {"summary": []}, "networks": [], "network_problems": {
        "store": "unknown: etcd has no quorum (0 of 3 members answer, 2 needed): demo cannot be listed\x1b[2J"}}
    _print_control_plane(extra)
    out = capsys.readouterr().out
    assert "store: unknown: etcd has no quorum" in out and "demo cannot be listed" in out and "\x1b" not in out


def test_a_stopped_etcd_shows_its_last_fatal_line():
    n = NodeStatus("n1", "10.0.0.1", True, etcd_state="stopped",
                   etcd_last_error="2026-11-30 03:10:00 C | etcdserver: write wal: no space left on device")
    cell = node_cells(n)[3]
    assert isinstance(cell, Text) and "no space left on device" in cell.plain and cell.plain.startswith("stopped")


async def test_networks_pane_keeps_a_vanished_network_as_unknown_with_the_reason():
    app = recorded_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        pane = app.query_one("#networks")
        before = {n.name for n in pane.networks}
        assert "demo" in before
        svc = app.service
        nets = await svc.networks()

        async def listing() -> NetworkListing:
            return NetworkListing([n for n in nets if n.name != "demo"], {
                "store": "unknown: etcd has no quorum (1 of 3 members answer, 2 needed): demo cannot be listed"})
        svc.network_listing = listing          # type: ignore[method-assign]  # the store loses its quorum
        pane.fetch()
        await settle(pilot)
        table = pane.query_one(DataTable)
        demo = next(n for n in pane.networks if n.name == "demo")
        row = [str(c) for c in table.get_row(demo.id)]
        assert "unknown" in row and any("etcd has no quorum" in c for c in row)
        assert "etcd has no quorum" in str(pane.border_subtitle)
