# One image for web, worker and beat; docker-compose.yml picks the command.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PADDOCK_VAR_DIR=/var/lib/paddock MEDIA_ROOT=/var/lib/paddock/media STATIC_ROOT=/app/staticfiles

WORKDIR /app
# torch==2.13.0 should be the CPU build (or CUDA for GPU hosts): pass PyTorch's wheel index
# of your choice as a build argument, e.g. --build-arg PIP_EXTRA_INDEX_URL=<index>.
ARG PIP_EXTRA_INDEX_URL=
COPY pyproject.toml ./
COPY console ./console
COPY registry ./registry
COPY serving ./serving
COPY workers ./workers
RUN pip install --no-cache-dir -e . \
    && useradd --system --home /app paddock && mkdir -p /var/lib/paddock/media && chown -R paddock /var/lib/paddock
COPY . .
RUN DEBUG=1 python manage.py collectstatic --noinput

USER paddock
EXPOSE 8000
CMD ["python", "-m", "serving.v2.server", "--host", "0.0.0.0", "--port", "8000", "--proxy-headers"]
