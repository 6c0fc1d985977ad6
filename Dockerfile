# syntax=docker/dockerfile:1
# The gateway image: one replica per container, `gateway serve` on 0.0.0.0:8000.
#
#   docker build -t pubsub-gateway .
#   docker run --rm -p 8000:8000 pubsub-gateway      # demo at http://localhost:8000
#
# The base is pinned by tag and by the digest of its multi-architecture index; bump both
# together. Build stage: a virtualenv without pip, filled by the base image's pip with the
# gateway and its dependencies (wheels only, no compiler), the wheel carrying both packages
# (`gateway`, `gateway_client`) and the browser client. Runtime stage: that virtualenv on
# the same base, run as an unprivileged user. No Docker engine builds this in CI:
# tests/deploy/test_image.py replays these steps on the context .dockerignore admits.

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ONLY_BINARY=:all:
RUN python -m venv --without-pip /opt/gateway
WORKDIR /src
# The whole context: .dockerignore admits only what the wheel is built from.
COPY . ./
RUN python -m pip --python /opt/gateway/bin/python install --no-cache-dir --no-compile . \
    && /opt/gateway/bin/python -m compileall -q /opt/gateway/lib

FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 gateway \
    && useradd --system --uid 10001 --gid gateway --no-create-home --shell /usr/sbin/nologin gateway
COPY --from=build /opt/gateway /opt/gateway
ENV PATH=/opt/gateway/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER 10001:10001
EXPOSE 8000

# Liveness only (the process answers); readiness, which follows Redis, is /readyz.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]

# Exec form: the gateway is PID 1 and receives SIGTERM itself (not ready at once, clients
# told to reconnect over GATEWAY_DRAIN_SECONDS, then exit 0). Extra arguments are appended,
# e.g. `docker run IMAGE --config /etc/gateway/gateway.toml`.
STOPSIGNAL SIGTERM
ENTRYPOINT ["gateway", "serve", "--host", "0.0.0.0", "--port", "8000"]
CMD []
