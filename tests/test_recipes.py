"""The Makefile's recipes run as written: their commands, read from `make -n` with the slice
variables made tiny, run one after another in this process."""

import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from cache import open_cache
from tests.helpers import GLUE, run

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "data" / "corpus"


def recipe_commands(target: str, **variables) -> list[list[str]]:
    """The `cli.py` commands `make TARGET` runs with these variables, as argument lists."""
    venv = Path(sys.executable).parents[1]
    settings = [f"{name}={value}" for name, value in {"VENV": venv, **variables}.items()]
    script = subprocess.run(["make", "-s", "-n", "-C", str(REPO), target, *settings], check=True,
                            capture_output=True, text=True).stdout
    lines = [shlex.split(line) for line in re.sub(r"\\\n\s*", " ", script).splitlines()]
    return [argv[2:] for argv in lines if argv[1:2] == ["cli.py"]]


def test_make_embedder_on_a_corpus_slice(tmp_path):
    from sentence_transformers import SentenceTransformer

    out = tmp_path / "embedder"
    commands = recipe_commands("embedder", EMBEDDER_OUT=out, EMBEDDER_PARAGRAPHS=40, EMBEDDER_LAYERS=2,
                               EMBEDDER_EPOCHS=1, EMBEDDER_SENTENCES=30, CORPUS=CORPUS, DATA=GLUE)
    assert [argv[0] for argv in commands] == ["dump-teacher", "init-student", "train-student", "export", "export",
                                              "evaluate", "compare"]
    threads = torch.get_num_threads()
    outputs = []
    try:
        for argv in commands:
            result = run(*argv)
            assert result.exit_code == 0, f"{shlex.join(argv)}\n{result.output}"
            outputs.append(result.output)
    finally:
        torch.set_num_threads(threads)  # compare --threads sets them for the process
    assert open_cache(out / "corpus.zarr").manifest.layers == (6,)
    embedder = SentenceTransformer(str(out / "model"), device="cpu")
    vectors = embedder.encode(["A small model for a big index.", "Another sentence."])
    assert vectors.shape == (2, 384) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    assert embedder[0].auto_model.config.num_hidden_layers == 2 and (out / "model" / "onnx" / "model.onnx").is_file()
    assert "spearman" in outputs[-2]
    table = outputs[-1][outputs[-1].index("model "):].splitlines()  # after the progress bar
    assert [line.split()[:2] for line in table[1:6]] == [["teacher", "pytorch"], ["teacher", "onnx"],
                                                         ["embedder", "pytorch"], ["embedder", "onnx"],
                                                         ["embedder", "onnx-int8"]]
    assert table[6].startswith("agreement with teacher (pytorch) over 30 sentences"), outputs[-1]
