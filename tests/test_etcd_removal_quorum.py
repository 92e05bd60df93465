"""The one rule every door uses before removing an etcd member: the members left must keep a quorum."""
from __future__ import annotations

from core.etcd.health import after_removal, quorum_kept, removal_refusal
from core.model import EtcdMember


def _members(*health: tuple[str, bool]) -> list[EtcdMember]:
    return [EtcdMember(id=f"{i:x}", name=n, peer_urls=[], client_urls=[], healthy=h) for i, (n, h) in enumerate(health, 1)]


def test_a_node_without_a_member_touches_no_quorum():
    members = _members(("n1", True), ("n2", True))
    assert after_removal("n9", members) is None and removal_refusal("n9", members) is None


def test_removing_one_of_three_healthy_keeps_quorum():
    members = _members(("n1", True), ("n2", True), ("n3", True))
    assert after_removal("n3", members) == (2, 2) and quorum_kept(2, 2)
    assert removal_refusal("n3", members) is None


def test_a_removal_that_would_leave_no_quorum_is_refused_with_the_counts():
    members = _members(("n1", True), ("n2", False), ("n3", True))
    assert after_removal("n1", members) == (1, 2) and not quorum_kept(1, 2)
    assert removal_refusal("n1", members) == ("removing n1's etcd member would leave 1 healthy of 2 members, no "
                                              "quorum: heal the cluster first (`overlay-tui runbook apply`)")
    assert "0 healthy of 0 members" in (removal_refusal("n1", _members(("n1", True))) or "")
