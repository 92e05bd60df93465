"""Test helper: VXLAN frames built with scapy (every layer combination the decoder knows), and a
mixed pcap with malformed and non-VXLAN frames. Used by the decoder, pcap, flow and CLI tests."""
from __future__ import annotations

from pathlib import Path

from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop
from scapy.layers.l2 import ARP, Dot1AD, Dot1Q, Ether
from scapy.layers.vxlan import VXLAN
from scapy.packet import Raw

OUTER4 = ("198.18.0.1", "198.18.0.2")
OUTER6 = ("2001:db8::1", "2001:db8::2")
INNER_MACS = ("02:42:0a:00:00:02", "02:42:0a:00:00:03")


def vxlan(inner, vni: int = 256, *, outer_tags: int = 0, outer_v6: bool = False, port: int = 4789,
          sport: int = 43499, flags: int = 0x08) -> bytes:
    """Outer Ethernet (+ 0-2 VLAN tags) / IPv4 or IPv6 / UDP / VXLAN / ``inner``, as bytes."""
    o = Ether(src="02:00:c6:12:00:01", dst="02:00:c6:12:00:02")
    if outer_tags == 2:
        o = o / Dot1AD(vlan=300) / Dot1Q(vlan=10)
    elif outer_tags == 1:
        o = o / Dot1Q(vlan=10)
    o = o / (IPv6(src=OUTER6[0], dst=OUTER6[1]) if outer_v6 else IP(src=OUTER4[0], dst=OUTER4[1]))
    return bytes(o / UDP(sport=sport, dport=port) / VXLAN(vni=vni, flags=flags) / inner)


def inner_eth(tagged: bool = False, dst: str = INNER_MACS[1]):
    e = Ether(src=INNER_MACS[0], dst=dst)
    return e / Dot1Q(vlan=5) if tagged else e


INNER_PAYLOADS = {
    # name: (scapy L3+, expected proto, expected inner src, expected inner dst, expected info)
    "icmp": (IP(src="10.0.0.2", dst="10.0.0.3") / ICMP(type=8), "ICMP", "10.0.0.2", "10.0.0.3", "echo request"),
    "icmp-unreach": (IP(src="10.0.0.3", dst="10.0.0.2") / ICMP(type=3, code=1), "ICMP", "10.0.0.3", "10.0.0.2",
                     "unreachable (code 1)"),
    "tcp": (IP(src="10.0.1.5", dst="10.0.1.9") / TCP(sport=40000, dport=80, flags="S"), "TCP", "10.0.1.5",
            "10.0.1.9", "40000 > 80 [S]"),
    "tcp-options": (IP(src="10.0.1.5", dst="10.0.1.9", options=[b"\x01\x01\x01\x00"]) /
                    TCP(sport=1, dport=2, flags="PA") / Raw(b"x" * 20), "TCP", "10.0.1.5", "10.0.1.9", "1 > 2 [P.]"),
    "udp": (IP(src="10.0.2.7", dst="10.0.2.8") / UDP(sport=5353, dport=53) / Raw(b"q" * 30), "UDP", "10.0.2.7",
            "10.0.2.8", "5353 > 53"),
    "gre": (IP(src="10.0.2.7", dst="10.0.2.8", proto=47) / Raw(b"g" * 8), "GRE", "10.0.2.7", "10.0.2.8", ""),
    "ipv4-frag": (IP(src="10.0.0.2", dst="10.0.0.3", frag=10, proto=6) / Raw(b"f" * 16), "TCP", "10.0.0.2",
                  "10.0.0.3", "fragment"),
    "icmpv6": (IPv6(src="fd00::2", dst="fd00::3") / ICMPv6EchoRequest(), "ICMPv6", "fd00::2", "fd00::3",
               "echo request"),
    "tcp6": (IPv6(src="fd00::4", dst="fd00::5") / TCP(sport=1234, dport=443, flags="A"), "TCP", "fd00::4",
             "fd00::5", "1234 > 443 [.]"),
    "udp6-ext": (IPv6(src="fd00::4", dst="fd00::5") / IPv6ExtHdrHopByHop() / UDP(sport=9, dport=7), "UDP",
                 "fd00::4", "fd00::5", "9 > 7"),
    "ipv6-frag": (IPv6(src="fd00::4", dst="fd00::5") / IPv6ExtHdrFragment(offset=5, nh=17) / Raw(b"z" * 8), "UDP",
                  "fd00::4", "fd00::5", "fragment"),
    "arp": (ARP(op=1, hwsrc=INNER_MACS[0], psrc="10.0.0.2", pdst="10.0.0.3"), "ARP", "10.0.0.2", "10.0.0.3",
            "who-has 10.0.0.3 tell 10.0.0.2"),
    "arp-reply": (ARP(op=2, hwsrc=INNER_MACS[0], psrc="10.0.0.2", pdst="10.0.0.3"), "ARP", "10.0.0.2", "10.0.0.3",
                  "10.0.0.2 is-at 02:42:0a:00:00:02"),
    "lldp": (Raw(b"\x02\x07\x04" + b"\x00" * 30), "ETH/0x88cc", INNER_MACS[0], INNER_MACS[1], ""),
}


