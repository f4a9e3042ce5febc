"""Semantic answer cache: exact and embedding matches, tenant-scoped and tier-stamped."""

from tierwise.cache.embedders import cache_encoder
from tierwise.cache.semantic import CacheHit, SemanticCache

__all__ = ["CacheHit", "SemanticCache", "cache_encoder"]
