"""What a replica reports to whoever runs it: Prometheus metrics, activity, structured logs and
the log of refused handshakes.
"""
