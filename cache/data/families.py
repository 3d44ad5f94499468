"""The encoder families a teacher (and so its students) may be, and what differs between them, one
small adapter each.

BERT, RoBERTa (and XLM-R, its multilingual twin), ELECTRA and DistilBERT are the same encoder as far
as TinyBERT's targets go: post-LN layers whose attention goes through transformers' attention
interface (so `cache.runtime.attention` captures scores, probabilities or queries and keys alike),
hidden states each layer hands on, an embedding output that is LayerNorm(word + position (+ type)).
What differs is small and lives here: whether the forward takes token types (DistilBERT's does not;
RoBERTa has one type), where positions start (RoBERTa counts from its padding index + 1), how many
positions a sequence may use, what its config calls a shape's sizes, and where its layers are.

ModernBERT goes through the same interface, with three differences its adapter states. Its queries
and keys reach the attention function after the rotary embedding, so what is captured is what it
multiplies. Its local layers attend within a window (|i - j| <= the config's `sliding_window`):
`windows` gives each layer's, the manifest records them, and decoding and the losses leave the
cells outside a window out. Its layers are pre-norm: a hidden state is the residual stream a layer
hands on, except the last, which is the final norm's output (transformers' own `hidden_states`,
and what a ModernBERT student's layers produce alike).

DeBERTa (v2 and v3) computes its own disentangled attention: its scores are QK^T plus
content-to-position and position-to-content terms over relative distances, so no queries and keys
give them (`own_attention`: maps only, captured at its softmax by `cache.runtime.attention`). Its
embedding output has no absolute positions in v3 (`position_biased_input`), and is zero on padding.

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
    size_names: tuple[str, str, str, str] = ("num_hidden_layers", "hidden_size", "intermediate_size",
                                             "num_attention_heads")
    """Its config's names for the layers, the width, the feed-forward width and the heads."""
    layers: str = "encoder.layer"
    """Where its encoder keeps its layers."""
    shared_parts: tuple[str, ...] = ("embeddings",)
    """The encoder's parts outside its layers that `init-student` copies whole."""
    mlm_head: tuple[str, ...] = ("cls",)
    """The modules of its masked LM's head, applied in turn to the hidden states at masked
    positions (empty: the head needs more, and the whole model's logits are taken)."""
    own_attention: bool = False
    """Whether its layers compute attention themselves rather than through transformers' attention
    interface (DeBERTa): their scores are taken at the softmax, and only maps hold them."""
    carried: tuple[str, ...] = ()
    """Config keys a student keeps from its teacher beyond the vocabulary and positions: what makes
    a layer of this family compute as the teacher's do (norms, biases, rotary bases, windows)."""

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

    def encoder_options(self) -> dict:
        """Keyword arguments of loading its bare encoder: without the pooler no target uses."""
        return {"add_pooling_layer": False} if self.pooler else {}

    def inputs(self, input_ids, token_type_ids, attention_mask) -> dict:
        """The keyword arguments of one forward pass."""
        types = {"token_type_ids": token_type_ids} if self.token_types else {}
        return {"input_ids": input_ids, "attention_mask": attention_mask} | types

    def student_config(self, teacher: dict, layers: int, hidden: int, ffn: int, heads: int) -> dict:
        """A config (as keyword arguments of the family's config class) of a student of this shape
        on the teacher's vocabulary, positions and special tokens."""
        sizes = dict(zip(self.size_names, (layers, hidden, ffn, heads), strict=True))
        shared = {key: teacher[key] for key in ("bos_token_id", "eos_token_id") if key in teacher}
        types = {"type_vocab_size": teacher.get("type_vocab_size", 2)} if self.token_types else {}
        narrow = {"embedding_size": hidden} if "embedding_size" in teacher else {}  # no projection: exact tables
        carried = {key: teacher[key] for key in self.carried if key in teacher}
        if "layer_types" in teacher:  # every n-th layer global, from the first, as in the teacher
            carried["global_attn_every_n_layers"] = global_period(teacher["layer_types"])
        return {"vocab_size": teacher["vocab_size"], **types,
                "max_position_embeddings": teacher.get("max_position_embeddings", 512),
                "pad_token_id": teacher.get("pad_token_id", 0), **sizes, **shared, **narrow, **carried}


FULL_ATTENTION = "full_attention"
"""What `layer_types` calls a global layer (any other type attends within a window)."""


def global_period(layer_types: list[str]) -> int:
    """How many layers apart a model's global layers are (all its layers when it has one)."""
    starts = [i for i, kind in enumerate(layer_types) if kind == FULL_ATTENTION]
    return starts[1] - starts[0] if len(starts) > 1 else len(layer_types)


def attention_windows(config) -> tuple[int | None, ...]:
    """For each layer, the farthest key a query attends to (|i - j| <= w), None where it attends to
    every key; empty for a model without local layers."""
    kinds = getattr(config, "layer_types", None) or ()
    return tuple(None if kind == FULL_ATTENTION else config.sliding_window for kind in kinds) \
        if any(kind != FULL_ATTENTION for kind in kinds) else ()


FAMILIES = (
    Family("bert", ("bert",)),
    Family("roberta", ("roberta", "xlm-roberta"), offset_positions=True, mlm_head=("lm_head",)),
    Family("electra", ("electra",), pooler=False, shared_parts=("embeddings", "embeddings_project"),
           mlm_head=("generator_predictions", "generator_lm_head")),
    Family("distilbert", ("distilbert",), token_types=False, pooler=False,
           size_names=("n_layers", "dim", "hidden_dim", "n_heads"), layers="transformer.layer",
           mlm_head=("vocab_transform", "activation", "vocab_layer_norm", "vocab_projector")),
    Family("modernbert", ("modernbert",), token_types=False, pooler=False, layers="layers",
           shared_parts=("embeddings", "final_norm"), mlm_head=("head", "decoder"),
           carried=("local_attention", "rope_parameters", "norm_eps", "norm_bias", "attention_bias", "mlp_bias",
                    "hidden_activation", "classifier_pooling", "classifier_activation", "classifier_bias",
                    "cls_token_id", "sep_token_id")),
    Family("deberta", ("deberta-v2",), pooler=False, own_attention=True, mlm_head=(),
           shared_parts=("embeddings", "encoder.rel_embeddings", "encoder.LayerNorm", "encoder.conv"),
           carried=("relative_attention", "max_relative_positions", "position_buckets", "pos_att_type",
                    "position_biased_input", "norm_rel_ebd", "share_att_key", "layer_norm_eps", "hidden_act",
                    "conv_kernel_size", "conv_groups", "conv_act")),
)


def family_of(config, option: str) -> Family:
    """The family of a checkpoint's config, or a one-line refusal naming those that work."""
    for family in FAMILIES:
        if config.model_type in family.model_types:
            return family
    known = ", ".join(t for family in FAMILIES for t in family.model_types)
    raise UserError(f"{option}: a {config.model_type!r} model is not an encoder this tool distils "
                    f"(it takes {known})")


def family_named(name: str) -> Family:
    """The family a manifest records by name."""
    return next(family for family in FAMILIES if family.name == name)


def forward_inputs(model, input_ids, token_type_ids, attention_mask) -> dict:
    """The keyword arguments of a forward pass of `model`, whatever its family."""
    return family_of(model.config, "model").inputs(input_ids, token_type_ids, attention_mask)
