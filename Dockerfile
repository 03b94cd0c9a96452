# One image: the worker by default (anomaly-worker run), the training job with
# `anomaly-train fit` as its command (see deploy/base/training-cronjob.yaml).
# The steps are the README's install: torch's CPU build first, pinned, then the project.
# (Not built in this project's CI: its machines have no Docker engine.)

ARG PYTHON=3.11
ARG TORCH=torch==2.13.0

FROM python:${PYTHON}-slim AS build
ARG TORCH
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# 1. torch, CPU build, pinned: the project's torch range is then already satisfied.
RUN pip install "${TORCH}" --index-url https://download.pytorch.org/whl/cpu
# 2. The other dependencies, from pyproject.toml alone, in a layer of their own (with the s3
#    extra: the model store may be a bucket, s3://bucket/prefix).
COPY pyproject.toml /src/pyproject.toml
RUN python -c "import tomllib; p = tomllib.load(open('/src/pyproject.toml','rb'))['project']; print('\n'.join(p['dependencies'] + p['optional-dependencies']['s3']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt
# 3. The project itself.
COPY README.md /src/README.md
COPY anomaly /src/anomaly
COPY worker /src/worker
COPY training /src/training
# Every Kafka compression codec must read back (anomaly.kafka.check_codecs), or no image.
RUN pip install --no-deps /src \
    && python -c "from anomaly.kafka import check_codecs; check_codecs()"

FROM python:${PYTHON}-slim
RUN groupadd --gid 10001 app && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin app
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MPLCONFIGDIR=/tmp/matplotlib \
    HOME=/tmp
USER 10001:10001
WORKDIR /tmp
EXPOSE 8000
CMD ["anomaly-worker", "run"]
