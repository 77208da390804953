"""The dashboard in a real browser: the system's Chromium driven by Playwright, against a
``registry-hub run`` subprocess watching a real ``mlflow server``, publishing to the session
broker and delivering to a receiver on loopback.

One hub, one receiver and one browser for the module; each test opens its own signed-in
page and fails on any console error. Waits are Playwright's auto-waiting ``expect``, the
receiver's condition and :func:`tests.support.wait.eventually` (a page reload as the probe,
where the page shows a state the server reaches later), never a sleep.

Screenshots of each page are written to ``$HUB_SCREENSHOTS`` (the README's come from
``HUB_SCREENSHOTS=docs/screenshots``), else to a temporary directory.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import pytest_asyncio
import yaml

from tests.support.hub_process import STARTUP_TIMEOUT_S, HubProcess, clean_env
from tests.support.receiver import SECRET, Receiver, running_receiver
from tests.support.wait import eventually

if TYPE_CHECKING:
    from playwright.async_api import Browser, ConsoleMessage, Page

    from tests.support.mlflow_server import MlflowServer

playwright_api = pytest.importorskip(
    "playwright.async_api", reason="playwright is in the test extra: pip install -e '.[test]'")
expect = playwright_api.expect

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module"),
              pytest.mark.timeout(240)]

TOKEN = "dashboard-token-" + uuid.uuid4().hex
RUN = uuid.uuid4().hex[:6]
SOON_MS = 15_000  # "within a few seconds": poll 0.3 s + publish + the page's 2 s refresh


def chromium() -> str:
    """The system's Chromium (Debian's ``chromium`` package; .ci/run installs it)."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    pytest.skip("no system Chromium: install Debian's chromium package (apt-get install -y "
                "chromium; .ci/run does so when it runs as root)")


def shots() -> Path:
    return Path(os.environ.get("HUB_SCREENSHOTS") or os.environ["DASHBOARD_SHOTS_TMP"])


@pytest.fixture(scope="module")
def _shots_tmp(tmp_path_factory: pytest.TempPathFactory) -> None:
    os.environ.setdefault("DASHBOARD_SHOTS_TMP", str(tmp_path_factory.mktemp("screenshots")))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def receiver() -> AsyncIterator[Receiver]:
    async with running_receiver() as r:
        yield r


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def hub(tmp_path_factory: pytest.TempPathFactory, kafka_bootstrap: str,
              mlflow_server: MlflowServer, receiver: Receiver) -> AsyncIterator[str]:
    """``registry-hub run`` on the session broker and MLflow server; the admin URL, as the
    ready line prints it."""
    root = tmp_path_factory.mktemp("dashboard-hub")
    hook = {"handler": "webhook", "secret": SECRET, "timeout_s": 2}
    config = {
        "mlflow": {"tracking_uri": mlflow_server.url},
        "kafka": {"bootstrap_servers": kafka_bootstrap, "topic": f"dashboard-{RUN}",
                  "partitions": 1, "session_timeout_ms": 6000, "heartbeat_interval_ms": 1000},
        "detector": {"poll_interval_s": 0.3, "leader_election": False},
        "delivery": {"retry_schedule_s": [0.1, 0.1], "jitter": 0, "start_from": "earliest",
                     "allowed_networks": ["127.0.0.0/8"], "grace_period_s": 2},
        "admin": {"host": "127.0.0.1", "port": 0, "token": TOKEN},
        "state_dir": str(root / "state"),
        "subscriptions": [
            {"name": "all", "url": f"{receiver.url}/ok/all", "models": [f"dash-{RUN}-*"],
             **hook},
            {"name": "flaky", "url": f"{receiver.url}/down/flaky",
             "models": [f"dash-{RUN}-flaky*"], **hook},
        ],
    }
    (root / "hub.yaml").write_text(yaml.safe_dump(config))
    proc = HubProcess(["run", "--config", str(root / "hub.yaml")], root, clean_env())
    try:
        ready = proc.wait_line("stdout", lambda line: line.startswith("registry-hub ready"),
                               "the ready line", STARTUP_TIMEOUT_S)
        match = re.search(r"admin (http://127\.0\.0\.1:\d+)", ready)
        assert match, ready
        yield match.group(1)
    finally:
        proc.kill()


@pytest.fixture(scope="module")
def registry(mlflow_server: MlflowServer) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=mlflow_server.url, registry_uri=mlflow_server.url)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser(_shots_tmp: None) -> AsyncIterator[Browser]:
    path = chromium()
    async with playwright_api.async_playwright() as p:
        launched = await p.chromium.launch(executable_path=path)
        try:
            yield launched
        finally:
            await launched.close()


REFUSED_FORM = re.compile(r"^Failed to load resource: the server responded with a status of "
                          r"(401|422) ")


