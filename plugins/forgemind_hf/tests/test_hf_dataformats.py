"""Every data format round-trips, and every bad row is reported with its line and field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from forgemind_hookspecs.dataformats import detect_format, read_examples, validate_file
from forgemind_hookspecs.errors import DataError


def test_prompt_completion_round_trip(tmp_path: Path) -> None:
    rows = [{"prompt": "a", "completion": " b", "category": "x"}, {"prompt": "", "completion": "c"}]
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    examples = list(read_examples(path))
    assert [(e.prompt, e.completion, e.category) for e in examples] == [("a", " b", "x"), ("", "c", None)]
    assert detect_format(path) == "prompt_completion"
    assert validate_file(path) == []


def test_chat_round_trip(tmp_path: Path) -> None:
    msgs = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}, {"role": "assistant", "content": "a"}]
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps({"messages": msgs, "category": "k"}) + "\n")
    (example,) = read_examples(path)
    assert [(m.role, m.content) for m in example.messages] == [(m["role"], m["content"]) for m in msgs]
    assert example.category == "k" and detect_format(path) == "chat"


def test_csv_with_column_mapping(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text('question,answer,kind\n"multi\nline",yes,q\nplain,no,\n')
    examples = list(read_examples(path, columns={"prompt": "question", "completion": "answer", "category": "kind"}))
    assert [(e.prompt, e.completion, e.category) for e in examples] == [("multi\nline", "yes", "q"), ("plain", "no", None)]


def test_csv_bad_rows_keep_physical_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text('q,a\n"multi\nline",ok\nfine,\nx,y,z\n')
    errors = validate_file(path, columns={"prompt": "q", "completion": "a"})
    assert [(e.line, e.field) for e in errors] == [(4, "a"), (5, None)]
    missing = validate_file(path)  # default mapping: no 'prompt' column
    assert len(missing) == 1 and missing[0].line == 1 and missing[0].field == "prompt"


def test_text_txt_and_jsonl(tmp_path: Path) -> None:
    txt = tmp_path / "c.txt"
    txt.write_text("hello world\n")
    jsonl = tmp_path / "t.jsonl"
    jsonl.write_text(json.dumps({"text": "one"}) + "\n" + json.dumps({"text": "two"}) + "\n")
    assert [e.completion for e in read_examples(txt)] == ["hello world\n"]
    assert [e.completion for e in read_examples(jsonl)] == ["one", "two"]
    assert detect_format(jsonl) == "text"


def test_every_bad_row_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    lines = [
        json.dumps({"prompt": "ok", "completion": "fine"}),
        "{not json",
        json.dumps({"prompt": "p"}),
        json.dumps({"prompt": 3, "completion": "c"}),
        json.dumps([1, 2]),
        json.dumps({"prompt": "p", "completion": "   "}),
        json.dumps({"prompt": "p", "completion": "c", "category": 5}),
    ]
    path.write_text("\n".join(lines) + "\n")
    errors = validate_file(path, format="prompt_completion")
    assert [(e.line, e.field) for e in errors] == [
        (2, None), (3, "completion"), (4, "prompt"), (5, None), (6, "completion"), (7, "category")
    ]
    assert all(e.file == str(path) for e in errors)
    with pytest.raises(DataError) as info:
        list(read_examples(path, format="prompt_completion"))
    assert info.value.line == 2 and str(info.value).startswith(f"{path}:2: ")


def test_bad_chat_rows(tmp_path: Path) -> None:
    path = tmp_path / "chat.jsonl"
    rows = [
        {"messages": []},
        {"messages": [{"role": "robot", "content": "x"}]},
        {"messages": [{"role": "user", "content": "x"}]},
        {"messages": [{"role": "assistant", "content": 1}]},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    errors = validate_file(path, format="chat")
    assert [(e.line, e.field) for e in errors] == [
        (1, "messages"), (2, "messages[0].role"), (3, "messages[0].role"), (4, "messages[0].content")
    ]


def test_unknown_format_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"foo": 1}) + "\n")
    with pytest.raises(DataError, match="cannot tell the format"):
        list(read_examples(path))
    with pytest.raises(DataError, match="unknown format"):
        list(read_examples(path, format="yaml"))
    assert "does not exist" in str(validate_file(tmp_path / "nope.jsonl")[0])
