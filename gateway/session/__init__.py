"""One client connection from accept to close: the read loop, one module per client dialect,
and the commands of protocol v1.
"""