class Tab:
    """A page with the console errors it logged (a CSP violation is one). Chromium also logs
    the 401/422 status of a refused sign-in or form as one: those answers are the point of
    the tests that send them, so they are not counted."""

    def __init__(self, page: Page, base: str) -> None:
        self.page, self.base, self.errors = page, base, []  # type: ignore[var-annotated]
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error" and not REFUSED_FORM.match(message.text):
            self.errors.append(message.text)

    async def goto(self, path: str) -> None:
        await self.page.goto(self.base + path)

    async def shot(self, name: str) -> None:
        folder = shots()
        folder.mkdir(parents=True, exist_ok=True)
        await self.page.screenshot(path=str(folder / f"{name}.png"), full_page=True)

    async def login(self, token: str = TOKEN) -> None:
        await self.page.get_by_label("Admin token").fill(token)
        await self.page.get_by_role("button", name="Sign in").click()


@pytest_asyncio.fixture(loop_scope="module")
async def tab(browser: Browser, hub: str) -> AsyncIterator[Tab]:
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    t = Tab(await context.new_page(), hub)
    await t.goto("/")
    await t.login()
    await expect(t.page.get_by_role("heading", name="Overview")).to_be_visible()
    yield t
    await context.close()
    assert t.errors == [], f"console errors: {t.errors}"


async def call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """A (synchronous) MLflow client call off the loop: the receiver runs on it."""
    return await asyncio.to_thread(fn, *args, **kwargs)


def hits_of(receiver: Receiver, model: str, path: str = "/ok/all") -> list[dict[str, Any]]:
    return [h.body for h in receiver.delivered(path) if model in json.dumps(h.body)]


