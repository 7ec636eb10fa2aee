"""`python -m mishon` runs the command line."""

from mishon.cli import app

app()
