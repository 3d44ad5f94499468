"""The contract of where a cache lives (`cache.format.location.Root`), one suite run against both
implementations: a folder, and a bucket on the local S3 server."""

import pickle
from pathlib import Path

import pytest

from cache.format import location
from cache.format.location import FsspecRoot, LocalRoot, Root, open_root
from cache.format.lock import LOCK, ObjectLease, WriterLock, cache_lock
from cache.runtime.errors import CacheError, UserError


@pytest.fixture(params=["folder", "bucket"])
def root(request, tmp_path) -> Root:
    if request.param == "folder":
        return open_root(tmp_path / "cache")
    return open_root(f"{request.getfixturevalue('bucket')}/cache")


def fs_path(root: Root, where: Path | str) -> str:
    """A staged location (a Path, or a URL) as a path inside the root's file system."""
    return root.fs._strip_protocol(str(where))


def test_a_folder_and_a_url_open_as_their_own_kind(tmp_path, bucket):
    assert type(open_root(tmp_path)) is LocalRoot and type(open_root(f"file://{tmp_path}")) is LocalRoot
    assert type(open_root(f"{bucket}/c")) is FsspecRoot


def test_bytes_round_trip(root):
    root.makedirs("sub")
    root.put_bytes(b"abc", "sub", "f")
    root.put_bytes(b"de", "g")
    assert root.read_bytes("sub", "f") == b"abc" and root.exists("sub", "f") and not root.exists("h")
    assert root.listdir() == ["g", "sub"] and root.listdir("nothing") == []
    assert root.du() == 5 and root.du("sub") == 3 and root.du("nothing") == 0
    root.remove("sub")
    assert root.listdir() == ["g"]


def test_a_conditional_put_never_replaces(root):
    root.makedirs()
    root.put_bytes(b"first", "lease", create=True)
    with pytest.raises(FileExistsError):
        root.put_bytes(b"second", "lease", create=True)
    assert root.read_bytes("lease") == b"first"


def test_a_staged_unit_exists_only_once_committed(root):
    root.makedirs("blocks")
    staged = root.stage("blocks/000001.h5")
    root.fs.pipe_file(fs_path(root, staged), b"unit bytes")
    assert not root.committed("blocks/000001.h5") and root.committed_names("blocks") == []
    root.commit(staged, "blocks/000001.h5")
    assert root.committed("blocks/000001.h5") and root.committed_names("blocks") == ["000001.h5"]
    assert root.fs.cat_file(fs_path(root, root.location("blocks/000001.h5"))) == b"unit bytes"


def test_what_a_killed_writer_staged_never_shows(root):
    root.makedirs("blocks")
    root.fs.pipe_file(fs_path(root, root.stage("blocks/000002")), b"half")
    root.clean_staging()
    assert root.committed_names("blocks") == [] and not root.committed("blocks/000002")
    staged = root.stage("blocks/000002")  # a resumed writer writes it again, whole
    root.fs.pipe_file(fs_path(root, staged), b"whole")
    root.commit(staged, "blocks/000002")
    assert root.fs.cat_file(fs_path(root, root.location("blocks/000002"))) == b"whole"


def test_an_atomic_write_is_whole_or_absent(root, monkeypatch):
    root.makedirs()
    root.write_atomic(b"old", "manifest.json", point="test")

    def killed(point):
        raise KeyboardInterrupt(point)

    monkeypatch.setattr(location, "failpoint", killed)
    with pytest.raises(KeyboardInterrupt):
        root.write_atomic(b"new", "manifest.json", point="test")
    assert root.read_bytes("manifest.json") == b"old"


def test_a_folder_is_saved_whole_and_read_back(root):
    root.makedirs()

    def save(folder: Path) -> None:
        (folder / "nested").mkdir(parents=True)
        (folder / "nested" / "vocab.txt").write_text("a\nb\n")
        (folder / "config.json").write_text("{}")

    assert not root.has_folder("tokenizer", last="config.json")
    root.save_folder("tokenizer", save, last="config.json")
    assert root.has_folder("tokenizer", last="config.json")
    with root.local_folder("tokenizer") as local:
        assert (local / "nested" / "vocab.txt").read_text() == "a\nb\n" and (local / "config.json").exists()
    assert [name for name in root.listdir() if name.startswith(".")] == []


def test_roots_holding_a_file_are_found_but_not_inside_a_caches_parts(root):
    for where in ("", "a/b", "a/b/blocks/x"):
        root.makedirs(where)
        root.put_bytes(b"{}", *filter(None, [where, "manifest.json"]))
    found = sorted(str(r) for r in root.holding("manifest.json", skip=("blocks",)))
    if isinstance(root, LocalRoot):
        assert found == [root.url, root.url_of("a/b")]
    else:  # a listing of objects finds every one; `cache ls` shows the nested ones for what they are
        assert found == [root.url, root.url_of("a/b"), root.url_of("a/b/blocks/x")]
    assert root.url_of_path(root.join("a")) == root.url_of("a")


def test_failures_are_bugs_in_a_folder_and_the_users_to_fix_in_a_bucket(root):
    error = OSError("connection reset")
    raised = root.failure(error, "the store failed")
    if isinstance(root, LocalRoot):
        assert raised is error
    else:
        assert isinstance(raised, CacheError) and str(raised) == "the store failed"


def test_an_unreachable_store_is_refused_in_one_line(root, local_s3):
    root.check_reachable("--out")  # both answer
    missing = open_root(f"s3://no-such-bucket-{id(root)}/c", {"client_kwargs": {"endpoint_url": local_s3.endpoint}})
    with pytest.raises(UserError, match="^--out: s3://no-such-bucket.* cannot be reached"):
        missing.check_reachable("--out")


def test_one_writer_at_a_time(root):
    root.makedirs()
    lock = cache_lock(root, "first")
    assert isinstance(lock, WriterLock if isinstance(root, LocalRoot) else ObjectLease)
    with lock, pytest.raises(CacheError, match="first"), cache_lock(root, "second"):
        pass
    with cache_lock(root, "third"):  # released
        assert root.exists(LOCK)


def test_a_root_pickles_as_its_address(root):
    root.makedirs()
    root.put_bytes(b"x", "f")
    clone = pickle.loads(pickle.dumps(root))
    assert type(clone) is type(root) and clone.url == root.url and clone.read_bytes("f") == b"x"