async def test_sign_in_refuses_a_wrong_token_and_keeps_the_session(
        browser: Browser, hub: str) -> None:
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    t = Tab(await context.new_page(), hub)
    await t.goto("/subscriptions")
    await expect(t.page).to_have_url(re.compile(r"/login\?next=/subscriptions$"))
    await t.login("not-the-token")
    await expect(t.page.get_by_role("alert")).to_contain_text("not the admin token")
    await expect(t.page.get_by_label("Admin token")).to_have_attribute("aria-invalid", "true")
    await t.shot("login")
    await t.login()
    await expect(t.page.get_by_role("heading", name="Subscriptions")).to_be_visible()
    cookie = next(c for c in await context.cookies() if c["name"] == "hub_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["expires"] == -1
    assert TOKEN not in await t.page.content()
    await t.page.get_by_role("button", name="Sign out").click()
    await expect(t.page.get_by_label("Admin token")).to_be_visible()
    await t.goto("/")
    await expect(t.page).to_have_url(re.compile(r"/login"))
    await context.close()
    assert t.errors == [], t.errors


async def test_a_registry_change_appears_live_and_its_event_lists_the_attempt(
        tab: Tab, registry: Any, receiver: Receiver) -> None:
    model = f"dash-{RUN}-live"
    await tab.goto("/events")
    rows = tab.page.locator("#live-events tbody tr")
    await call(registry.create_registered_model, model)
    row = rows.filter(has_text=model)
    await expect(row).to_contain_text("registered_model.created", timeout=SOON_MS)
    await eventually(lambda: hits_of(receiver, model), what=f"{model} delivered")
    await tab.shot("events")

    await row.get_by_role("link", name=re.compile("…")).click()
    await expect(tab.page.get_by_role("heading", name=re.compile("registered_model.created")))\
        .to_be_visible()

    async def attempts() -> int:
        await tab.page.reload()
        return await tab.page.locator("table.attempts[data-subscription=all] tbody tr").count()

    await eventually(attempts, lambda n: n == 1, what="the attempt on the event page")
    attempt = tab.page.locator("table.attempts[data-subscription=all] tbody tr")
    await expect(attempt).to_contain_text("delivered")
    await expect(attempt).to_contain_text("200")
    await expect(tab.page.get_by_text("specversion")).to_be_visible()
    await tab.shot("event")


async def test_a_subscription_made_in_the_form_receives_the_next_event(
        tab: Tab, registry: Any, receiver: Receiver) -> None:
    page = tab.page
    await tab.goto("/subscriptions")
    await page.get_by_role("link", name="New subscription").click()
    await page.get_by_label("Name").fill("formsub")
    await page.get_by_label("URL").fill("not a url")
    await page.get_by_label("Models").fill(f"dash-{RUN}-form*")
    await page.get_by_label("More settings").fill(json.dumps({"secret": SECRET}))
    await page.get_by_role("button", name="Create").click()
    await expect(page.locator("#url-error")).to_contain_text("URL")
    await expect(page.get_by_label("URL")).to_have_attribute("aria-invalid", "true")
    await expect(page.get_by_label("Name")).to_have_value("formsub")  # the form is kept
    await tab.shot("subscription-form")

    await page.get_by_label("URL").fill(f"{receiver.url}/ok/formsub")
    await page.get_by_role("button", name="Create").click()
    await expect(page.get_by_role("status")).to_contain_text("Subscription formsub created")
    row = page.locator("tr[data-subscription=formsub]")
    await expect(row).to_contain_text("runtime")

    model = f"dash-{RUN}-form"
    await call(registry.create_registered_model, model)
    hits = await receiver.wait_for(1, "/ok/formsub")
    assert hits[0].verified and model in json.dumps(hits[0].body)

    await row.get_by_role("button", name="Test").click()
    await expect(page.get_by_role("status")).to_contain_text("Test to formsub: delivered, HTTP 200")
    await row.get_by_role("button", name="Pause").click()
    await expect(page.locator("tr[data-subscription=formsub] .state")).to_have_text("paused")
    await page.locator("tr[data-subscription=formsub]").get_by_role("button", name="Resume")\
        .click()
    await expect(page.locator("tr[data-subscription=formsub] .state")).not_to_have_text("paused")
    await tab.shot("subscriptions")


async def test_a_dead_letter_is_replayed_once_from_its_page(
        tab: Tab, registry: Any, receiver: Receiver) -> None:
    page = tab.page
    model = f"dash-{RUN}-flaky"
    receiver.down.add("flaky")
    await call(registry.create_registered_model, model)
    entry = page.locator("#dead-letters tr[data-subscription=flaky]").filter(has_text=model)

    async def state() -> str:
        await tab.goto("/dead-letters?subscription=flaky")
        return " ".join(await entry.locator(".state").all_text_contents())

    await eventually(state, lambda s: "dead" in s, what="the dead letter", timeout_s=30)
    await expect(entry).to_contain_text("exhausted")
    await expect(entry.locator(".excerpt")).to_contain_text("503")
    await tab.goto("/")
    await expect(page.locator('a[href="/dead-letters?subscription=flaky&state=dead"]'))\
        .to_have_text("flaky")
    await tab.shot("overview")
    await tab.goto("/dead-letters?subscription=flaky")
    await tab.shot("dead-letters")

    receiver.down.discard("flaky")
    await entry.get_by_role("button", name=re.compile("^Replay")).click()
    await expect(page.get_by_role("status")).to_contain_text("1 dead letter enqueued")
    await receiver.wait_for(1, "/down/flaky")
    await eventually(state, lambda s: "delivered" in s, what="the replay delivered")
    assert len(hits_of(receiver, model, "/down/flaky")) == 1
    await expect(entry.locator(".state")).to_contain_text("replayed 1\u00d7")


async def test_the_timeline_shows_each_mark_in_order(
        tab: Tab, registry: Any, receiver: Receiver) -> None:
    model = f"dash-{RUN}-timeline"
    steps: list[tuple[Callable[..., Any], tuple[Any, ...]]] = [
        (registry.create_registered_model, (model,)),
        *[(registry.create_model_version, (model, f"s3://bucket/{model}/{n}")) for n in (1, 2, 3)],
        (registry.transition_model_version_stage, (model, "1", "Staging")),
        (registry.transition_model_version_stage, (model, "1", "Production")),
        (registry.set_registered_model_alias, (model, "champion", "1")),
        (registry.set_registered_model_alias, (model, "champion", "2")),
    ]
    for n, (fn, args) in enumerate(steps, 1):  # one change per detection round: in order
        await call(fn, *args)
        await eventually(lambda: hits_of(receiver, model), lambda h, n=n: len(h) >= n,
                         what=f"{n} events of {model}")
    await tab.goto(f"/models/{model}")
    changes = tab.page.locator("ol.changes li")
    await expect(changes.last).to_contain_text("@champion moved v1 → v2")
    wanted = ["model created", "v1 created", "v2 created", "v3 created",
              "v1 None → Staging", "v1 Staging → Production", "@champion set on v1",
              "@champion moved v1 → v2"]
    texts = await changes.all_text_contents()
    positions = [next(i for i, t in enumerate(texts) if t.endswith(w)) for w in wanted]
    assert positions == sorted(positions), texts
    marks = tab.page.locator("svg.timeline a.mark")
    await expect(marks).to_have_count(len(texts))
    assert [await m.get_attribute("data-mark") for m in await marks.all()][:1] == ["created"]
    assert await tab.page.locator("svg.timeline rect.band").count() == 2  # Staging, Production
    await tab.shot("timeline")
    await marks.last.click()
    await expect(tab.page.get_by_role("heading", name=re.compile("model_version_alias.created")))\
        .to_be_visible()


async def test_every_page_fits_320_px_and_is_keyboard_reachable(
        browser: Browser, hub: str) -> None:
    context = await browser.new_context(viewport={"width": 320, "height": 640})
    t = Tab(await context.new_page(), hub)
    await t.goto("/")
    await t.login()
    # the first Tab of a fully loaded page (a loaded machine may still be painting the one the
    # sign-in redirected to, and a Tab then lands nowhere)
    await expect(t.page.locator("h1")).to_be_visible()
    await t.page.wait_for_load_state("load")
    await t.page.keyboard.press("Tab")
    await expect(t.page.get_by_role("link", name="Skip to content")).to_be_focused()
    for path in ("/", "/events", f"/models/dash-{RUN}-timeline", "/subscriptions",
                 "/subscriptions/new", "/dead-letters"):
        await t.goto(path)
        await expect(t.page.locator("h1")).to_be_visible()
        width = await t.page.evaluate("document.documentElement.scrollWidth")
        assert width <= 320, f"{path} is {width} px wide at a 320 px viewport"
    await t.goto("/")
    await t.shot("overview-320px")
    await context.close()
    assert t.errors == [], t.errors
