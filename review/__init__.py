"""The review page: engineers open an episode from its alert, see why it fired, and give
their verdict (anomaly-review; docs/review.md)."""
