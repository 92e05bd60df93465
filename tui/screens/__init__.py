"""Screens over the main one: details, help, logs, runbook, key browser, ping grid, frame detail."""
