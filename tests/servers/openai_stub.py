"""Kept so `python -m tests.servers.openai_stub` still works; the stand-in lives in the package."""

from tierwise.standin import Handler, StubState, main, serve

__all__ = ["Handler", "StubState", "main", "serve"]

if __name__ == "__main__":
    main()
