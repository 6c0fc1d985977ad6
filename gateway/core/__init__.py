"""The hot path of one replica, pure of I/O policy: the hub that fans publications out, each
connection's outbox and the frames it writes, loop-pass scheduling, recovery merge and
counters. Imports only the wire and gateway.aio.
"""
