"""Comparison servers the bench runs beside the gateway (each as its own process)."""
