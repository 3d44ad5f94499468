"""Teacher side: task data, the teacher runner, and the cache of its targets.

`Cache`, `RaggedExamples` and `open_cache` load on first use, so that the light modules here
(data, config, manifest) import without torch and a command can check its inputs at once.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("tinybert-distill")
except PackageNotFoundError:  # the source tree, not installed
    __version__ = "0+unknown"

__all__ = ["Cache", "RaggedExamples", "__version__", "open_cache"]


def __getattr__(name: str):
    if name in ("Cache", "RaggedExamples", "open_cache"):
        from cache.read import reader

        return getattr(reader, name)
    raise AttributeError(f"module 'cache' has no attribute {name!r}")
