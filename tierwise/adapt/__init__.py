"""The install's feedback loop: outcomes of answers in, a guarded per-install correction out.

outcomes.py stores what became of an answer; fit.py refits the correction with its guards;
store.py keeps the versions; scorer.py serves the current one; explore.py sends a small
share of requests to a neighbouring tier so every tier keeps being heard from.
"""
