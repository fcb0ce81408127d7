"""bench-stream's measuring window: every event, from before the first stage starts to
the last event done, whatever bursts the stages' counters come in."""

from __future__ import annotations

import pytest

from bench.workers import _window


def test_the_window_spans_every_event_and_its_cpu() -> None:
    readings = [
        (0.0, 0, False, 1.0),  # up, idle: the window opens here
        (0.1, 0, True, 1.1),  # screening under way, nothing applied yet
        (0.2, 5, True, 1.2),
        (0.3, 5, True, 1.3),
        (0.4, 100, True, 1.4),  # the last burst, all done
    ]
    run = _window(readings, 100, "")
    assert run.seconds == pytest.approx(0.4)
    assert run.rate == pytest.approx(250)
    assert run.cpu_us == pytest.approx(0.4 * 1e6 / 100)


def test_a_long_silence_before_the_work_is_not_counted() -> None:
    readings = [(0.0, 0, False, 1.0), (2.0, 10, True, 3.0), (3.0, 100, True, 4.0)]
    run = _window(readings, 100, "")
    assert run.seconds == pytest.approx(1.0)  # from the first reading with work started


def test_no_work_seen_is_an_error() -> None:
    with pytest.raises(SystemExit):
        _window([(0.0, 0, False, 1.0)], 100, "")
