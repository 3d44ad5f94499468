"""Shared fixtures: tiny random BERT teachers saved as real checkpoints, real GLUE paths, a small cache."""

import contextlib
from pathlib import Path

import pytest

from tests.helpers import GLUE, dump, save_tiny_teacher


@pytest.fixture(scope="session")
def tiny_teacher(tmp_path_factory) -> Path:
    """BertForSequenceClassification: every target kind including logits."""
    return save_tiny_teacher(tmp_path_factory.mktemp("tiny_cls"), head=True)


@pytest.fixture(scope="session")
def tiny_bare_teacher(tmp_path_factory) -> Path:
    """BertModel without a head: no logits."""
    return save_tiny_teacher(tmp_path_factory.mktemp("tiny_bare"), head=False, seed=1)


@pytest.fixture(scope="session")
def glue() -> Path:
    return GLUE


@pytest.fixture
def small_sst2(tmp_path, glue) -> Path:
    """An SST-2 folder of 96 training and 40 dev sentences (real ones), for fine-tuning quickly."""
    lines = (glue / "SST-2" / "train.tsv").read_text().splitlines()
    (tmp_path / "train.tsv").write_text("\n".join(lines[:97]) + "\n")
    (tmp_path / "dev.tsv").write_text("\n".join([lines[0], *lines[200:240]]) + "\n")
    return tmp_path


@pytest.fixture(scope="module")
def tiny_cache(tmp_path_factory, glue, tiny_teacher):
    """A complete cache of the tiny classification teacher over 96 SST-2 sentences, 6+ blocks."""

    out = tmp_path_factory.mktemp("cache") / "sst2.zarr"
    dump(tiny_teacher, glue, out, limit=96, block_mb=0.1, batch_size=16)
    return out


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class LocalS3:
    """moto's S3 server on 127.0.0.1 in this test process, behind a small TCP relay: `stop` closes
    the relay and every connection through it (an outage as clients see one), `start` opens it
    again on the same port; the objects live in this process and survive."""

    def __init__(self):
        import logging

        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
        self.backend_port, self.port = _free_port(), _free_port()
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.backend_port, verbose=False)
        self.server.start()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.env = {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": "testing",
                    "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
        self._listener = None
        self._sockets: list = []

    def start(self) -> None:
        import socket
        import threading

        self._listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, args=(self._listener,), daemon=True).start()

    def _accept(self, listener) -> None:
        import socket
        import threading

        while True:
            try:
                client, _ = listener.accept()
            except OSError:  # closed by stop()
                return
            backend = socket.create_connection(("127.0.0.1", self.backend_port))
            self._sockets += [client, backend]
            for source, sink in ((client, backend), (backend, client)):
                threading.Thread(target=self._relay, args=(source, sink), daemon=True).start()

    @staticmethod
    def _relay(source, sink) -> None:
        try:
            while data := source.recv(1 << 16):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                end.close()

    def stop(self) -> None:
        import socket

        for end in [self._listener, *self._sockets]:  # shutdown wakes the threads blocked on them
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
            end.close()
        self._sockets = []

    def close(self) -> None:
        self.stop()
        self.server.stop()


@pytest.fixture(scope="session")
def local_s3():
    server = LocalS3()
    server.start()
    yield server
    server.close()


@pytest.fixture
def bucket(local_s3, monkeypatch, request) -> str:
    """A new, empty bucket on the local S3 server, reached through the standard AWS environment
    (which subprocesses inherit); its s3:// URL."""
    import re

    import s3fs

    for key, value in local_s3.env.items():
        monkeypatch.setenv(key, value)
    name = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:50].strip("-") + f"-{id(request) % 10**6}"
    s3fs.S3FileSystem(skip_instance_cache=True, use_listings_cache=False).mkdir(name)
    return f"s3://{name}"
