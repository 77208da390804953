"""A minimal receiver for Registry Hub webhooks: checks the Standard Webhooks signature,
drops redeliveries by ``webhook-id`` (delivery is at-least-once) and prints one line per
request: accepted (signature verified), a redelivery, or refused and why.

    WEBHOOK_SECRET=whsec_... python examples/receiver.py       # http://127.0.0.1:9000
    WEBHOOK_SECRET=whsec_... python examples/receiver.py --host 0.0.0.0 --port 9100

It listens on loopback unless told otherwise (``--host`` or ``HOST``; ``0.0.0.0`` in a
container, as docker-compose.yml does); ``--port`` or ``PORT`` picks the port.
"""

import argparse
import json
import os
import sys
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
    event_id = request.headers.get("webhook-id", "-")
    try:
        request.app["webhook"].verify(body, dict(request.headers), json_parse=False)
    except (WebhookVerificationError, ValueError) as exc:  # ValueError: malformed headers
        print(f"refused  id={event_id} from {request.remote}: signature not verified "
              f"({exc or type(exc).__name__}); answered 401", flush=True)
        return web.json_response({"error": "invalid signature"}, status=401)
    seen: OrderedDict[str, None] = request.app["seen"]
    if event_id in seen:  # a redelivery of an event we already handled: acknowledge only
        print(f"repeat   id={event_id}: signature verified, already handled; acknowledged",
              flush=True)
        return web.Response(status=204)
    try:
        event = json.loads(body)
        data = event.get("data") or {}
        kind, at = event["type"], event["timestamp"]
    except (ValueError, AttributeError, KeyError, TypeError):
        print(f"refused  id={event_id}: signature verified, but the body is not a Standard "
              "Webhooks event {type, timestamp, data}; answered 400", flush=True)
        return web.json_response({"error": "not an event"}, status=400)
    seen[event_id] = None
    if len(seen) > SEEN_MAX:
        seen.popitem(last=False)
    test = "[test] " if data.get("test") is True else ""
    version = f" v{data['version']}" if data.get("version") else ""
    print(f"accepted {test}{at} {kind} {data.get('model_name')}{version} id={event_id} "
          "(signature verified)", flush=True)
    return web.Response(status=204)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"),
                        help="listen address (default: HOST, else 127.0.0.1; 0.0.0.0 accepts "
                             "other machines)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "9000")),
                        help="listen port (default: PORT, else 9000)")
    return parser.parse_args(argv)


def main() -> None:
    args = parse_args()
    secret = os.environ.get("WEBHOOK_SECRET")
    if not secret:
        sys.exit("receiver: set WEBHOOK_SECRET to the subscription's secret (whsec_...)")
    try:
        if not secret.startswith("whsec_"):
            raise ValueError("no whsec_ prefix")
        webhook = Webhook(secret)
    except Exception as exc:  # the library raises several types for a bad key
        sys.exit(f"receiver: WEBHOOK_SECRET is not a usable whsec_ secret ({exc})")
    app = web.Application(client_max_size=1024 * 1024)
    app["webhook"] = webhook
    app["seen"] = OrderedDict()
    app.add_routes(routes)
    host = f"[{args.host}]" if ":" in args.host else args.host
    banner = (f"receiver: listening on http://{host}:{args.port}/ (signatures checked with "
              "WEBHOOK_SECRET)")
    # run_app calls ``print`` once the socket listens: the banner means "ready"
    web.run_app(app, host=args.host, port=args.port,
                print=lambda _: print(banner, flush=True))


if __name__ == "__main__":
    main()
