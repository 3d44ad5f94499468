"""Masked-LM augmentation: batched masked copies against one forward per word.

    python -m bench.augment_bench --sentences 200 --rounds 3

The masked LM is the packaged MiniLM's encoder under a BERT masked-LM head (the package ships no
head; a fresh one costs the same to run, and only speed is measured here). Both ways produce the
candidates of every one-piece word of the same SST-2 sentences with the same code: the batched
way gives all masked copies of the sentences to one `MaskedLM.candidates` call (length-sorted
batches of --batch-size); the other calls it once per word, as the reference script runs its
model. They alternate for --rounds; reports sentences/s, the ratio, and how many candidate lists
differ (padding changes float rounding, which can swap near-tied words at the K-th place).
"""

import platform
import statistics
import tempfile
import time
from pathlib import Path

import click
import torch
from transformers import BertForMaskedLM

from bench.common import data_option, save_result
from cache.data.checkpoints import default_teacher_path, load_tokenizer, quiet_transformers
from cache.data.readers import load_examples
from cache.runtime.device import resolve_device
from cache.teacher.augment import WORD, Sources, candidate_slots
from cache.teacher.candidates import STOP_WORDS, MaskedLM, MaskedWord


def one_forward_per_word(texts: list[str], masked_lm: MaskedLM) -> list[list[str]]:
    found = []
    for text in texts:
        segments = tuple(WORD.split(text))
        for index in range(1, len(segments), 2):
            word = segments[index]
            if word.lower() not in STOP_WORDS and masked_lm.vocabulary.piece_of(word) is not None:
                found += masked_lm.candidates([MaskedWord(segments, index)])
    return found


def batched(texts: list[str], masked_lm: MaskedLM) -> list[list[str]]:
    sources = Sources(masked_lm.tokenizer, masked_lm, None, None)
    slots = candidate_slots(texts, sources)
    return [candidates for segments, text_slots in slots for index, candidates in text_slots
            if masked_lm.vocabulary.piece_of(segments[index]) is not None]


@click.command()
@data_option
@click.option("--sentences", type=int, default=200)
@click.option("--rounds", type=int, default=3)
@click.option("--batch-size", type=int, default=128)
@click.option("--device", default="cpu")
def main(data: Path, sentences: int, rounds: int, batch_size: int, device: str) -> None:
    quiet_transformers()
    texts = load_examples("sst2", data, "train", limit=sentences).texts
    with tempfile.TemporaryDirectory() as folder:
        teacher = default_teacher_path()
        torch.manual_seed(0)
        BertForMaskedLM.from_pretrained(teacher).save_pretrained(folder)  # the encoder, a fresh LM head
        load_tokenizer(teacher, "--teacher").save_pretrained(folder)
        masked_lm = MaskedLM(folder, 15, batch_size, resolve_device(device))
    rates: dict[str, list[float]] = {"batched": [], "one forward per word": []}
    outputs = {}
    for _ in range(rounds):
        for name, fn in (("batched", batched), ("one forward per word", one_forward_per_word)):
            started = time.perf_counter()
            outputs[name] = fn(texts, masked_lm)
            rates[name].append(len(texts) / (time.perf_counter() - started))
    words = len(outputs["batched"])
    differ = sum(a != b for a, b in zip(outputs["batched"], outputs["one forward per word"], strict=True))
    median = {name: statistics.median(r) for name, r in rates.items()}
    result = {"sentences": len(texts), "masked_words": words, "rounds": rounds, "batch_size": batch_size,
              "device": device, "machine": platform.processor() or platform.machine(),
              "threads": torch.get_num_threads(), "sentences_per_s": median,
              "speedup": median["batched"] / median["one forward per word"], "lists_differing": differ}
    for name, rate in median.items():
        print(f"{name:22s} {rate:8.1f} sentences/s")
    print(f"batched / one per word: {result['speedup']:.2f}x over {words} masked words; "
          f"{differ} candidate lists differ")
    save_result("augment", result)


if __name__ == "__main__":
    main()
