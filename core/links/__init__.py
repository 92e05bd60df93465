"""Links: per node pair loss, one-way delay, reordering and duplicates from the same VXLAN frame seen
leaving its source node and arriving at its destination node.

:mod:`identity` keys a sighting by what the underlay does not change; :mod:`matcher` pairs sightings
of a merged capture (bounded pending table, eviction counted); :mod:`stats` keeps per directed pair and
VNI counters, a bounded delay reservoir and a one-minute history; :mod:`clock` estimates each pair's
clock offset from both directions (as NTP does); :mod:`service` turns a capture into
:class:`core.model.LinksSnapshot` streams; :mod:`trace` follows marked pings hop by hop.
Imports only core.model, core.errors and the capture room's decoder constants.
"""
