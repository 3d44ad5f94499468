"""Teacher outputs -> the stored entries of every target array: each array's encoding
(`cache.format.encoding`) applied to one batch.

Everything runs on the teacher's device on the batch's padded outputs: real entries are gathered
(`cache.format.transfer.PaddedSlots`), then cast or quantised, so only stored bytes cross to the host,
once per block.
"""

from collections.abc import Iterator

import torch

from cache.format.entries import ATTENTION, HIDDEN, TOKEN
from cache.format.layout import Geometry
from cache.format.transfer import PaddedSlots
from cache.teacher.runner import TeacherOutput


def encode_batch(out: TeacherOutput, slots: PaddedSlots, geometry: Geometry) -> Iterator[tuple[str, int, torch.Tensor]]:
    """(array name, position of the layer among the array's stored layers, real entries) for every
    stored array and layer of one batch."""
    d, specs = geometry.hidden_size, geometry.arrays()
    for i, layer in enumerate(geometry.stored_hidden_layers):
        rows = slots.gather(out.hidden[layer], TOKEN, (d,))
        for name, values in geometry.hidden.encode(HIDDEN, rows, d).items():
            yield name, i, values
    attention_specs = {name: spec for name, spec in specs.items() if spec.layers == ATTENTION}
    for i, layer in enumerate(geometry.attention_layers):
        for name, values in geometry.attention.encode(out.attention[layer - 1], slots, attention_specs).items():
            yield name, i, values
