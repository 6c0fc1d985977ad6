"""What replicas say to one another: the control channel (cross-replica commands) and the
registry of live replicas.
"""
