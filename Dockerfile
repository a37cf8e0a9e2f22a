# observer-coordinator-insights: a slim, non-root stream-processing worker.
#
#   docker build -t observer-insights .                 # the runtime image (last stage)
#   docker build --target dev -t observer-insights:dev .  # hot-reload image for compose
#
# Build args: BASE_IMAGE (default python:3.11-slim-bookworm; builder and runtime use the same
# one, so the venv's interpreter path matches), VERSION, REVISION, SOURCE (OCI labels).
# The image has no embedded broker: KAFKA_BOOTSTRAP_SERVERS must be set when it runs.

ARG BASE_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------------------------------------
# deps: /opt/venv with the locked runtime dependencies only, a layer of its own that stays
# cached until requirements.lock changes.
FROM ${BASE_IMAGE} AS deps
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python3 -m venv /opt/venv
WORKDIR /src
COPY requirements.lock ./
RUN /opt/venv/bin/pip install --no-deps --only-binary=:all: -r requirements.lock

# ---------------------------------------------------------------------------------------------
# builder: the project itself (no deps: they are all in the lock), then the venv is made
# runtime-only: no pip, setuptools or wheel, no test suites, stripped extension modules,
# bytecode compiled ahead (the root filesystem is read-only at run time).
FROM deps AS builder
# binutils, for `strip`: the wheels' extension modules carry debug symbols (about 15 MB).
# Builder stage only; its version is whatever the base's Debian release ships.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends binutils \
 && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml README.md ./
COPY streams ./streams
COPY agents ./agents
COPY models ./models
RUN /opt/venv/bin/pip install --no-deps . \
 && /opt/venv/bin/pip check \
 && /opt/venv/bin/pip uninstall --yes --quiet pip setuptools wheel \
 && find /opt/venv/lib -depth -type d -path '*/site-packages/*' \( -name tests -o -name test \) \
        -prune -exec rm -rf {} + \
 && find /opt/venv/lib -type f -name '*.so*' -exec strip --strip-unneeded {} + \
 && python3 -m compileall -q -j 0 /opt/venv/lib

# ---------------------------------------------------------------------------------------------
# dev: the worker restarted on every change of the source tree mounted at /src (compose
# mounts ./streams, ./agents and ./models there); the project is installed editable and
# watchfiles is the reloader. Not for production.
FROM deps AS dev
ARG WATCHFILES_VERSION=1.3.0
RUN /opt/venv/bin/pip install --only-binary=:all: -c requirements.lock \
        "watchfiles==${WATCHFILES_VERSION}"
COPY pyproject.toml README.md ./
COPY streams ./streams
COPY agents ./agents
COPY models ./models
RUN /opt/venv/bin/pip install --no-deps -e . \
 && groupadd --gid 10001 insights \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin insights \
 && install -d -o 10001 -g 10001 /var/lib/observer-insights
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    INSIGHTS_DATA_DIR=/var/lib/observer-insights
USER 10001:10001
EXPOSE 6066 9108
STOPSIGNAL SIGTERM
ENTRYPOINT ["watchfiles", "--filter", "python", "--sigint-timeout", "10", "--sigkill-timeout", "5", \
            "observer-insights worker", "/src/streams", "/src/agents", "/src/models"]

# ---------------------------------------------------------------------------------------------
# runtime (default): the venv only, non-root, read-only root filesystem friendly.
FROM ${BASE_IMAGE} AS runtime
ARG VERSION=0.0.0+unknown
ARG REVISION=unknown
ARG SOURCE=https://example.invalid/observer-coordinator-insights
LABEL org.opencontainers.image.title="observer-coordinator-insights" \
      org.opencontainers.image.description="Kafka observations in, rolling insights out (Faust worker)" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="${SOURCE}"
# The base's pip, setuptools and wheel are build tools: a runtime needs none of them.
RUN rm -rf /usr/local/bin/pip* /usr/local/bin/idle* /usr/local/bin/pydoc* \
        /usr/local/lib/python3.11/site-packages/pip* \
        /usr/local/lib/python3.11/site-packages/setuptools* \
        /usr/local/lib/python3.11/site-packages/_distutils_hack \
        /usr/local/lib/python3.11/site-packages/distutils-precedence.pth \
        /usr/local/lib/python3.11/site-packages/wheel* \
        /usr/local/lib/python3.11/ensurepip /usr/lib/python3.11/ensurepip \
        /usr/share/python-wheels \
 && groupadd --gid 10001 insights \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin insights \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/observer-insights
COPY --from=builder /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    INSIGHTS_DATA_DIR=/var/lib/observer-insights \
    INSIGHTS_WEB_PORT=6066 \
    INSIGHTS_METRICS_PORT=9108
# State (Faust data dir, RocksDB) and temp files: the only writable places.
VOLUME ["/var/lib/observer-insights", "/tmp"]
USER 10001:10001
WORKDIR /var/lib/observer-insights
EXPOSE 6066 9108
# Liveness through the project's own probe: GET 127.0.0.1:$INSIGHTS_WEB_PORT/healthz (no curl).
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python3", "-m", "streams.web.probe"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/opt/venv/bin/observer-insights"]
CMD ["worker"]
