"""The tables of the main screen: nodes, etcd members, networks, over one Pane base (base)."""
