"""`python -m services.dashboard`: the live dashboard on UI_PORT."""

from services.dashboard.service import main

main()
