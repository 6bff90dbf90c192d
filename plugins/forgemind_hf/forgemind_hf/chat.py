"""The ``chat_template`` training option and assistant-only loss over every turn of a chat.

``chat_template`` (a :class:`~forgemind_hf.options.TrainerOptions` field) picks the template chat
examples are rendered with:

- ``base`` (the default): the base tokenizer's own template;
- ``chatml``: ChatML (``<|im_start|>role\\ncontent<|im_end|>\\n``, the layout of Qwen, SmolLM2 and
  many others), whatever the base shipped;
- a path to a Jinja file (``.jinja``/``.j2``/any text file): that template, checked to compile and to
  render a sample conversation before any training.

The chosen template is set on the tokenizer before the examples are encoded and is saved with the
checkpoint's tokenizer, so the runner, ``forge serve`` and an export render prompts the same way.

With ``chat_loss: assistant`` (the default), a multi-turn chat is learnt on *every* assistant turn
(its content and the template's end-of-turn text), and on nothing the user or system wrote;
``last`` learns only the final answer. The segments are rendered by the template itself: the text
before each assistant turn is ``apply_chat_template(turns[:i], add_generation_prompt=True)`` and
the turn's own text what ``apply_chat_template(turns[:i+1])`` adds after it, so the tokens trained
are exactly the ones the template produces (a template that does not render a conversation as a
prefix of its continuation is refused with one sentence).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from forgemind_hookspecs.errors import ConfigError, DataError
from forgemind_hookspecs.records import Example

__all__ = ["CHATML", "CHAT_LOSSES", "apply_template", "chat_segments", "template_source"]

#: ChatML, as the Hub's ChatML models ship it (no default system message).
CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
#: What a multi-turn chat is learnt on.
CHAT_LOSSES: tuple[str, ...] = ("assistant", "last")
_MAX_TEMPLATE_BYTES = 1 << 20
_SAMPLE = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}, {"role": "assistant", "content": "a"}]


def template_source(option: str) -> str | None:
    """The Jinja text ``option`` names (None for ``base``: the tokenizer's own).

    :raises ConfigError: a file that does not exist, is too large, is not UTF-8 or does not compile
        (naming the file and the template's line).
    """
    if option in ("", "base"):
        return None
    if option == "chatml":
        return CHATML
    path = Path(option).expanduser()
    if not path.is_file():
        raise ConfigError(f"is neither base, chatml nor an existing Jinja file: {option!r}",
                          field="train.chat_template")
    raw = path.read_bytes()
    if len(raw) > _MAX_TEMPLATE_BYTES:
        raise ConfigError("the chat template file is larger than 1 MiB", file=str(path), field="train.chat_template")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError("the chat template file is not UTF-8", file=str(path), field="train.chat_template") from None
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    try:
        ImmutableSandboxedEnvironment().from_string(text)
    except jinja2.TemplateSyntaxError as error:
        raise ConfigError(f"is not a valid Jinja template ({error.message})", file=str(path), line=error.lineno,
                          field="train.chat_template") from None
    return text


def apply_template(tokenizer: Any, option: str) -> None:
    """Set the template ``option`` names on ``tokenizer`` (nothing for ``base``), checked to render."""
    text = template_source(option)
    if text is None:
        return
    tokenizer.chat_template = text
    try:
        rendered = tokenizer.apply_chat_template(_SAMPLE, add_generation_prompt=False, tokenize=False)
    except Exception as error:  # a template that compiles but fails on a plain conversation
        raise ConfigError(f"chat template {option!r} cannot render a system/user/assistant conversation: "
                          f"{str(error).splitlines()[0] if str(error) else type(error).__name__}",
                          field="train.chat_template") from None
    if not isinstance(rendered, str) or "u" not in rendered:
        raise ConfigError(f"chat template {option!r} does not render the messages' content",
                          field="train.chat_template")


def chat_segments(example: Example, tokenizer: Any, system: str = "") -> list[tuple[str, bool]]:
    """``[(text, learnt), ...]`` of a chat example: the template's text in order, each assistant
    turn ``learnt``; the last assistant turn is its content alone (the trainer appends EOS, as for
    every example).

    :raises DataError: the template does not render the conversation as a growing prefix.
    """
    turns = [{"role": m.role, "content": m.content} for m in example.messages]
    if system and turns[0]["role"] != "system":
        turns.insert(0, {"role": "system", "content": system})
    segments: list[tuple[str, bool]] = []
    done = ""
    for i, turn in enumerate(turns):
        if turn["role"] != "assistant":
            continue
        before = str(tokenizer.apply_chat_template(turns[:i], add_generation_prompt=True, tokenize=False)) if i else ""
        if not before.startswith(done):
            raise DataError("the chat template does not render this conversation as a prefix of its next turn, "
                            "so earlier assistant turns cannot be learnt; set chat_loss: last", field="messages")
        segments.append((before[len(done):], False))
        if i == len(turns) - 1:
            segments.append((turn["content"], True))
            return segments
        after = str(tokenizer.apply_chat_template(turns[: i + 1], add_generation_prompt=False, tokenize=False))
        if not after.startswith(before) or turn["content"] not in after[len(before):]:
            raise DataError("the chat template does not render this conversation as a prefix of its next turn, "
                            "so earlier assistant turns cannot be learnt; set chat_loss: last", field="messages")
        segments.append((after[len(before):], True))
        done = after
    raise DataError("the last message must be the assistant's answer", field="messages")
