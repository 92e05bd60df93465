"""The nodes room: each host's reachability, facts, commands and logs (service.py) and its underlay address (address.py)."""
