"""Where a dump's time goes beside the teacher's forward: encoding each batch's targets on the
teacher's device, and writing each block, timed apart, per encoding.

    python -m bench.dump_profile                       # MiniLM, first 2000 SST-2 sentences
    python -m bench.dump_profile --encodings float16,maps --encodings int8,topk:8

For each encoding: the summed time of the teacher's forward over the dump's exact batches, of
encoding their outputs (`cache.teacher.encode`), and of writing the blocks (`Store.write_unit`, one block
at a time, nothing else running), each as a fraction of the forward. Writes
bench/results/dump-profile.json.
"""

import tempfile
import time
from dataclasses import replace
from pathlib import Path

import click
import torch

from bench.common import data_option, save_result
from bench.dump_bench import encoded
from cache.data.checkpoints import default_teacher_path, quiet_transformers
from cache.format.layout import BlockIndex
from cache.format.store import block_unit, open_store
from cache.format.transfer import PaddedSlots
from cache.teacher.dump import DumpConfig, _compute_block, block_batches, load_source, prepare_dump
from cache.teacher.encode import encode_batch
from cache.teacher.runner import teacher_forward


def profile(config: DumpConfig, folder: Path) -> dict:
    prepared = prepare_dump(config, load_source(config), command="bench")
    geometry, starts = prepared.geometry, prepared.block_starts
    axes = {spec.axis for spec in geometry.arrays().values()}
    forward = encode = write = 0.0
    store = open_store(folder, "zarr")
    folder.mkdir(parents=True)
    store.create()
    for k in range(len(starts) - 1):
        block = BlockIndex.build(int(starts[k]), prepared.tokens.lengths[starts[k]:starts[k + 1]], geometry.num_heads)
        for batch in block_batches(prepared.tokens, block, config.batch_size, prepared.device, axes):
            started = time.perf_counter()
            out = teacher_forward(prepared.model, batch.input_ids, batch.token_type_ids, batch.mask.long())
            computed = time.perf_counter()
            slots = PaddedSlots(batch.lengths, block.lengths[batch.host_positions], geometry.num_heads)
            for _ in encode_batch(out, slots, geometry):
                pass
            forward, encode = forward + computed - started, encode + time.perf_counter() - computed
        arrays = _compute_block(prepared.model, prepared.tokens, block, geometry, config.batch_size, prepared.device)
        started = time.perf_counter()
        store.write_unit(block_unit(k), arrays, {})
        write += time.perf_counter() - started
    return {"forward_seconds": forward, "encode_over_forward": encode / forward, "write_over_forward": write / forward,
            "bytes_per_example": store.target_nbytes() / len(prepared.tokens.lengths)}


@click.command()
@click.option("--limit", default=2000, help="First N SST-2 training sentences.")
@click.option("--encodings", multiple=True, default=["float16,maps", "float16,qk", "int8,topk:8"],
              help="HIDDEN,ATTENTION encodings (repeat the option for several).")
@data_option
def main(limit, encodings, data):
    quiet_transformers()
    config = DumpConfig(task="sst2", data=data, split="train", out=Path("unused"), teacher=default_teacher_path(),
                        limit=limit)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, encoding in enumerate(encodings):
            results[encoding] = profile(encoded(replace(config), encoding), Path(tmp) / str(i))
            r = results[encoding]
            print(f"{encoding}: encode {r['encode_over_forward']:.3f}, write {r['write_over_forward']:.3f} of the "
                  f"forward's {r['forward_seconds']:.1f} s; {r['bytes_per_example'] / 1e3:.1f} kB/example", flush=True)
    save_result("dump-profile", {"examples": limit, "torch_threads": torch.get_num_threads(), "encodings": results})


if __name__ == "__main__":
    main()
