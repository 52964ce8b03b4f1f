"""The gates every trained candidate passes through, and the verdict they add up to.

A candidate is judged on three kinds of evidence its trainer recorded: the validation checks (no NaN, class
probabilities summing to one, C-index above the floor, that of its flare-history models too), the backtest
(F1, precision, Brier against the thresholds of the deployment plan) and a comparison with the current champion
on the same recent data.

- any gate failed -> REJECT;
- a gate that cannot be judged (the comparison is against a champion that is no longer current, or missing
  while a champion exists) -> HOLD, so an operator decides with the evidence in front of them;
- all gates passed -> PROMOTE under the `auto` policy, HOLD under `approval`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from shared.settings import ThresholdSettings

Decision = Literal["PROMOTE", "HOLD", "REJECT"]


@dataclass(frozen=True)
class Comparison:
    """Candidate and champion scored on the same recent data by one metric."""

    champion_version: str
    metric: str
    candidate: float | None  # None: no scorable forecasts to compare on
    champion: float | None
    lower_is_better: bool

    def improved(self) -> bool:
        return self.candidate < self.champion if self.lower_is_better else self.candidate > self.champion


@dataclass(frozen=True)
class CandidateEvidence:
    validation_checks: dict[str, bool]
    c_index: dict[str, float | None]
    backtest: dict[str, float | None]
    comparison: Comparison | None
    # Why the files on disk are not the ones the trainer registered (None: every sha256 matches).
    files_problem: str | None = None
    # the models of the degraded forecasts (no flux), judged with the flux withheld; empty for a version without
    flare_history_c_index: dict[str, float | None] = field(default_factory=dict)


@dataclass(frozen=True)
class GateCheck:
    name: str
    passed: bool | None  # None: could not be judged
    observed: Any
    required: str


@dataclass(frozen=True)
class Verdict:
    decision: Decision
    reason: str
    checks: tuple[GateCheck, ...]

    def evidence(self) -> dict[str, Any]:
        return {"decision": self.decision, "reason": self.reason, "checks": [asdict(c) for c in self.checks]}


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def _threshold_check(name: str, value: float | None, bound: float, above: bool) -> GateCheck:
    required = f"> {bound:g}" if above else f"< {bound:g}"
    if not _finite(value):
        return GateCheck(name, False, value, f"{required} (not reported)")
    return GateCheck(name, value > bound if above else value < bound, value, required)


def gate_checks(evidence: CandidateEvidence, champion: str | None, thresholds: ThresholdSettings) -> list[GateCheck]:
    checks = [GateCheck("artifacts.digests", evidence.files_problem is None, evidence.files_problem or "verified",
                        "every file matches its registered sha256")]
    checks += [GateCheck(f"validation.{name}", passed, passed, "pass")
               for name, passed in sorted(evidence.validation_checks.items())]
    if not evidence.validation_checks:
        checks.append(GateCheck("validation.reported", False, None, "validation checks recorded"))
    checks += [
        _threshold_check(f"validation.c_index_{target}", value, thresholds.min_c_index, above=True)
        for target, value in sorted(evidence.c_index.items())
    ]
    checks += [
        _threshold_check(f"validation.flare_history_c_index_{target}", value, thresholds.min_c_index, above=True)
        for target, value in sorted(evidence.flare_history_c_index.items())
    ]
    checks += [
        _threshold_check("backtest.f1", evidence.backtest.get("f1"), thresholds.backtest_min_f1, above=True),
        _threshold_check("backtest.precision", evidence.backtest.get("precision"), thresholds.backtest_min_precision,
                         above=True),
        _threshold_check("backtest.brier", evidence.backtest.get("brier"), thresholds.backtest_max_brier, above=False),
    ]
    checks.append(_champion_check(evidence.comparison, champion))
    return checks


def _champion_check(comparison: Comparison | None, champion: str | None) -> GateCheck:
    name = "champion.improvement"
    if champion is None:
        return GateCheck(name, True, None, "no champion yet: nothing to beat")
    required = f"better than champion {champion} on the same recent data"
    if comparison is None:
        return GateCheck(name, None, None, f"{required} (no comparison recorded)")
    if comparison.champion_version != champion:
        return GateCheck(
            name, None, asdict(comparison),
            f"{required} (compared with {comparison.champion_version}, which is no longer champion)",
        )
    if not (_finite(comparison.candidate) and _finite(comparison.champion)):
        return GateCheck(name, False, asdict(comparison), f"{required} (scores not finite)")
    return GateCheck(name, comparison.improved(), asdict(comparison), required)


def judge(
    evidence: CandidateEvidence, champion: str | None, thresholds: ThresholdSettings,
    policy: Literal["auto", "approval"],
) -> Verdict:
    checks = tuple(gate_checks(evidence, champion, thresholds))
    failed = [c for c in checks if c.passed is False]
    if failed:
        return Verdict(
            "REJECT", "failed " + ", ".join(f"{c.name} ({_observed(c)}, needs {c.required})" for c in failed), checks)
    undetermined = [c for c in checks if c.passed is None]
    if undetermined:
        return Verdict("HOLD", "needs an operator: " + "; ".join(c.required for c in undetermined), checks)
    if policy == "approval":
        return Verdict("HOLD", "all gates passed; the promotion policy asks for an operator's approval", checks)
    return Verdict("PROMOTE", "all gates passed", checks)


def _observed(check: GateCheck) -> str:
    value = check.observed
    if isinstance(value, dict) and "candidate" in value:
        return f"{value['metric']} {_number(value['candidate'])} vs {_number(value['champion'])}"
    return _number(value)


def _number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
