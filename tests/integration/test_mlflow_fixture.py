"""The MLflow server fixtures serve a real registry, survive restarts and deliver webhooks."""

from __future__ import annotations

import base64
import hashlib
import hmac
import queue
import threading
import urllib.request
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from mlflow.entities.webhook import WebhookEvent
from mlflow.tracking import MlflowClient

from tests.support.mlflow_server import MlflowServer, MlflowServerFactory

pytestmark = pytest.mark.slow

Delivery = tuple[dict[str, str], bytes]


@pytest.fixture
def webhook_receiver() -> Iterator[tuple[str, queue.Queue[Delivery]]]:
    """A plain HTTP receiver on 127.0.0.1 that queues (headers, body) of each POST."""
    received: queue.Queue[Delivery] = queue.Queue()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.put((dict(self.headers.items()), body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    server.shutdown()
    server.server_close()
    thread.join()


def test_session_server_serves_the_registry(
    mlflow_server: MlflowServer, mlflow_client: MlflowClient
) -> None:
    name = f"model-{uuid.uuid4().hex[:8]}"
    mlflow_client.create_registered_model(name, description="sanity")
    assert mlflow_client.get_registered_model(name).description == "sanity"
    assert mlflow_server.db_path.is_file()
    assert mlflow_server.db_uri == f"sqlite:///{mlflow_server.db_path}"


def test_server_restarts_on_same_port_and_db_and_webhooks_reach_loopback(
    mlflow_server_factory: MlflowServerFactory,
    webhook_receiver: tuple[str, queue.Queue[Delivery]],
) -> None:
    server = mlflow_server_factory()
    client = MlflowClient(tracking_uri=server.url, registry_uri=server.url)
    hook_url, received = webhook_receiver
    client.create_registered_model("survivor")
    hook = client.create_webhook(
        name="loopback",
        url=hook_url,
        events=[WebhookEvent("model_version", "created")],
        secret="s3cret",
    )
    url = server.url

    server.stop()
    with pytest.raises(OSError):  # connection refused: the outage is real
        urllib.request.urlopen(f"{url}/health", timeout=2)
    server.start()

    assert server.url == url
    assert client.get_registered_model("survivor").name == "survivor"
    # the secret stored before the restart is still decryptable, http + 127.0.0.1 allowed
    result = client.test_webhook(hook.webhook_id)
    assert result.success, result.error_message
    headers, body = received.get(timeout=10)
    signed = f"{headers['X-MLflow-Delivery-Id']}.{headers['X-MLflow-Timestamp']}.".encode()
    digest = hmac.new(b"s3cret", signed + body, hashlib.sha256).digest()
    assert headers["X-MLflow-Signature"] == "v1," + base64.b64encode(digest).decode()
