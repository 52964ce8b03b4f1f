"""`python -m services.ingestor`: the live ingestor service."""

from services.ingestor.service import main

main()
