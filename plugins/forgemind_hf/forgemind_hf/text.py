"""The one text layout shared by training and inference.

A prompt/completion example is trained as ``[BOS] prompt completion [EOS]`` with the loss on
``completion [EOS]`` only; the runner feeds ``[BOS] prompt`` and stops at EOS. Prompt and
completion are tokenised *separately* and concatenated, exactly as generation sees them (BPE
would otherwise merge across the boundary and training would learn a split inference never
produces). A chat example is rendered through the tokenizer's chat template: every message but
the last becomes the prompt (with the generation prompt), the last (assistant) message the
completion.

A prompt/completion example of a *chat* base (an instruction-tuned model whose tokenizer has a
chat template, see :func:`use_chat`) goes through the template too: the prompt becomes the user
message (after an optional system message) with the generation prompt, the completion the
assistant's answer, loss on the answer only. The checkpoint's manifest records that choice
(``chat_format``, ``system_prompt``) and the runner renders prompts the same way. A template
that starts with BOS (SmolLM2's ``<|im_start|>``) gets no second one.

No heavy imports: works on any object with the tokenizer's ``encode`` / ``apply_chat_template``.
"""

from __future__ import annotations

from typing import Any

from forgemind_hookspecs.errors import ConfigError, DataError
from forgemind_hookspecs.records import Example

__all__ = ["CHAT_FORMATS", "chat_prompt", "encode_example", "prompt_ids", "render", "use_chat"]

#: ``auto``: through the chat template where the base is a chat model; ``raw``: never; ``chat``: always.
CHAT_FORMATS: tuple[str, ...] = ("auto", "raw", "chat")


def use_chat(chat_format: str, tokenizer: Any, recorded: str | None, pretrained_here: bool) -> bool:
    """Whether prompt/completion text goes through the chat template.

    ``auto`` follows what the base recorded (a GGUF base records ``chat`` when its tokenizer has a
    template); a base ForgeMind pre-trained from scratch stays raw (its template exists for chat
    examples only, and the quickstart's layout must not change); any other base with a chat
    template (a Hub instruct model) is a chat model.
    """
    if chat_format not in CHAT_FORMATS:
        raise ConfigError(f"unknown chat_format {chat_format!r}; expected one of {', '.join(CHAT_FORMATS)}",
                          field="train.chat_format")
    has_template = bool(getattr(tokenizer, "chat_template", None))
    if chat_format == "raw" or not has_template:
        if chat_format == "chat":
            raise ConfigError("chat_format is chat but the base model's tokenizer has no chat template",
                              field="train.chat_format")
        return False
    if chat_format == "chat":
        return True
    if recorded in ("chat", "raw"):
        return recorded == "chat"
    return not pretrained_here


def chat_prompt(prompt: str, tokenizer: Any, system: str = "") -> str:
    """``prompt`` as the user's turn of a conversation (after ``system``), ready for the answer."""
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    return str(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False))


def render(example: Example, tokenizer: Any, *, chat: bool = False, system: str = "") -> tuple[str, str]:
    """``(prompt, completion)`` text of an example (chat examples, and with ``chat`` prompt/completion
    examples, through the chat template; ``system`` is the system message where the example has none)."""
    if not example.messages:
        if chat:
            return chat_prompt(example.prompt, tokenizer, system), example.completion
        return example.prompt, example.completion
    if not getattr(tokenizer, "chat_template", None):
        raise DataError(
            "is a chat example but the base model's tokenizer has no chat template", field="messages"
        )
    history = [{"role": m.role, "content": m.content} for m in example.messages[:-1]]
    if system and history and history[0]["role"] != "system":
        history.insert(0, {"role": "system", "content": system})
    prompt = tokenizer.apply_chat_template(history, add_generation_prompt=True, tokenize=False) if history else ""
    return prompt, example.messages[-1].content


def prompt_ids(prompt: str, tokenizer: Any, *, templated: bool = False) -> list[int]:
    """``[BOS] + tokens(prompt)``: what generation starts from. A ``templated`` prompt (rendered by
    a chat template) that already starts with BOS gets no second one."""
    ids = list(tokenizer.encode(prompt, add_special_tokens=False)) if prompt else []
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None or (templated and ids[:1] == [bos]):
        return ids
    return [bos, *ids]


def encode_example(example: Example, tokenizer: Any, max_length: int, *, chat: bool = False,
                   system: str = "", chat_loss: str = "last") -> tuple[list[int], list[int], bool]:
    """``(input_ids, labels, truncated)`` for supervised training; prompt labels are -100.

    Too long: the prompt loses tokens from its *start* (the end of a prompt is what the answer
    depends on most); a completion longer than the whole budget is cut at its end. With
    ``chat_loss="assistant"`` a chat with several assistant turns is learnt on every one of them
    (:func:`forgemind_hf.chat.chat_segments`).
    """
    if chat_loss == "assistant" and sum(m.role == "assistant" for m in example.messages) > 1:
        return _encode_turns(example, tokenizer, max_length, system)
    prompt, completion = render(example, tokenizer, chat=chat, system=system)
    head = prompt_ids(prompt, tokenizer, templated=chat or bool(example.messages))
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


def _encode_turns(example: Example, tokenizer: Any, max_length: int, system: str) -> tuple[list[int], list[int], bool]:
    from .chat import chat_segments

    if not getattr(tokenizer, "chat_template", None):
        raise DataError("is a chat example but the base model's tokenizer has no chat template", field="messages")
    segments = chat_segments(example, tokenizer, system)
    ids: list[int] = []
    labels: list[int] = []
    for index, (text, learnt) in enumerate(segments):
        part = prompt_ids(text, tokenizer, templated=True) if index == 0 else (
            list(tokenizer.encode(text, add_special_tokens=False)) if text else [])
        ids += part
        labels += part if learnt else [-100] * len(part)
    eos = tokenizer.eos_token_id
    if eos is not None:
        ids.append(eos)
        labels.append(eos)
    if len(ids) <= max_length:
        return ids, labels, False
    last = len(list(tokenizer.encode(segments[-1][0], add_special_tokens=False))) + (eos is not None)
    if last >= max_length:  # the final answer alone is over budget: as a single turn, cut at its end
        prompt, completion = render(example, tokenizer, chat=True, system=system)
        head = prompt_ids(prompt, tokenizer, templated=True)[:1]
        tail = (list(tokenizer.encode(completion, add_special_tokens=False)) + ([eos] if eos is not None else []))
        tail = tail[: max_length - len(head)]
        return head + tail, [-100] * len(head) + tail, True
    keep = max_length - 1  # the first token (BOS or the template's start) stays, the oldest turns go
    return ids[:1] + ids[len(ids) - keep:], [-100, *labels[len(labels) - keep:]], True
