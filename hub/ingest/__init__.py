"""The push path: MLflow's own webhooks received at ``/ingest/mlflow`` (push), and installing them
on an MLflow server (mlflow_webhook)."""
