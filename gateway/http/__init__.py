"""The FastAPI application: routes wired to the services, the server HTTP API, its offline docs
and the static pages.
"""
