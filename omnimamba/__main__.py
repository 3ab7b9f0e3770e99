"""`python -m omnimamba ...`: the command line (see cli.py)."""
from .cli import main

main()
