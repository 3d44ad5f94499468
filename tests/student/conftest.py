import pytest

from tests.cache.test_dump import dump


@pytest.fixture(scope="module")
def tiny_cache(tmp_path_factory, glue, tiny_teacher):
    """A complete cache of the tiny classification teacher over 96 SST-2 sentences, 6+ blocks."""
    out = tmp_path_factory.mktemp("cache") / "sst2.zarr"
    dump(tiny_teacher, glue, out, limit=96, block_mb=0.1, batch_size=16)
    return out
