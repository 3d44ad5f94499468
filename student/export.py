"""A student as people serve it: its graph in ONNX (int8 too) for ONNX Runtime, or a
sentence-transformers embedder whose vectors live in the teacher's space.

Every export is built in a staging folder beside --out, checked against the PyTorch model it came
from on real sentences, and only then put in place: a failed export leaves nothing behind, and an
earlier export in --out is replaced whole.
"""

import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from cache.data.checkpoints import load_config, load_tokenizer
from cache.runtime.paths import model_folder
from cache.runtime.records import write_record
from student.config import EXPORT_RECORD, ExportConfig
from student.embedder import export_embedder
from student.onnx_graph import CHECK_SENTENCES, Check, export_onnx


@dataclass(frozen=True)
class ExportReport:
    out: Path
    checks: tuple[Check, ...]
    notes: tuple[str, ...] = ()


def export_model(config: ExportConfig, command: str) -> ExportReport:
    """Write the export `config` asks for into its --out (replacing an earlier export there)."""
    source = model_folder(config.model, "--model")
    staging = config.out.with_name(f".{config.out.name}.export-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        notes: list[str] = []
        if config.format == "onnx":
            checks = export_onnx(source, staging, config.quantize)
            tokenizer = load_tokenizer(source, "--model")
            load_config(source, "--model").save_pretrained(staging)
            tokenizer.save_pretrained(staging)
        else:
            checks, notes = export_embedder(source, staging, config)
        write_record(staging / EXPORT_RECORD, config, command, source_resolved=str(source),
                     checks=[asdict(check) for check in checks], notes=notes)
        _put_in_place(staging, config.out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ExportReport(config.out, tuple(checks), tuple(notes))


def _put_in_place(staging: Path, out: Path) -> None:
    """Replace `out` (empty, absent, or an earlier export) by the staged export."""
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
        os.replace(staging, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, out)


def format_report(report: ExportReport) -> str:
    lines = [f"  {check.graph}: max |difference| from PyTorch {check.max_difference:.2e}, {check.measure} "
             f"{check.agreement:.4f}" for check in report.checks]
    return "\n".join([f"{report.out}: exported, checked on {len(CHECK_SENTENCES)} sentences", *lines,
                      *(f"  note: {note}" for note in report.notes)])
