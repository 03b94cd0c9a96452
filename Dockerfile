# Three images from one file (docs/operations.md, "Images"):
#   worker    anomaly-worker run: onnxruntime, no torch (the default target: the last stage)
#   training  anomaly-train fit: torch's CPU build, pinned, then the training extra
#   review    anomaly-review run: the review page (Flask, waitress, matplotlib), no torch
#     docker build --target worker -t sensor-anomaly-worker .
#     docker build --target training -t sensor-anomaly-training .
#     docker build --target review -t sensor-anomaly-review .
# BASE: any Python 3.11+ image whose `python` has venv (default the public python image);
# `make image` builds a Debian one here with debootstrap and builds the worker on it with
# podman (tests/integration/test_image.py runs it). HTTPS from inside a build may need the
# machine's CA bundle: pass it as the `build_ca` secret (nothing of it stays in the image).

ARG BASE=python:3.11-slim

FROM ${BASE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY devtools/images/requirements.py /src/requirements.py
COPY pyproject.toml /src/pyproject.toml
# The worker's dependencies, from pyproject.toml alone, in a layer of their own (with the s3
# extra: the model store may be a bucket, s3://bucket/prefix).
RUN --mount=type=secret,id=build_ca \
    if [ -f /run/secrets/build_ca ]; then export PIP_CERT=/run/secrets/build_ca; fi; \
    python /src/requirements.py s3 > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt

FROM build AS build-worker
COPY README.md /src/README.md
COPY anomaly /src/anomaly
COPY worker /src/worker
# Every Kafka compression codec must read back (anomaly.kafka.check_codecs), and torch must
# not be there, or no image.
RUN --mount=type=secret,id=build_ca \
    if [ -f /run/secrets/build_ca ]; then export PIP_CERT=/run/secrets/build_ca; fi; \
    pip install --no-deps /src \
    && python -c "from anomaly.kafka import check_codecs; check_codecs()" \
    && ! python -c "import torch" 2>/dev/null

FROM build AS build-training
# torch first, pinned, from an index of CPU builds: the training extra's torch range is then
# already satisfied and pip fetches nothing more.
ARG TORCH=torch==2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
RUN --mount=type=secret,id=build_ca \
    if [ -f /run/secrets/build_ca ]; then export PIP_CERT=/run/secrets/build_ca; fi; \
    pip install "${TORCH}" --index-url "${TORCH_INDEX}" \
    && python /src/requirements.py --only training > /tmp/training.txt \
    && pip install -r /tmp/training.txt
COPY README.md /src/README.md
COPY anomaly /src/anomaly
COPY worker /src/worker
COPY training /src/training
RUN --mount=type=secret,id=build_ca \
    if [ -f /run/secrets/build_ca ]; then export PIP_CERT=/run/secrets/build_ca; fi; \
    pip install --no-deps /src \
    && python -c "from anomaly.kafka import check_codecs; check_codecs()"

FROM build AS build-review
RUN --mount=type=secret,id=build_ca \
    if [ -f /run/secrets/build_ca ]; then export PIP_CERT=/run/secrets/build_ca; fi; \
    python /src/requirements.py --only review > /tmp/review.txt \
    && pip install -r /tmp/review.txt
COPY README.md /src/README.md
COPY anomaly /src/anomaly
COPY worker /src/worker
COPY training /src/training
COPY review /src/review
RUN --mount=type=secret,id=build_ca \
    if [ -f /run/secrets/build_ca ]; then export PIP_CERT=/run/secrets/build_ca; fi; \
    pip install --no-deps /src \
    && python -c "import review.web, review.cli" \
    && ! python -c "import torch" 2>/dev/null

# What the images run as: a user without a shell or a home, a root filesystem that can be
# mounted read-only (/tmp: a volume in the pod, a tmpfs under podman --read-only).
FROM ${BASE} AS runtime
RUN groupadd --gid 10001 app \
    && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin app
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
USER 10001:10001
WORKDIR /tmp

FROM runtime AS training
COPY --from=build-training /opt/venv /opt/venv
ENV MPLCONFIGDIR=/tmp/matplotlib
CMD ["anomaly-train", "fit"]

FROM runtime AS review
COPY --from=build-review /opt/venv /opt/venv
ENV MPLCONFIGDIR=/tmp/matplotlib
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s CMD python -c "import os, urllib.request as r; \
    r.urlopen('http://127.0.0.1:%s/livez' % os.environ.get('REVIEW_HTTP__PORT', '8080'), timeout=4)"
CMD ["anomaly-review", "run"]

FROM runtime AS worker
COPY --from=build-worker /opt/venv /opt/venv
EXPOSE 8000
# Where no Kubernetes probe asks (docker, podman --format docker): the liveness endpoint.
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s CMD python -c "import os, urllib.request as r; \
    r.urlopen('http://127.0.0.1:%s/livez' % os.environ.get('WORKER_HTTP__PORT', '8000'), timeout=4)"
CMD ["anomaly-worker", "run"]
