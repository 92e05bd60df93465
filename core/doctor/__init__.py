"""The doctor: every known way the overlay breaks, checked across the inventory and named with its fix.

:mod:`core.doctor.parse` holds the pure functions that read command output (unit-tested on recorded
output); :mod:`core.doctor.facts` gathers each node's facts in one SSH round trip; :mod:`core.doctor.probes`
runs the active pair tests (UDP 4789/7946 and TCP 7946 through a counting nftables table on the
receiver, DF-set pings for the path MTU); :mod:`core.doctor.checks` has one small async function per
check; :mod:`core.doctor.runner` runs them concurrently, each within its own time limit.
"""
