"""The links matcher on synthetic sightings (tests/links_frames.py): loss, duplicates, reordering,
clock offset estimation with a planted skew, window expiry and eviction under a memory bound."""
from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from links_frames import Plan, sightings

from core.links.identity import frame_key
from core.links.matcher import LinkMatcher
from core.links.stats import RESERVOIR


def run(plan: Plan, nodes=("n1", "n2"), batch: int = 500, **kw) -> tuple[LinkMatcher, list]:
    frames = sightings(plan)
    m = LinkMatcher(nodes, **kw)
    for i in range(0, len(frames), batch):
        m.add(frames[i:i + batch])
    m.finish()
    return m, frames


def truth(frames) -> dict[tuple[str, str], Counter]:
    """Per (src, dst): how many frames were seen 1, 2, 3 ... times (1 = lost, 3 = duplicated)."""
    seen = Counter((f.outer_src_name, f.outer_dst_name, frame_key(f.raw)) for f in frames)
    out: dict[tuple[str, str], Counter] = {}
    for (s, d, _), n in seen.items():
        out.setdefault((s, d), Counter())[n] += 1
    return out


def pair(snap, src, dst):
    return next(p for p in snap.pairs if p.src == src and p.dst == dst)


def test_loss_on_one_direction_only():
    m, frames = run(Plan(count=3000, loss={("n1", "n2"): 0.2}))
    snap = m.snapshot(final=True)
    t = truth(frames)
    a, b = pair(snap, "n1", "n2"), pair(snap, "n2", "n1")
    assert (a.sent, a.lost, a.received) == (3000, t[("n1", "n2")][1], t[("n1", "n2")][2])
    assert 0.17 < a.loss < 0.23
    assert (b.sent, b.received, b.lost) == (3000, 3000, 0)
    assert a.duplicated == b.duplicated == a.reordered == b.reordered == 0
    assert snap.evicted == 0 and snap.in_flight == 0


def test_duplicates_are_counted_not_received_twice():
    m, frames = run(Plan(count=2000, dup=0.05))
    snap = m.snapshot(final=True)
    t = truth(frames)
    a = pair(snap, "n1", "n2")
    assert a.duplicated == t[("n1", "n2")][3] > 50
    assert a.received == 2000 and a.lost == 0


def test_reordering_counted_in_the_direction_it_happens():
    m, _ = run(Plan(count=2000, reorder=0.05, flows=[("n1", "n2", 256)]))
    a = pair(m.snapshot(final=True), "n1", "n2")
    assert 60 < a.reordered < 140                     # ~5% of 2000 arrive after a later frame
    m2, _ = run(Plan(count=2000, flows=[("n1", "n2", 256)]))
    assert pair(m2.snapshot(final=True), "n1", "n2").reordered == 0


def test_clock_offset_removed_with_its_uncertainty():
    plan = Plan(count=2000, delay=0.0003, jitter=0.0002, clock={"n2": 0.0042})
    snap = run(plan)[0].snapshot(final=True)
    a, b = pair(snap, "n1", "n2"), pair(snap, "n2", "n1")
    assert a.offset_ms is not None and b.offset_ms is not None and a.uncertainty_ms is not None
    assert abs(a.offset_ms - 4.2) <= a.uncertainty_ms and a.offset_ms == -b.offset_ms
    assert a.uncertainty_ms < 0.35                    # half the least round trip: ~0.3 ms
    for p in (a, b):                                  # true one-way delay 0.3-0.5 ms, p50 ~0.4 ms
        assert p.delay_p50_ms is not None and abs(p.delay_p50_ms - 0.4) < 0.1
    assert any("n1 and n2 clocks differ by 4.2" in n for n in snap.clock_notes)


def test_the_node_whose_clock_is_off_is_named():
    flows = [(a, b, 256) for a in ("n1", "n2", "n3") for b in ("n1", "n2", "n3") if a != b]
    snap = run(Plan(count=500, flows=flows, clock={"n3": -0.02}), nodes=("n1", "n2", "n3"))[0].snapshot(final=True)
    assert [n for n in snap.clock_notes if "looks off" in n] == [
        "n3's clock looks off: 20.000 ms behind n1's (± 0.200 ms); one-way delays have it removed"]
    assert all(abs(p.delay_p50_ms - 0.25) < 0.06 for p in snap.pairs)


def test_one_direction_only_reports_raw_delay_and_a_clock_behind():
    snap = run(Plan(count=300, flows=[("n1", "n2", 256)], clock={"n2": -0.01}))[0].snapshot(final=True)
    a = pair(snap, "n1", "n2")
    assert a.offset_ms is None and a.delay_p50_ms is not None and a.delay_p50_ms < 0
    assert any("n2's clock is at least" in n for n in snap.clock_notes)


