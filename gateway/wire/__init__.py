"""The wire: pubsub.v1 frames, the one table of error and close codes, channel names, the
envelope between replicas, and the Centrifugo codec. Pure (values in, values out); imports
nothing else of the gateway, so the Python client can import it.
"""
