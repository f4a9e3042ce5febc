"""Open WebUI adapter: `auto_router.py` is the Pipe function file users paste or install."""
