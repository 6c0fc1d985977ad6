"""The load generator: picows connections in worker processes, driven by the coordinator.

`worker` runs inside each load-generator process; `pool` is the coordinator's handle on them;
`dialects` holds what differs between servers (handshake, subscribe, publish, acks).
"""
