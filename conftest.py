"""Root conftest: puts the repository root on sys.path so tests can share tests/recordkit.py."""
