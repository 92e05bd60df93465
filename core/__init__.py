"""overlay-tui's engine: inventory, SSH, lab, etcd, Docker, capture and decoding.

Never imports textual or rich (tests/test_layering.py proves it); front doors (CLI, TUI,
SSH server) talk to it through :mod:`core.service`.
"""
