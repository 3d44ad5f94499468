"""The bad-input catalogue and the compatibility refusals, through the command line: each is one
line naming the file, row or option, exits 1, and leaves no cache marked complete."""

import json
import shutil
from dataclasses import replace

import pytest

from cache.format.manifest import read_manifest, write_manifest
from tests.helpers import assert_refused, rewrite_manifest_json, run

SST2_HEADER = b"sentence\tlabel\n"
CATALOGUE = [  # (case, train.tsv content, expected message after "Error: ")
    ("empty file", b"", "train.tsv: file is empty"),
    ("header only", SST2_HEADER, "train.tsv: no examples (header only?)"),
    ("missing column", b"label\n1\n", "train.tsv:1: no column 'sentence' (columns: label)"),
    ("misnamed column", b"sentance\tlabel\nok\t1\n", "train.tsv:1: no column 'sentence' (columns: sentance, label)"),
    ("ragged row", SST2_HEADER + b"fine\t1\nshort\n", "train.tsv:3: row has 1 fields, header has 2"),
    ("bad label", SST2_HEADER + b"fine\tpositive\n", "train.tsv:2: label 'positive' is not one of 0, 1"),
    ("unseen label", SST2_HEADER + b"fine\t1\nodd\t2\n", "train.tsv:3: label '2' is not one of 0, 1"),
    ("empty text", SST2_HEADER + b"fine\t1\n\t0\n", "train.tsv:3: empty text"),
    ("whitespace-only text", SST2_HEADER + b"   \t1\n", "train.tsv:2: empty text"),
    ("undecodable bytes", SST2_HEADER + b"fine\t1\nna\xefve\xff\t0\n", "train.tsv:3: not valid UTF-8 (byte 0xef)"),
    ("comma-separated", b"sentence,label\nfine,1\n",
     "train.tsv:1: no column 'sentence' (columns: sentence,label); is it comma-separated? then use --task csv"),
    ("NUL byte in the header", b"sent\x00ence\tlabel\nfine\t1\n",
     "train.tsv:1: no column 'sentence' (columns: sent\\x00ence, label)"),
]


def no_complete_cache(root):
    return not any(json.loads(m.read_text()).get("complete") for m in root.rglob("manifest.json"))


@pytest.mark.parametrize("case, content, expected", CATALOGUE, ids=[c[0] for c in CATALOGUE])
def test_malformed_data(tmp_path, tiny_teacher, case, content, expected):
    (tmp_path / "train.tsv").write_bytes(content)
    result = run("dump-teacher", "--task", "sst2", "--data", tmp_path, "--teacher", tiny_teacher,
                 "--out", tmp_path / "c")
    assert_refused(result, str(tmp_path / expected))
    assert no_complete_cache(tmp_path) and not (tmp_path / "c").exists()


def test_long_text_is_truncated_not_refused(tmp_path, tiny_teacher):
    (tmp_path / "train.tsv").write_bytes(SST2_HEADER + b"fine\t1\n" + b"good " * 2000 + b"\t1\n")
    result = run("dump-teacher", "--task", "sst2", "--data", tmp_path, "--teacher", tiny_teacher,
                 "--out", tmp_path / "c", "--max-seq-len", 64)
    assert result.exit_code == 0 and "1 truncated at 64 tokens" in result.output