def inner_frame(name: str, tagged: bool = False):
    layer = INNER_PAYLOADS[name][0]
    if name == "lldp":
        e = inner_eth(tagged)
        return e / Dot1Q(vlan=5, type=0x88CC) / layer if tagged else Ether(src=INNER_MACS[0], dst=INNER_MACS[1],
                                                                            type=0x88CC) / layer
    return inner_eth(tagged) / layer


def not_vxlan_frames() -> list[bytes]:
    e = Ether(src="02:00:c6:12:00:01", dst="02:00:c6:12:00:02")
    return [bytes(e / IP(src="198.18.0.1", dst="198.18.0.2") / TCP(dport=22)),
            bytes(e / IP(src="198.18.0.1", dst="198.18.0.2") / UDP(sport=4789, dport=53) / Raw(b"x" * 20)),
            bytes(e / ARP(hwsrc=e.src, psrc="198.18.0.1", pdst="198.18.0.2")),
            bytes(e / IPv6(src=OUTER6[0], dst=OUTER6[1]) / TCP(dport=22))]


def mixed_frames() -> list[bytes]:
    """Every inner kind over several outers and VNIs, plus malformed and non-VXLAN frames."""
    out = []
    for i, name in enumerate(INNER_PAYLOADS):
        for vni, tags, v6, tagged in ((256, 0, False, False), (257, 1, False, True), (4097, 2, True, False)):
            out.append(vxlan(inner_frame(name, tagged), vni, outer_tags=tags, outer_v6=v6, sport=40000 + i))
    good = out[0]
    out += [good[:10], good[:30], good[:45], good[:60], good[:70],               # cut at every layer
            vxlan(inner_frame("icmp"), flags=0x00),                               # no I bit
            bytes(Ether(dst=INNER_MACS[1]) / IP(src="198.18.0.1", dst="198.18.0.2", ihl=3)  # bad IHL
                  / UDP(dport=4789))]
    return out + not_vxlan_frames()


def write_mixed_pcap(path: Path, repeat: int = 1, t0: float = 1_700_000_000.0, step: float = 0.01) -> int:
    """Write ``mixed_frames()`` ``repeat`` times with increasing timestamps; returns the frame count."""
    from core.capture.pcap import PcapWriter
    frames = mixed_frames()
    with PcapWriter(path) as w:
        for r in range(repeat):
            for i, f in enumerate(frames):
                w.write(t0 + (r * len(frames) + i) * step, f)
        return w.count


if __name__ == "__main__":          # regenerate the committed fixture: python -m tests.vxlan_frames
    import sys
    target = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "fixtures" / "vxlan_mixed.pcap")
    print(f"{target}: {write_mixed_pcap(target)} frames")
