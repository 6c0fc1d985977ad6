"""Centrifugo's client protocol: the generated messages, their framing, fossil deltas.

Pure building blocks of the `/connection/websocket` dialect; see docs/centrifugo.md.
"""
