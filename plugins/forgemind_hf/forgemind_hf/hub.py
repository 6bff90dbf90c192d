"""``forge export CKPT --target hf --push REPO_ID``: a finished bundle uploaded with ``huggingface_hub``.

The token comes from ``HF_TOKEN`` (or the user's own ``huggingface-cli login``), is handed to
``huggingface_hub`` for the requests and nothing else: it is never written to the bundle, the
export record or a log, and it is scrubbed from any error message. ``HF_ENDPOINT`` points the
client at another Hub (a mirror, or the stand-in server the tests start on 127.0.0.1).
``huggingface_hub`` is imported inside :func:`push_folder` only.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from forgemind_hookspecs.errors import ForgeError, UserError

__all__ = ["push_folder"]


def _scrub(text: str, token: str) -> str:
    return text.replace(token, "***") if token else text


def push_folder(folder: Path, repo_id: str, *, private: bool = False, message: str | None = None) -> dict[str, Any]:
    """Create ``repo_id`` (a model repo; kept if it exists) and upload every file of ``folder`` in
    one commit. Returns ``{repo_id, commit_url, commit_oid, files}``.

    :raises UserError: no token, or a repo id the Hub refuses (bad name, not yours).
    :raises ForgeError: the upload failed (network, server error); the bundle stays on disk.
    """
    try:
        import huggingface_hub
        from huggingface_hub.errors import HfHubHTTPError
    except ModuleNotFoundError:  # pragma: no cover - a dependency of forgemind-hf
        raise UserError("--push needs huggingface_hub: pip install huggingface_hub", field="push") from None
    if repo_id.count("/") > 1 or not repo_id.strip("/") or any(c.isspace() for c in repo_id):
        raise UserError(f"{repo_id!r} is not a Hub repo id; write OWNER/NAME", field="push")
    if huggingface_hub.constants.is_offline_mode():
        raise UserError("--push needs the network, and HF_HUB_OFFLINE is set: unset it to upload", field="push")
    token = os.environ.get("HF_TOKEN") or huggingface_hub.get_token() or ""
    if not token:
        raise UserError("--push needs a Hugging Face token: set HF_TOKEN (it is used for the upload only, "
                        "never stored)", field="push")
    endpoint = os.environ.get("HF_ENDPOINT") or None
    api = huggingface_hub.HfApi(endpoint=endpoint, token=token)
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    try:
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        info = api.upload_folder(repo_id=repo_id, repo_type="model", folder_path=str(folder),
                                 commit_message=message or f"ForgeMind export ({len(files)} files)")
    except HfHubHTTPError as error:
        status = getattr(getattr(error, "response", None), "status_code", None)
        why = _scrub(str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__, token)
        if status in (400, 401, 403, 404, 409):
            raise UserError(f"the Hub refused the upload to {repo_id} (HTTP {status}): {why}", field="push") from None
        raise ForgeError(f"the upload to {repo_id} failed: {why}; the bundle is kept in {folder}") from None
    except Exception as error:  # no network, a refused connection (httpx), a malformed answer
        why = _scrub(str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__, token)
        raise ForgeError(f"the upload to {repo_id} failed: {why}; the bundle is kept in {folder}") from None
    return {"repo_id": repo_id, "commit_url": str(info.commit_url), "commit_oid": str(info.oid), "files": files}
