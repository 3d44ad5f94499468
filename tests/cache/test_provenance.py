"""What a cache is made of is bound to it: every unit carries its cache's identity (units copied in
from another cache are refused on read and reported by `cache verify`, in a folder and in an object
store), and the teacher's configuration is part of that identity."""

import json
import shutil

import pytest
import s3fs

from cache import open_cache
from cache.format.manifest import read_manifest
from cache.read.inspect import verify_cache
from cache.runtime.errors import CacheError
from tests.cache.test_identity import interrupt, sst2_copy
from tests.helpers import assert_refused, assert_refused_after_work, dump, run, save_tiny_teacher

FOREIGN = "belongs to another cache"


@pytest.fixture(scope="module")
def two_caches(tmp_path_factory, glue):
    """Two caches of the same data and block plan from two teachers of the same shape."""
    root = tmp_path_factory.mktemp("two")
    made = []
    for seed in (0, 7):
        teacher = save_tiny_teacher(root / f"teacher{seed}", head=True, seed=seed)
        dump(teacher, glue, root / f"cache{seed}", limit=40, block_mb=0.01)
        made.append(root / f"cache{seed}")
    assert read_manifest(made[0]).num_blocks == read_manifest(made[1]).num_blocks > 2
    return made


def test_a_block_copied_from_another_teachers_cache_is_refused(tmp_path, two_caches):
    mine, other = (shutil.copytree(c, tmp_path / c.name) for c in two_caches)
    shutil.rmtree(mine / "blocks" / "000001")
    shutil.copytree(other / "blocks" / "000001", mine / "blocks" / "000001")
    assert verify_cache(mine) == [f"block 1 (examples {_range(mine, 1)}): {FOREIGN} (made with another teacher, "
                                  "data or options than this manifest)"]
    cache = open_cache(mine)
    cache.read_block(0)
    with pytest.raises(CacheError, match=f"block 1 .*: {FOREIGN}"):
        cache.read_block(1)
    result = run("train-student", "--cache", mine, "--student", "layers=1,hidden=16,ffn=32,heads=4",
                 "--stage", "intermediate", "--epochs-intermediate", 1, "--out", tmp_path / "run")
    assert_refused_after_work(result, FOREIGN)


def test_a_manifest_copied_from_another_cache_is_refused(tmp_path, two_caches):
    mine = shutil.copytree(two_caches[0], tmp_path / "mine")
    shutil.copy(two_caches[1] / "manifest.json", mine / "manifest.json")
    with pytest.raises(CacheError, match=f"the index {FOREIGN}"):
        open_cache(mine)
    assert verify_cache(mine) == [f"index: {FOREIGN} (made with another teacher, data or options than this manifest)"]
    result = run("cache", "verify", mine)
    assert result.exit_code == 1 and f"{mine}: index: {FOREIGN}" in result.output


def test_a_partial_sync_in_an_object_store_is_refused(bucket, glue, two_caches):
    """`aws s3 sync` of one cache's blocks over another's, cut short: the mixed cache is found out."""
    for cache in two_caches:
        dump(cache.parent / cache.name.replace("cache", "teacher"), glue, f"{bucket}/{cache.name}", limit=6,
             block_mb=0.003)
    fs = s3fs.S3FileSystem(skip_instance_cache=True, use_listings_cache=False)
    prefix = bucket.removeprefix("s3://")
    for name in fs.find(f"{prefix}/cache7/blocks/"):
        if "/000001" in name:
            fs.copy(name, name.replace("/cache7/", "/cache0/"))
    mixed = f"{bucket}/cache0"
    assert any(p.startswith("block 1 ") and FOREIGN in p for p in verify_cache(mixed))
    with pytest.raises(CacheError, match=f"block 1 .*: {FOREIGN}"):
        list(open_cache(mixed).iter_blocks())


def test_a_resume_with_the_teachers_config_edited_is_refused(tmp_path, glue):
    """Same weights, another activation: the blocks already written came from another function."""
    teacher = save_tiny_teacher(tmp_path / "teacher", head=True)
    data = sst2_copy(glue, tmp_path / "data")
    dump(teacher, glue, tmp_path / "c", data=data, limit=None)
    interrupt(tmp_path / "c")
    config = json.loads((teacher / "config.json").read_text())
    (teacher / "config.json").write_text(json.dumps(config | {"hidden_act": "relu"}))
    result = run("dump-teacher", "--task", "sst2", "--data", data, "--teacher", teacher, "--out", tmp_path / "c",
                 "--block-mb", 0.01, "--batch-size", 5)
    assert_refused(result, 'teacher configuration (config.json): cache has {"hidden_act": "gelu"}, this run has '
                           '{"hidden_act": "relu"}')
    assert not read_manifest(tmp_path / "c").complete


def _range(cache, k):
    starts = open_cache(cache).block_starts
    return f"{starts[k]}-{starts[k + 1] - 1}"


def _corpus(folder, sentences):
    folder.mkdir()
    (folder / "a.txt").write_text("\n\n".join(sentences) + "\n")
    return folder


