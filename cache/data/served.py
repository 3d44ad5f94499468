"""A saved classifier in the format it is served in: a transformers folder run by PyTorch, or an
exported folder (`export --format onnx`) run by ONNX Runtime.

`OnnxClassifier` is called like the PyTorch model it was exported from (keyword inputs in, an
object with `.logits` out), so that scoring and timing code serves both without a branch.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cache.runtime.errors import UserError, describe

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".onnx", ".onnx_data")
"""Files that hold a served model's weights (its size on disk); not the tokenizer, nor a
student's training-only projections."""


def onnx_graph(folder: Path) -> Path | None:
    """The folder's ONNX graph: model.onnx, else its one other .onnx file (an int8 export's
    model_quantized.onnx); None for a PyTorch folder."""
    graphs = sorted(folder.glob("*.onnx"))
    if (folder / "model.onnx").is_file():
        return folder / "model.onnx"
    if len(graphs) > 1:
        raise UserError(f"{folder}: holds {len(graphs)} ONNX graphs ({', '.join(g.name for g in graphs)}); "
                        "keep one per folder")
    return graphs[0] if graphs else None


def disk_bytes(folder: Path) -> int:
    """Bytes of the weight files a server loads from `folder`."""
    return sum(path.stat().st_size for path in folder.iterdir() if path.is_file() and path.suffix in WEIGHT_SUFFIXES)


def ort_session(graph: Path, threads: int | None = None):
    """An ONNX Runtime session on the CPU, with `threads` threads for an operator (default: torch's)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - onnxruntime reports a damaged graph with its own exception types
        raise UserError(f"{graph}: ONNX Runtime cannot load it ({describe(e)})") from None


@dataclass
class Logits:
    logits: torch.Tensor


class OnnxClassifier:
    """An exported classifier run by ONNX Runtime on the CPU."""

    training = False
    device = torch.device("cpu")

    def __init__(self, graph: Path, config, threads: int | None = None):
        self.graph, self.config = graph, config
        self.session = ort_session(graph, threads)
        self.input_names = {node.name for node in self.session.get_inputs()}

    def __call__(self, **inputs: torch.Tensor) -> Logits:
        feed = {name: value.cpu().numpy().astype(np.int64) for name, value in inputs.items()
                if name in self.input_names}
        return Logits(torch.from_numpy(self.session.run(None, feed)[0]))

    def eval(self) -> "OnnxClassifier":
        return self

    def train(self, mode: bool = True) -> "OnnxClassifier":
        return self

    def parameters_count(self) -> int:
        """The parameters of the model the graph was exported from (its config's, built without
        weights): the graph's own initializers are those after constant folding and quantisation."""
        from transformers import AutoModelForSequenceClassification

        with torch.device("meta"):
            model = AutoModelForSequenceClassification.from_config(self.config)
        return sum(p.numel() for p in model.parameters())


def load_classifier(folder: Path, config, threads: int | None = None):
    """The folder's classifier: ONNX Runtime's for an exported graph, else the PyTorch model."""
    graph = onnx_graph(folder)
    if graph is not None:
        return OnnxClassifier(graph, config, threads)
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_pretrained(folder).eval()


def served_format(folder: Path) -> str:
    """pytorch, onnx, or onnx-int8 (a graph whose weights are quantised)."""
    graph = onnx_graph(folder)
    if graph is None:
        return "pytorch"
    return "onnx-int8" if "quantized" in graph.stem else "onnx"


def parameters_count(model) -> int:
    if isinstance(model, OnnxClassifier):
        return model.parameters_count()
    return sum(p.numel() for p in model.parameters())
