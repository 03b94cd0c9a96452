"""The long-running scorer: wire contracts, settings and the model runtime (anomaly.model)."""