def test_an_eval_cache_sharing_sequences_with_training_is_refused(tmp_path, glue, tiny_teacher):
    """Compared by what the caches hold: a held-out dump of the corpus with one file added, whose
    sequences from the old file are all training sequences, is refused; a true held-out part is not."""
    from student.config import check_eval_cache
    from student.trainer import TrainConfig

    sentences = [line.split("\t")[0] for line in (glue / "SST-2" / "train.tsv").read_text().splitlines()[1:61]]
    small = _corpus(tmp_path / "small", sentences[:40])
    grown = _corpus(tmp_path / "grown", sentences[:40])
    (grown / "b.txt").write_text("\n\n".join(sentences[40:]) + "\n")
    corpus = {"task": "corpus", "max_seq_len": 16, "limit": None}
    dump(tiny_teacher, glue, tmp_path / "train", data=small, **corpus)
    dump(tiny_teacher, glue, tmp_path / "eval", data=grown, split="holdout", holdout=0.5, **corpus)
    result = run("train-student", "--cache", tmp_path / "train", "--eval-cache", tmp_path / "eval", "--stage",
                 "general", "--student", "layers=1,hidden=16,ffn=32,heads=4", "--out", tmp_path / "run")
    train, held_out = (_sequences(tmp_path / name) for name in ("train", "eval"))
    shared = sum(sequence in train for sequence in held_out)
    assert 0 < shared < len(held_out)
    assert_refused(result, f"--eval-cache: {shared} of the {len(held_out)} sequences of {tmp_path / 'eval'} are also "
                           "in --cache")
    assert not (tmp_path / "run").exists()
    dump(tiny_teacher, glue, tmp_path / "train-part", data=small, holdout=0.5, **corpus)
    dump(tiny_teacher, glue, tmp_path / "eval-part", data=small, split="holdout", holdout=0.5, **corpus)
    config = TrainConfig(cache=tmp_path / "train-part", eval_cache=tmp_path / "eval-part", out=tmp_path / "run")
    check_eval_cache(config.cache_root(config.cache), read_manifest(config.cache), config.cache_root(config.eval_cache),
                     config.eval_cache)


def _sequences(path):
    cache = open_cache(path)
    return [tuple(cache[i]["input_ids"].tolist()) for i in range(len(cache))]


def test_a_dump_into_a_prefix_holding_other_objects_is_refused(bucket, glue, tiny_teacher):
    """The folder's rule under a URL: new or empty, or its own cache; nothing there is touched."""
    fs = s3fs.S3FileSystem(skip_instance_cache=True, use_listings_cache=False)
    prefix = bucket.removeprefix("s3://")
    fs.pipe(f"{prefix}/shared/index/notes.txt", b"someone else's")
    result = run("dump-teacher", "--task", "sst2", "--data", glue / "SST-2", "--teacher", tiny_teacher, "--limit", 8,
                 "--out", f"{bucket}/shared")
    assert_refused(result, f"--out: {bucket}/shared already holds other objects (index); choose a new or empty prefix")
    assert fs.cat(f"{prefix}/shared/index/notes.txt") == b"someone else's"
    assert fs.find(f"{prefix}/shared") == [f"{prefix}/shared/index/notes.txt"]


def test_caches_inside_caches_are_refused_and_listed(tmp_path, bucket, glue, tiny_teacher):
    """A dump at a bucket's root no longer hides the caches below it from `cache ls`, and no new
    cache is dumped inside another."""
    dump(tiny_teacher, glue, bucket, limit=8)
    result = run("dump-teacher", "--task", "sst2", "--data", glue / "SST-2", "--teacher", tiny_teacher, "--limit", 8,
                 "--out", f"{bucket}/inner")
    assert_refused(result, f"--out: {bucket}/inner lies inside the cache {bucket}; choose a place outside it")
    dump(tiny_teacher, glue, tmp_path / "outer", limit=8)
    local_inner = run("dump-teacher", "--task", "sst2", "--data", glue / "SST-2", "--teacher", tiny_teacher,
                      "--limit", 8, "--out", tmp_path / "outer" / "inner")
    assert_refused(local_inner, f"lies inside the cache {tmp_path / 'outer'}")
    dump(tiny_teacher, glue, tmp_path / "elsewhere", limit=8)
    shutil.copytree(tmp_path / "elsewhere", tmp_path / "outer" / "copied")  # by hand: ls still finds it
    fs = s3fs.S3FileSystem(skip_instance_cache=True, use_listings_cache=False)
    fs.put(str(tmp_path / "elsewhere"), f"{bucket.removeprefix('s3://')}/below", recursive=True)
    for root, expected in ((bucket, [bucket, f"{bucket}/below"]),
                           (tmp_path, [str(tmp_path / "elsewhere"), str(tmp_path / "outer"),
                                       str(tmp_path / "outer" / "copied")])):
        listed = json.loads(run("cache", "ls", root, "--json").output)
        assert sorted(row["path"] for row in listed) == sorted(expected)


def test_a_file_url_is_the_folder_it_names(tmp_path, glue, tiny_teacher):
    result = run("dump-teacher", "--task", "sst2", "--data", glue / "SST-2", "--teacher", tiny_teacher, "--limit", 8,
                 "--out", f"file://{tmp_path}/new/c")
    assert result.exit_code == 0, result.output
    assert read_manifest(tmp_path / "new" / "c").complete and verify_cache(f"file://{tmp_path}/new/c") == []


def test_a_leased_cache_is_refused_before_the_teacher_is_read(tmp_path, bucket, glue):
    """The lease comes first: here the teacher is not even a model, and the lease is what is reported."""
    holder = {"pid": 4242, "host": "elsewhere", "command": "dump-teacher ...", "since": "earlier"}
    fs = s3fs.S3FileSystem(skip_instance_cache=True, use_listings_cache=False)
    fs.pipe_file(f"{bucket.removeprefix('s3://')}/leased/.lock", json.dumps(holder).encode())
    (tmp_path / "not-a-model").mkdir()
    result = run("dump-teacher", "--task", "sst2", "--data", glue / "SST-2", "--teacher", tmp_path / "not-a-model",
                 "--limit", 8, "--out", f"{bucket}/leased")
    assert_refused(result, "another dump is writing this cache (pid 4242 on elsewhere")