@pytest.mark.parametrize("case", ["teacher is not a model", "output is a file", "unknown task", "bad layers"])
def test_bad_options(tmp_path, glue, tiny_teacher, case):
    (tmp_path / "file").write_text("x")
    (tmp_path / "empty").mkdir()
    args = {"teacher": tiny_teacher, "out": tmp_path / "c", "task": "sst2", "layers": "all"}
    expected = {"teacher is not a model": f"--teacher: {tmp_path / 'empty'} is not a Hugging Face checkpoint",
                "output is a file": f"--out: {tmp_path / 'file'} is a file, not a folder",
                "unknown task": "--task: unknown task 'sst3'",
                "bad layers": "--layers: teacher has layers 0..3 (0 = embeddings), not [7]"}[case]
    args |= {"teacher is not a model": {"teacher": tmp_path / "empty"}, "output is a file": {"out": tmp_path / "file"},
             "unknown task": {"task": "sst3"}, "bad layers": {"layers": "0,7"}}[case]
    result = run("dump-teacher", "--task", args["task"], "--data", glue / "SST-2", "--teacher", args["teacher"],
                 "--out", args["out"], "--layers", args["layers"], "--limit", 8)
    assert_refused(result, expected)
    assert no_complete_cache(tmp_path)


def _format_version_99(cache):
    rewrite_manifest_json(cache, format_version=99)


def _incomplete(cache):
    write_manifest(cache, replace(read_manifest(cache), complete=False))


def _other_tokenizer_student(tmp_path):
    from tests.helpers import save_tiny_teacher, vocabulary

    vocab = vocabulary()
    vocab[20], vocab[21] = vocab[21], vocab[20]
    return save_tiny_teacher(tmp_path / "student", head=True, vocab=vocab)


COMPATIBILITY = [  # (case, damage to the cache or the student to use, expected message)
    ("another format version", _format_version_99, ("cache format version 99 is not supported "
                                                    "(this version reads 2, 3, 4, 5, 6, 7); dump the teacher again")),
    ("incomplete cache", _incomplete, "cache is incomplete; run the same dump-teacher command again to finish it"),
    ("student with another tokenizer", "student", "has another tokenizer than the cache's teacher"),
    ("heads not dividing the width", "layers=3,hidden=32,ffn=64,heads=3",
     "--student: hidden size 32 must be a positive multiple of heads 3"),
    ("layer map beyond the cache", "--layer-map=1,2,5", "--layer-map: need 3 teacher layers in 1..3"),
]


@pytest.mark.parametrize("case, change, expected", COMPATIBILITY, ids=[c[0] for c in COMPATIBILITY])
def test_incompatible_runs_are_refused_before_training(tmp_path, tiny_cache, case, change, expected):
    cache = tmp_path / "cache"
    shutil.copytree(tiny_cache, cache)
    student, extra = "layers=3,hidden=32,ffn=64,heads=4", []
    if callable(change):
        change(cache)
    elif change == "student":
        student = _other_tokenizer_student(tmp_path)
    elif change.startswith("--"):
        extra = [change]
    else:
        student = change
    result = run("train-student", "--cache", cache, "--student", student, "--out", tmp_path / "run", *extra)
    assert_refused(result, expected)
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


