"""`flare demo` waits for each stage of the loop; a service that died ends the wait at once, naming it."""

from __future__ import annotations

import pytest

from flare_cli.commands import demo


def test_the_demo_gives_up_at_once_naming_the_service_that_stopped():
    with pytest.raises(SystemExit, match=r"the predictor stopped while waiting for forecasts; `flare logs predictor`"):
        demo.wait_until("forecasts", lambda: (False, "0 forecasts"), timeout=60, every=0.01,
                        stopped=lambda: ["predictor"])


def test_the_demo_waits_while_every_service_runs_and_reports_what_it_waited_for(capsys):
    answers = iter([(False, "0 forecasts"), (False, "3 forecasts"), (True, "24 forecasts")])
    demo.wait_until("forecasts", lambda: next(answers), timeout=60, every=0.01, stopped=list)
    out = capsys.readouterr().out
    assert "waiting for forecasts: 0 forecasts" in out and "forecasts: 24 forecasts" in out


def test_the_demo_gives_up_at_the_timeout_with_what_it_last_saw():
    with pytest.raises(SystemExit, match=r"gave up waiting for forecasts after 0 s \(0 forecasts\)"):
        demo.wait_until("forecasts", lambda: (False, "0 forecasts"), timeout=0.05, every=0.01)
