"""Where the dashboard listens, what it may read and what leaves it: loopback by default, a token
beyond it; every path it reads or writes confined to the ForgeMind home and the folders it was
started with (resolved, symlinks too, before the check); uploads size-limited and kept inside
``<home>/uploads``; secrets scrubbed from every answer (docs/security.md)."""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
import shutil
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from forgemind_hookspecs import UserError

__all__ = ["NEVER", "UPLOADS", "Confinement", "Scrubber", "check_bind", "is_loopback", "safe_id", "safe_name",
           "store_upload"]

#: Never read, whatever the allow-list says: the kernel's views of processes (``/proc/self/environ``
#: holds every secret of the process), of the hardware and of devices.
NEVER = (Path("/proc"), Path("/sys"), Path("/dev"))
#: Environment variables whose name holds one of these are secrets (the kernel's journal and logs
#: use the same rule, forgemind_core/base/logs.py); shorter values are not treated as secrets.
SECRET_NAME_PARTS = ("KEY", "TOKEN", "SECRET", "PASSWORD")
MIN_SECRET_LENGTH = 8
REDACTED = "[REDACTED]"

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


def safe_id(value: str | None, what: str = "id") -> str | None:
    """A run, job or record id as typed: no folder part, no leading dot (ids name folders of the
    home, so ``../x`` or ``/etc`` would reach outside it).

    :raises UserError: the id has a ``/``, ``\\``, a NUL or starts with a dot.
    """
    if value is None or not str(value).strip():
        return None
    text = str(value).strip()
    if any(c in text for c in "/\\\0") or text.startswith("."):
        raise UserError(f"{text[:80]!r} is not a {what}: ids have no slash, backslash or leading dot", field=what)
    return text


class Confinement:
    """The folders the dashboard may read and write: the ForgeMind home and ``allow`` (default:
    the current folder), each resolved once; a path is resolved (``~``, ``..``, every symlink)
    before it is checked, and what is handed on is the resolved path.

    :raises UserError: an allowed folder is a file system root (it would allow every file).
    """

    def __init__(self, home: str | os.PathLike[str], allow: Iterable[str | os.PathLike[str]] | None = None) -> None:
        chosen = list(allow or []) or [Path.cwd()]
        roots: list[Path] = []
        for folder in [home, *chosen]:
            root = Path(os.path.expanduser(os.fspath(folder))).resolve()
            if root == Path(root.anchor):
                raise UserError(f"allowing {root} would let the dashboard read every file of the machine; "
                                "start it from a project folder or name one with --allow", field="allow")
            if root not in roots:
                roots.append(root)
        self.roots: tuple[Path, ...] = tuple(roots)

    def describe(self) -> str:
        return ", ".join(str(r) for r in self.roots)

    def allows(self, resolved: Path) -> bool:
        if any(resolved == n or resolved.is_relative_to(n) for n in NEVER):
            return False
        return any(resolved.is_relative_to(root) for root in self.roots)

    def path(self, value: str | os.PathLike[str], *, base: Path | None = None, field: str = "path") -> Path:
        """``value`` resolved (relative to ``base``, default the current folder), if it lies inside
        an allowed folder.

        :raises UserError: one sentence naming the value and the allowed folders, no content.
        """
        text = os.fspath(value)
        shown = text if len(text) <= 200 else text[:200] + "…"
        refusal = UserError(f"{shown!r} is outside the folders this dashboard may read or write ({self.describe()}); "
                            "start it with --allow FOLDER to add one", field=field)
        if "\0" in text:
            raise refusal
        path = Path(os.path.expanduser(text))
        if not path.is_absolute():
            path = (base or Path.cwd()) / path
        try:
            resolved = path.resolve()
        except (OSError, RuntimeError, ValueError):  # a symlink loop, a name too long
            raise refusal from None
        if not self.allows(resolved):
            raise refusal
        return resolved

    def reference(self, value: str | None, *, field: str = "checkpoint") -> str | None:
        """A checkpoint or base model as typed: an id or a hub id passes as is; anything that names a
        path (absolute, ``~``, ``.``/``..``, or a file or folder that exists) is confined and resolved."""
        if value is None or not str(value).strip():
            return value
        text = str(value).strip()
        return str(self.path(text, field=field)) if names_a_path(text) else text

    def goal_text(self, text: str, base: Path) -> None:
        """Check every value of a goal (YAML text) that names a path, relative ones against the
        goal's folder and the current folder, and the same for its pack's ``pack.yaml``.

        :raises UserError: the first value outside the allowed folders.
        """
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError:
            return  # the kernel's loader reports the YAML mistake with its line
        self._strings(data, base, "goal")
        pack = data.get("pack") if isinstance(data, Mapping) else None
        if isinstance(pack, str) and pack.strip():
            manifest = self.path(pack, base=base, field="pack") / "pack.yaml"
            if manifest.is_file() and manifest.stat().st_size <= 1 << 20:
                try:
                    self._strings(yaml.safe_load(manifest.read_text(encoding="utf-8")), manifest.parent, "pack")
                except (yaml.YAMLError, UnicodeDecodeError, OSError):
                    return  # the pack loader reports it

    def _strings(self, data: Any, base: Path, where: str) -> None:
        for key, value in _walk(data, ()):
            if "\n" in value or len(value) > 1024:
                continue
            for folder in (base, Path.cwd()):
                if names_a_path(value, folder):
                    self.path(value, base=folder, field=".".join([where, *key]) if key else where)