DUMP = ["dump-teacher", "--task", "sst2", "--data", "{glue}/SST-2"]
SMALL = ["--student", "layers=2,hidden=32,ffn=64,heads=4"]
EARLY = {  # command line whose mistake needs neither torch nor a model to find, and its one-line error
    "dump: missing data file": (["dump-teacher", "--task", "sst2", "--data", "{tmp}/none.tsv", "--out", "{tmp}/c"],
                                "{tmp}/none.tsv: no such file"),
    "dump: --out inside a file": ([*DUMP, "--out", "{tmp}/file/c"],
                                  "--out: {tmp}/file/c lies inside {tmp}/file, which is a file"),
    "dump: --out is a file": ([*DUMP, "--out", "{tmp}/file"], "--out: {tmp}/file is a file, not a folder"),
    "dump: compression of the other format": ([*DUMP, "--out", "{tmp}/c", "--compression", "lzf"],
                                              "--compression lzf is not available with --format zarr"),
    "dump: a class named twice": (["dump-teacher", "--task", "tsv", "--data", "{glue}/SST-2/dev.tsv", "--split", "dev",
                                   "--out", "{tmp}/c", "--text-column", "sentence", "--labels", "0,1,0"],
                                  "--labels: 0,1,0 names a class twice"),
    "train: not a cache": (["train-student", "--cache", "{tmp}", "--out", "{tmp}/run"],
                           "not a cache (no manifest.json)"),
    "finetune: missing data": (["finetune-teacher", "--task", "cola", "--data", "{tmp}", "--out", "{tmp}/t"],
                               "{tmp}/train.tsv: no such file"),
    "finetune: --out is a file": (["finetune-teacher", "--task", "sst2", "--data", "{glue}/SST-2",
                                   "--out", "{tmp}/file"], "--out: {tmp}/file is a file, not a folder"),
    "augment: --out is the input folder": (["augment", "--task", "sst2", "--data", "{tmp}/SST-2",
                                            "--out", "{tmp}/SST-2"],
                                           "--out: writing {tmp}/SST-2/train.tsv would overwrite the input"),
    "augment: --out holds another train.tsv": (["augment", "--task", "sst2", "--data", "{glue}/SST-2",
                                                "--out", "{tmp}/SST-2"], "exists and was not written by augment"),
    "augment: --out is a file": (["augment", "--task", "sst2", "--data", "{glue}/SST-2", "--out", "{tmp}/file"],
                                 "--out: {tmp}/file is a file, not a folder"),
    "evaluate: missing data": (["evaluate", "--model", "{tmp}", "--task", "sst2", "--data", "{tmp}"],
                               "{tmp}/dev.tsv: no such file"),
    "compare: missing data": (["compare", "--model", "a={tmp}", "--task", "mrpc", "--data", "{tmp}"],
                              "{tmp}/dev.tsv: no such file"),
    "dump: --device meta": ([*DUMP, "--out", "{tmp}/c", "--device", "meta"],
                            "--device: 'meta' is not a device this tool runs on"),
    "dump: a local teacher that is not there": ([*DUMP, "--out", "{tmp}/c", "--teacher", "{tmp}/teachers/none"],
                                                "--teacher: {tmp}/teachers/none: no such folder"),
    "init: a relative teacher that is not there": (["init-student", "--teacher", "./no/such", "--layers", "2",
                                                    "--out", "{tmp}/i"], "--teacher: ./no/such: no such folder"),
    "finetune: --device gpu0": (["finetune-teacher", "--task", "sst2", "--data", "{glue}/SST-2", "--out", "{tmp}/t",
                                 "--device", "gpu0"], "--device: 'gpu0' is not a device this tool runs on"),
    "train: --device mps": (["train-student", "--cache", "{cache}", "--out", "{tmp}/run", "--device", "mps"],
                            "--device: 'mps' is not a device this tool runs on"),
    "train: --out under /proc": (["train-student", "--cache", "{cache}", "--out", "/proc/run", *SMALL],
                                 "--out: /proc is not writable"),
    "train: a student deeper than the teacher": (["train-student", "--cache", "{cache}", "--out", "{tmp}/run",
                                                  "--student", "layers=7,hidden=32,ffn=64,heads=4"],
                                                 "a student of 7 layers is deeper than the teacher's 3"),
    "train: scores from a cache of probabilities": (["train-student", "--cache", "{probs}", "--out", "{tmp}/run",
                                                     "--attention-loss", "scores", *SMALL],
                                                    "--attention-loss scores: the cache stores probabilities"),
    "train: prediction from a cache without logits": (["train-student", "--cache", "{bare}", "--out", "{tmp}/run",
                                                       "--stage", "prediction", *SMALL],
                                                      "--stage: the cache has no teacher logits"),
}

EARLY_CHECK = """
import sys
from click.testing import CliRunner
from cli import cli
result = CliRunner().invoke(cli, sys.argv[1:])
print(result.exit_code, sorted({"torch", "transformers"} & set(sys.modules)))
print(result.output.strip())
"""


