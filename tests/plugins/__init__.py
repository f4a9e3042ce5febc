"""Test-only extensions a proxy under test loads by dotted path (PYTHONPATH has the repo)."""
