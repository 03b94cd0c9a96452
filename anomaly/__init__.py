"""The core both apps share: the record contract, the alert rules, the scoring step, the
model package, and the Kafka client pieces. It imports neither `worker` nor `training`
(an import-linter contract in `make lint`)."""
