"""The capture room: remote tcpdump per node (remote), merged in time order (merge), decoded by the fast
struct decoder (decode, stream) or numpy in batches (batch), named (names), counted per flow (flows), read and
written as pcap (pcap), dissected by scapy for one frame (detail), formatted for the CLI (format), and checked
by the runbook (verify). A live capture runs in a worker process (worker) that the console drives (offload),
which sends batches in columns with their flow counts (wire). service.py is the part the live façade composes."""
