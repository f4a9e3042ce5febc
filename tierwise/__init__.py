"""tierwise: complexity-aware tiered routing for the LLM tools people already run."""

__version__ = "0.1.0"
