"""The encoder families a teacher may be, and what differs between them, one small adapter each.

BERT, RoBERTa (and XLM-R, its multilingual twin), ELECTRA and DistilBERT are the same encoder as far
as TinyBERT's targets go: post-LN layers whose attention goes through transformers' attention
interface (so `cache.runtime.attention` captures scores, probabilities or queries and keys alike),
hidden states each layer hands on, an embedding output that is LayerNorm(word + position (+ type)).
What differs is small and lives here: which argument names the token types (DistilBERT has none;
RoBERTa has one type), where positions start (RoBERTa counts from its padding index + 1), and how
many positions a sequence may use.

Pure data: nothing here imports torch or transformers.
"""

from dataclasses import dataclass

from cache.runtime.errors import UserError


@dataclass(frozen=True)
class Family:
    """One encoder family, as `model_type` names it in config.json."""

    name: str
    model_types: tuple[str, ...]
    token_types: bool = True
    """Whether its forward takes token_type_ids (more than one type: the second text of a pair)."""
    offset_positions: bool = False
    """Whether positions count from the padding index + 1 (fairseq's convention), not from 0."""
    pooler: bool = True
    """Whether its bare encoder has a pooler that a teacher's targets never use (left out on load)."""

    def position_offset(self, config) -> int:
        """The position of a sequence's first token."""
        return config.pad_token_id + 1 if self.offset_positions else 0

    def max_length(self, config) -> int:
        """The longest sequence its position table holds."""
        return config.max_position_embeddings - self.position_offset(config)

    def segments(self, config) -> bool:
        """Whether its token types tell a pair's two texts apart (else every token is type 0, as
        its tokenizer gives them, and the cache stores them so)."""
        return self.token_types and getattr(config, "type_vocab_size", 1) > 1

    def inputs(self, input_ids, token_type_ids, attention_mask) -> dict:
        """The keyword arguments of one forward pass."""
        types = {"token_type_ids": token_type_ids} if self.token_types else {}
        return {"input_ids": input_ids, "attention_mask": attention_mask} | types


FAMILIES = (
    Family("bert", ("bert",)),
    Family("roberta", ("roberta", "xlm-roberta"), offset_positions=True),
    Family("electra", ("electra",), pooler=False),
    Family("distilbert", ("distilbert",), token_types=False, pooler=False),
)


def family_of(config, option: str) -> Family:
    """The family of a checkpoint's config, or a one-line refusal naming those that work."""
    for family in FAMILIES:
        if config.model_type in family.model_types:
            return family
    known = ", ".join(t for family in FAMILIES for t in family.model_types)
    raise UserError(f"{option}: a {config.model_type!r} model is not an encoder this tool distils "
                    f"(it takes {known})")
