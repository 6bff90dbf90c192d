"""Server scripts shared by this plugin's tests (a module of its own: ``conftest`` names clash
when several test folders run in one pytest session)."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any


def examples_script(body: dict[str, Any]) -> str:
    """Answer a generator request with exactly the number of examples it asks for, each text
    unique to the request (model, seed, prompt) so that examples never collide by accident."""
    user = body["messages"][-1]["content"]
    n = int(re.search(r"(?i)write (\d+)", user).group(1))  # type: ignore[union-attr]
    tag = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:10]
    items = [{"input": f"def f_{tag}_{i}(): pass  # by {body['model']}"} for i in range(n)]
    if "output" in json.dumps(body["response_format"]):
        items = [dict(it, output=f"answer {tag} {i}") for i, it in enumerate(items)]
    return json.dumps({"examples": items})
