"""What the tests share: paths, fakes, records, models, Kafka and deploy helpers, and
one `wait_until`. Fixtures live in tests/conftest.py; no test module imports another."""
