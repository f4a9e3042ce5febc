"""Live signals the rule chain reads: latency EMA, tier health, GPU memory."""
