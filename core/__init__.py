"""The engine of overlay-tui: everything the CLI, the console and the SSH server do, with no UI toolkit.

Top level: ``errors`` (typed errors), ``model`` (the dataclasses every door sees), ``inventory``,
``ssh`` (the asyncssh pool), ``paths``, ``access`` (read-only guard), ``service`` (the one Service
protocol) and ``live`` (the façade that builds the parts). Rooms: ``nodes``, ``etcd``, ``dockerd``,
``capture``, ``runbook``, ``lab``, ``serve``, ``cli``, ``recorded``. Nothing here imports textual or
rich (tests/test_layering.py).
"""
