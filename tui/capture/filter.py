"""The capture pane's display filter: ``vni=256 node=docker-node1 host=10.0.0.2 proto=icmp``.

Terms are separated by spaces and all must hold (AND); a term's comma-separated values are
alternatives (OR); ``key!=value`` negates a term. Keys:

- ``vni``: VNI numbers or ranges (``vni=256``, ``vni=256-300,4097``);
- ``net`` (or ``network``): the VNI's network name (``net=demo``);
- ``node``: the node the frame was captured on (checked against the inventory when known);
- ``host`` (or ``addr``): an outer or inner address, MAC, subnet (``host=10.0.0.0/24``), node or
  container name (``host=c1`` matches ``c1@docker-node1``); ``src``/``dst`` look at one side only;
- ``proto``: ``icmp``, ``tcp``, ``udp``, ``arp``, ``icmpv6`` (``icmp6``), ``ipv6``, ``malformed``,
  ``not-vxlan``... (the labels the fast decoder gives, case-insensitive)

A bare number is read as a VNI and a bare protocol name as ``proto``. Anything else fails with a
:class:`CaptureFilterError` naming the offending term. The predicate reads only the frame's
decoded fields, so it costs a few dict/set lookups per frame.
"""
from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from core.errors import UsageError
from core.model import Frame

PROTOCOLS = ("icmp", "icmpv6", "tcp", "udp", "arp", "igmp", "gre", "esp", "ah", "sctp", "ospf", "vrrp", "ipv6",
             "malformed", "not-vxlan")
KEYS = ("vni", "net", "node", "host", "src", "dst", "proto")
_ALIASES = {"network": "net", "addr": "host", "address": "host", "protocol": "proto", "icmp6": "icmpv6"}
MAX_VNI = (1 << 24) - 1

Predicate = Callable[[Frame], bool]


class CaptureFilterError(UsageError):
    """The filter text is invalid; the message names the term and why."""


@dataclass(frozen=True)
class CaptureFilter:
    """A parsed filter: its normalised text and the predicate it compiles to."""

    text: str
    predicate: Predicate

    def __call__(self, frame: Frame) -> bool:
        return self.predicate(frame)


def _negated(pred: Predicate) -> Predicate:
    return lambda f: not pred(f)


def parse_filter(text: str, nodes: Iterable[str] = ()) -> CaptureFilter | None:
    """Parse ``text``; ``None`` for an empty filter. ``nodes`` (when given) validates ``node=``."""
    known_nodes = tuple(nodes)
    preds: list[Predicate] = []
    norm: list[str] = []
    for term in text.split():
        key, negate, values = _split_term(term)
        pred = _compile(key, values, term, known_nodes)
        preds.append(_negated(pred) if negate else pred)
        norm.append(f"{key}{'!=' if negate else '='}{','.join(values)}")
    if not preds:
        return None
    if len(preds) == 1:
        return CaptureFilter(" ".join(norm), preds[0])

    def every(f: Frame) -> bool:
        for p in preds:
            if not p(f):
                return False
        return True
    return CaptureFilter(" ".join(norm), every)


def _split_term(term: str) -> tuple[str, bool, list[str]]:
    if "=" not in term:
        word = term.lower()
        if word.isdigit():
            return "vni", False, [word]
        if _ALIASES.get(word, word) in PROTOCOLS:
            return "proto", False, [_ALIASES.get(word, word)]
        raise CaptureFilterError(f"filter term '{term}': expected key=value with key one of "
                                 f"{', '.join(KEYS)} (e.g. vni=256 proto=icmp)")
    key, _, value = term.partition("=")
    negate = key.endswith("!")
    key = key.rstrip("!").lower()
    key = _ALIASES.get(key, key)
    if key not in KEYS:
        raise CaptureFilterError(f"filter term '{term}': unknown key '{key}'; use one of {', '.join(KEYS)}")
    values = [v for v in value.split(",") if v]
    if not values:
        raise CaptureFilterError(f"filter term '{term}': no value after '='")
    return key, negate, values


def _compile(key: str, values: list[str], term: str, nodes: tuple[str, ...]) -> Predicate:
    if key == "vni":
        return _vni_predicate(values, term)
    if key == "proto":
        protos = set()
        for v in values:
            p = _ALIASES.get(v.lower(), v.lower())
            if p not in PROTOCOLS and "/" not in p:      # "ip/99", "eth/0x88cc": the decoder's raw labels
                raise CaptureFilterError(f"filter term '{term}': unknown protocol '{v}'; "
                                         f"use one of {', '.join(PROTOCOLS)}")
            protos.add(p)
        return lambda f: f.proto.lower() in protos
    if key == "node":
        bad = [v for v in values if nodes and v not in nodes]
        if bad:
            raise CaptureFilterError(f"filter term '{term}': node '{bad[0]}' is not in the inventory "
                                     f"({', '.join(nodes)})")
        wanted = set(values)
        return lambda f: f.node in wanted
    if key == "net":
        nets = set(values)
        return lambda f: f.network in nets
    return _host_predicate(key, values, term)


def _vni_predicate(values: list[str], term: str) -> Predicate:
    exact: set[int] = set()
    ranges: list[tuple[int, int]] = []
    for v in values:
        lo, dash, hi = v.partition("-")
        try:
            a = int(lo)
            b = int(hi) if dash else a
        except ValueError:
            raise CaptureFilterError(f"filter term '{term}': VNI '{v}' is not a number or a range "
                                     f"like 256-300") from None
        if not (0 <= a <= MAX_VNI and 0 <= b <= MAX_VNI) or a > b:
            raise CaptureFilterError(f"filter term '{term}': VNI '{v}' is outside 0-{MAX_VNI} or reversed")
        if a == b:
            exact.add(a)
        else:
            ranges.append((a, b))
    if not ranges:
        return lambda f: f.vni in exact
    return lambda f: f.vni is not None and (f.vni in exact or any(a <= f.vni <= b for a, b in ranges))


def _host_predicate(key: str, values: list[str], term: str) -> Predicate:
    words: set[str] = set()
    nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for v in values:
        if "/" in v:
            try:
                nets.append(ipaddress.ip_network(v, strict=False))
            except ValueError:
                raise CaptureFilterError(f"filter term '{term}': '{v}' is not a subnet like 10.0.0.0/24") from None
        else:
            words.add(v.lower())

    in_nets: dict[str, bool] = {}          # address -> inside one of the subnets (addresses repeat)

    def in_subnet(a: str) -> bool:
        hit = in_nets.get(a)
        if hit is None:
            try:
                ip = ipaddress.ip_address(a)
                hit = any(ip in net for net in nets)
            except ValueError:
                hit = False
            if len(in_nets) > 65536:
                in_nets.clear()
            in_nets[a] = hit
        return hit

    def side_matches(addr: str, mac: str, name: str | None, outer: str, outer_name: str | None) -> bool:
        if words:
            if addr in words or outer in words or mac.lower() in words or outer_name in words:
                return True
            if name and (name.lower() in words or name.split("@")[0].lower() in words):
                return True
        return bool(nets) and (in_subnet(addr) or in_subnet(outer))

    def src(f: Frame) -> bool:
        return side_matches(f.inner_src, f.inner_src_mac, f.src_name, f.outer_src, f.outer_src_name)

    def dst(f: Frame) -> bool:
        return side_matches(f.inner_dst, f.inner_dst_mac, f.dst_name, f.outer_dst, f.outer_dst_name)

    if key == "src":
        return src
    if key == "dst":
        return dst
    return lambda f: src(f) or dst(f)
