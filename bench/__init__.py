"""The gateway's benchmark: ``python -m bench`` (``--smoke`` for a few seconds' check).

It starts a redis-server, two replicas of each server (the gateway, a bare ``websockets``
+ redis-py relay as the reference, python-socketio with its Redis manager), drives them with
picows load-generator processes pinned apart from the servers, and writes
``bench/results/latest.{json,md,png}``. See bench/README.md.
"""
