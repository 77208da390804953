"""A whole registry workflow (create, versions, tags, stage moves, aliases, rename, delete),
driven through a real ``mlflow server``, read back from a real broker by an independent
consumer: exact event types, payloads and headers per model.

Each step is followed by one detection round (``poll_once``), so every intermediate state is
observed; the loop itself is covered by the restart and outage tests.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from hub.app import Hub, Roles
from hub.config import HubConfig
from hub.detect.detector import Detector
from hub.events import IS_PROMPT_TAG
from tests.support.detector import hub_config
from tests.support.kafka_reader import by_key, read_topic
from tests.support.wait import until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


@pytest.fixture
async def setup(kafka_bootstrap: str, topic_name: str, mlflow_server_factory: Any
                ) -> AsyncIterator[tuple[Detector, MlflowClient, Any, HubConfig]]:
    server = mlflow_server_factory()
    config = hub_config(server.url, kafka_bootstrap, topic_name)
    client = MlflowClient(tracking_uri=server.url, registry_uri=server.url)
    async with Hub(config, Roles(deliver=False)) as hub:
        assert hub.detector is not None
        yield hub.detector, client, server, config


def _version_source(client: MlflowClient, experiment: str) -> tuple[str, str]:
    exp = client.get_experiment_by_name(experiment)
    exp_id = exp.experiment_id if exp else client.create_experiment(experiment)
    run = client.create_run(exp_id)
    client.log_param(run.info.run_id, "C", "0.5")
    return run.info.run_id, f"{run.info.artifact_uri}/model"


async def test_seed_workflow_emits_every_change_in_order(setup: Any) -> None:
    detector, client, server, config = setup
    assert await detector.poll_once() == []  # baseline: nothing emitted
    name = "iris-classifier"
    steps: list[list[tuple[str, str | None]]] = []

    async def step(expected: list[tuple[str, str | None]]) -> None:
        events = await detector.poll_once()
        assert [(e.type, e.version) for e in events] == expected
        steps.append(expected)

    client.create_registered_model(name, tags={"team": "ml"}, description="Iris model")
    await step([("registered_model.created", None)])

    lineage = [_version_source(client, "iris") for _ in range(3)]
    for run_id, source in lineage:
        client.create_model_version(name, source=source, run_id=run_id)
    await step([("model_version.created", "1"), ("model_version.created", "2"),
                ("model_version.created", "3")])

    client.transition_model_version_stage(name, "1", "Staging")
    await step([("model_version.stage_transitioned", "1")])
    client.transition_model_version_stage(name, "1", "Production")
    await step([("model_version.stage_transitioned", "1")])
    client.transition_model_version_stage(name, "2", "Production",
                                          archive_existing_versions=True)
    await step([("model_version.stage_transitioned", "2"),
                ("model_version.stage_transitioned", "1")])

    client.set_registered_model_alias(name, "champion", "2")
    client.set_registered_model_alias(name, "challenger", "3")
    await step([("model_version_alias.created", "3"), ("model_version_alias.created", "2")])
    client.set_registered_model_alias(name, "champion", "3")
    await step([("model_version_alias.created", "3")])
    client.delete_registered_model_alias(name, "challenger")
    await step([("model_version_alias.deleted", "3")])

    client.set_model_version_tag(name, "3", "validated", "true")
    await step([("model_version_tag.set", "3")])
    client.delete_model_version_tag(name, "3", "validated")
    await step([("model_version_tag.deleted", "3")])
    client.set_registered_model_tag(name, "owner", "alice")
    client.delete_registered_model_tag(name, "team")
    await step([("registered_model_tag.set", None), ("registered_model_tag.deleted", None)])

    client.update_registered_model(name, description="Iris, v2 docs")
    client.update_model_version(name, "2", description="promoted")
    await step([("registered_model.updated", None), ("model_version.updated", "2")])

    client.delete_model_version(name, "1")
    await step([("model_version.deleted", "1")])

    # A write made directly to the database, not through the server: MLflow's own webhooks
    # never see it; the poll does.
    with sqlite3.connect(server.db_uri.removeprefix("sqlite:///")) as db:
        db.execute("UPDATE model_versions SET description = 'edited in SQL' "
                   "WHERE name = ? AND version = 3", (name,))
    await step([("model_version.updated", "3")])

    client.create_registered_model("scratch")
    await step([("registered_model.created", None)])
    client.rename_registered_model("scratch", "scratch-renamed")
    await step([("registered_model.renamed", None)])
    client.delete_registered_model("scratch-renamed")
    await step([("registered_model.deleted", None)])

    # Read everything back with an independent consumer and check it per model.
    total = sum(len(s) for s in steps)
    records = await read_topic(config.kafka.bootstrap_servers, config.kafka.topic,
                               at_least=total, settle_s=0.5)
    assert len(records) == total
    per_model = by_key(records)
    assert set(per_model) == {name, "scratch", "scratch-renamed"}
    iris = per_model[name]
    assert [(r.type, r.data.get("version")) for r in iris] == [
        (t, v) for s in steps[:-3] for t, v in s
    ]

    created = iris[0]
    assert created.data == {
        "model_name": name, "creation_timestamp": created.data["creation_timestamp"],
        "description": "Iris model", "tags": {"team": "ml"}, "tracking_uri": server.url,
    }
    v1 = iris[1].data
    assert v1["run_id"] == lineage[0][0] and v1["source"] == lineage[0][1]
    assert v1["status"] == "READY" and v1["stage"] == "None" and v1["version"] == "1"
    transitions = [(r.data["version"], r.data["from_stage"], r.data["to_stage"])
                   for r in iris if r.type == "model_version.stage_transitioned"]
    assert transitions == [("1", "None", "Staging"), ("1", "Staging", "Production"),
                           ("2", "None", "Production"), ("1", "Production", "Archived")]
    aliases = [(r.type, r.data["alias"], r.data["version"], r.data.get("previous_version"))
               for r in iris if r.type.startswith("model_version_alias")]
    assert aliases == [
        ("model_version_alias.created", "challenger", "3", None),
        ("model_version_alias.created", "champion", "2", None),
        ("model_version_alias.created", "champion", "3", "2"),
        ("model_version_alias.deleted", "challenger", "3", None),
    ]
    champion_moved = next(r for r in iris if r.data.get("previous_version") == "2")
    assert champion_moved.data["run_id"] == lineage[2][0]
    assert champion_moved.data["aliases"] == ["challenger", "champion"]  # both point at v3
    tag_set = next(r for r in iris if r.type == "model_version_tag.set")
    assert (tag_set.data["key"], tag_set.data["value"], tag_set.data["previous_value"]) == \
        ("validated", "true", None)
    assert tag_set.data["tags"] == {"validated": "true"}
    model_tags = [(r.type, r.data["key"]) for r in iris
                  if r.type.startswith("registered_model_tag")]
    assert model_tags == [("registered_model_tag.set", "owner"),
                          ("registered_model_tag.deleted", "team")]
    updated = [(r.data.get("version"), r.data["description"], r.data["previous_description"])
               for r in iris if r.type.endswith(".updated")]
    assert updated == [(None, "Iris, v2 docs", "Iris model"), ("2", "promoted", None),
                       ("3", "edited in SQL", None)]
    deleted = next(r for r in iris if r.type == "model_version.deleted")
    assert deleted.data["version"] == "1" and deleted.data["stage"] == "Archived"

    renamed = per_model["scratch-renamed"]
    assert [r.type for r in renamed] == ["registered_model.renamed", "registered_model.deleted"]
    assert renamed[0].data["previous_name"] == "scratch"

    # CloudEvents binary mode headers, key = model name, deterministic unique ids.
    for r in records:
        h = r.headers
        assert h["ce_specversion"] == "1.0"
        assert h["ce_source"] == server.url
        assert h["ce_type"] == r.type
        assert h["ce_partitionkey"] == r.key
        assert h["content-type"] == "application/json"
        assert h["ce_time"].endswith("Z")
        expected_subject = f"models/{r.key}" + (
            f"/versions/{r.data['version']}" if "version" in r.data else "")
        assert h["ce_subject"] == expected_subject
    assert len({r.headers["ce_id"] for r in records}) == len(records)
    # one model, one partition: per-model order is the topic's order
    assert len({r.partition for r in iris}) == 1


async def test_prompts_are_polled_as_prompt_events_and_a_flip_is_no_deletion(setup: Any
                                                                             ) -> None:
    """MLflow's prompt API (register, new version, alias set and moved, tags) by poll; then
    a model tagged into a prompt and back: tag events of what it now is, never a deletion."""
    detector, client, _server, config = setup
    assert await detector.poll_once() == []

    async def linked() -> bool:
        prompt = await asyncio.to_thread(client.get_prompt, "summarize")
        return prompt is not None and "_mlflow_experiment_ids" in prompt.tags

    async def step() -> list[tuple[str, str | None]]:
        return [(e.type, e.version) for e in await detector.poll_once()]

    client.register_prompt("summarize", "Summarise {{text}}", tags={"team": "support"})
    # MLflow's client links a new prompt to the active experiment, by a tag set on a thread
    await until(linked, "the experiment link")
    assert await step() == [("prompt.created", None), ("prompt_version.created", "1")]
    client.register_prompt("summarize", "Summarise in {{n}} words: {{text}}")
    assert await step() == [("prompt_version.created", "2")]
    client.set_prompt_alias("summarize", "production", 1)
    assert await step() == [("prompt_alias.created", "1")]
    client.set_prompt_alias("summarize", "production", 2)
    assert await step() == [("prompt_alias.created", "2")]
    client.set_prompt_tag("summarize", "owner", "bob")
    assert await step() == [("prompt_tag.set", None)]
    client.set_prompt_version_tag("summarize", 2, "reviewed", "yes")
    assert await step() == [("prompt_version_tag.set", "2")]

    client.create_registered_model("classifier")
    assert await step() == [("registered_model.created", None)]
    client.set_registered_model_tag("classifier", IS_PROMPT_TAG, "true")
    assert await step() == [("prompt_tag.set", None)]
    client.delete_prompt_tag("classifier", IS_PROMPT_TAG)  # the model API no longer finds it
    assert await step() == [("registered_model_tag.deleted", None)]

    records = await read_topic(config.kafka.bootstrap_servers, config.kafka.topic,
                               at_least=10, settle_s=0.5)
    assert not [r for r in records if r.type.endswith(".deleted") and "_tag" not in r.type]
    per_model = by_key(records)
    prompt = per_model["summarize"]
    assert prompt[1].data["template"] == "Summarise {{text}}"
    assert prompt[1].headers["ce_subject"] == "prompts/summarize/versions/1"
    moved = [r.data for r in prompt if r.type == "prompt_alias.created"][-1]
    assert (moved["alias"], moved["version"], moved["previous_version"]) == \
        ("production", "2", "1")
    flip = [(r.type, r.data.get("key"), r.data.get("value")) for r in per_model["classifier"]]
    assert flip == [("registered_model.created", None, None),
                    ("prompt_tag.set", IS_PROMPT_TAG, "true"),
                    ("registered_model_tag.deleted", IS_PROMPT_TAG, None)]
