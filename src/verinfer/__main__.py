"""`python -m verinfer` runs the CLI."""

from verinfer.cli import main

main()
