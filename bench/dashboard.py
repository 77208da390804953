"""Dashboard page loads with many events on the topic: a hub (deliver role, no
subscriptions) on an embedded broker, ``--events 10000`` events of ``--models 100`` models
published first, then each page opened in the system's Chromium; prints the time to first
contentful paint, the server's answer and the bytes the browser downloaded per page.

    .venv/bin/python bench/dashboard.py            # about 1 min on 2 cores
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from playwright.async_api import async_playwright

from hub.app import Hub, Roles
from hub.bus import Publisher
from hub.config import HubConfig
from hub.events import Event

TOKEN = "bench-token"
PAGES = ["/", "/events", "/models/model-7", "/subscriptions", "/dead-letters"]
MEASURE = """() => {
  const nav = performance.getEntriesByType("navigation")[0];
  const fcp = performance.getEntriesByName("first-contentful-paint")[0];
  const bytes = [nav, ...performance.getEntriesByType("resource")]
      .reduce((n, e) => n + (e.transferSize || e.encodedBodySize || 0), 0);
  return {fcp: fcp ? fcp.startTime : null, response: nav.responseEnd, bytes};
}"""


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as state:
        config = HubConfig(kafka={"bootstrap_servers": "embedded", "topic": "bench.events"},
                           admin={"host": "127.0.0.1", "port": 0, "token": TOKEN},
                           state_dir=Path(state), subscriptions=[])
        async with Hub(config, Roles(detect=False)) as hub:
            assert hub.admin is not None
            started = time.perf_counter()
            async with Publisher(config.kafka, hub.bootstrap_servers, config.kafka.topic) as pub:
                batch = []
                for n in range(args.events):
                    model = f"model-{n % args.models}"
                    batch.append(Event(id=f"bench-{n}", type="model_version.created", model=model,
                                       version=str(n // args.models + 1), time=datetime.now(UTC),
                                       source="bench", data={"model_name": model, "tags": {}}))
                    if len(batch) == 500:
                        await pub.publish(batch)
                        batch = []
                await pub.publish(batch)
            print(f"published {args.events} events in {time.perf_counter() - started:.1f} s")
            async with async_playwright() as p:
                browser = await p.chromium.launch(executable_path=shutil.which("chromium"))
                page = await browser.new_page()
                await page.goto(hub.admin.url + "/login")
                await page.fill("#token", TOKEN)
                await page.click("button[type=submit]")
                print(f"{'page':<18} {'first paint':>12} {'server':>10} {'downloaded':>11}")
                for path in PAGES:
                    await page.goto(hub.admin.url + path)  # warm: a first read of the topic
                    await page.goto(hub.admin.url + path)
                    m = await page.evaluate(MEASURE)
                    print(f"{path:<18} {m['fcp'] or 0:>9.0f} ms {m['response']:>7.0f} ms "
                          f"{m['bytes'] / 1024:>8.1f} KB")
                await browser.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--models", type=int, default=100)
    asyncio.run(main(parser.parse_args()))
