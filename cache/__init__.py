"""Teacher side: task data, the teacher runner, and the cache of its targets."""

__version__ = "0.1.0"

from .reader import Cache, RaggedExamples, open_cache

__all__ = ["Cache", "RaggedExamples", "__version__", "open_cache"]
