"""The dockerd room (not `docker`, which is the SDK): Docker SDK clients per node over SSH-forwarded sockets
(clients), the classic cluster store in daemon.json (store), overlay networks and their VNIs (networks, vni),
probe containers and the ping matrix (probes). service.py is the part the live façade composes."""
