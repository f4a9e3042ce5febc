"""Fitting and evaluation, apart from serving: no proxy, pipe or router imports this package.

The shipped weights (scoring/artifacts, cache/thresholds.json) are written by the fitting
code here (`tierwise train`, `tierwise eval-cache --write-thresholds`); quality figures
come from the evaluation code (`tierwise eval`, `eval --cv source`, `eval-summarize`), and
`tierwise calibrate` sets thresholds from a site's own outcomes.
"""
