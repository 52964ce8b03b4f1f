"""A candidate's evidence as the trainer records it (services/trainer/pipeline.py), read into what the gates
judge.

The registry row holds `validation` and `backtest`; `ModelTrained.evidence` carries the same and the comparison
with the champion (the message wins where both have a value: it is the trainer's last word):

    validation: {"checks": {"no_nan": true, "probabilities_sum_to_one": true, "c_index": true, ...},
                 "c_index": {"C": 0.71, "M": 0.74}, "flare_history_c_index": {"C": 0.66, "M": 0.69},
                 "comparison": {...} (after `flare validate-model`)}
    backtest:   {"f1": 0.45, "precision": 0.38, "brier": 0.12, ...}  (the worst over the assessed targets)
    comparison: {"champion_version": "...", "metric": "brier", "candidate": 0.11, "champion": 0.12,
                 "lower_is_better": true}

The trainer's own `better_than_champion` check is left to the champion gate, which compares with the champion
current at judging time rather than the one current at training time.
"""

from __future__ import annotations

from typing import Any

from services.gatekeeper.gates import CandidateEvidence, Comparison
from shared import messages as m

JUDGED_BY_THE_CHAMPION_GATE = "better_than_champion"


def _merged(row: dict[str, Any], trained: m.ModelTrained, key: str) -> dict[str, Any]:
    return {**(row.get(key) or {}), **(trained.evidence.get(key) or {})}


def candidate_evidence(
    row: dict[str, Any], trained: m.ModelTrained, files_problem: str | None = None,
) -> CandidateEvidence:
    validation = _merged(row, trained, "validation")
    comparison = trained.evidence.get("comparison") or validation.get("comparison")
    return CandidateEvidence(
        validation_checks={name: bool(passed) for name, passed in (validation.get("checks") or {}).items()
                           if name != JUDGED_BY_THE_CHAMPION_GATE},
        c_index=dict(validation.get("c_index") or {}),
        flare_history_c_index=dict(validation.get("flare_history_c_index") or {}),
        backtest=_merged(row, trained, "backtest"),
        comparison=Comparison(
            champion_version=comparison["champion_version"], metric=comparison["metric"],
            candidate=comparison["candidate"], champion=comparison["champion"],
            lower_is_better=bool(comparison.get("lower_is_better", True)),
        ) if comparison else None,
        files_problem=files_problem,
    )
