from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from gateway.ops.metrics import DEPTH_BUCKETS, CountHistogram


def test_the_exposition_is_prometheus_clients_own() -> None:
    ours_registry, theirs_registry = CollectorRegistry(), CollectorRegistry()
    ours = CountHistogram("gateway_queue_depth", "Depth.", DEPTH_BUCKETS)
    ours_registry.register(ours)
    theirs = Histogram(
        "gateway_queue_depth", "Depth.", buckets=DEPTH_BUCKETS, registry=theirs_registry
    )
    for value in (1, 1, 2, 3, 4, 5, 1024, 1025, 4096, 5000, 100_000):
        ours.observe(value)
        theirs.observe(value)

    def lines(registry: CollectorRegistry) -> list[str]:
        text = generate_latest(registry).decode()
        return sorted(line for line in text.splitlines() if "_created" not in line)

    assert lines(ours_registry) == lines(theirs_registry)


def test_an_empty_histogram_reports_zeros() -> None:
    registry = CollectorRegistry()
    registry.register(CountHistogram("depth", "Depth.", (1, 2)))
    text = generate_latest(registry).decode()
    assert 'depth_bucket{le="+Inf"} 0.0' in text and "depth_count 0.0" in text
