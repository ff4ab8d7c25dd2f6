"""`python -m gateway` runs the servegate CLI."""

from gateway.cli import app

app()
