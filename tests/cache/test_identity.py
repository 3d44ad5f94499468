"""A cache is never silently mixed or misread: the data file's contents, the columns and every
other input that decides the targets are compared on resume and on re-runs, and the manifest is
checked against its checksum and against the index on every open and by `cache verify`."""

import json
import shutil
from dataclasses import replace

import pytest

from cache import open_cache
from cache.format.manifest import read_manifest, write_manifest
from cache.format.store import INDEX, block_unit, open_store
from cache.read.inspect import verify_cache
from cache.runtime.errors import CacheError
from tests.helpers import dump


def sst2_copy(glue, folder):
    folder.mkdir()
    lines = (glue / "SST-2" / "train.tsv").read_text().splitlines()[:41]
    (folder / "train.tsv").write_text("\n".join(lines) + "\n")
    return folder


def flip_labels(folder):
    path = folder / "train.tsv"
    header, *rows = path.read_text().splitlines()
    flipped = [f"{text}\t{1 - int(label)}" for text, label in (row.rsplit("\t", 1) for row in rows)]
    path.write_text("\n".join([header, *flipped]) + "\n")


def interrupt(cache):
    """What a dump killed after its first blocks leaves: committed blocks, manifest not complete."""
    manifest = read_manifest(cache)
    write_manifest(cache, replace(manifest, complete=False))
    shutil.rmtree(open_store(cache, manifest.storage).unit_location(block_unit(manifest.num_blocks - 1)))


@pytest.mark.parametrize("complete", [True, False], ids=["complete", "interrupted"])
def test_edited_data_file_is_refused(tmp_path, glue, tiny_teacher, complete):
    data = sst2_copy(glue, tmp_path / "data")
    dump(tiny_teacher, glue, tmp_path / "c", data=data, limit=None)
    if not complete:
        interrupt(tmp_path / "c")
    flip_labels(data)
    with pytest.raises(CacheError, match=r"data file contents \(sha256\): cache has \"[0-9a-f]{40}"):
        dump(tiny_teacher, glue, tmp_path / "c", data=data, limit=None)
    assert read_manifest(tmp_path / "c").complete is complete  # nothing was written


def test_other_columns_are_refused(tmp_path, glue, tiny_teacher):
    (tmp_path / "d.tsv").write_text("a\tb\tlabel\nfirst text\tsecond text\tyes\nmore words\tother words\tno\n")
    common = {"task": "tsv", "data": tmp_path / "d.tsv", "limit": None}
    dump(tiny_teacher, glue, tmp_path / "c", **common, columns=_columns("a"))
    with pytest.raises(CacheError, match=r"data options \(columns, --holdout, --documents\): cache has"):
        dump(tiny_teacher, glue, tmp_path / "c", **common, columns=_columns("b"))


def _columns(text):
    from cache.data.readers import ColumnSpec

    return ColumnSpec(text=text)


def test_same_inputs_in_another_place_continue(tmp_path, glue, tiny_teacher):
    """Identity is the file's contents, not its path: a moved data folder resumes the cache."""
    data = sst2_copy(glue, tmp_path / "data")
    dump(tiny_teacher, glue, tmp_path / "c", data=data, limit=None)
    interrupt(tmp_path / "c")
    moved = shutil.copytree(data, tmp_path / "moved")
    report = dump(tiny_teacher, glue, tmp_path / "c", data=moved, limit=None)
    assert report.written_examples > 0 and read_manifest(tmp_path / "c").complete


def edit_manifest(cache, change):
    """Change the manifest's JSON by hand, as a user or a bad copy could, leaving its checksum."""
    path = cache / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest, indent=2))


HAND_EDITS = {
    "layer list": lambda m: m.update(layers=[0, 1, 3, 2]),
    "teacher hash": lambda m: m["teacher"].update(weights_sha256="0" * 64),
    "example count": lambda m: m["data"].update(examples=m["data"]["examples"] - 1),
}


@pytest.mark.parametrize("edit", HAND_EDITS, ids=list(HAND_EDITS))
def test_edited_manifest_is_refused_on_open_and_by_verify(tmp_path, tiny_cache, edit):
    cache = shutil.copytree(tiny_cache, tmp_path / "c")
    edit_manifest(cache, HAND_EDITS[edit])
    with pytest.raises(CacheError, match="manifest does not match its checksum"):
        open_cache(cache)
    with pytest.raises(CacheError, match="manifest does not match its checksum"):
        verify_cache(cache)


def test_manifest_is_cross_checked_against_the_index(tmp_path, tiny_cache):
    """A manifest rewritten with a valid checksum but describing other layers or counts than the
    index recorded is still refused: other layers make it another cache's, another block count
    disagrees with the index."""
    cache = shutil.copytree(tiny_cache, tmp_path / "c")
    manifest = read_manifest(cache)
    assert open_store(cache, manifest.storage).attrs(INDEX)["layers"] == list(manifest.layers)
    write_manifest(cache, replace(manifest, layers=manifest.layers[::-1]))
    with pytest.raises(CacheError, match=r"the index belongs to another cache"):
        open_cache(cache)
    assert [p.split(" (")[0] for p in verify_cache(cache)] == ["index: belongs to another cache"]
    write_manifest(cache, replace(manifest, num_blocks=manifest.num_blocks + 1))
    with pytest.raises(CacheError, match=r"blocks \[\d+\] missing"):
        open_cache(cache)
    problems = verify_cache(cache)
    assert any(p.startswith("manifest and index disagree: num_blocks") for p in problems), problems


def test_intact_cache_verifies(tiny_cache):
    assert verify_cache(tiny_cache) == []
    assert json.loads((tiny_cache / "manifest.json").read_text())["checksum"]


def test_a_changed_option_is_refused_before_the_teacher_loads(tmp_path, glue, tiny_cache):
    """Compared with the flags alone: here the teacher is not even a model, and the options are what
    is reported."""
    from tests.helpers import assert_refused, run

    cache = shutil.copytree(tiny_cache, tmp_path / "c")
    (tmp_path / "not-a-model").mkdir()
    result = run("dump-teacher", "--task", "sst2", "--data", glue / "SST-2", "--limit", 96, "--block-mb", 0.1,
                 "--batch-size", 16, "--teacher", tmp_path / "not-a-model", "--out", cache, "--max-seq-len", 64,
                 "--attention-encoding", "qk")
    assert_refused(result, f"{cache}: existing cache was made differently (--max-seq-len: cache has 128, this run has "
                           '64; --attention-encoding: cache has "maps:float16", this run has "qk:float16")')
