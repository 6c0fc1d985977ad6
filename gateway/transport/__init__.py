"""How bytes reach sockets under gateway serve: uvicorn's WebSocket and HTTP protocols as the
gateway runs them, the sinks a connection writes to, the WebSocket lane and the ports.
"""
