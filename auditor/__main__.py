"""`python -m auditor` is the same as `pgolf`."""

from auditor.cli import app

app(prog_name="pgolf")