def names_a_path(text: str, base: Path | None = None) -> bool:
    """Absolute, ``~``, ``.``/``..``, or an existing file or folder (relative to ``base``)."""
    if not text or "\0" in text:
        return False
    path = Path(text)
    if path.is_absolute() or text.startswith(("~", ".")) or ".." in path.parts:
        return True
    try:
        return ((base or Path.cwd()) / path).exists()
    except (OSError, ValueError):
        return False


def _walk(data: Any, key: tuple[str, ...]) -> Iterable[tuple[tuple[str, ...], str]]:
    """Every string of a YAML tree with its dotted key (``("review", "policy")``)."""
    if len(key) > 50:
        return
    if isinstance(data, str):
        yield key, data
    elif isinstance(data, Mapping):
        for k, v in data.items():
            yield from _walk(v, (*key, str(k)))
    elif isinstance(data, (list, tuple)):
        for i, v in enumerate(data):
            yield from _walk(v, (*key, str(i)))


class Scrubber:
    """Replaces secrets in what the dashboard answers: the access token and the value of every
    environment variable whose name holds KEY, TOKEN, SECRET or PASSWORD (read at each call, so a
    key set later is covered). Strings, lists, tuples, dicts and pandas frames are scrubbed; other
    objects (gradio component updates) pass unchanged."""

    def __init__(self, token: str | None = None) -> None:
        self.token = token.strip() if token and token.strip() else None

    def secrets(self) -> list[str]:
        values = {v for k, v in os.environ.items()
                  if any(part in k.upper() for part in SECRET_NAME_PARTS) and len(v) >= MIN_SECRET_LENGTH}
        if self.token:
            values.add(self.token)
        return sorted(values, key=len, reverse=True)

    def __call__(self, obj: Any, secrets: Sequence[str] | None = None) -> Any:
        secrets = self.secrets() if secrets is None else secrets
        if not secrets:
            return obj
        if isinstance(obj, str):
            for secret in secrets:
                obj = obj.replace(secret, REDACTED)
            return obj
        if isinstance(obj, Mapping):
            return {k: self(v, secrets) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return type(obj)(self(v, secrets) for v in obj)
        if type(obj).__name__ == "DataFrame" and hasattr(obj, "map"):
            return obj.map(lambda v: self(v, secrets) if isinstance(v, str) else v)
        return obj
