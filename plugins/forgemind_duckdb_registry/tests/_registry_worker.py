"""A separate process that records events, for the concurrency tests.

    python _registry_worker.py HOME RUN_ID BATCHES PER_BATCH [--ack]

Records ``BATCHES`` batches, each an ``examples`` event with ``PER_BATCH`` examples plus a
``metric`` event, through the real hook. With ``--ack`` it prints ``ack <seq>`` after each
hook call returned (flushed), so a test that SIGKILLs it knows what was acknowledged.
Re-running it with the same arguments re-delivers the same events (same ids), as a resumed
run does.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import forgemind_duckdb_registry as plugin
from _registry_events import Stream, make_examples
from forgemind_hookspecs import to_dict


def main() -> None:
    home, run_id, batches, per_batch = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    ack = "--ack" in sys.argv
    ev = Stream(run_id)
    plugin.forgemind_record([ev("run.started", {"goal": {"name": run_id, "task": "t"}})], home)
    for b in range(batches):
        examples = make_examples(per_batch, salt=run_id, start=b * per_batch)
        events = [
            ev("examples", {"examples": to_dict(examples)}, iteration=1, stage="generate"),
            ev(
                "metric",
                {"name": "generate.count", "value": float(per_batch), "step": b},
                iteration=1,
                stage="generate",
            ),
        ]
        plugin.forgemind_record(events, home)
        if ack:
            print(f"ack {b}", flush=True)
    plugin.forgemind_record([ev("run.finished", {"outcome": "stopped", "reasons": []})], home)
    print("done", flush=True)


if __name__ == "__main__":
    main()
