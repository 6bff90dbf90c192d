"""``forge export CKPT --target hf --push REPO_ID``: the finished bundle goes up with the real
``huggingface_hub`` client, pointed (``HF_ENDPOINT``) at a stand-in of the Hub's upload API
started here on 127.0.0.1: repo creation, README metadata validation, preupload and the NDJSON
commit. The stand-in stores what the client sends, so the test compares the uploaded bytes with
the bundle on disk, and checks the token went only into the Authorization header."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

from forgemind_core import Forge
from forgemind_core.cli.main import build_cli

pytest.importorskip("forgemind_hf")
huggingface_hub = pytest.importorskip("huggingface_hub")

TOKEN = "hf_standin_secret_0123456789"


class StandInHub:
    """The part of the Hub API ``HfApi.create_repo`` and ``upload_folder`` call."""

    def __init__(self, root: Path, *, refuse_create: bool = False) -> None:
        self.root = root
        self.refuse_create = refuse_create
        self.requests: list[tuple[str, str, str | None]] = []  # method, path, Authorization
        self.created: list[dict] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # quiet
                pass

            def _reply(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:  # http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                hub.requests.append(("POST", self.path, self.headers.get("Authorization")))
                path = self.path.split("?")[0]
                if path == "/api/repos/create":
                    if hub.refuse_create:
                        return self._reply(403, {"error": "You don't have the rights to create a model under this namespace"})
                    payload = json.loads(body)
                    hub.created.append(payload)
                    return self._reply(200, {"url": f"{hub.url}/{payload['organization']}/{payload['name']}"})
                if path == "/api/validate-yaml":
                    return self._reply(200, {"errors": [], "warnings": []})
                parts = path.strip("/").split("/")  # api models OWNER NAME preupload|commit main
                if len(parts) == 6 and parts[:2] == ["api", "models"] and parts[4] == "preupload":
                    files = json.loads(body)["files"]
                    return self._reply(200, {"files": [{"path": f["path"], "uploadMode": "regular",
                                                        "shouldIgnore": False} for f in files]})
                if len(parts) == 6 and parts[:2] == ["api", "models"] and parts[4] == "commit":
                    repo = hub.root / parts[2] / parts[3]
                    summary = None
                    for line in body.decode().splitlines():
                        item = json.loads(line)
                        if item["key"] == "header":
                            summary = item["value"]["summary"]
                        elif item["key"] == "file":
                            target = repo / item["value"]["path"]
                            target.parent.mkdir(parents=True, exist_ok=True)
                            assert item["value"]["encoding"] == "base64"
                            target.write_bytes(base64.b64decode(item["value"]["content"]))
                        else:
                            return self._reply(400, {"error": f"unexpected commit entry {item['key']}"})
                    hub.summary = summary
                    oid = hashlib.sha1(body).hexdigest()
                    return self._reply(200, {"commitUrl": f"{hub.url}/{parts[2]}/{parts[3]}/commit/{oid}",
                                             "commitOid": oid, "success": True})
                return self._reply(404, {"error": f"the stand-in has no {path}"})

            def do_GET(self) -> None:
                hub.requests.append(("GET", self.path, self.headers.get("Authorization")))
                self._reply(404, {"error": f"the stand-in has no GET {self.path}"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.summary: str | None = None
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> StandInHub:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A tiny random Llama with a BPE tokenizer trained here, saved as a transformers folder."""
    from forgemind_hf.options import Preset
    from forgemind_hf.pretrain import build_model, train_tokenizer

    folder = tmp_path_factory.mktemp("tiny-model")
    text = "the scarf is crimson warm the pen is cobalt cool " * 50
    tokenizer = train_tokenizer([text], 300)
    model = build_model(Preset("test", 1, 32, 2, 64, 256, 300, 32, 4, 1e-3, 10, 100), tokenizer, seed=0)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture
def online(monkeypatch):
    """huggingface_hub reads HF_HUB_OFFLINE at import (the test suite sets it): lift it for the
    stand-in on 127.0.0.1 only — nothing else is reachable here anyway."""
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_TOKEN", TOKEN)


def test_push_uploads_the_whole_bundle_with_the_token_only_in_the_header(model_dir, tmp_path, forge_home,
                                                                           online, monkeypatch):
    with StandInHub(tmp_path / "hub") as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        cli = build_cli(Forge(home=forge_home, blocked=["openai"]))
        out = tmp_path / "bundle"
        result = CliRunner().invoke(cli, ["export", str(model_dir), "--target", "hf", "--out", str(out),
                                          "--push", "me/tiny-colors", "--private", "--json"])
        assert result.exit_code == 0, result.output
        shown = json.loads(result.stdout)
    pushed = shown["pushed"]
    assert pushed["repo_id"] == "me/tiny-colors" and pushed["commit_url"].startswith(f"{hub.url}/me/tiny-colors/commit/")
    assert hub.created == [{"name": "tiny-colors", "organization": "me", "visibility": "private", "type": "model"}]
    uploaded = sorted(str(p.relative_to(hub.root / "me" / "tiny-colors"))
                      for p in (hub.root / "me" / "tiny-colors").rglob("*") if p.is_file())
    bundle = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert uploaded == bundle == pushed["files"] == shown["files"]
    assert {"README.md", "model.safetensors", "forgemind-export.json", "tokenizer.json"} <= set(bundle)
    for name in bundle:
        assert (hub.root / "me" / "tiny-colors" / name).read_bytes() == (out / name).read_bytes(), name
        assert TOKEN.encode() not in (out / name).read_bytes(), name  # never stored
    assert TOKEN not in result.output
    assert {auth for _, _, auth in hub.requests} == {f"Bearer {TOKEN}"}
    assert [p.split("?")[0] for _, p, _ in hub.requests] == [
        "/api/repos/create", "/api/validate-yaml", "/api/models/me/tiny-colors/preupload/main",
        "/api/models/me/tiny-colors/commit/main"]
    assert hub.summary and "ForgeMind export" in hub.summary


def test_push_refusals_are_one_sentence_and_keep_the_bundle(model_dir, tmp_path, forge_home, online, monkeypatch):
    cli = build_cli(Forge(home=forge_home, blocked=["openai"]))
    runner = CliRunner()
    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)  # no login on this machine either
    no_token = runner.invoke(cli, ["export", str(model_dir), "--target", "hf", "--out", str(tmp_path / "a"),
                                   "--push", "me/x"])
    assert no_token.exit_code == 2 and "Traceback" not in no_token.output
    assert "set HF_TOKEN" in no_token.output and (tmp_path / "a" / "README.md").is_file()
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    with StandInHub(tmp_path / "hub", refuse_create=True) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        refused = runner.invoke(cli, ["export", str(model_dir), "--target", "hf", "--out", str(tmp_path / "b"),
                                      "--push", "someone-else/x"])
    assert refused.exit_code == 2, refused.output
    lines = [line for line in refused.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "the Hub refused the upload to someone-else/x (HTTP 403)" in lines[0]
    assert TOKEN not in refused.output and (tmp_path / "b" / "model.safetensors").is_file()
    gguf = runner.invoke(cli, ["export", str(model_dir), "--target", "gguf", "--out", str(tmp_path / "c"),
                               "--push", "me/x"])
    assert gguf.exit_code == 2 and "cannot push to the Hub; export with --target hf" in gguf.output
    assert not (tmp_path / "c").exists()  # refused before anything was written


def test_push_module_imports_no_hub_client_until_used():
    import subprocess
    import sys

    code = ("import sys, forgemind_hf.export, forgemind_hf.hub, forgemind_core.lorekeeper.exports; "
            "print('huggingface_hub' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "False", done
