"""The ``transformers`` server backend's hook and its one-sentence refusals (serving itself is
tested end to end through ``forge serve`` in tests/test_serve.py)."""

from __future__ import annotations

from pathlib import Path

import forgemind_hf
import pytest
from forgemind_hookspecs import ForgeError, StageContext, collect_backends, make_plugin_manager


def test_hook_forgemind_register_servers_transformers() -> None:
    servers = collect_backends(make_plugin_manager([forgemind_hf]), "servers")
    assert servers["transformers"].cls is forgemind_hf.TransformersServer
    options = servers["transformers"].options({"api_key": "k" * 8, "alias": "m"})
    assert (options.host, options.api_key, options.alias, options.port) == ("127.0.0.1", "k" * 8, "m", None)


def test_a_model_that_is_no_folder_is_one_sentence(tmp_path: Path) -> None:
    server = forgemind_hf.TransformersServer()
    with pytest.raises(ForgeError, match="serves a checkpoint folder"):
        server.start(str(tmp_path / "model.gguf"), StageContext(work_dir=tmp_path))
    server.stop()  # safe after a failed start


def test_a_folder_without_weights_fails_to_start_with_its_log(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    server = forgemind_hf.TransformersServer(forgemind_hf.TransformersServer.Options(startup_timeout_s=120))
    with pytest.raises(ForgeError, match=r"exited with code 1 while starting: .*\(log: "):
        server.start(str(empty), StageContext(work_dir=tmp_path / "work"))
    server.stop()
    assert (tmp_path / "work" / "server.log").is_file()
