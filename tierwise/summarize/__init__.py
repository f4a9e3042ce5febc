"""Tier-aware context summarization: long chats stay on the tier their question needs.

Adapters do not use this package directly; they call `TierRouter.prepare()` /
`TierRouter.aprepare()` after `decide()`, passing (or having given the router) a summarizer:
a callable taking a `SummaryJob` (OpenAI-style `messages` and `max_tokens`) and returning the
summary text, sync or async.
"""

from tierwise.summarize.cache import SummaryCache, SummaryEntry
from tierwise.summarize.fitter import ContextFitter, ContextOverflow, Fitted, Fitting
from tierwise.summarize.layout import Layout
from tierwise.summarize.prompt import NOTICE_HEADER, SUMMARY_HEADER, BadSummary, SummaryJob
from tierwise.summarize.run import Summarizer, fit_async, fit_sync

__all__ = [
    "NOTICE_HEADER",
    "SUMMARY_HEADER",
    "BadSummary",
    "ContextFitter",
    "ContextOverflow",
    "Fitted",
    "Fitting",
    "Layout",
    "Summarizer",
    "SummaryCache",
    "SummaryEntry",
    "SummaryJob",
    "fit_async",
    "fit_sync",
]
