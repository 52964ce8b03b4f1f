"""`python -m services.predictor`: the predictor service (stream worker and REST API in one process)."""

import os

# A forecast is one row: OpenMP and BLAS thread pools only add their start-up cost to every call (10x for the
# gradient-boosted classifier on 2 cores). Set before numpy and scikit-learn load, and for every thread.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import asyncio  # noqa: E402

from services.predictor.worker import SERVICE, build_app  # noqa: E402
from shared import infra  # noqa: E402
from shared.logging import configure_logging  # noqa: E402
from shared.serving import run_faust_worker  # noqa: E402
from shared.settings import get_settings  # noqa: E402


def main() -> None:
    settings = get_settings()
    configure_logging(SERVICE, level=settings.log_level)
    endpoints = asyncio.run(infra.prepare_service(settings))
    run_faust_worker(build_app(settings, endpoints))


if __name__ == "__main__":
    main()
