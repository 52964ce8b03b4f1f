"""`python -m services.trainer`: the trainer service."""

from services.trainer.service import main

main()
