"""The frame list's address columns: `src > dst` fitted to a width, keeping the names' ends."""
from __future__ import annotations

from tui.capture.frame_row import elide_middle, fit_pair


def test_a_pair_that_fits_is_left_alone():
    assert fit_pair("198.19.1.2", "198.19.1.3", 24) == "198.19.1.2 > 198.19.1.3"


def test_long_names_keep_their_distinguishing_ends_and_the_width():
    out = fit_pair("probe-docker-node1", "web-frontend-node2", 31)      # no shared prefix: each side elided
    assert len(out) == 31
    src, dst = out.split(" > ")
    assert src.endswith("node1") and dst.endswith("node2") and src.startswith("probe-")


def test_a_shared_prefix_is_said_once_instead_of_cutting_names_mid_word():
    # seen at 120x36: "dock…node2 > docke…node1", "probe-…-node2 > probe-…r-node1"
    assert fit_pair("docker-node2", "docker-node1", 22) == "docker-node2 > …node1"
    assert fit_pair("docker-node2", "docker-node1", 20) == "…node2 > …node1"
    assert fit_pair("probe-docker-node2", "probe-docker-node1", 30) == "probe-docker-node2 > …node1"
    assert fit_pair("probe-docker-node2", "probe-docker-node1", 24) == "…node2 > …node1"
    assert fit_pair("10.0.0.2", "10.0.0.3", 12) != "…2 > …3"      # addresses are not names: no word prefix


def test_a_short_side_gives_its_spare_room_to_the_other():
    out = fit_pair("?", "probe-docker-node2", 16)
    assert out.startswith("? > ") and out.endswith("node2") and len(out) == 16


def test_elide_middle_never_exceeds_the_width():
    for width in range(0, 20):
        assert len(elide_middle("probe-docker-node12", width)) <= width
