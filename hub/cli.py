"""``registry-hub`` / ``python -m hub``: the only place that handles signals and sets up
logging. Exit codes: 0 ok, 1 runtime failure, 2 configuration error."""

from __future__ import annotations

import argparse
import asyncio
import atexit
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import structlog

from hub import heap
from hub import logging as hub_logging
from hub.app import Hub, Roles
from hub.config import HubConfig
from hub.config_load import config_path_from_env, load_config
from hub.errors import ConfigError, HubError
from hub.plugins import validate_options
from hub.ready import report_readiness

log = structlog.get_logger("hub.cli")

EXIT_OK, EXIT_FAILURE, EXIT_CONFIG = 0, 1, 2
SHUTDOWN_SLACK_S = 5.0
"""SIGTERM stops the hub within ``delivery.grace_period_s`` plus this, whatever the broker
does (see :func:`_watchdog`)."""


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", "-c", type=Path, default=argparse.SUPPRESS,
                        help="YAML configuration file (env HUB_CONFIG); default: built-in")
    common.add_argument("--log-level", default=argparse.SUPPRESS,
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser = argparse.ArgumentParser(
        prog="registry-hub", parents=[common],
        description="Webhook and notification hub for the MLflow Model Registry.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("run", parents=[common], help="detector + delivery workers in one process")
    sub.add_parser("detect", parents=[common], help="detector only (publishes to Kafka)")
    sub.add_parser("deliver", parents=[common], help="delivery workers only")
    sub.add_parser("check-config", parents=[common],
                   help="validate the configuration and handler options, then exit")
    from hub.deliver.replay import add_replay_parser
    from hub.ingest.mlflow_webhook import add_mlflow_webhook_parser

    add_replay_parser(sub, common)
    add_mlflow_webhook_parser(sub, common)
    return parser


def load(args: argparse.Namespace) -> HubConfig:
    path = getattr(args, "config", None) or config_path_from_env()
    config = load_config(path)
    for index, sub in enumerate(config.subscriptions):
        validate_options(sub, index)
    return config


def main(argv: Sequence[str] | None = None) -> int:
    started = time.monotonic()
    args = _parser().parse_args(argv)
    try:
        config = load(args)
    except ConfigError as exc:
        print(f"registry-hub: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    hub_logging.configure(getattr(args, "log_level", None) or config.log_level,
                          config.log_format)
    if args.command == "check-config":
        print(f"configuration OK: {len(config.subscriptions)} subscription(s), "
              f"kafka={config.kafka.bootstrap_servers}, topic={config.kafka.topic}")
        return EXIT_OK
    if args.command == "replay":
        from hub.deliver.replay import run_replay

        return _run(run_replay(config, args))
    if args.command == "mlflow-webhook":
        from hub.ingest.mlflow_webhook import run_mlflow_webhook

        return _run(run_mlflow_webhook(config, args))
    roles = {"run": Roles(), "detect": Roles(deliver=False), "deliver": Roles(detect=False)}
    return _run(_serve(config, roles[args.command], started))


def entry() -> NoReturn:
    """The ``registry-hub`` command: :func:`main`, then a quick exit.

    Once the hub has stopped, everything that needed closing is closed; what is left is the
    interpreter's own teardown of the MLflow, SQLAlchemy and aiokafka modules, which took
    about a second after ``hub.stopped``. Exit handlers still run and output is flushed.
    """
    code = main()
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _run(coro: object) -> int:
    try:
        return asyncio.run(coro)  # type: ignore[arg-type]
    except KeyboardInterrupt:
        return 130
    except ConfigError as exc:
        print(f"registry-hub: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except HubError as exc:
        print(f"registry-hub: {exc}", file=sys.stderr)
        return EXIT_FAILURE


def _watchdog(deadline_s: float) -> threading.Timer:
    """End the process ``deadline_s`` from now, whether or not the orderly shutdown is done.

    Every step of it is bounded, but closing a Kafka client waits for a broker that may not
    answer. Nothing is lost when this fires: what was not committed is delivered again after
    the restart, with the same ids. A thread, so that it fires even if the loop is stuck."""
    def cut_short() -> None:
        log.warning("hub.stop_cut_short", after_s=deadline_s,
                    action="exiting now; what was not committed is delivered again on restart")
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(EXIT_FAILURE)

    timer = threading.Timer(deadline_s, cut_short)
    timer.daemon = True
    timer.start()
    return timer


async def _ready_then_settle(hub: Hub, started: float) -> None:
    await report_readiness(hub, started=started)
    heap.settle()  # imports and MLflow's client are loaded: keep them out of GC pauses


async def _serve(config: HubConfig, roles: Roles, started: float) -> int:
    loop = asyncio.get_running_loop()
    watchdog: threading.Timer | None = None
    try:
        async with Hub(config, roles) as hub:
            signals = 0

            def on_signal() -> None:
                nonlocal signals, watchdog
                signals += 1
                if signals > 1:
                    log.warning("hub.forced_exit")
                    raise SystemExit(EXIT_FAILURE)
                grace = config.delivery.grace_period_s
                log.info("hub.stopping", grace_period_s=grace)
                watchdog = _watchdog(grace + SHUTDOWN_SLACK_S)
                hub.stop()

            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, on_signal)
            readiness = asyncio.create_task(_ready_then_settle(hub, started))
            try:
                await hub.run()
            finally:
                readiness.cancel()
    finally:
        if watchdog is not None:
            watchdog.cancel()
    log.info("hub.stopped")
    return EXIT_OK
