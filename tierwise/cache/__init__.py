"""Semantic answer cache: exact and embedding matches, tenant-scoped and tier-stamped."""

from tierwise.cache.semantic import CacheHit, SemanticCache, cache_encoder

__all__ = ["CacheHit", "SemanticCache", "cache_encoder"]
