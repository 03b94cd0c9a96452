import numpy as np
from prometheus_client import CollectorRegistry, Histogram

from worker.metrics import BatchHistogram


def test_batch_histogram_matches_prometheus_histogram_sample_for_sample() -> None:
    values = np.random.default_rng(0).lognormal(sigma=2.0, size=5000)
    values[:10] = [0.0, 1.0, 2.5, 10.0, np.inf, -1.0, 0.5, 5.0, 5.0, np.nan]  # edges included
    bounds = (0.5, 1.0, 2.5, 5.0, 10.0, 100.0)
    registry = CollectorRegistry()
    batch = BatchHistogram("batch", "test", bounds, registry)
    single = Histogram("single", "test", buckets=bounds, registry=registry)
    batch.observe_many(values[:2500])
    batch.observe_many(values[2500:])
    for v in values[~np.isnan(values)]:
        single.observe(float(v))
    for bound in [*map(str, bounds), "+Inf"]:
        assert registry.get_sample_value("batch_bucket", {"le": bound}) == (
            registry.get_sample_value("single_bucket", {"le": bound})
        ), bound
    assert registry.get_sample_value("batch_count") == registry.get_sample_value("single_count")
    assert registry.get_sample_value("batch_sum") == registry.get_sample_value("single_sum")
