"""The recorded room: a Service over state recorded from a real lab (service) with its frames replayed from a
pcap (capture), for deterministic console tests and screenshots."""
