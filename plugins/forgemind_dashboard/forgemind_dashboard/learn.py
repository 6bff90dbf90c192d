"""Learn mode: what each stage does, "did you know?" tips, and short definitions of the terms on
screen (shown as tooltips: hover a dotted word)."""

from __future__ import annotations

import html

__all__ = ["EXPLAINERS", "GLOSSARY", "TIPS", "explainer_html", "term"]

GLOSSARY: dict[str, str] = {
    "epochs": "How many times training walks through the whole dataset. Too few: the model has not learnt "
              "the task yet; too many: it memorises the examples (overfitting).",
    "batch size": "How many examples the model sees before each update of its weights. Larger batches give "
                  "smoother updates and need more memory.",
    "learning rate": "How big a step each update takes. Too high and training diverges (the loss jumps "
                     "up); too low and it barely moves.",
    "loss": "How wrong the model's predictions are on the training text (lower is better). A loss that "
            "stops falling means more of the same training will not help.",
    "overfitting": "The model fits its training examples but not new ones: training loss falls while "
                   "scores on held-out tests stall or drop.",
    "temperature": "Randomness when generating text: 0 always picks the likeliest next token (greedy); "
                   "higher values sample more freely and vary more.",
    "LoRA rank": "LoRA trains two small matrices per layer instead of all weights; the rank is their inner "
                 "size. Higher rank: more capacity, more memory.",
    "LoRA": "Low-Rank Adaptation: freeze the base model and train small add-on matrices. Cheap to train "
            "and to store.",
    "QLoRA": "LoRA on a base loaded in 4-bit precision: fine-tunes large models on one GPU (needs CUDA).",
    "full fine-tuning": "Every weight of the model is trained: the most capacity, the most memory.",
    "preset": "A ready-made model size (layers, width, vocabulary) and training length for pre-training "
              "from scratch.",
    "checkpoint": "A saved state of a model (its weights and how it was made) that can be evaluated, "
                  "compared, chatted with or exported.",
    "tokens": "The pieces of text a model reads and writes (words or parts of words). Cost and time grow "
              "with the number of tokens.",
    "canary": "A small, quick test suite run first: if the model fails it, the expensive tests are skipped.",
    "adversarial": "Tests written to trip the model up (same task, harder or misleading wording).",
    "diversity": "How varied the outputs are (distinct-1 / distinct-2: the share of distinct words and "
                 "word pairs).",
    "style match": "How closely the outputs follow the expected answers' shape (format, length).",
    "lineage": "The chain from a model back to its dataset, the examples in it and who made them.",
    "promotion": "Marking a checkpoint as the new version of the 'stable' channel, once it met the goal.",
}

EXPLAINERS: dict[str, str] = {
    "full_training": "Pre-training from scratch builds a small language model that knows nothing yet: a "
                     "tokenizer is learnt from your corpus, then the model learns to predict the next "
                     "{tokens}. Watch the {loss} fall. The result is a base {checkpoint} you can fine-tune.",
    "fine_tuning": "Fine-tuning teaches an existing model a task from examples (prompt -> completion, or "
                   "chat). Check the data first, look at the estimate, then pick {full fine-tuning}, "
                   "{LoRA} or {QLoRA} and set {epochs}, {batch size} and {learning rate}.",
    "loop": "The autonomous loop plans data, generates and filters it, trains, tests in tiers "
            "({canary}, full, {adversarial}) and decides: promote, try again with a better plan, or stop.",
    "evaluation": "Evaluation runs the same prompts through several checkpoints and puts the answers side "
                  "by side; the first checkpoint is the baseline, and a case it passed but a later one "
                  "fails is a regression. Metrics: accuracy, {diversity}, {style match}.",
    "runs": "Every run is recorded: its plans, data, checkpoints, scores and decisions. The {lineage} of "
            "a model traces it back to the examples it learnt from. Forking starts a new branch of a run "
            "from any iteration with changed settings.",
    "review": "The Warden holds items for a person to approve, reject or edit: data it was unsure about "
              "and {promotion}s that need a human's approval.",
    "export": "Export packs a checkpoint into a bundle another tool can load, with metadata (author, "
              "licence, version, tags).",
    "playground": "Chat with a checkpoint and another one side by side. {temperature} 0 is deterministic.",
}

TIPS: list[str] = [
    "Did you know? A loss that falls on training data while test scores stall is the classic sign of overfitting.",
    "Did you know? LoRA often needs a higher learning rate than full fine-tuning, because it trains far fewer weights.",
    "Did you know? The estimate times a few real training steps on this machine before it predicts the whole job.",
    "Did you know? Every model ForgeMind promotes can be traced to the exact examples it learnt from.",
    "Did you know? Temperature 0 gives the same answer every time: good for testing, dull for chatting.",
]


def term(word: str) -> str:
    """``word`` as HTML with its definition as a tooltip (an ``<abbr>``)."""
    definition = GLOSSARY.get(word) or GLOSSARY.get(word.lower(), "")
    return (f'<abbr class="fm-term" title="{html.escape(definition, quote=True)}">{html.escape(word)}</abbr>'
            if definition else html.escape(word))


def explainer_html(key: str) -> str:
    """The explainer of a stage with its terms as tooltips."""
    text = html.escape(EXPLAINERS[key])
    for word in sorted(GLOSSARY, key=len, reverse=True):
        text = text.replace("{" + html.escape(word) + "}", term(word))
    return f'<div class="fm-explainer">{text}</div>'
