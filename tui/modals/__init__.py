"""Dialogs: confirm, run a command, create a network, save a pcap, choose capture nodes."""
