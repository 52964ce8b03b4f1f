"""Small real models for the predictor's tests: trained by the trainer's own functions on six months of the
GOES-15 hourly record before July 2015 (a second or two of fitting), saved and registered as the trainer
does, and made champion or challenger the way the gatekeeper leaves the registry."""

from __future__ import annotations

from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path

import pandas as pd
from threadpoolctl import threadpool_limits

from services.ingestor.readers import read_path
from services.trainer.artifacts import save_version
from services.trainer.data import History
from services.trainer.training import TrainingResult, train
from services.gatekeeper import store as gatekeeper_store
from services.trainer import store as trainer_store
from shared import registry
from shared.settings import load_settings
from tests.conftest import DATA_DIR

HOURLY = DATA_DIR / "goes15_hourly" / "goes15_xrs_hourly_2010-09_2015-12.csv.gz"
FLARE_LIST = DATA_DIR / "flare_lists" / "swpc_flarelist_sc24_2010_2015.csv.gz"
JULY_2015 = DATA_DIR / "goes15_1m" / "g15_xrs_1m_20150701_20150731.csv.gz"
TRAIN_FROM = datetime(2015, 1, 1, tzinfo=timezone.utc)
TRAIN_UNTIL = datetime(2015, 7, 1, tzinfo=timezone.utc)
# tiny estimators: the tests are about serving models, not about their skill
TINY = {"min_history_days": 30, "survival_estimators": ["coxph"], "classifier_max_iter": 20}


@lru_cache(maxsize=1)
def training_history() -> History:
    flux = read_path(HOURLY)
    flares = read_path(FLARE_LIST)
    observations = pd.DataFrame([
        {"time_tag": r.time_tag, "satellite": r.satellite, "cadence_seconds": r.cadence_seconds,
         "scaling_era": r.scaling_era, "xrsa_flux": r.xrsa_flux, "xrsb_flux": r.xrsb_flux}
        for r in flux.flux if r.usable and TRAIN_FROM <= r.time_tag < TRAIN_UNTIL
    ])
    catalogue = pd.DataFrame([
        {"peak_time": f.peak_time, "peak_flux": f.peak_flux, "scaling_era": f.scaling_era, "source": f.source}
        for f in flares.flares if f.peak_time < TRAIN_UNTIL
    ])
    observations["time_tag"] = pd.to_datetime(observations["time_tag"], utc=True)
    catalogue["peak_time"] = pd.to_datetime(catalogue["peak_time"], utc=True)
    return History(observations, catalogue)


@lru_cache(maxsize=4)
def trained(coxph_alpha: float = 100.0) -> TrainingResult:
    settings = load_settings(model={**TINY, "coxph_alpha": coxph_alpha})
    # one thread: the gradient boosting's OpenMP threads spin-wait for each other, and on a busy 2-core machine
    # that turned 4 s of fitting into a minute
    with threadpool_limits(limits=1):
        return train(training_history(), settings, until=TRAIN_UNTIL)


async def register_model(conn, model_dir: Path, *, status: str = "candidate", coxph_alpha: float = 100.0) -> str:
    """Save and register a tiny model; give it `status` (champion, challenger or candidate); return its version.
    Different `coxph_alpha` values give different versions (and different forecasts)."""
    result = trained(coxph_alpha=coxph_alpha)
    saved = save_version(result.artifacts, model_dir)
    await trainer_store.register(
        conn, version=saved.version, kind=registry.FORECAST_KIND, artifacts=saved.artifacts, digests=saved.digests,
        data_window=result.data_window, hyperparameters={"coxph_alpha": coxph_alpha}, validation={}, backtest={},
        actor="test", reason="a tiny model for the predictor's tests",
    )
    if status != "candidate":
        await set_status(conn, saved.version, status)
    return saved.version


async def set_status(conn, version: str, status: str) -> None:
    """What the gatekeeper leaves in the registry after a promotion, rollback or challenger change."""
    async with conn.transaction():
        if status in ("champion", "challenger"):
            for row in await conn.fetch("SELECT version FROM model_registry WHERE kind = $1 AND status = $2"
                                        " AND version <> $3", registry.FORECAST_KIND, status, version):
                await gatekeeper_store.set_status(conn, row["version"], "retired")
        await gatekeeper_store.set_status(conn, version, status)