@pytest.fixture(scope="module")
def other_caches(tmp_path_factory, glue, tiny_teacher, tiny_bare_teacher):
    """A cache of attention probabilities, and one of a teacher without a head."""
    from tests.helpers import dump

    root = tmp_path_factory.mktemp("others")
    dump(tiny_teacher, glue, root / "probs", limit=8, attention="probs")
    dump(tiny_bare_teacher, glue, root / "bare", limit=8)
    return root


@pytest.mark.parametrize("case", EARLY, ids=list(EARLY))
def test_cheap_mistakes_fail_before_heavy_imports(tmp_path, glue, tiny_cache, other_caches, case):
    """Each is refused in one line before torch or transformers is imported (seconds, not 20)."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    (tmp_path / "file").write_text("x")
    shutil.copytree(glue / "SST-2", tmp_path / "SST-2")
    before = (tmp_path / "SST-2" / "train.tsv").read_bytes()
    args, expected = EARLY[case]
    fill = {"tmp": tmp_path, "glue": glue, "cache": tiny_cache, "probs": other_caches / "probs",
            "bare": other_caches / "bare"}
    done = subprocess.run([sys.executable, "-c", EARLY_CHECK, *(a.format(**fill) for a in args)], text=True,
                          capture_output=True, cwd=Path(__file__).resolve().parents[1], timeout=120, check=False)
    status, output = done.stdout.split("\n", 1)
    assert status == "1 []", done.stdout + done.stderr
    assert_refused_text(output, expected.format(**fill))
    assert (tmp_path / "SST-2" / "train.tsv").read_bytes() == before and not (tmp_path / "c").exists()


def assert_refused_text(output, expected):
    lines = output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and expected in lines[0], output


@pytest.mark.parametrize("value, expected", [("nan", "label 'nan' is not a finite number"),
                                             ("inf", "label 'inf' is not a finite number"),
                                             ("1e400", "label '1e400' is not a finite number"),
                                             ("1e39", "label '1e39' is not a finite number")])
def test_regression_labels_are_finite(tmp_path, tiny_teacher, value, expected):
    rows = ["sentence1\tsentence2\tscore", "the film\tthe movie\t3.5", f"it is\tit was\t{value}"]
    (tmp_path / "train.tsv").write_text("\n".join(rows) + "\n")
    result = run("dump-teacher", "--task", "stsb", "--data", tmp_path, "--teacher", tiny_teacher,
                 "--out", tmp_path / "c")
    assert_refused(result, f"{tmp_path / 'train.tsv'}:3: {expected}")
    assert not (tmp_path / "c").exists()


def test_disk_errors_are_one_line(tmp_path, tiny_cache, monkeypatch):
    """An OSError from the file system (here: the disk filling while the run's record is written)
    names the file, without a traceback."""
    import errno
    import os

    real_open = open

    def full_disk(file, mode="r", *args, **kwargs):
        if str(file).endswith("command.txt"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(file))
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr("builtins.open", full_disk)
    result = run("train-student", "--cache", tiny_cache, "--student", "layers=3,hidden=32,ffn=64,heads=4",
                 "--out", tmp_path / "run")
    assert_refused(result, f"{tmp_path / 'run' / 'command.txt'}: No space left on device")


def test_option_checks_that_need_the_model(tmp_path, glue, tiny_teacher):
    """Checked against the teacher, model or machine before any target is computed."""
    sst2 = ["--task", "sst2", "--data", glue / "SST-2", "--limit", 8, "--teacher", tiny_teacher,
            "--out", tmp_path / "c"]
    assert_refused(run("dump-teacher", *sst2, "--max-seq-len", 256),
                   f"--teacher: {tiny_teacher}: --max-seq-len 256 is beyond its 128 positions")
    assert_refused(run("dump-teacher", *sst2, "--device", "gpu7"), "--device: 'gpu7' is not a device")
    assert_refused(run("evaluate", "--model", tiny_teacher, "--task", "sst2", "--data", glue / "SST-2",
                       "--max-seq-len", 512), "beyond its 128 positions")
    assert_refused(run("augment", "--task", "sst2", "--data", glue / "SST-2", "--out", tmp_path / "aug",
                       "--teacher", tiny_teacher, "--neighbours", 100000), "--neighbours: 100000 is not below")
    assert not (tmp_path / "c").exists() and not (tmp_path / "aug" / "train.tsv").exists()


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has a GPU")
def test_missing_gpu_is_one_line(tmp_path, glue, tiny_teacher):
    result = run("dump-teacher", "--task", "sst2", "--data", glue / "SST-2", "--limit", 8, "--teacher", tiny_teacher,
                 "--out", tmp_path / "c", "--device", "cuda")
    assert_refused(result, "--device: cuda is not on this machine (0 CUDA devices)")


URL_OUTPUTS = {  # command line writing a local path, given a URL
    "train-student": ["train-student", "--cache", "{cache}", "--out", "s3://bucket/run"],
    "init-student": ["init-student", "--teacher", "{teacher}", "--layers", "2", "--out", "s3://bucket/init"],
    "augment": ["augment", "--task", "sst2", "--data", "{glue}/SST-2", "--out", "s3://bucket/aug"],
    "finetune-teacher": ["finetune-teacher", "--task", "sst2", "--data", "{glue}/SST-2", "--out", "s3://bucket/t"],
    "show cache": ["show", "cache", "{cache}", "--out", "s3://bucket/c.png"],
}


@pytest.mark.parametrize("case", URL_OUTPUTS, ids=list(URL_OUTPUTS))
def test_urls_are_refused_where_a_local_path_is_written(tmp_path, glue, tiny_teacher, tiny_cache, case,
                                                        monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = [a.format(cache=tiny_cache, teacher=tiny_teacher, glue=glue) for a in URL_OUTPUTS[case]]
    result = run(*args)
    assert_refused(result, "is a URL; this command writes to a local path", code=2)
    assert list(tmp_path.iterdir()) == []  # no folder named s3:


@pytest.mark.parametrize("command", ["cache", "curves"])
def test_pictures_need_an_image_extension(tmp_path, tiny_cache, command):
    source = ["cache", tiny_cache] if command == "cache" else ["curves", "--run", tmp_path]
    result = run("show", *source, "--out", tmp_path / "picture.txt")
    assert_refused(result, "picture.txt: the picture's type comes from its extension; use .png, .pdf, .svg", code=2)
    assert not (tmp_path / "picture.txt").exists()


def test_a_text_that_is_not_a_string(tmp_path, tiny_teacher):
    (tmp_path / "data.jsonl").write_text('{"text": "fine", "label": 1}\n{"text": 123, "label": 0}\n')
    result = run("dump-teacher", "--task", "jsonl", "--data", tmp_path / "data.jsonl", "--teacher", tiny_teacher,
                 "--out", tmp_path / "c")
    assert_refused(result, f"{tmp_path / 'data.jsonl'}:2: text is int 123, not a string")


@pytest.mark.parametrize("kind", ["fifo", "symlink loop", "dangling symlink"])
def test_data_that_is_not_a_regular_file(tmp_path, tiny_teacher, kind):
    import os

    data = tmp_path / "train.tsv"
    if kind == "fifo":
        os.mkfifo(data)
    elif kind == "symlink loop":
        os.symlink(tmp_path / "other.tsv", data)
        os.symlink(data, tmp_path / "other.tsv")
    else:
        os.symlink(tmp_path / "gone.tsv", data)
    expected = {"fifo": "not a regular file (a folder, a FIFO or a device)",
                "symlink loop": "a symbolic link that leads nowhere (its target is missing, or the links loop)",
                "dangling symlink": "a symbolic link that leads nowhere"}[kind]
    result = run("dump-teacher", "--task", "sst2", "--data", tmp_path, "--teacher", tiny_teacher,
                 "--out", tmp_path / "c")
    assert_refused(result, f"{data}: {expected}")
