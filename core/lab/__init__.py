"""The lab room: network namespaces that look like real hosts (node), wired to a switch namespace (net), with
their state on disk (state); manager.py brings a lab up and down. Used by `overlay-tui lab` and the tests."""
