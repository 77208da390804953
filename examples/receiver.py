"""A minimal receiver for Registry Hub webhooks: checks the Standard Webhooks signature,
drops redeliveries by ``webhook-id`` (delivery is at-least-once) and prints each event.

    WEBHOOK_SECRET=whsec_... python examples/receiver.py      # listens on :9000 (PORT)
"""

import json
import os
from collections import OrderedDict

from aiohttp import web
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

SEEN_MAX = 10_000
routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


@routes.post("/{path:.*}")
async def receive(request: web.Request) -> web.Response:
    body = await request.read()
    try:
        Webhook(request.app["secret"]).verify(body, dict(request.headers))
    except WebhookVerificationError:
        return web.json_response({"error": "invalid signature"}, status=401)
    seen: OrderedDict[str, None] = request.app["seen"]
    event_id = request.headers["webhook-id"]
    if event_id in seen:  # a redelivery of an event we already handled: acknowledge only
        return web.Response(status=204)
    seen[event_id] = None
    if len(seen) > SEEN_MAX:
        seen.popitem(last=False)
    event = json.loads(body)
    data = event.get("data", {})
    version = f" v{data['version']}" if data.get("version") else ""
    print(f"{event['timestamp']} {event['type']} {data.get('model_name')}{version} "
          f"id={event_id}", flush=True)
    return web.Response(status=204)


def main() -> None:
    app = web.Application(client_max_size=1024 * 1024)
    app["secret"] = os.environ["WEBHOOK_SECRET"]
    app["seen"] = OrderedDict()
    app.add_routes(routes)
    web.run_app(app, host=os.environ.get("HOST", "0.0.0.0"),
                port=int(os.environ.get("PORT", "9000")), print=None)


if __name__ == "__main__":
    main()
