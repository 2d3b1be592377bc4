# syntax=docker/dockerfile:1
#
# ami-bridge container image.
#
#   docker build -t ami-bridge:0.1.0 .
#   docker run --read-only -v ami-bridge-journal:/var/lib/ami-bridge/journal \
#       -e AMI_BRIDGE_AMI=pbx1=ami://bridge@pbx1.example.net:5038 \
#       -e AMI_BRIDGE_AMI_SECRET_FILE=/run/secrets/ami_secret ... ami-bridge:0.1.0
#
# Two stages: the build stage installs the package and its dependencies into a virtual
# environment; the runtime stage copies only that environment, so no compiler, build
# backend or source tree ships. Both stages use the same base image because the
# environment's python is a symlink to the base image's interpreter.
ARG PYTHON_IMAGE=python:3.12-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/ami-bridge
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY bridge ./bridge
# pip compiles the .pyc files here, at build time: the runtime image is read-only.
RUN /opt/ami-bridge/bin/pip install --no-cache-dir . \
    && /opt/ami-bridge/bin/ami-bridge --version

FROM ${PYTHON_IMAGE} AS runtime
ARG VERSION=0.1.0
# The repository the image was built from: docker build --build-arg SOURCE_URL=...
ARG SOURCE_URL=""
LABEL org.opencontainers.image.title="ami-bridge" \
      org.opencontainers.image.description="Bridge Asterisk Manager Interface (AMI) events to RabbitMQ, typed, journalled and confirmed." \
      org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"

# A fixed numeric UID/GID so Kubernetes can check runAsNonRoot and volume ownership can
# be set ahead of time (fsGroup, chown on the host).
RUN groupadd --system --gid 10001 ami-bridge \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin ami-bridge \
    && mkdir -p /var/lib/ami-bridge/journal \
    && chown -R 10001:10001 /var/lib/ami-bridge

COPY --from=build /opt/ami-bridge /opt/ami-bridge

# Everything is configured from the environment (see docs/configuration.md). The
# journal is the only place the bridge writes, so the root file system can be read-only.
ENV PATH=/opt/ami-bridge/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    AMI_BRIDGE_JOURNAL_DIR=/var/lib/ami-bridge/journal \
    AMI_BRIDGE_METRICS_PORT=9108

# Declared after the chown so a new named volume starts out owned by the bridge's user.
VOLUME ["/var/lib/ami-bridge/journal"]
WORKDIR /var/lib/ami-bridge
USER 10001:10001
EXPOSE 9108

# /healthz only says the process is alive; readiness (AMI logged in, broker connected)
# is /readyz, which orchestrators probe separately.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["ami-bridge", "healthcheck"]

ENTRYPOINT ["ami-bridge"]
CMD ["run"]
