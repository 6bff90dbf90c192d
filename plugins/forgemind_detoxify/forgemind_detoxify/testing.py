"""Tiny Detoxify checkpoints built locally, for tests and benchmarks (no download).

:func:`build_checkpoint` writes, under ``root``, a Hugging Face BERT config and tokenizer
folder and a Detoxify checkpoint (``{"config": ..., "state_dict": ...}``) that Detoxify's own
loader reads offline: ``Detoxify(checkpoint=PATH, huggingface_config_path=FOLDER)``.

With ``words`` the weights are set by hand so that the model really detects them: a listed
word's embedding points along its label's dimension; attention is uniform, so the ``[CLS]``
position sees the mean of the sentence, and layer norms make the signal independent of the
sentence's length; the pooler and classifier map that dimension to a high score for the label.
Every other label (and every clean sentence) scores ``sigmoid(base_logit)``. ``label_logits``
sets a constant logit per label (e.g. 0 -> 0.5 for a grey-band test). With ``random=True``
the weights stay randomly initialised (a realistic size for benchmarks).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["CLASSES", "LABELS", "build_checkpoint"]

#: The classes of Detoxify's ``original`` model, as its checkpoints name them.
CLASSES: tuple[str, ...] = ("toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate")
#: ... and as Detoxify reports them.
LABELS: tuple[str, ...] = ("toxicity", "severe_toxicity", "obscene", "threat", "insult", "identity_attack")

_SPECIAL = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
_FILLER = ("the", "a", "is", "you", "are", "this", "that", "code", "def", "return", "print", "hello",
           "world", "please", "thanks", "good", "nice", "day", "and", "or", "not", "x", "y", "data")


def build_checkpoint(
    root: str | Path,
    *,
    words: Mapping[str, Sequence[str]] | None = None,
    base_logit: float = -6.0,
    label_logits: Mapping[str, float] | None = None,
    random: bool = False,
    hidden: int = 8,
    layers: int = 1,
    heads: int = 1,
    vocab: Sequence[str] = (),
    seed: int = 0,
) -> tuple[Path, Path]:
    """Write a tiny Detoxify checkpoint; return ``(checkpoint file, config folder)``."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    root = Path(root)
    folder = root / "bert-tiny"
    folder.mkdir(parents=True, exist_ok=True)
    words = {k: list(v) for k, v in (words or {}).items()}
    tokens = list(dict.fromkeys([*_SPECIAL, *_FILLER, *vocab, *(w for ws in words.values() for w in ws)]))
    (folder / "vocab.txt").write_text("\n".join(tokens) + "\n", encoding="utf-8")
    hidden = max(hidden, len(LABELS) + 2) if not random else hidden
    config = BertConfig(vocab_size=len(tokens), hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=heads, intermediate_size=hidden * 4 if random else hidden,
                        max_position_embeddings=512, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0, num_labels=len(CLASSES))
    config.save_pretrained(folder)
    BertTokenizer(str(folder / "vocab.txt")).save_pretrained(folder)
    torch.manual_seed(seed)
    model = BertForSequenceClassification(config)
    if not random:
        _engineer(model, tokens, words, base_logit, dict(label_logits or {}))
    checkpoint = root / "detoxify-tiny.ckpt"
    torch.save({
        "config": {
            "arch": {"args": {"model_type": str(folder), "model_name": "BertForSequenceClassification",
                              "tokenizer_name": "BertTokenizer", "num_classes": len(CLASSES)}},
            "dataset": {"args": {"classes": list(CLASSES)}},
        },
        "state_dict": model.state_dict(),
    }, checkpoint)
    return checkpoint, folder


def _engineer(model: object, tokens: list[str], words: Mapping[str, Sequence[str]], base_logit: float,
              label_logits: Mapping[str, float]) -> None:
    import torch

    index = {t: i for i, t in enumerate(tokens)}
    with torch.no_grad():
        for name, param in model.named_parameters():  # type: ignore[attr-defined]
            if "LayerNorm.weight" in name:
                param.fill_(1.0)
            else:
                param.zero_()
        bert = model.bert  # type: ignore[attr-defined]
        for label, ws in words.items():
            dim = LABELS.index(label)
            for w in ws:
                bert.embeddings.word_embeddings.weight[index[w], dim] = 10.0
        eye = torch.eye(bert.config.hidden_size)
        for layer in bert.encoder.layer:
            layer.attention.self.value.weight.copy_(eye)
            layer.attention.output.dense.weight.copy_(eye)
        bert.pooler.dense.weight.copy_(eye)
        classifier = model.classifier  # type: ignore[attr-defined]
        for i, label in enumerate(LABELS):
            classifier.weight[i, i] = 12.0
            classifier.bias[i] = label_logits.get(label, base_logit)
