"""The worker: what runs in the pod. It consumes input records, scores them with the model in
service (anomaly.model), applies its alert rules (anomaly.rules), publishes alert events and
dead letters, commits offsets with the alert state, and exports metrics and probes."""
