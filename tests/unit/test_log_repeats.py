"""aiokafka repeats the same error every few milliseconds while a broker is away: the log
shows each of its messages once per window, and says how many it held back."""

from __future__ import annotations

import logging

from hub.logging import RepeatFilter


def _record(name: str, msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord(name, logging.ERROR, __file__, 1, msg, args, None)


def test_each_aiokafka_message_is_shown_once_per_window_with_a_count() -> None:
    now = [0.0]
    repeats = RepeatFilter(window_s=60, clock=lambda: now[0])
    template = "Unable connect to node with id %s: %s"
    shown = [repeats.filter(_record("aiokafka", template, 1, f"refused {n}"))
             for n in range(500)]
    assert shown == [True] + [False] * 499
    # another message, or the same one from another aiokafka logger, is shown at once
    assert repeats.filter(_record("aiokafka.consumer.fetcher", template, 1, "x"))
    assert repeats.filter(_record("aiokafka", "Unable to update metadata from %s", [1]))
    now[0] = 61.0
    record = _record("aiokafka", template, 1, "refused again")
    assert repeats.filter(record)
    assert record.getMessage() == ("Unable connect to node with id 1: refused again "
                                   "[and 499 more like it in the last 61 s, not shown]")


def test_other_loggers_pass_untouched() -> None:
    repeats = RepeatFilter(window_s=60, clock=lambda: 0.0)
    assert all(repeats.filter(_record("aiokafkax", "same")) for _ in range(3))
    assert all(repeats.filter(_record("hub.deliver.lane", "same")) for _ in range(3))
