# The csms image (ADR 019, decision 3): one image for every role, `csms <role>`.
#
#   builder  python:3.11-slim + compilers: generates the protobuf code from proto/ (it is
#            never checked in), builds the csms wheel and installs it with its pinned
#            dependencies into the virtualenv /opt/csms.
#   final    python:3.11-slim + that virtualenv only: no compilers, no pip caches, no
#            sources; runs as the non-root user csms (uid/gid 10001).
#
# Build: `make image` (buildah or podman when one works on the machine, otherwise a lint).
# Run:   docker run -p 9000:9000 -p 8080:8080 csms:0.1.0               (`csms run`, embedded)
#        docker run csms:0.1.0 gateway                                  (a distributed role)
#
# Read-only root filesystem: the processes write nothing outside /tmp and the working
# directory /var/lib/csms, which holds the state of the embedded mode only (./csms.db,
# ./csms-files, .csms/ = CSMS_STATE_DIR). The distributed roles write nothing there when
# CSMS_AUTH_PEPPER is set (otherwise the pepper goes to CSMS_STATE_DIR): mount an emptyDir on
# /tmp, and a volume on /var/lib/csms or point CSMS_STATE_DIR under /tmp.
#
# PYTHON_IMAGE names the base of both stages (a registry mirror, or a digest pin).

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS builder

# No RUN below pipes one command into another: the default shell is enough, and SHELL is
# not part of the OCI image format (buildah ignores it there).
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Compilers for any dependency without a wheel for this platform (the final stage has none).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY pyproject.toml README.md ./
COPY proto ./proto
COPY services ./services

# The protobuf code is generated here, from proto/, with the grpcio-tools and protobuf versions
# that pyproject.toml pins (services/common/protogen.py); the wheel then carries it.
RUN python -m venv /opt/build \
    && python -c 'import tomllib; deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]; print("\n".join(d for d in deps if d.split("==")[0] in ("grpcio-tools", "protobuf")))' > /tmp/protogen.txt \
    && /opt/build/bin/pip install -r /tmp/protogen.txt \
    && /opt/build/bin/python -m services.common.protogen \
    && test -n "$(find services/common/gen -name '*_pb2.py')" \
    && /opt/build/bin/pip wheel --no-deps --wheel-dir /wheels .

# The runtime virtualenv: the wheel and its pinned dependencies, byte-compiled (a read-only
# root filesystem takes no .pyc files later), then without pip and setuptools (grpcio-tools,
# a declared dependency, stays but is never called: the code is generated already). The
# import check loads every role's wiring, so a module the wheel lacks fails the build.
RUN python -m venv /opt/csms \
    && /opt/csms/bin/pip install /wheels/csms-*.whl \
    && /opt/csms/bin/pip uninstall -y pip setuptools \
    && /opt/csms/bin/python -c 'import importlib, services.common.cli as c; [importlib.import_module(p.partition(":")[0]) for r in c.ROLES.values() for p in r]'


FROM ${PYTHON_IMAGE}

ARG PYTHON_IMAGE
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="csms" \
      org.opencontainers.image.description="OCPP 1.6J / 2.0.1 charging station management system: stateless gateways on Kafka, processors on Cassandra" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/csms/bin:$PATH \
    CSMS_HOST=0.0.0.0

# The final stage adds no packages: its base has no compilers, and pip's caches are not kept.
RUN groupadd --system --gid 10001 csms \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/csms --no-create-home \
       --shell /usr/sbin/nologin csms \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/csms

COPY --from=builder /opt/csms /opt/csms

USER 10001:10001
WORKDIR /var/lib/csms

# OCPP ws://, OCPP wss:// (security profiles 2/3), REST API, processors' health and metrics
EXPOSE 9000 9443 8080 9100

ENTRYPOINT ["csms"]
CMD ["run"]
