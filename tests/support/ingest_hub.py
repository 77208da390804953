"""Building blocks of the push-path integration tests: a hub configuration reading a real
``mlflow server`` (its loop effectively never runs: an hour's interval, no election) with an
ingest secret, and an aiohttp server of the test's own for the ingest route."""

from __future__ import annotations

from aiohttp import web

from hub.config import HubConfig

SECRET = "integration-ingest-secret-7c1e"


def config_for(server_url: str, bootstrap: str, topic: str, secret: str | None = SECRET
               ) -> HubConfig:
    return HubConfig(
        mlflow={"tracking_uri": server_url, "request_retries": 0, "scan_timeout_s": 10},
        kafka={"bootstrap_servers": bootstrap, "topic": topic, "partitions": 3},
        detector={"poll_interval_s": 3600, "leader_election": False},
        ingest={"mlflow_secret": secret} if secret else {},
        subscriptions=[],
        admin={"enabled": False},  # the tests serve add_ingest_routes on an app of their own
    )


async def serve(app: web.Application, port: int = 0) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    bound = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{bound}"
