"""`python -m services.evaluator`: the evaluator service (stream worker and REST API on one process)."""

from services.evaluator.service import main

main()
