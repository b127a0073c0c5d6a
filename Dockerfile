# The app image: one image for every process type (gunicorn, uvicorn, Celery worker and beat,
# migrations); docker-compose.yml picks the command. See docs/ARCHITECTURE.md, "Production topology".
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    STATIC_ROOT=/srv/static \
    MEDIA_ROOT=/srv/media

WORKDIR /app
RUN useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin superapp

# Dependencies first (a layer kept until pyproject.toml or requirements.lock change) ...
COPY pyproject.toml requirements.lock ./
RUN pip install -c requirements.lock -e .
# ... then the code, registered again so that the editable install maps its packages.
COPY . .
RUN pip install --no-deps -c requirements.lock -e .

# Static files with their hashed names and .gz twins (production storage: any DATABASE_URL and
# SECRET_KEY select it; collectstatic connects to nothing). The migrate service copies them to
# the volume nginx serves.
RUN DATABASE_URL=postgres://collectstatic@localhost/none SECRET_KEY=collectstatic-only \
    python manage.py collectstatic --noinput -v 0 \
    && mkdir -p /srv/media \
    && chown -R superapp:superapp /srv/static /srv/media

USER superapp
EXPOSE 8000 8001
CMD ["gunicorn", "-c", "deploy/gunicorn.conf.py", "superapp.wsgi:application"]
