"""Errors that mean "the user asked for something wrong", as opposed to bugs.

The CLI turns a `UserError` into one line on stderr and a non-zero exit, without a traceback;
anything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """Bad input, option or cache: the message says what and where (file, row, option)."""


class DataError(UserError):
    """A data file that cannot be read as the task expects."""

    def __init__(self, path: str, row: int | None, problem: str):
        where = f"{path}:{row}" if row is not None else str(path)
        super().__init__(f"{where}: {problem}")


class CacheError(UserError):
    """A cache that cannot be used as asked (mismatch, incomplete, corrupt, wrong version)."""


def describe(error: BaseException) -> str:
    """One line for an exception from a storage library (whose messages can span many lines)."""
    text = str(error).strip()
    if "checksum" in text.lower():  # zarr's crc32c codec, HDF5's fletcher32
        return "a chunk fails its checksum"
    return text.splitlines()[0] if text else type(error).__name__
