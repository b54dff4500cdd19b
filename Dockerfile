# nsx-route-gc container image. Plain Dockerfile syntax, no BuildKit-only features, so it builds
# with docker, podman or buildah:  docker build -t nsx-route-gc:0.1.0 .
#
# Pin the base image by digest for reproducible builds, e.g.
#   docker build --build-arg PYTHON_IMAGE=python:3.11-slim@sha256:<digest> .
ARG PYTHON_IMAGE=python:3.11-slim

# --- builder: the project's wheel, installed with its dependencies pinned by constraints.txt ---
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
# Dependencies first: this layer stays cached while only the code changes.
COPY constraints.txt ./
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --requirement constraints.txt

COPY pyproject.toml README.md ./
COPY gc ./gc
# --no-deps: the dependencies are already installed above, at the pinned versions. Installing
# the wheel with the same constraints fails the build if pyproject.toml and the pins disagree.
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
    && /opt/venv/bin/pip install --no-cache-dir --constraint constraints.txt /wheels/*.whl \
    && /opt/venv/bin/pip check

# --- runtime: the venv only, run as an unprivileged user ---
FROM ${PYTHON_IMAGE}

LABEL org.opencontainers.image.title="nsx-route-gc" \
      org.opencontainers.image.description="Garbage-collects orphaned NSX static routes left behind by Kubernetes routable pods" \
      org.opencontainers.image.licenses="Apache-2.0"

# 65532 is the conventional "nonroot" id (distroless); cronjob.yaml runs the pod as it.
RUN groupadd --system --gid 65532 nonroot \
    && useradd --system --uid 65532 --gid 65532 --home-dir /nonexistent --no-create-home \
       --shell /usr/sbin/nologin nonroot

COPY --from=builder /opt/venv /opt/venv

# The root filesystem is read-only in the CronJob: no bytecode to write, HOME and temp in /tmp.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp

USER 65532:65532
WORKDIR /tmp

ENTRYPOINT ["nsx-route-gc"]
CMD ["--help"]
