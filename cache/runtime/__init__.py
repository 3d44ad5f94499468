"""What both sides share at run time: errors, failpoints, devices and torchrun ranks, option and
path checks, run records, the layer map, the attention capture, and ragged-array helpers."""
