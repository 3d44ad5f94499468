"""A model as an ONNX graph for ONNX Runtime (int8 too), checked against the PyTorch model it came
from on real sentences: the graphs `export` writes, for classifiers and for embedders' encoders."""

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cache.data.checkpoints import has_classifier, load_config, load_tokenizer
from cache.data.families import family_of, forward_inputs
from cache.data.served import ort_session
from cache.runtime.errors import UserError

CHECK_SENTENCES = (
    "The film is a quiet, patient study of grief, and it earns every one of its tears.",
    "Terrible.",
    "I would not have guessed that a two-hour documentary about bridges could hold my attention.",
    "Shares of the company fell 4 percent in early trading after the report was released on Tuesday.",
    "She said the new policy would take effect next month.",
    "It's neither funny nor clever, and at 98 minutes it feels twice as long.",
    "The committee met on Friday but did not reach a decision.",
    "A gorgeous, witty, seductive movie.",
)
"""Real sentences of different lengths, padded into one batch: the check sees padding and masks."""
FP32_TOLERANCE = 1e-4
"""Largest difference allowed between ONNX Runtime's fp32 outputs and PyTorch's."""
INT8_GRAPH = "model_quantized.onnx"
"""The int8 graph's name in an ONNX export folder (optimum's name for it)."""


@dataclass(frozen=True)
class Check:
    """What one exported graph gives against PyTorch on `CHECK_SENTENCES`."""

    graph: str
    max_difference: float
    """Largest |ONNX - PyTorch| over every output of every real token or example."""
    agreement: float
    measure: str
    """What `agreement` is: the share of sentences given the same class (a classifier), or the mean
    cosine between the two models' vectors of each real token (an encoder) or sentence (an embedder)."""


class Exported(nn.Module):
    """The one output a served graph has: a classifier's logits, or an encoder's last hidden states."""

    def __init__(self, model: nn.Module, output: str):
        super().__init__()
        self.model, self.output = model, output

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        types = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        return getattr(self.model(input_ids=input_ids, attention_mask=attention_mask, **types), self.output)


def check_inputs(model, tokenizer) -> dict[str, torch.Tensor]:
    """`CHECK_SENTENCES` as the model's forward takes them; pairs (sentence, next sentence) where
    the family tells two texts apart by token types."""
    second = list(CHECK_SENTENCES[1:] + CHECK_SENTENCES[:1]) if family_of(model.config, "--model").token_types else None
    batch = tokenizer(list(CHECK_SENTENCES), second, padding=True, truncation=True, max_length=128,
                      return_tensors="pt", return_token_type_ids=True)
    return forward_inputs(model, batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])


def export_graph(module: Exported, inputs: dict[str, torch.Tensor], path: Path) -> None:
    """The module's graph through torch's ONNX exporter (torch.export), batch and length dynamic."""
    batch, length = torch.export.Dim("batch"), torch.export.Dim("sequence")
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # its notes on its own internals (optional
    with warnings.catch_warnings():  # packages it skips, names it drops) are not the user's to act on
        warnings.simplefilter("ignore")
        program = torch.onnx.export(module, (), kwargs=inputs, input_names=list(inputs),
                                    output_names=[module.output],
                                    dynamic_shapes={name: {0: batch, 1: length} for name in inputs},
                                    dynamo=True, optimize=True, verbose=False)
    if program is None:
        raise RuntimeError("torch.onnx.export returned no program")
    program.save(str(path))


def quantize_int8(graph: Path, out: Path) -> None:
    """Dynamic quantisation: int8 weights, activations quantised per batch at run time; the graph
    first gets the shapes and fusions onnxruntime's quantiser expects (its pre-processing)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = out.with_name(f".{out.stem}-prepared.onnx")
    try:
        quant_pre_process(str(graph), str(prepared), skip_symbolic_shape=True)
        quantize_dynamic(str(prepared), str(out), weight_type=QuantType.QInt8)
    finally:
        prepared.unlink(missing_ok=True)


@torch.inference_mode()
def check_graph(module: Exported, inputs: dict[str, torch.Tensor], graph: Path) -> Check:
    """ONNX Runtime's outputs of `graph` against the module's own, over real tokens only."""
    expected = module(**inputs).float().numpy()
    session = ort_session(graph)
    names = {node.name for node in session.get_inputs()}
    found = session.run(None, {name: value.numpy() for name, value in inputs.items() if name in names})[0]
    if module.output == "logits":
        return Check(graph.name, float(np.abs(expected - found).max()),
                     float(np.mean(expected.argmax(-1) == found.argmax(-1))), "same class")
    real = inputs["attention_mask"].bool().numpy()
    return vectors_check(graph.name, expected[real], found[real], "token")


def vectors_check(name: str, expected: np.ndarray, found: np.ndarray, of: str) -> Check:
    cosines = (expected * found).sum(-1) / (np.linalg.norm(expected, axis=-1) * np.linalg.norm(found, axis=-1))
    return Check(name, float(np.abs(expected - found).max()), float(cosines.mean()), f"mean cosine per {of}")


def export_onnx(source: Path, folder: Path, quantize: str | None, int8_name: str | None = None) -> list[Check]:
    """The model of `source` as `folder`/model.onnx, checked; with `quantize`, its int8 graph
    `int8_name` beside it, or (None) INT8_GRAPH in its place: a folder that serves one graph."""
    from transformers import AutoModel, AutoModelForSequenceClassification

    config = load_config(source, "--model")
    classifier = has_classifier(config)
    auto = AutoModelForSequenceClassification if classifier else AutoModel
    model = auto.from_pretrained(source).eval()
    module = Exported(model, "logits" if classifier else "last_hidden_state")
    inputs = check_inputs(model, load_tokenizer(source, "--model", config))
    graph = folder / "model.onnx"
    export_graph(module, inputs, graph)
    checks = [check_graph(module, inputs, graph)]
    if checks[0].max_difference > FP32_TOLERANCE:
        raise UserError(f"--model {source}: the ONNX graph differs from PyTorch by {checks[0].max_difference:.2e} "
                        f"(more than {FP32_TOLERANCE:g}); nothing was written")
    if quantize == "int8":
        quantized = folder / (int8_name or INT8_GRAPH)
        quantize_int8(graph, quantized)
        checks.append(check_graph(module, inputs, quantized))
        if int8_name is None:
            graph.unlink()
    return checks


