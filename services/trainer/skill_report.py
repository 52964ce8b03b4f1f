"""The skill benchmark's outputs: the text table (stdout and `skill.txt`), an HTML report with the reliability
diagrams embedded as PNG, and the daily forecasts of every method (`forecasts.csv`)."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from services.trainer.skill import (
    BENCHMARK_TARGETS, BLOCK_DAYS, CONTINGENCY_THRESHOLD, EVENT_HISTORY_DAYS, METHODS, REFERENCES, PeriodForecasts,
    PeriodScores,
)

METHOD_LABELS = {"model": "Flare+", "persistence": "persistence", "climatology": "climatology",
                 "event_history": "event history"}


def _number(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _interval(interval: tuple[float, float] | None) -> str:
    return "n/a" if interval is None else f"[{interval[0]:+.3f}, {interval[1]:+.3f}]"


def protocol_lines(resamples: int, settings_note: str) -> list[str]:
    days = ", ".join(str(d) for d in EVENT_HISTORY_DAYS)
    return [
        "Flare+ skill benchmark (Leka et al. 2019, ApJS 243:36 protocol): full disk, issued 00 UT daily, valid 24 h",
        "rolling origin: each year's forecasts come from models trained only on data before 1 January of that year",
        "scored on the days Flare+ issued a forecast (every method on the same days); cover = share of days issued",
        "BSS: against the sample climatology (the event rate of the scored days); TSS, HSS: yes when p >= "
        f"{CONTINGENCY_THRESHOLD}",
        "REL/RES/UNC: Murphy decomposition over ten probability bins (BS = REL - RES + UNC, to the binning)",
        "persistence: 1 if a flare of the class peaked in the 24 h before the issue time, else 0 (no conditioning)",
        "climatology: the training period's event rate; event history: logistic regression on the counts of >=C and "
        f">=M flares in the previous {days} days",
        f"differences: Flare+ minus each reference, 95% interval of a {BLOCK_DAYS}-day block bootstrap "
        f"({resamples} resamples)",
        f"model settings: {settings_note}",
    ]


def score_table(scores: Sequence[PeriodScores]) -> list[str]:
    lines: list[str] = []
    for target in BENCHMARK_TARGETS:
        lines += ["", f">={target}1 within 24 h", "-" * 18,
                  f"{'period':<24} {'days':>5} {'cover':>7} {'events':>6}  {'method':<14} {'BSS':>7} {'AUC':>6} "
                  f"{'TSS':>6} {'HSS':>6} {'REL':>7} {'RES':>7} {'UNC':>7}"]
        for period in scores:
            t = period.targets[target]
            for position, method in enumerate(METHODS):
                s = t.methods[method]
                head = (f"{period.label:<24} {t.days:>5} {t.covered_days / t.days:>7.1%} {t.events:>6}" if position == 0
                        else " " * 45)
                lines.append(
                    f"{head}  {METHOD_LABELS[method]:<14} {_number(s['bss']):>7} {_number(s['auc']):>6} "
                    f"{_number(s['tss']):>6} {_number(s['hss']):>6} {_number(s['reliability'], 4):>7} "
                    f"{_number(s['resolution'], 4):>7} {_number(s['uncertainty'], 4):>7}")
        lines += ["", f"{'period':<24} {'Flare+ minus':<14} {'dBSS':>7} {'95% interval':>18} {'dAUC':>7} "
                      f"{'95% interval':>18}"]
        for period in scores:
            for position, reference in enumerate(REFERENCES):
                d = period.targets[target].differences[reference]
                label = period.label if position == 0 else ""
                lines.append(
                    f"{label:<24} {METHOD_LABELS[reference]:<14} {_signed(d['bss']['value']):>7} "
                    f"{_interval(d['bss']['interval']):>18} {_signed(d['auc']['value']):>7} "
                    f"{_interval(d['auc']['interval']):>18}")
    return lines


def _signed(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.3f}"


def goal_lines(scores: Sequence[PeriodScores]) -> list[str]:
    """The issue's goals, checked: pooled BSS, every year ahead of persistence, every day covered."""
    pooled = next((s for s in scores if s.label == "pooled"), None)
    years = [s for s in scores if s.label != "pooled"]
    lines = ["", "goals"]
    if pooled is not None:
        for target, goal in (("C", 0.36), ("M", 0.34)):
            bss = pooled.targets[target].methods["model"]["bss"]
            lines.append(f"  pooled >={target}1 BSS {_number(bss)} (goal >= {goal}): "
                         f"{'met' if bss is not None and bss >= goal else 'NOT met'}")
    behind = [f"{s.label} >={t}1" for s in years for t in BENCHMARK_TARGETS
              if not (s.targets[t].methods["model"]["bss"] or 0) > (s.targets[t].methods["persistence"]["bss"] or 0)]
    lines.append("  every period ahead of persistence (BSS): " + ("yes" if not behind else "NO: " + ", ".join(behind)))
    uncovered = sum(s.targets["C"].days - s.targets["C"].covered_days for s in years)
    lines.append(f"  days without a forecast: {uncovered}")
    return lines


