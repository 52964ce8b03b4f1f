"""`python -m services.gatekeeper`: the gatekeeper service (stream consumer and REST API in one process)."""

from services.gatekeeper.service import main

main()
