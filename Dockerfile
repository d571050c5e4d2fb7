# syntax=docker/dockerfile:1
#
# Herald: one image for every service. The service is chosen by the command:
#   docker run herald services.gateway        (the default)
#   docker run herald services.router
#   docker run herald shared.storage.migrate
# ENTRYPOINT is `python -m`, so the command is just a module name.
#
# The code reads its Avro schemas from <repo root>/schemas at run time, so the source tree keeps its
# layout under /app (an editable install of /app into the venv), next to /app/schemas.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------------------------------------------
# builder: compilers for any dependency without a wheel; creates /opt/venv and installs into it.
# ---------------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS builder

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*

RUN python -m venv /opt/venv

WORKDIR /app

# Dependencies first, from the lock file alone: this layer is rebuilt only when the lock changes. Every
# package is pinned with its hashes (requirements.lock, compiled from [project].dependencies: the `local`
# and `dev` extras never enter the image), so two builds of one commit install the same files.
COPY requirements.lock ./
RUN pip install --require-hashes -r requirements.lock

# Then the source, installed editable so /app stays the package root: no deps (the lock brought them), and
# no build isolation, so the build backend is the setuptools the lock pinned rather than the newest one.
COPY . /app
RUN pip install --no-deps --no-build-isolation -e /app \
    && python -m compileall -q /app/shared /app/services /app/infra \
    && rm -rf /app/build /app/*.egg-info \
    && python -m pip uninstall -y -q pip

# ---------------------------------------------------------------------------------------------------
# runtime: the slim Python image, the venv and the source; no compilers, no pip cache, not root.
# ---------------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

# The commit built (the release workflow passes it): herald_build_info's commit label.
ARG HERALD_COMMIT=unknown

LABEL org.opencontainers.image.title="herald" \
      org.opencontainers.image.description="Herald: a Kafka-based notification platform" \
      org.opencontainers.image.revision="${HERALD_COMMIT}"

ENV HERALD_COMMIT=${HERALD_COMMIT} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONFAULTHANDLER=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

RUN groupadd --system --gid 10001 herald \
    && useradd --system --uid 10001 --gid 10001 --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin herald

# Owned by root, so the service user can read but not change the code; nothing is written under
# /app or /opt at run time, which lets Kubernetes mount the root filesystem read-only.
COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /app /app

WORKDIR /app
USER 10001:10001

# gateway: HTTP API (HERALD_GATEWAY_PORT); workers: /health, /ready, /metrics (HERALD_OPS_PORT).
EXPOSE 8080 9000

# No HEALTHCHECK here: the port depends on the service (8080 for the gateway, 9000 for workers), so
# docker-compose.yml and the Helm chart probe /health and /ready per service instead.
ENTRYPOINT ["python", "-m"]
CMD ["services.gateway"]
