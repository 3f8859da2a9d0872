# syntax=docker/dockerfile:1
# One image for the points API (default CMD: gunicorn) and the SQS worker (command: python -m worker).
# Build:  docker build --platform linux/amd64 -t points-service .
#         (the task definitions run X86_64: an arm64 image fails on Fargate with "exec format error";
#         another base: --build-arg PYTHON_IMAGE=...)
# The final stage runs as a non-root user and works with a read-only root filesystem: gunicorn's
# heartbeat files go to /dev/shm, temporary files to $TMPDIR (/tmp, a task volume on ECS) and
# nothing else is written (SQLite only on a mounted volume).

# The base, pinned by digest (the digest decides what is pulled; the tag is for readers). It is the
# multi-platform index, so --platform picks the architecture. To update (docs/deploy-to-aws.md):
#   docker buildx imagetools inspect python:3.12-slim --format '{{json .Manifest.Digest}}'
# CodeBuild pulls the same digest through ECR Public's mirror (deploy/buildspec.yml). A base from
# local storage (deploy/build-local-image.sh) has no registry digest and is passed by name.
ARG PYTHON_IMAGE=python:3.12-slim@sha256:78387bc3881b8273120a12ebe6c1ab22b018ccc2c9adf565ae1ac9b536e184ea

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/venv
# Dependencies come from the project's own metadata (pyproject.toml extras), not a second list.
# (README.md* : the metadata names a readme; the wildcard keeps the build working without one.)
COPY pyproject.toml LICENSE README.md* ./
COPY points ./points
COPY sample_api ./sample_api
COPY worker ./worker
COPY telemetry ./telemetry
RUN /opt/venv/bin/pip install ".[api,worker]" \
    && /opt/venv/bin/python -m compileall -q /opt/venv

FROM ${PYTHON_IMAGE} AS runtime
# XDG_RUNTIME_DIR: gunicorn (>= 25.1) puts its control socket there instead of $HOME (read-only).
# TMPDIR: Python's tempfile (and most tools) write there; it is the task's `tmp` volume on ECS.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PORT=8080 \
    WEB_CONCURRENCY=2 \
    POINTS_DB_PATH=/data/points.db \
    XDG_RUNTIME_DIR=/dev/shm \
    TMPDIR=/tmp
RUN useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent app \
    && mkdir -p /data && chown 10001:10001 /data \
    && mkdir -p /tmp && chmod 1777 /tmp
# Fargate mounts an empty task volume at /tmp as root-owned 0755 (not writable by user 10001)
# unless the image declares the path a VOLUME: then the directory's mode, 1777, is copied.
VOLUME ["/tmp"]
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
# gunicorn's config is read by path; the package itself is installed in /opt/venv.
COPY sample_api/gunicorn.conf.py ./sample_api/gunicorn.conf.py
USER 10001:10001
EXPOSE 8080
# No curl in a slim image: the standard library makes the request (non-2xx or no answer -> exit 1).
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PORT', '8080') + '/healthz', timeout=2)"]
CMD ["gunicorn", "--config", "sample_api/gunicorn.conf.py", "--worker-tmp-dir", "/dev/shm", "sample_api.wsgi:app"]
