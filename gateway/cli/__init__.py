"""The gateway command: serve (with the draining server), the client commands, cluster and its
nginx.
"""
