"""Implementations of the `tierwise` subcommands (the parser lives in tierwise.cli)."""
