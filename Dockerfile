# syntax=docker/dockerfile:1.7
# ConflictDesk: one image, four roles chosen by the command (deploy/commands.env):
#   web (gunicorn, default), worker (Celery), beat (Celery beat), migrate (one-shot).
#   docker build -t conflictdesk .
#   docker run conflictdesk worker
# deploy/docker-compose.yml wires it with PostgreSQL, Redis, EHRbase and HAPI FHIR.
# tests/deploy/test_containers.py keeps this file consistent with the scripts.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- builder: wheels for every pinned runtime requirement (compilers live only here). Only
# requirements.txt: tests, benchmarks and tools (the development lock) never enter the image.
# The lock holds the sha256 of every file PyPI offers for each pin: pip refuses any other file,
# here and again when the runtime stage installs the wheels (each lock pin has a wheel for
# CPython 3.11 on manylinux x86_64, so the builder copies PyPI's files rather than building).
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
COPY requirements.txt /tmp/requirements.txt
RUN pip wheel --require-hashes --wheel-dir /wheels -r /tmp/requirements.txt

# --- runtime: no compilers, no wheels left behind, a non-root user
FROM ${PYTHON_IMAGE} AS runtime
# DJANGO_DEBUG=0 is also the settings' default; said here too so no image ever runs the dev settings.
ENV DJANGO_DEBUG=0 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN groupadd --system --gid 10001 conflictdesk \
 && useradd --system --uid 10001 --gid conflictdesk --home-dir /app --no-create-home \
      --shell /usr/sbin/nologin conflictdesk
# The wheels are bind-mounted from the builder, so they never become a layer.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    --mount=type=bind,source=requirements.txt,target=/tmp/requirements.txt \
    pip install --no-index --find-links /wheels --require-hashes -r /tmp/requirements.txt
WORKDIR /app
# Code stays owned by root: the app user can read it, not change it.
COPY . /app
# collectstatic runs with production settings (DJANGO_DEBUG=0) and throw-away
# values given on this RUN line only: they are not ENV or ARG, so nothing of
# them reaches the runtime environment. The real secret comes at run time.
RUN DJANGO_DEBUG=0 \
    DJANGO_SECRET_KEY=collectstatic-build-only-not-a-secret \
    DJANGO_ALLOWED_HOSTS=build.invalid \
    DATABASE_URL=postgres://build@build.invalid:5432/build \
    python manage.py collectstatic --noinput --verbosity 0 \
 && mkdir -p /app/.run \
 && chown conflictdesk:conflictdesk /app/.run

# The role dispatcher: a role name runs its command from deploy/commands.env,
# anything else runs as given (e.g. `python manage.py createsuperuser`).
COPY --chmod=755 <<'EOF' /usr/local/bin/conflictdesk-role
#!/bin/sh
set -eu
. /app/deploy/commands.env
role="${1:-web}"
case "$role" in
  web) exec $CONFLICTDESK_WEB_CMD ;;
  worker) exec $CONFLICTDESK_WORKER_CMD ;;
  beat) exec $CONFLICTDESK_BEAT_CMD ;;
  migrate) exec $CONFLICTDESK_MIGRATE_CMD ;;
  *) exec "$@" ;;
esac
EOF

USER 10001:10001
EXPOSE 8000
# Liveness of the web role (/healthz: no database, no login). With
# DJANGO_DEBUG=0 the request must carry an allowed host and look like it came
# through the TLS proxy, or Django answers 400 or redirects to https.
# Compose overrides this check for the worker and beat roles.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request as u; h = (os.environ.get('DJANGO_ALLOWED_HOSTS') or 'localhost').split(',')[0].strip().lstrip('.').replace('*', 'localhost'); u.urlopen(u.Request('http://127.0.0.1:8000/healthz', headers={'Host': h, 'X-Forwarded-Proto': 'https'}), timeout=4)"]
ENTRYPOINT ["conflictdesk-role"]
CMD ["web"]
