# augur container image.
#
#   docker build -t augur:0.1.0 --build-arg VERSION=0.1.0 --build-arg REVISION="$(git rev-parse HEAD)" .
#   docker run --rm -p 9465:9465 -e AUGUR_PROMETHEUS_URL=http://prometheus:9090 augur:0.1.0
#
# Runtime dependencies only (`pip install .`): no test tools, and none of the [build] extra
# (torch, transformers), which is needed only to produce models/onnx, not to run it. The text
# model comes inside augur's wheel (models/onnx installed as the package `augur_model`), as it
# does for `pip install`: the image needs no model.dir.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- builder: a virtualenv holding augur, its model and its runtime dependencies --------------
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
RUN python -m venv /opt/venv
WORKDIR /src
# The dependencies first, from pyproject.toml alone: their layer (most of the build time) is
# reused while only augur's code or its model changes.
COPY pyproject.toml ./
RUN python -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"], sep="\n")' \
        > /tmp/requirements.txt \
    && /opt/venv/bin/pip install -r /tmp/requirements.txt
COPY README.md LICENSE NOTICE MANIFEST.in ./
COPY exporter/ exporter/
COPY models/onnx/ models/onnx/
# Not editable: the package is copied into the venv, with bytecode compiled at install time
# (the running container never writes .pyc files). The classify proves the model came along.
RUN /opt/venv/bin/pip install --no-deps . \
    && /opt/venv/bin/pip check \
    && /opt/venv/bin/augur --version \
    && /opt/venv/bin/augur classify "disk full" > /dev/null

# --- runtime --------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
ARG PYTHON_IMAGE
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="augur" \
      org.opencontainers.image.description="Anomaly scores, forecasts and alert enrichment for Prometheus and Alertmanager" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0 AND MIT" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"

# OPENBLAS_NUM_THREADS=1: numpy's BLAS would otherwise start one thread per host core (not per
# CPU limit); augur parallelises with its own bounded executor (poll.workers) instead.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    OPENBLAS_NUM_THREADS=1

COPY --from=builder /opt/venv /opt/venv

# /etc/augur/augur.yaml is the default config (replaced by a mounted ConfigMap in Kubernetes):
# it only moves the state file into /var/lib/augur, so `-e AUGUR_PROMETHEUS_URL=...` is all
# a plain `docker run` needs. /var/lib/augur belongs to the runtime user.
RUN install -d -m 0755 /etc/augur \
    && install -d -m 0750 -o 65532 -g 65532 /var/lib/augur \
    && printf '%s\n' \
        '# Default configuration of the augur image; mount your own over this file.' \
        '# Set the Prometheus URL with AUGUR_PROMETHEUS_URL or --prometheus.url.' \
        'state:' \
        '  path: /var/lib/augur/augur.db' \
        > /etc/augur/augur.yaml

WORKDIR /var/lib/augur
USER 65532:65532
EXPOSE 9465
ENTRYPOINT ["augur"]
CMD ["run", "--config", "/etc/augur/augur.yaml"]
