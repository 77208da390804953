# syntax=docker/dockerfile:1
#
# Two images, one file:
#   docker build --target mlflow-server .   MLflow's own image plus the Postgres driver
#   docker build .                          the hub (default, last stage): `registry-hub ...`
# docker-compose.yml builds both.

# --- MLflow tracking server on Postgres ---------------------------------------------------
# Same MLflow line as the hub's client pin (pyproject: mlflow-skinny >=3.17,<3.18).
FROM ghcr.io/mlflow/mlflow:v3.17.2 AS mlflow-server
RUN pip install --no-cache-dir "psycopg2-binary==2.9.10"

# --- the hub --------------------------------------------------------------------------------
FROM python:3.11.11-slim-bookworm AS hub
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MLFLOW_DISABLE_TELEMETRY=true
WORKDIR /app
COPY pyproject.toml README.md ./
COPY hub ./hub
COPY handlers ./handlers
RUN pip install . && useradd --create-home --uid 10001 hub
# the example receiver (docker-compose's "receiver" service) runs from the same image
COPY examples ./examples
USER hub
WORKDIR /home/hub
# admin API, /metrics, /healthz, /readyz and /ingest/mlflow (admin.port)
EXPOSE 8080
ENTRYPOINT ["registry-hub"]
CMD ["run"]
