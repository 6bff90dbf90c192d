"""The ``transformers`` server process: a checkpoint folder behind a small OpenAI-compatible API.

``python -m forgemind_hf.serve_http --model FOLDER --alias NAME --host H --port P [--bf16 JSON]``,
started by :class:`forgemind_hf.server.TransformersServer`. Text comes from the hf runner
(:func:`forgemind_hf.runner.generate`), so it is the runner's: ``[BOS] prompt`` for a completion,
the chat template (BOS first unless it renders one) for a chat completion, text up to EOS. One
request at a time; no streaming, one choice; ``stop`` strings cut the text. It ends when its
parent does (stdin end-of-file; ``PR_SET_PDEATHSIG`` on Linux).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import signal
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

from attrs import evolve
from forgemind_hookspecs import Checkpoint, from_dict

from .server import API_KEY_ENV, PARENT_ENV


def _guard() -> None:
    parent = os.environ.pop(PARENT_ENV, "")
    if parent and sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
        if str(os.getppid()) != parent:
            os._exit(1)

    def watch() -> None:
        try:
            while os.read(0, 4096):
                pass
        except OSError:
            pass
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _checkpoint(folder: Path) -> Checkpoint:
    for name in ("manifest.json", "checkpoint.json"):
        path = folder / name
        if path.is_file():
            data = json.loads(path.read_text())
            if name == "manifest.json" and isinstance(data, dict):
                data = data.get("checkpoint", data)
            checkpoint = from_dict(Checkpoint, data)
            if not Path(checkpoint.path).exists():
                checkpoint = evolve(checkpoint, path=str(folder))
            return checkpoint
    kind = "lora" if (folder / "adapter_config.json").is_file() else "full"
    return Checkpoint(id=folder.name, path=str(folder), base_model=str(folder), method=kind, kind=kind)


class _Model:
    def __init__(self, folder: Path, alias: str, bf16: Any) -> None:
        from .options import RunnerOptions
        from .runner import load

        self.checkpoint = _checkpoint(folder)
        self.alias = alias
        self.raw = RunnerOptions(chat_format="raw", bf16=bf16)
        _, self.tokenizer, _, _ = load(self.checkpoint, self.raw)  # loaded once, before /v1/models answers
        self.lock = threading.Lock()

    def complete(self, prompt: str, max_tokens: int, temperature: float, seed: int) -> str:
        from .runner import generate

        with self.lock:
            return generate(self.checkpoint, [prompt], evolve(self.raw, seed=seed), max_new_tokens=max_tokens,
                            temperature=temperature)[0]

    def chat_text(self, messages: list[dict[str, Any]]) -> str:
        """The conversation as the runner's chat layout renders it, without the BOS the raw
        completion adds again."""
        text = str(self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False))
        bos = getattr(self.tokenizer, "bos_token", None)
        return text[len(bos):] if bos and text.startswith(bos) else text

    def count(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False))


def _cut(text: str, stop: Any) -> tuple[str, bool]:
    stops = [stop] if isinstance(stop, str) else [s for s in (stop or []) if isinstance(s, str) and s]
    cuts = [text.find(s) for s in stops if s in text]
    return (text[: min(cuts)], True) if cuts else (text, False)


def _handler(model: _Model, api_key: str | None) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            sys.stderr.write(f"{self.address_string()} {format % args}\n")

        def _send(self, code: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _error(self, code: int, message: str, kind: str = "invalid_request_error") -> None:
            self._send(code, {"error": {"message": message, "type": kind, "code": code}})

        def _authorised(self) -> bool:
            if api_key and self.headers.get("Authorization", "") != f"Bearer {api_key}":
                self._error(401, "invalid API key", "authentication_error")
                return False
            return True

        def do_GET(self) -> None:
            if not self._authorised():
                return
            if self.path.rstrip("/") == "/v1/models":
                self._send(200, {"object": "list", "data": [{"id": model.alias, "object": "model", "created": 0,
                                                             "owned_by": "forgemind"}]})
            else:
                self._error(404, f"no route {self.path}")

        def do_POST(self) -> None:
            if not self._authorised():
                return
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
            except ValueError:
                self._error(400, "the body is not JSON")
                return
            route = self.path.rstrip("/")
            if route not in ("/v1/completions", "/v1/chat/completions"):
                self._error(404, f"no route {self.path}")
                return
            if body.get("stream"):
                self._error(400, "streaming is not supported by the transformers server")
                return
            max_tokens = int(body.get("max_tokens") or body.get("max_completion_tokens") or 16)
            temperature = float(body.get("temperature") or 0.0)
            seed = int(body.get("seed") or 0)
            if route == "/v1/completions":
                prompt = body.get("prompt", "")
                prompt = prompt[0] if isinstance(prompt, list) and prompt else prompt
                if not isinstance(prompt, str):
                    self._error(400, "prompt must be a string")
                    return
            else:
                messages = body.get("messages")
                if not isinstance(messages, list) or not messages:
                    self._error(400, "messages must be a non-empty list")
                    return
                prompt = model.chat_text([{"role": m.get("role"), "content": m.get("content") or ""}
                                          for m in messages])
            text, stopped = _cut(model.complete(prompt, max_tokens, temperature, seed), body.get("stop"))
            used = model.count(text)
            finish = "stop" if stopped or used < max_tokens else "length"
            usage = {"prompt_tokens": model.count(prompt), "completion_tokens": used}
            usage["total_tokens"] = usage["prompt_tokens"] + used
            common = {"id": f"fm-{uuid.uuid4().hex[:16]}", "created": int(time.time()), "model": model.alias,
                      "usage": usage}
            if route == "/v1/completions":
                self._send(200, {**common, "object": "text_completion",
                                 "choices": [{"index": 0, "text": text, "finish_reason": finish, "logprobs": None}]})
            else:
                self._send(200, {**common, "object": "chat.completion",
                                 "choices": [{"index": 0, "finish_reason": finish,
                                              "message": {"role": "assistant", "content": text}}]})

    return Handler


def main() -> None:
    _guard()
    parser = argparse.ArgumentParser(prog="forgemind_hf.serve_http")
    parser.add_argument("--model", required=True)
    parser.add_argument("--alias", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--bf16", default='"auto"')
    args = parser.parse_args()
    model = _Model(Path(args.model), args.alias, json.loads(args.bf16))
    server = HTTPServer((args.host, args.port), _handler(model, os.environ.pop(API_KEY_ENV, None)))
    sys.stderr.write(f"serving {args.model} as {args.alias} on {args.host}:{args.port}\n")
    sys.stderr.flush()
    server.serve_forever()


if __name__ == "__main__":
    main()
