"""The one text layout shared by training and inference.

A prompt/completion example is trained as ``[BOS] prompt completion [EOS]`` with the loss on
``completion [EOS]`` only; the runner feeds ``[BOS] prompt`` and stops at EOS. Prompt and
completion are tokenised *separately* and concatenated, exactly as generation sees them (BPE
would otherwise merge across the boundary and training would learn a split inference never
produces). A chat example is rendered through the tokenizer's chat template: every message but
the last becomes the prompt (with the generation prompt), the last (assistant) message the
completion.

No heavy imports: works on any object with the tokenizer's ``encode`` / ``apply_chat_template``.
"""

from __future__ import annotations

from typing import Any

from forgemind_hookspecs.errors import DataError
from forgemind_hookspecs.records import Example

__all__ = ["encode_example", "prompt_ids", "render"]


def render(example: Example, tokenizer: Any) -> tuple[str, str]:
    """``(prompt, completion)`` text of an example (chat examples through the chat template)."""
    if not example.messages:
        return example.prompt, example.completion
    if not getattr(tokenizer, "chat_template", None):
        raise DataError(
            "is a chat example but the base model's tokenizer has no chat template", field="messages"
        )
    history = [{"role": m.role, "content": m.content} for m in example.messages[:-1]]
    prompt = tokenizer.apply_chat_template(history, add_generation_prompt=True, tokenize=False) if history else ""
    return prompt, example.messages[-1].content


def prompt_ids(prompt: str, tokenizer: Any) -> list[int]:
    """``[BOS] + tokens(prompt)``: what generation starts from."""
    ids = list(tokenizer.encode(prompt, add_special_tokens=False)) if prompt else []
    bos = getattr(tokenizer, "bos_token_id", None)
    return ([bos] if bos is not None else []) + ids


def encode_example(example: Example, tokenizer: Any, max_length: int) -> tuple[list[int], list[int], bool]:
    """``(input_ids, labels, truncated)`` for supervised training; prompt labels are -100.

    Too long: the prompt loses tokens from its *start* (the end of a prompt is what the answer
    depends on most); a completion longer than the whole budget is cut at its end.
    """
    prompt, completion = render(example, tokenizer)
    head = prompt_ids(prompt, tokenizer)
    eos = tokenizer.eos_token_id
    tail = list(tokenizer.encode(completion, add_special_tokens=False)) + ([eos] if eos is not None else [])
    truncated = False
    if len(head) + len(tail) > max_length:
        truncated = True
        room = max(max_length - len(tail), 1)
        head = head[:1] + head[len(head) - room + 1 :] if room > 1 else head[:1]
        tail = tail[: max_length - len(head)]
    ids = head + tail
    labels = [-100] * len(head) + tail
    return ids, labels, truncated
