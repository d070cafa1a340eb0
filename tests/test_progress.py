"""Progress: phase lines in the log (what the terminal shows under --log), besides tqdm's bar."""

from __future__ import annotations

import io
import logging

import pytest

from gan2shape.progress import LOGGER, Progress, format_seconds, terminal_handler, track


def _lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER]


def test_a_phase_logs_its_start_and_end(caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    assert list(track(range(5), "stage 1 step 1", unit="iter", bar=False)) == [0, 1, 2, 3, 4]
    lines = _lines(caplog)
    assert lines[0] == "stage 1 step 1: 5 iter"
    assert lines[-1].startswith("stage 1 step 1: done, 5 iter in ") and len(lines) == 2


def test_without_a_bar_the_log_gets_lines_while_the_phase_runs(caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    with Progress(4, "project", unit="step", bar=False, interval=0.0) as p:
        for _ in range(4):
            p.update(1)
    lines = _lines(caplog)
    # start, after steps 1..3 (the 4th is the end), done
    assert lines[1].startswith("project: 1/4 step (25%), ") and "left" in lines[1]
    assert lines[3].startswith("project: 3/4 step (75%)") and len(lines) == 5
    caplog.clear()
    with Progress(4, "project", unit="step", bar=True, interval=0.0, file=io.StringIO()) as p:
        p.update(4)
    assert len(_lines(caplog)) == 2  # the bar shows the progress: start and done only


def test_a_resumed_phase_counts_from_its_start_and_an_error_ends_it_without_done(caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    with Progress(10.0, "train-gan", unit="kimg", bar=False, initial=4.5) as p:
        p.update(5.5)
    assert _lines(caplog) == ["train-gan: 10 kimg (from 4.5)", _lines(caplog)[1]]
    assert _lines(caplog)[1].startswith("train-gan: done, 5.5 kimg in ")
    caplog.clear()
    with pytest.raises(RuntimeError):
        for i in track(range(3), "export", bar=False):
            if i == 1:
                raise RuntimeError("boom")
    assert _lines(caplog) == ["export: 3 it"]


def test_format_seconds():
    assert [format_seconds(s) for s in (0.4, 12.3, 65, 3725)] == ["0s", "12s", "1m05s", "1h02m"]
    assert format_seconds(float("nan")) == "?"


def test_terminal_handler_shows_phase_lines_and_warnings_only(caplog):
    stream = io.StringIO()
    logger = logging.getLogger("gan2shape.test_terminal")
    for name in (LOGGER, logger.name):
        caplog.set_level(logging.INFO, logger=name)
    handler = terminal_handler(stream, "gan2shape step1")
    for name in (LOGGER, logger.name):
        logging.getLogger(name).addHandler(handler)
    try:
        logging.getLogger(LOGGER).info("stage 1 step 1: 400 iter")
        logger.info("details for the log only")
        logger.warning("x.h5 is not usable; rebuilding it")
    finally:
        for name in (LOGGER, logger.name):
            logging.getLogger(name).removeHandler(handler)
    assert stream.getvalue().splitlines() == [
        "gan2shape step1: stage 1 step 1: 400 iter",
        "gan2shape step1: x.h5 is not usable; rebuilding it",
    ]
