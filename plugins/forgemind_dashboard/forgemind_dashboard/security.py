"""Where the dashboard listens and where uploads go: loopback by default, a token beyond it,
uploads size-limited and kept inside ``<home>/uploads``."""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
import shutil
from pathlib import Path

from forgemind_hookspecs import UserError

__all__ = ["UPLOADS", "check_bind", "is_loopback", "safe_name", "store_upload"]

#: Folder of the ForgeMind home that receives every upload.
UPLOADS = "uploads"


def is_loopback(host: str) -> bool:
    """``localhost``, ``127.0.0.0/8`` or ``::1``."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse to listen beyond loopback without an access token.

    :raises UserError: one sentence, exit code 2 from the CLI.
    """
    if not is_loopback(host) and not (token and token.strip()):
        raise UserError(
            f"binding the dashboard to {host} exposes it beyond this machine; "
            "give an access token with --token or FORGEMIND_DASHBOARD_TOKEN", field="host")
    if token is not None and token.strip() and len(token.strip()) < 8:
        raise UserError("the access token must be at least 8 characters long", field="token")


def safe_name(name: str) -> str:
    """A file name with no folder part and only ``[A-Za-z0-9._-]`` (``../../x y.txt`` -> ``x_y.txt``)."""
    base = re.split(r"[\\/]", name)[-1]
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", base).lstrip("._-")
    return cleaned[:120] or "upload"


def store_upload(home: str | os.PathLike[str], source: str | os.PathLike[str], original_name: str | None,
                 max_bytes: int) -> Path:
    """Copy an uploaded file into ``<home>/uploads/<content hash>/<safe name>`` and return that path.

    The name keeps no folder part, so nothing lands outside the home whatever the browser sent;
    the same content uploaded twice lands in the same place (nothing is overwritten with other bytes).

    :raises UserError: the file is larger than ``max_bytes`` or cannot be read.
    """
    src = Path(source)
    try:
        size = src.stat().st_size
    except OSError:
        raise UserError("the uploaded file is gone; upload it again", field="upload") from None
    if size > max_bytes:
        raise UserError(f"the upload is {size / 1e6:.1f} MB, more than the {max_bytes / 1e6:.0f} MB allowed",
                        field="upload")
    digest = hashlib.sha256()
    with src.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    root = (Path(home) / UPLOADS).resolve()
    dest = (root / digest.hexdigest()[:16] / safe_name(original_name or src.name)).resolve()
    if not dest.is_relative_to(root):  # cannot happen with safe_name; kept as the last guard
        raise UserError("refusing an upload name that points outside the ForgeMind home", field="upload")
    dest.parent.mkdir(parents=True, exist_ok=True)
    if not dest.exists():
        tmp = dest.with_name(f".{dest.name}.tmp")
        shutil.copyfile(src, tmp)
        os.replace(tmp, dest)
    return dest
