# syntax=docker/dockerfile:1.7
# One image for every Flashsale process: `flashsale run <gateway|user|product|sales|order|notification|operator>`.
# The builder stage makes the wheels; the final stage installs them with no compiler, no pip cache and no source
# tree, runs as a numeric non-root user and writes only to /tmp and mounted volumes (read-only root filesystem).
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY services/ services/
COPY operator/ operator/
COPY tools/ tools/
RUN pip wheel --wheel-dir /wheels .

FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG SOURCE=""
LABEL org.opencontainers.image.title="flashsale" \
      org.opencontainers.image.description="Kubernetes-native flash-sale platform: exact stock, fair order, per-user limits." \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/tmp \
    MPLCONFIGDIR=/tmp/matplotlib \
    FLASHSALE_SQLITE_DIR=/tmp/flashsale \
    FLASHSALE_LOG_FORMAT=json
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links /wheels flashsale \
    && useradd --uid 10001 --gid 0 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin flashsale
USER 10001:0
WORKDIR /tmp
ENTRYPOINT ["flashsale"]
CMD ["--help"]
