"""pgolf-auditor: compliance auditor and submission validator for Parameter Golf."""

__version__ = "0.1.0"
