"""Writing blocks while the teacher computes the next one: on a thread, or in a process of its own.

A thread suffices where the teacher's forward is a few long calls into PyTorch (a CPU). A GPU
teacher is Python queueing hundreds of small kernels per batch, and each call into PyTorch hands
the GIL to a writing thread (zarr encodes and writes blocks in Python) for up to the interpreter's
switch interval, which holds the dump far below the bare forward (docs/benchmarks.md). A writer process has
its own interpreter; each block crosses to it as one shared-memory buffer, not pickled.
"""

import contextlib
import multiprocessing
import signal
from concurrent.futures import Future, ThreadPoolExecutor
from multiprocessing.connection import Connection

import torch

from cache.format.store import Store
from cache.format.transfer import pack, unpack
from cache.runtime.errors import CacheError


def open_writer(kind: str, store: Store, device: torch.device) -> "Writer":
    """`auto`: a process beside a GPU teacher, a thread beside a CPU one (where a process would
    only add its start-up)."""
    if kind == "auto":
        kind = "process" if device.type == "cuda" else "thread"
    return ProcessWriter(store) if kind == "process" else ThreadWriter(store)


class ThreadWriter:
    """Writes blocks on one thread (one block in flight)."""

    def __init__(self, store: Store):
        self.store = store
        self.bytes_written = 0
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cache-writer")
        self._pending: Future | None = None

    def submit(self, unit: str, arrays: dict, attrs: dict) -> None:
        self.wait()
        self._pending = self._pool.submit(self._write, unit, arrays, attrs)

    def _write(self, unit: str, arrays: dict, attrs: dict) -> None:
        self.store.write_unit(unit, arrays, attrs)
        self.bytes_written += sum(data.nbytes for data, _ in arrays.values())

    def wait(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()  # re-raises a failed write here, in the main thread

    def close(self) -> None:
        self._pool.shutdown(wait=True)


class ProcessWriter:
    """Writes blocks in a spawned process (one block in flight); its errors are raised here."""

    def __init__(self, store: Store):
        context = multiprocessing.get_context("spawn")  # fork is unsafe once CUDA is initialised
        self._connection, child = context.Pipe()
        self._process = context.Process(target=_write_blocks, name="cache-writer", daemon=True,
                                        args=(type(store), store.root, store.compression, child))
        self._process.start()
        child.close()
        self.bytes_written = 0
        self._in_flight = 0

    def submit(self, unit: str, arrays: dict, attrs: dict) -> None:
        self.wait()
        buffer, slots = pack([data for data, _ in arrays.values()], shared=True)
        layout = {name: (slot, chunks) for (name, (_, chunks)), slot in zip(arrays.items(), slots, strict=True)}
        self._connection.send((unit, layout, buffer, attrs))
        self._in_flight = sum(data.nbytes for data, _ in arrays.values())

    def wait(self) -> None:
        if not self._in_flight:
            return
        try:
            error = self._connection.recv()
        except EOFError:  # the writer's end closed without an answer: it died
            self._process.join()
            raise CacheError(f"the cache writer process died (exit code {self._process.exitcode}); "
                             "the blocks already committed are kept: run the same command again") from None
        if error is not None:
            raise error
        self.bytes_written += self._in_flight
        self._in_flight = 0

    def close(self) -> None:
        with contextlib.suppress(BrokenPipeError):  # a writer that just died: the dump's own error stands
            self._connection.send(None)
        self._process.join()
        self._connection.close()


Writer = ThreadWriter | ProcessWriter


def _write_blocks(store_class: type[Store], root, compression: str, connection: Connection) -> None:
    """The writer process: write each block sent until None (or the dump's end of the pipe
    closes); answer None or the error. Ctrl-C is the dump's to handle: it sends None once the
    block in flight is committed."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    store = store_class(root, compression)
    while (job := _receive(connection)) is not None:
        unit, layout, buffer, attrs = job
        views = unpack(buffer, [slot for slot, _ in layout.values()])
        arrays = {name: (view, chunks) for (name, (_, chunks)), view in zip(layout.items(), views, strict=True)}
        try:
            store.write_unit(unit, arrays, attrs)
            connection.send(None)
        except Exception as error:  # noqa: BLE001 - handed to the dump, which raises it
            connection.send(error)


def _receive(connection: Connection):
    try:
        return connection.recv()
    except EOFError:  # the dump died
        return None
