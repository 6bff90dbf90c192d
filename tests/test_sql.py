"""`forge sql` is read-only for real; `forge export-data` files read back in pyarrow/pandas with the
registry's rows."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from forgemind_core.cli.main import build_cli


@pytest.fixture(scope="module")
def forge(tmp_path_factory):
    """One home for the whole module: every test here only reads it (the refusals check that it
    is unchanged), so the small loop runs once, not once per case."""
    import kernel_plugins
    from colors_pack import write_pack

    from forgemind_core import Forge

    root = tmp_path_factory.mktemp("sql")
    home = root / "forgemind-home"
    home.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FORGEMIND_HOME", str(home))
        write_pack(root / "colors")
        yield Forge(home=home, plugins=[kernel_plugins], blocked=["hf", "openai"])


@pytest.fixture(scope="module")
def run(forge):
    summary = forge.run(forge.home.parent / "colors" / "goal.yaml", run_id="r1")
    assert summary["outcome"] == "promoted"
    return summary


def test_sql_reads(forge, run):
    runner = CliRunner()
    result = runner.invoke(build_cli(forge), ["sql", "SELECT id, outcome FROM runs", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == [{"id": "r1", "outcome": "promoted"}]
    result = runner.invoke(build_cli(forge), ["sql", "WITH t AS (SELECT count(*) AS n FROM iterations) FROM t"])
    assert result.exit_code == 0 and "1 row" in result.output


@pytest.mark.parametrize("query", [
    "INSERT INTO runs (id) VALUES ('x')",
    "UPDATE runs SET outcome = 'promoted'",
    "DELETE FROM runs",
    "DROP TABLE runs",
    "ATTACH '/tmp/other.duckdb' AS other",
    "COPY runs TO '/tmp/runs.csv'",
    "PRAGMA enable_profiling",
    "SELECT 1; DELETE FROM runs",
    "CREATE TABLE t AS SELECT 1",
    "SELECT * FROM read_csv('/etc/passwd')",
])
def test_sql_refuses_writes_and_file_access(forge, run, query):
    result = CliRunner().invoke(build_cli(forge), ["sql", query])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "Traceback" not in result.output
    assert forge.sql("SELECT count(*) AS n FROM runs") == [{"n": 1}]


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_export_data_reads_back_with_the_same_rows(forge, run, tmp_path, fmt):
    import pandas as pd
    import pyarrow.parquet as pq

    def read(path):
        return pq.read_table(path).to_pylist() if fmt == "parquet" else pd.read_json(path, lines=True).to_dict("records")

    # A run's history: one file per table, the registry's rows.
    out = forge.export_data("r1", tmp_path / "run", format=fmt)
    files = {f["path"].rsplit("/", 1)[-1]: f for f in out["files"]}
    results = read(files[f"eval_results.{fmt}"]["path"])
    expected = forge.sql("SELECT * FROM eval_results WHERE run_id = 'r1' ORDER BY ALL")
    assert len(results) == len(expected) > 0
    assert [(r["case_id"], r["output"], r["passed"]) for r in results] == [
        (r["case_id"], r["output"], r["passed"]) for r in expected]
    iterations = read(files[f"iterations.{fmt}"]["path"])
    assert [i["iteration"] for i in iterations] == [1, 2]
    assert json.loads(iterations[0]["plan"])["iteration"] == 1

    # A dataset: every member with its source.
    dataset_id = run["iterations"][-1]["data"]["dataset_id"]
    out = forge.export_data(dataset_id[:8], tmp_path / "data", format=fmt)
    assert out["kind"] == "dataset" and out["id"] == dataset_id
    rows = read(out["files"][0]["path"])
    members = forge.registry().examples(dataset_id)
    assert sorted(r["id"] for r in rows) == sorted(m["id"] for m in members)
    assert {r["source_generator"] for r in rows} == {"template"}
    assert all(r["prompt"] and r["completion"] for r in rows)

    # A checkpoint: its evaluation results.
    out = forge.export_data(run["stable_checkpoint"]["id"], tmp_path / "ckpt", format=fmt)
    assert out["kind"] == "checkpoint"
    n = forge.sql(f"SELECT count(*) AS n FROM eval_results WHERE checkpoint_id = '{run['stable_checkpoint']['id']}'")
    assert out["files"][0]["rows"] == n[0]["n"] == len(read(out["files"][0]["path"]))


def test_export_data_unknown_id_is_exit_2(forge, run, tmp_path):
    result = CliRunner().invoke(build_cli(forge), ["export-data", "nope", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "no run, dataset or checkpoint has the id 'nope'" in result.output
