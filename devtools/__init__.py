"""Developer tools: the simulated pump fleet, the local brokers, the demo and topic helpers.

Used by the demo, the tests and the benchmarks only; not part of the image (an
import-linter contract in `make lint` keeps the apps from importing them)."""
