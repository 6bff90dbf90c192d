"""One JSON POST to an OpenAI-compatible endpoint with the standard library (no client package).

The kernel's own clients of served models (the files generator's labeller, the planner's advisor)
post one request and read one JSON reply; the ``openai`` client stays in its plugin.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

from forgemind_hookspecs.errors import ConfigError, ForgeError

__all__ = ["post_json", "require_endpoint"]


def post_json(base_url: str, path: str, body: Mapping[str, Any], *, api_key: str | None, timeout_s: float,
              who: str) -> Any:
    """The decoded JSON reply of ``POST base_url/path`` with ``body`` (a bearer ``api_key`` when given).

    :raises ForgeError: ``"{who} at {base_url} did not answer: ..."``: unreachable, an HTTP error,
        a timeout or a body that is not JSON.
    """
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    request = urllib.request.Request(f"{base_url.rstrip('/')}/{path}", data=json.dumps(body).encode(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return json.loads(response.read().decode("utf-8"))
    except (urllib.error.URLError, OSError, ValueError) as error:
        raise ForgeError(f"{who} at {base_url} did not answer: {error}") from None


def require_endpoint(options: Mapping[str, Any], *, client: str, field: str, model_help: str) -> None:
    """Check a served model's client options once the run's server pool has filled them in:
    ``model`` given, ``server`` replaced by ``base_url``.

    :raises ConfigError: one sentence naming ``field.model`` or ``field.server``.
    """
    if not options.get("model"):
        raise ConfigError(f"the {client} needs a model: {model_help}", field=f"{field}.model")
    if "server" in options:  # the pool replaces it by base_url; a client built without a pool cannot serve
        raise ConfigError(f"the {client}'s server is started by a run's server pool: run the goal "
                          "(or give base_url: of a running server instead)", field=f"{field}.server")
    if not options.get("base_url"):
        raise ConfigError(f"the {client} needs server: {{backend: llamacpp}} (or base_url: of a running "
                          "OpenAI-compatible server) beside its model", field=f"{field}.server")