def report_text(scores: Sequence[PeriodScores], *, resamples: int, settings_note: str) -> str:
    return "\n".join(protocol_lines(resamples, settings_note) + score_table(scores) + goal_lines(scores)) + "\n"


def reliability_png(scores: Sequence[PeriodScores], target: str) -> bytes:
    """Reliability diagram of one target: every method pooled (or over the one period), and Flare+ per period."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    overall = scores[-1]
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4.6))
    for axis in (left, right):
        axis.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
        axis.set_xlim(0, 1)
        axis.set_ylim(0, 1)
        axis.set_xlabel("forecast probability")
        axis.set_ylabel("observed frequency")
    for method in METHODS:
        rows = [r for r in overall.targets[target].methods[method]["reliability_table"] if r["count"]]
        left.plot([r["mean_forecast"] for r in rows], [r["observed_frequency"] for r in rows], marker="o",
                  label=METHOD_LABELS[method])
    left.set_title(f">={target}1, {overall.label}: every method")
    left.legend(loc="upper left", fontsize=8)
    for period in scores:
        rows = [r for r in period.targets[target].methods["model"]["reliability_table"] if r["count"]]
        right.plot([r["mean_forecast"] for r in rows], [r["observed_frequency"] for r in rows], marker="o",
                   label=period.label)
    right.set_title(f">={target}1: Flare+ per period")
    right.legend(loc="upper left", fontsize=8)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    plt.close(figure)
    return buffer.getvalue()


def report_html(scores: Sequence[PeriodScores], text: str) -> str:
    images = "".join(
        f'<h2>Reliability, &ge;{target}1</h2><img alt="reliability diagram, >={target}1" '
        f'src="data:image/png;base64,{base64.b64encode(reliability_png(scores, target)).decode()}">'
        for target in BENCHMARK_TARGETS)
    return ("<!doctype html><html><head><meta charset='utf-8'><title>Flare+ skill benchmark</title></head><body>"
            f"<h1>Flare+ skill benchmark</h1><pre>{html.escape(text)}</pre>{images}</body></html>\n")


def write_outputs(
    scores: Sequence[PeriodScores], periods: Sequence[PeriodForecasts], out_dir: Path, *, resamples: int,
    settings_note: str,
) -> dict[str, Any]:
    """`skill.txt`, `report.html` and `forecasts.csv` in `out_dir`; returns their paths and the text."""
    out_dir.mkdir(parents=True, exist_ok=True)
    text = report_text(scores, resamples=resamples, settings_note=settings_note)
    paths = {"text": out_dir / "skill.txt", "html": out_dir / "report.html", "forecasts": out_dir / "forecasts.csv"}
    paths["text"].write_text(text)
    paths["html"].write_text(report_html(scores, text))
    pd.concat([p.frame() for p in periods]).to_csv(paths["forecasts"], index=False, float_format="%.6g")
    return {"report": text, **paths}
