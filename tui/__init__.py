"""The console: a Textual app (app) over :class:`core.service.Service`. Rooms: panes/ (nodes, etcd, networks),
capture/ (the live capture pane and its parts), screens/ (full views), modals/ (dialogs and forms). Never imports
asyncssh, docker, etcd3, scapy or grpc (tests/test_layering.py)."""