def test_lost_only_once_the_window_has_passed():
    plan = Plan(count=100, flows=[("n1", "n2", 256)], loss={("n1", "n2"): 1.0})
    m = LinkMatcher(["n1", "n2"], window=2.0)
    frames = sightings(plan)                          # 100 frames over 0.1 s: none older than the window
    m.add(frames)
    assert pair(m.snapshot(), "n1", "n2").lost == 0 and m.snapshot().pending == 100
    late = sightings(Plan(count=1, flows=[("n2", "n1", 256)], t0=plan.t0 + 5))
    m.add(late)
    assert pair(m.snapshot(), "n1", "n2").lost == 100


def test_memory_bounded_with_eviction_counted():
    plan = Plan(count=20000, gap=0.00001, loss={("n1", "n2"): 1.0, ("n2", "n1"): 1.0})
    m = LinkMatcher(["n1", "n2"], window=60.0, max_pending=1000)
    frames = sightings(plan)
    for i in range(0, len(frames), 500):
        m.add(frames[i:i + 500])
        assert len(m.pending) <= 1000
    snap = m.snapshot()
    assert snap.evicted == 40000 - 1000 and snap.pending == 1000
    assert pair(snap, "n1", "n2").lost == 0          # evicted is not judged lost
    big = run(Plan(count=10000, gap=0.0001))[0]
    assert all(len(st.reservoir) == RESERVOIR for st in big.stats.values())


def test_foreign_and_unwatched_frames_are_not_counted():
    frames = sightings(Plan(count=50, flows=[("n1", "n3", 256)]))
    m = LinkMatcher(["n1", "n2"])
    m.add(frames)
    snap = m.snapshot()
    assert snap.unwatched == 100 and all(p.sent == 0 for p in snap.pairs)   # both sightings of each
    for f in frames:
        f.node = "n2"                                 # captured on a node that neither sent nor received it
    m2 = LinkMatcher(["n1", "n2", "n3"])
    m2.add(frames)
    assert m2.foreign == 100 and m2.frames == 100


def test_per_vni_rows_and_all_vni_pair_rows():
    plan = Plan(count=400, flows=[("n1", "n2", 256), ("n1", "n2", 257), ("n2", "n1", 256)], loss={("n1", "n2"): 0.1})
    snap = run(plan)[0].snapshot(final=True)
    vnis = [(r.src, r.dst, r.vni) for r in snap.per_vni]
    assert vnis == [("n1", "n2", 256), ("n1", "n2", 257), ("n2", "n1", 256)]
    a = pair(snap, "n1", "n2")
    assert a.vni is None and a.sent == 800 and a.lost == sum(r.lost for r in snap.per_vni if r.src == "n1")
    assert len(a.loss_history) == 60 and a.loss_history[-1] is not None


def test_a_quiet_link_gets_its_losses_judged_by_wall_clock():
    m = LinkMatcher(["n1", "n2"], window=2.0)
    m.add(sightings(Plan(count=50, flows=[("n1", "n2", 256)], loss={("n1", "n2"): 1.0})))
    m.idle(1.0)
    assert pair(m.snapshot(), "n1", "n2").lost == 0
    m.idle(2.5)
    assert pair(m.snapshot(), "n1", "n2").lost == 50


FIXTURES = Path(__file__).parent / "fixtures"


async def test_recorded_state_replays_the_two_ended_recording_through_the_matcher():
    from core.recorded.service import RecordedService

    svc = RecordedService.load(FIXTURES / "lab_state.json")
    snaps = [s async for s in svc.links([], 30)]
    final = snaps[-1]
    assert final.final and final.frames == 655 and final.in_flight == 0
    rows = {(p.src, p.dst): p for p in final.pairs}
    assert len(rows) == 6
    for (src, _), p in rows.items():      # 25% of docker-node1's frames were dropped in the switch
        assert p.sent >= 50 and (0.1 < p.loss < 0.45 if src == "docker-node1" else p.lost == 0), p
    assert any("replaying links_lab.pcap" in n for s in snaps for n in s.notices)


def test_cli_links_json_on_recorded_state(capsys):
    from core.cli.main import main

    assert main(["--replay-state", str(FIXTURES / "lab_state.json"), "links", "--json", "--per-vni"]) == 0
    import json
    data = json.loads(capsys.readouterr().out)
    assert {(p["src"], p["dst"], p["vni"]) for p in data["pairs"]} == {
        (a, b, 256) for a in ("docker-node1", "docker-node2", "docker-node3")
        for b in ("docker-node1", "docker-node2", "docker-node3") if a != b}
    assert {"sent", "received", "lost", "loss", "reordered", "duplicated", "delay_p50_ms", "delay_p99_ms"} \
        <= set(data["pairs"][0])


def test_cli_links_unknown_node_is_a_usage_error(capsys):
    from core.cli.main import main

    assert main(["--replay-state", str(FIXTURES / "lab_state.json"), "links", "--node", "nope"]) == 2
    assert "unknown node nope" in capsys.readouterr().err
