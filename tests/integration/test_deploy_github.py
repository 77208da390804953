"""The deploy handler's GitHub targets on the wire, against a local GitHub REST API stand-in
(``tests/support/deploy.py``): repository and workflow dispatches with the checked payload
and a stable idempotency key, GitHub's 422, rate limit, bad credentials and missing repo."""

from __future__ import annotations

from handlers.deploy_targets import idempotency_key
from hub.http import HttpClients
from hub.outcome import Status
from tests.support.deploy import TOKEN, FakeGitHub, alias_event, github_handler, stage_event


async def test_repository_dispatch_sends_the_checked_payload_and_the_same_key_on_redelivery(
        github: tuple[FakeGitHub, str], http_clients: HttpClients) -> None:
    fake, url = github
    handler = github_handler(url, http_clients)
    event = stage_event(event_id="ev-42")
    first, again = await handler.deliver(event), await handler.deliver(event)
    assert (first.status, first.http_status) == (Status.DELIVERED, 204)
    assert first.latency_s is not None and again.status is Status.DELIVERED
    [(path, body), (_, body_again)] = fake.accepted
    assert path == "/repos/acme/serving/dispatches"
    assert body["event_type"] == "deploy-model"
    assert body["client_payload"] == {
        "model": "iris", "version": "3", "alias": None, "stage": "Production", "run_id": "r1",
        "source": "models:/m-1", "event_type": "model_version.stage_transitioned",
        "event_id": "ev-42", "idempotency_key": idempotency_key("deploy-prod", "ev-42")}
    assert body_again == body


async def test_workflow_dispatch_sends_ref_and_declared_string_inputs(
        github: tuple[FakeGitHub, str], http_clients: HttpClients) -> None:
    fake, url = github
    handler = github_handler(url, http_clients, target="github_workflow", event_type=None,
                             workflow="deploy.yml", ref="main")
    event = alias_event("iris", "4")
    outcome = await handler.deliver(event)
    assert outcome.status is Status.DELIVERED, outcome.detail
    [(path, body)] = fake.accepted
    assert path == "/repos/acme/serving/actions/workflows/deploy.yml/dispatches"
    assert body["ref"] == "main"
    assert body["inputs"]["alias"] == "champion" and body["inputs"]["version"] == "4"
    assert body["inputs"]["idempotency_key"] == idempotency_key("deploy-prod", event.id)


async def test_github_422_is_final_with_githubs_message(
        github: tuple[FakeGitHub, str], http_clients: HttpClients) -> None:
    fake, url = github
    fake.workflows["deploy.yml"] = {"model", "version"}
    handler = github_handler(url, http_clients, target="github_workflow", event_type=None,
                             workflow="deploy.yml", ref="main")
    outcome = await handler.deliver(stage_event())
    assert (outcome.status, outcome.http_status) == (Status.FAILED, 422)
    assert "Unexpected inputs provided" in outcome.detail and "idempotency_key" in outcome.detail
    assert fake.accepted == []
    missing_ref = github_handler(url, http_clients, target="github_workflow", event_type=None,
                                 workflow="deploy.yml", ref="release",
                                 inputs={"model": "{model}", "version": "{idempotency_key}"})
    outcome = await missing_ref.deliver(stage_event())
    assert outcome.status is Status.FAILED and "No ref found for: release" in outcome.detail


async def test_github_rate_limit_is_retried_after_retry_after(
        github: tuple[FakeGitHub, str], http_clients: HttpClients) -> None:
    fake, url = github
    fake.rate_limited = True
    outcome = await github_handler(url, http_clients).deliver(stage_event())
    assert (outcome.status, outcome.http_status, outcome.retry_after_s) == (
        Status.RETRY, 403, 42.0)
    assert "rate limit" in outcome.detail
    fake.rate_limited = False
    assert (await github_handler(url, http_clients).deliver(stage_event())).status \
        is Status.DELIVERED


async def test_github_auth_and_missing_repo_are_final_and_never_show_the_token(
        github: tuple[FakeGitHub, str], http_clients: HttpClients) -> None:
    fake, url = github
    bad = await github_handler(url, http_clients, token="ghp_wrong_token").deliver(stage_event())
    assert (bad.status, bad.http_status) == (Status.FAILED, 401)
    assert "Bad credentials" in bad.detail and "ghp_wrong_token" not in bad.detail
    missing = await github_handler(url, http_clients, repo="acme/other").deliver(stage_event())
    assert (missing.status, missing.http_status) == (Status.FAILED, 404)
    assert TOKEN not in missing.detail and fake.accepted == []
