"""asyncio building blocks that know nothing of the gateway: the backoff of every retry loop,
and the task set that owns background work. The Python client uses them too."""
