"""The admin API's dead letters on a real hub: a subscription whose receiver is down
exhausts its retries, the dead-letter view lists it, a replay delivers it (the attempt log
shows it), replaying everything skips it and says why; a restarted hub's store sees the
runtime subscription and follows later changes made through the API."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from hub.admin.store import SubscriptionStore
from tests.support.admin import ADMIN_TOKEN, Api, admin_config, running_hub, transition
from tests.support.delivery import publish, webhook
from tests.support.receiver import SECRET, Receiver
from tests.support.wait import eventually

pytestmark = pytest.mark.timeout(180)


@pytest.mark.slow
async def test_dead_letters_replay_and_a_restarted_hub(
        kafka_bootstrap: str, topic_name: str, receiver: Receiver) -> None:
    receiver.down.add("x")
    config = admin_config(kafka_bootstrap, topic_name, [
        {"name": "from-config", "handler": "console"}])
    async with running_hub(config) as (hub, _, admin), aiohttp.ClientSession() as http:
        assert hub.worker is not None
        api = Api(http, admin.url)
        status, created = await api("POST", "/api/subscriptions", {
            **webhook("flaky", f"{receiver.url}/down/x"), "description": "goes down"})
        assert status == 201 and created["secret"] == "***"
        await asyncio.wait_for(hub.worker.lanes["flaky"].assigned.wait(), 30)
        await publish(config, [transition(1, "Production")])

        async def letters() -> list[dict[str, Any]]:
            return list((await api("GET", "/api/dead-letters?subscription=flaky"))[1][
                "dead_letters"])

        (letter,) = await eventually(letters, lambda ls: len(ls) >= 1)
        assert (letter["event_id"], letter["reason"], letter["attempts"]) == (
            "evt-1", "exhausted", 2)
        assert (await api("GET", "/api/dead-letters?subscription=other"))[1] == {
            "dead_letters": []}

        receiver.down.clear()
        assert (await api("POST", "/api/dead-letters/replay", {"bogus": 1}))[0] == 422
        assert (await api("POST", "/api/dead-letters/replay", raw=b"["))[0] == 400
        status, replayed = await api("POST", "/api/dead-letters/replay",
                                     {"subscription": "flaky", "event_id": "evt-1"})
        assert (status, replayed["enqueued"]) == (202, 1)
        (hit,) = await receiver.wait_for(1, "/down/x")
        assert hit.verified and hit.headers["webhook-id"] == "evt-1"

        async def attempts() -> list[str]:
            body = (await api("GET", "/api/deliveries?subscription=flaky"))[1]
            return [d["status"] for d in body["deliveries"]]

        assert await eventually(attempts, lambda s: len(s) >= 3) == [
            "delivered", "retry", "retry"]

        # the view shows it once, delivered; replaying everything skips it and says why
        (letter,) = await eventually(letters, lambda ls: ls[0]["state"] == "delivered")
        assert (letter["event_id"], letter["replays"]) == ("evt-1", 1)
        status, again = await api("POST", "/api/dead-letters/replay", {})
        assert (status, again["enqueued"], again["skipped"], again["skipped_by_reason"]) == (
            202, 0, 1, {"delivered_after_replay": 1})
        status, none_dead = await api("GET", "/api/dead-letters?state=dead")
        assert (status, none_dead) == (200, {"dead_letters": []})
        status, refused = await api("GET", "/api/dead-letters?state=lost")
        assert (status, refused["field"]) == (400, "state")

        # a restarted hub (a second store) sees the runtime subscription, secret included,
        # and follows later changes made through the API
        async with SubscriptionStore(config, kafka_bootstrap) as restarted:
            assert restarted.subscriptions["flaky"].options["secret"] == SECRET
            assert restarted.descriptions["flaky"] == "goes down"
            watch = asyncio.create_task(restarted.watch())
            assert (await api("PATCH", "/api/subscriptions/flaky", {"enabled": False}))[0] \
                == 200
            await eventually(lambda: restarted.subscriptions["flaky"].enabled,
                             lambda enabled: enabled is False)
            assert "flaky" not in hub.worker.lanes  # disabled here too
            assert (await api("DELETE", "/api/subscriptions/flaky"))[0] == 204
            await eventually(lambda: "flaky" in restarted.subscriptions,
                             lambda present: present is False)
            restarted.stop()
            await asyncio.wait_for(watch, 10)

    for body in api.bodies:
        assert SECRET not in body and ADMIN_TOKEN not in body
