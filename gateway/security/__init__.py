"""Who a connection is and what it may do: tokens, permissions, origins, rate limits, and each
connection's guard.
"""
