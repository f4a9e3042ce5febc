"""Scorers: each turns a chat request into a complexity score in [0, 1]."""

from tierwise.scoring.base import Band, Score, Scorer

__all__ = ["Band", "Score", "Scorer"]
