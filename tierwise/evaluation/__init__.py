"""Evaluation: metrics, baselines and data splits for routing quality."""
