"""``forge report RUN --html`` and ``forge compare --html`` (issue 19, pictures): the page of a
recorded run (memo backends, no training), checked in a real headless chromium: the charts'
points carry the run's recorded numbers; screenshots are kept as test artifacts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import kernel_plugins
import pytest
from browser import find_chromium
from click.testing import CliRunner

from forgemind_core import Forge
from forgemind_core.base.fsio import read_json
from forgemind_core.base.runfolder import RunFolder
from forgemind_core.cli.main import build_cli
from forgemind_core.lorekeeper.report import render_run_report


def invoke(forge: Forge, *args: str):
    return CliRunner().invoke(build_cli(forge), list(args), catch_exceptions=False, terminal_width=120)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """One real two-iteration colors run (memo backends) and its report page."""
    from colors_pack import write_pack

    root = tmp_path_factory.mktemp("report")
    forge = Forge(home=root / "home", plugins=[kernel_plugins], blocked=["hf", "openai"])
    forge.run(write_pack(root / "colors"), run_id="pictured")
    page = root / "report.html"
    result = invoke(forge, "report", "pictured", "--html", str(page))
    assert result.exit_code == 0, result.output
    assert str(page) in result.output
    return forge, forge.summary("pictured"), page


@pytest.fixture(scope="module")
def chromium_path() -> str:
    return find_chromium()


@pytest.fixture
def browser_page(chromium_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path, args=["--no-sandbox", "--headless"])
        try:
            yield browser.new_page(viewport={"width": 1280, "height": 900})
        finally:
            browser.close()


def _points(page, chart: str) -> list[dict[str, str]]:
    return page.eval_on_selector_all(
        f'figure[data-chart="{chart}"] circle.point',
        "els => els.map(e => ({series: e.dataset.series, x: e.dataset.x, value: e.dataset.value, n: e.dataset.n}))")


def _screenshot(page, tmp_path: Path, name: str) -> Path:
    folder = tmp_path / "artifacts"
    folder.mkdir(exist_ok=True)
    shot = folder / name
    page.screenshot(path=str(shot), full_page=True)
    print(f"screenshot: {shot}")
    return shot


def test_report_charts_carry_the_recorded_numbers_in_chromium(recorded, browser_page, tmp_path):
    forge, summary, page_file = recorded
    page = browser_page
    page.goto(page_file.as_uri())
    folder = RunFolder(forge.home, "pictured")
    iterations = [item["iteration"] for item in summary["iterations"]]
    # score per tier: one point per tier and iteration, value = the recorded score, n = its cases
    want = set()
    for n in iterations:
        for tier, report in read_json(folder.stage_file(n, "evaluate"))["reports"].items():
            want.add((tier, f"it {n}", report["metrics"]["accuracy"], report["metrics"]["n"]))
    got = {(p["series"], p["x"], float(p["value"]), int(p["n"])) for p in _points(page, "tiers")}
    assert got == want and len(want) >= 4
    assert page.locator('figure[data-chart="tiers"] text.value').count() == len(want)
    assert page.locator('figure[data-chart="tiers"] text.x-tick').all_text_contents() == [f"it {n}" for n in iterations]
    # per category of the full tier
    cats = set()
    for n in iterations:
        metrics = read_json(folder.stage_file(n, "evaluate"))["reports"]["full"]["metrics"]
        cats |= {(c, f"it {n}", v, metrics["per_category_n"][c]) for c, v in metrics["per_category"].items()}
    got = {(p["series"], p["x"], float(p["value"]), int(p["n"])) for p in _points(page, "categories-full")}
    assert got == cats
    # loss: every logged step of every iteration
    losses = {(f"it {item['iteration']}", str(i + 1), v)
              for item in summary["iterations"] for i, v in enumerate(item["loss_curve"])}
    assert {(p["series"], p["x"], float(p["value"])) for p in _points(page, "loss")} == losses
    # data counts, plans with reasons, the promoted checkpoint and its lineage
    for item in summary["iterations"]:
        row = page.locator(f'#data tr[data-iteration="{item["iteration"]}"]')
        assert row.locator("td.generated").inner_text() == str(item["data"]["generated"])
        assert row.locator("td.kept").inner_text() == str(item["data"]["kept"])
        assert row.locator("td.dropped").inner_text() == str(item["data"]["dropped"])
        plans = page.locator(f'#iterations tr[data-iteration="{item["iteration"]}"]').inner_text()
        for reason in item["plan"]["reasons"] + item["decision"]["reasons"]:
            assert reason in plans
    stable = summary["stable_checkpoint"]
    assert stable is not None and stable["id"] in page.locator("#promoted").inner_text()
    assert page.locator("#lineage").inner_text().startswith(f"checkpoint {stable['id']}")
    assert page.locator("#lineage li").count() > 3
    shot = _screenshot(page, tmp_path, "run-report.png")
    shutil.copyfile(shot, "/tmp/forgemind-report.png")
    assert shot.stat().st_size > 10_000


def test_report_escapes_every_user_string(recorded):
    forge, summary, _ = recorded
    evil = "<script>alert(1)</script>"
    changed = {**summary, "reasons": [evil], "goal": evil,
               "iterations": [{**it, "plan": {**it["plan"], "reasons": [evil]}} for it in summary["iterations"]]}
    text = render_run_report(changed, home=forge.home, goal={"task": evil},
                             lineage={"label": evil, "children": []})
    assert "<script>" not in text
    assert text.count("&lt;script&gt;") >= 4


def test_report_of_an_unknown_run_or_folder_is_one_sentence(recorded, tmp_path):
    forge, _, _ = recorded
    result = CliRunner().invoke(build_cli(forge), ["report", "nope", "--html", str(tmp_path / "r.html")])
    assert result.exit_code == 2 and "no run 'nope'" in result.output and "Traceback" not in result.output
    out = tmp_path / "missing" / "r.html"
    result = CliRunner().invoke(build_cli(forge), ["report", "pictured", "--html", str(out)])
    assert result.exit_code == 2 and "does not exist" in result.output and not out.exists()


def test_compare_html_labels_iterations_counts_cases_and_charts_scores(recorded, browser_page, tmp_path):
    forge, summary, _ = recorded
    ids = [item["checkpoint"] for item in summary["iterations"]]
    page_file = tmp_path / "compare.html"
    result = invoke(forge, "compare", *ids, "--html", str(page_file), "--json")
    assert result.exit_code == 0, result.output


    comparison = json.loads(result.output)
    page = browser_page
    page.goto(page_file.as_uri())
    heads = page.locator("table").first.locator("tr").first.locator("th").all_inner_texts()
    assert [h.split("\n")[0] for h in heads[1:]] == [f"it {item['iteration']}" for item in summary["iterations"]]
    assert all(cid in " ".join(heads) for cid in ids)  # the hash stays beside the label
    n_full = {cid: sum(1 for row in comparison["cases"] if row["tier"] == "full" and row["outputs"][cid]) for cid in ids}
    full_row = page.locator("table").first.locator("tr", has=page.locator("th", has_text="full")).inner_text()
    for cid in ids:
        acc = comparison["tiers"]["full"]["accuracy"][cid]
        assert f"{acc:.1%} of {n_full[cid]}" in full_row
    got = {(p["series"], p["x"], float(p["value"]), int(p["n"])) for p in _points(page, "tiers")}
    labels = {item["checkpoint"]: f"it {item['iteration']}" for item in summary["iterations"]}
    want = {(tier, labels[cid], row["accuracy"][cid],
             sum(1 for c in comparison["cases"] if c["tier"] == tier and c["outputs"][cid]))
            for tier, row in comparison["tiers"].items() for cid in ids}
    assert got == want
    cats = {(cat, labels[cid], v[cid]) for cat, v in comparison["tiers"]["full"]["per_category"].items() for cid in ids}
    assert {(p["series"], p["x"], float(p["value"])) for p in _points(page, "categories-full")} == cats
    _screenshot(page, tmp_path, "compare.png")


def test_report_of_a_run_that_dropped_data_and_promoted_nothing(tmp_path, browser_page):
    """A rules filter with a tight max_chars drops examples: the page's drops by reason and by
    filter/rule are the run's recorded counts, and the best try stands where no model was promoted."""
    from collections import Counter

    from colors_pack import write_pack

    goal = write_pack(tmp_path / "colors")
    goal.write_text(goal.read_text().replace("  - backend: rules\n", "  - backend: rules\n    max_chars: 48\n"))
    forge = Forge(home=tmp_path / "home", plugins=[kernel_plugins], blocked=["hf", "openai"])
    forge.run(goal, run_id="dropped")
    summary = forge.summary("dropped")
    rejections = forge.registry().rejections("dropped")
    assert rejections and summary["stable_checkpoint"] is None
    page_file = tmp_path / "dropped.html"
    assert invoke(forge, "report", "dropped", "--html", str(page_file)).exit_code == 0
    page = browser_page
    page.goto(page_file.as_uri())
    by_rule = Counter((r["iteration"], r["filter"], r["rule"]) for r in rejections)
    for item in summary["iterations"]:
        n = item["iteration"]
        row = page.locator(f'#data tr[data-iteration="{n}"]')
        assert row.locator("td.dropped").inner_text() == str(item["data"]["dropped"])
        reasons = item["data"]["dropped_by_reason"]
        assert row.locator("td.by-reason").inner_text() == (
            ", ".join(f"{k} × {v}" for k, v in sorted(reasons.items())) or "-")
        rules = [f"{f} / {r} × {c}" for (i, f, r), c in sorted(by_rule.items()) if i == n]
        assert row.locator("td.by-rule").inner_text() == (", ".join(rules) or "-")
        assert sum(c for (i, _, _), c in by_rule.items() if i == n) == item["data"]["dropped"]
    best = summary["best_checkpoint"]
    assert best["id"] in page.locator("#best").inner_text()
    assert page.locator("#lineage").inner_text().startswith(f"checkpoint {best['id']}")
    _screenshot(page, tmp_path, "run-report-dropped.png")
