"""The services of one replica, each given what it uses: the publisher (every publication's one
path), channels (namespaces, history and presence reads), presence, the connection registry
and admission.
"""
