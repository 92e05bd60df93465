"""Trace: marked pings from one container, watched hop by hop (the container's own interface on both
ends, the underlay of both nodes), to say where a packet was last seen: where it died.

Uses the SSH pool (tcpdump inside a container's network namespace), the Docker clients (inspect, exec)
and the capture part (the nodes' underlay). Imports only core.
"""
