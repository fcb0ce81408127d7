"""A small local receiver for the demo (``make run`` starts it on 127.0.0.1:8900): it
verifies each request's Standard Webhooks signature with the reference
``standardwebhooks`` package and prints what it got. Not for production.

    python -m streams.delivery receiver [--port 8900]

The secret is ``LOCAL_WEBHOOK_SECRET`` from ``ACTIVATION_DELIVERY_SECRETS``.
"""

from __future__ import annotations

import json

from aiohttp import web
from standardwebhooks.webhooks import Webhook, WebhookVerificationError


def receiver_app(secret: str) -> web.Application:
    verifier = Webhook(secret)
    seen: set[str] = set()

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        try:
            verifier.verify(body, dict(request.headers))
        except WebhookVerificationError as exc:
            print(f"REJECTED {request.headers.get('webhook-id')}: {exc}", flush=True)
            return web.json_response({"error": str(exc)}, status=401)
        doc = json.loads(body)
        data, wid = doc["data"], request.headers["webhook-id"]
        again = " (again: a retry or redelivery, dropped)" if wid in seen else ""
        seen.add(wid)
        print(f"received {doc['type']} for profile {data['profile_id']} "
              f"payload={data['payload']} webhook-id={wid[:12]}… signature ok{again}",
              flush=True)
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/hooks/{name}", hook)
    app.router.add_put("/hooks/{name}", hook)
    return app


def serve(secret: str, host: str, port: int) -> None:
    print(f"local receiver on http://{host}:{port}/hooks/<name>", flush=True)
    web.run_app(receiver_app(secret), host=host, port=port, print=None, access_log=None)
