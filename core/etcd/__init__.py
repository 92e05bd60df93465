"""The etcd room: plan each member as the tutorial starts it (plan, decide), launch it over SSH (launch), read
members, health and keys through python-etcd3 over SSH forwards (read, health) and watch changes (watch).
service.py is the part the live façade composes. Imports the top-level core modules only."""
