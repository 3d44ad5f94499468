"""torchrun dumps: two CPU ranks (gloo) each write their own blocks; a rank killed mid-dump leaves
a cache that resumes to the one a single process writes; a refusal on rank 0 stops every rank; the
real MiniLM's two-rank cache holds its fresh forward."""

import pytest
import torch

from cache.format.manifest import read_manifest
from cache.format.store import open_store
from cache.read.inspect import verify_cache
from tests.helpers import REPO, assert_same_arrays, dump, torchrun

pytestmark = pytest.mark.slow
EXAMPLES = 300


def dump_args(glue, teacher, out, *extra):
    return ["dump-teacher", "--task", "sst2", "--data", glue / "SST-2", "--teacher", teacher, "--limit", EXAMPLES,
            "--block-mb", 0.05, "--batch-size", 16, "--out", out, "--device", "cpu", *extra]


@pytest.fixture(scope="module")
def one_process(tmp_path_factory, glue, tiny_teacher):
    """The reference cache, computed on one thread as each torchrun rank is (OMP_NUM_THREADS=1):
    on some CPUs a matrix product's last bits depend on the number of threads that share it."""
    out = tmp_path_factory.mktemp("one") / "cache"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        dump(tiny_teacher, glue, out, limit=EXAMPLES, block_mb=0.05, batch_size=16)
    finally:
        torch.set_num_threads(threads)
    return out


def test_a_rank_killed_mid_dump_resumes_to_the_same_cache(tmp_path, glue, tiny_teacher, one_process):
    out = tmp_path / "killed"
    killed = torchrun(*dump_args(glue, tiny_teacher, out), env={"TINYBERT_FAILPOINT": "unit-staged:3@1"})
    assert killed.returncode != 0
    manifest = read_manifest(out)
    committed = open_store(out, manifest.storage).committed_blocks()
    assert not manifest.complete and manifest.num_blocks > 10
    # rank 1 writes blocks 1, 3, 5, ...: it committed two and died with the third staged
    assert {k for k in committed if k % 2} == {1, 3}
    assert all(problem.startswith("cache is incomplete") for problem in verify_cache(out))

    resumed = torchrun(*dump_args(glue, tiny_teacher, out))
    assert resumed.returncode == 0, resumed.stderr
    left = EXAMPLES - sum(int(manifest_size) for manifest_size in _block_sizes(out, committed))
    assert f"wrote {left} of {EXAMPLES} examples" in resumed.stdout
    assert read_manifest(out).complete and verify_cache(out) == []
    assert_same_arrays(one_process, out)


def _block_sizes(out, blocks):
    store = open_store(out, read_manifest(out).storage)
    return [store.attrs(f"blocks/{k:06d}")["stop"] - store.attrs(f"blocks/{k:06d}")["start"] for k in blocks]


def test_a_refusal_on_rank_0_stops_every_rank(tmp_path, glue, tiny_teacher):
    out = tmp_path / "float32"
    dump(tiny_teacher, glue, out, limit=40, hidden_encoding="float32", attention_encoding="maps:float32")
    result = torchrun(*dump_args(glue, tiny_teacher, out))
    assert result.returncode != 0
    refusals = [line for line in result.stderr.splitlines() if "existing cache was made differently" in line]
    assert len(refusals) == 2, result.stderr  # each rank, one line
    ours = [line for line in result.stderr.splitlines() if f'File "{REPO}' in line and "site-packages" not in line]
    assert ours == [], result.stderr  # the only traceback is torchrun's own summary


def test_real_minilm_two_ranks_store_its_fresh_forward(tmp_path, glue):
    from cache.data.checkpoints import default_teacher_path
    from tests.helpers import assert_matches_reference

    out = tmp_path / "minilm"
    result = torchrun("dump-teacher", "--task", "sst2", "--data", glue / "SST-2", "--limit", 64, "--block-mb", 0.3,
                      "--out", out, "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("wrote 64 of 64 examples") == 1, result.stdout  # rank 0 reports for the job
    assert read_manifest(out).num_blocks >= 4 and verify_cache(out) == []
    assert_matches_reference(out, default_teacher_path())
