"""Each tab walked in headless chromium as a user would, asserting on what the page shows.

One dashboard (127.0.0.1, a free port) over one home, one browser page; the steps build on each
other: pre-train a tiny base, fine-tune it, run the loop, compare the two checkpoints, trace,
chat, review, export. Screenshots of each tab go to ``test-artifacts/dashboard/``.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

SHAPE = {"layers": 2, "hidden": 64, "heads": 4, "ffn": 128, "vocab": 512, "seq": 64}


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory, chromium_path, free_port):
    import kernel_plugins
    from forgemind_dashboard.app import launch
    from test_warden import TaintedPlugin

    from forgemind_core import Forge

    home = tmp_path_factory.mktemp("home")
    forge = Forge(home=home, plugins=[kernel_plugins, TaintedPlugin()], blocked=["openai"])
    port = free_port
    # the goal files and packs of the test live in pytest's temporary folders
    demo = launch(forge, port=port, block=False, quiet=True, max_upload_bytes=2 * 1024 * 1024,
                  allow=[tmp_path_factory.getbasetemp(), Path.cwd()])
    yield forge, f"http://127.0.0.1:{port}/"
    demo.close()


@pytest.fixture(scope="module")
def page(dashboard, chromium_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path, args=["--no-sandbox", "--headless"])
        pg = browser.new_page(viewport={"width": 1400, "height": 1000})
        pg.set_default_timeout(30_000)
        pg.goto(dashboard[1])
        pg.wait_for_selector("#pt-launch")
        yield pg
        browser.close()


def _tab(page, name: str) -> None:
    page.get_by_role("tab", name=name, exact=True).click()


def _fill(page, elem: str, value: str) -> None:
    box = page.locator(f"#{elem} input, #{elem} textarea").first
    box.fill(value)
    box.dispatch_event("change")
    box.blur()


def _choose(page, elem: str, value: str) -> None:
    """Type a value into a dropdown that accepts custom values, and confirm it."""
    box = page.locator(f"#{elem} input").first
    box.click()
    box.fill(value)
    box.press("Enter")
    box.blur()


def _wait_text(page, selector: str, text: str, timeout_s: float = 180) -> str:
    deadline = time.monotonic() + timeout_s
    seen = ""
    while time.monotonic() < deadline:
        seen = page.locator(selector).inner_text()
        if text in seen:
            return seen
        if "failed" in seen or "interrupted" in seen:
            raise AssertionError(f"{selector}: {seen}")
        time.sleep(0.5)
    raise AssertionError(f"{selector} never showed {text!r}; last: {seen!r}")


def _shot(page, artifacts: Path, name: str) -> None:
    page.screenshot(path=str(artifacts / f"{name}.png"), full_page=True)


def test_walk_every_tab(dashboard, page, artifacts, tmp_path):
    from hf_testutil import CORPUS, snippet_examples, write_jsonl

    forge, _url = dashboard
    home = Path(forge.home).resolve()

    # ---- Full Training: upload a corpus, tiny config, live YAML, launch, log + plot, the model ----
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(CORPUS)
    page.locator("#pt-corpus input[type=file]").set_input_files(str(corpus))
    page.get_by_text("Model shape (0 = the preset's)").click()
    for key, value in SHAPE.items():
        _fill(page, f"pt-{key}", str(value))
    _fill(page, "pt-steps", "6")
    _fill(page, "pt-batch", "4")
    _wait_text(page, "#pt-yaml", "steps: 6", 30)
    assert "corpus.txt" in page.locator("#pt-yaml").inner_text()
    page.locator("#pt-launch").click()
    _wait_text(page, "#pt-msg", "started job")
    _wait_text(page, "#pt-status", "finished", 240)
    _wait_text(page, "#pt-result", "Saved model")
    assert "train.loss" in page.locator("#pt-log textarea").input_value()
    assert page.locator("#pt-plot canvas, #pt-plot svg").count() > 0
    _shot(page, artifacts, "1-full-training")
    base = forge.jobs()[0]["result"]["path"]
    assert Path(base).resolve().is_relative_to(home)
    corpus_copies = list((home / "uploads").glob("*/corpus.txt"))
    assert len(corpus_copies) == 1 and corpus_copies[0].read_text() == CORPUS

    # a browser reload re-attaches to the job from its folder
    page.reload()
    page.wait_for_selector("#pt-launch")
    _wait_text(page, "#pt-status", "finished", 30)

    # ---- Fine-Tuning: upload, validate row by row, estimate, launch, follow ---------------------
    _tab(page, "Fine-Tuning")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "completion": "b"}\n{"prompt": 3}\n')
    page.locator("#ft-data input[type=file]").set_input_files(str(bad))
    page.locator("#ft-validate").click()
    _wait_text(page, "#ft-valid", "bad row")
    assert "2" in page.locator("#ft-rows").inner_text()  # the bad line's number
    page.locator("#ft-data button[aria-label*='Clear'], #ft-data button[aria-label*='clear']").first.click()
    data = write_jsonl(tmp_path / "train.jsonl", snippet_examples(40, 0))
    page.locator("#ft-data input[type=file]").set_input_files(str(data))
    page.locator("#ft-validate").click()
    _wait_text(page, "#ft-valid", "valid")
    assert "Label:" in page.locator("#ft-rows").inner_text()
    _choose(page, "ft-base", base)
    page.locator("#ft-method").get_by_text("full", exact=True).click()
    _fill(page, "ft-epochs", "1")
    _fill(page, "ft-batch", "8")
    _wait_text(page, "#ft-yaml", "method: full", 30)
    page.locator("#ft-estimate").click()
    _wait_text(page, "#ft-est", "steps", 120)
    page.locator("#ft-launch").click()
    _wait_text(page, "#ft-status", "finished", 240)
    _wait_text(page, "#ft-result", "Saved model")
    _shot(page, artifacts, "2-fine-tuning")
    tuned_result = next(j for j in forge.jobs() if j["kind"] == "train")["result"]
    tuned = tuned_result["path"]

    # path traversal in an upload's name lands inside the home
    page.locator("#ft-data button[aria-label*='Clear'], #ft-data button[aria-label*='clear']").first.click()
    page.locator("#ft-data input[type=file]").set_input_files(
        {"name": "../../evil.jsonl", "mimeType": "application/json",
         "buffer": b'{"prompt": "p", "completion": "c"}\n'})
    page.locator("#ft-validate").click()
    _wait_text(page, "#ft-valid", "first 1 row(s)")  # not the previous dataset's "valid"
    assert list((home / "uploads").glob("*/evil.jsonl"))
    assert not (home.parent / "evil.jsonl").exists() and not (home.parent.parent / "evil.jsonl").exists()

    # ---- the autonomous loop: a goal file, run, iterations -------------------------------------
    from colors_pack import write_pack

    goal = write_pack(tmp_path / "colors")
    page.get_by_role("tab", name="Autonomous loop").click()
    _fill(page, "lp-path", str(goal))
    page.locator("#lp-load").click()
    _wait_text(page, "#lp-msg", "loaded")
    page.locator("#lp-validate").click()
    _wait_text(page, "#lp-msg", "valid")
    page.locator("#lp-run").click()
    _wait_text(page, "#lp-status", "finished", 240)
    _wait_text(page, "#lp-result", "promoted")
    _wait_text(page, "#lp-iterations", "full", 30)
    _shot(page, artifacts, "2b-autonomous-loop")
    run_id = next(j for j in forge.jobs() if j["kind"] == "run")["id"]

    # ---- Evaluation: two checkpoints side by side on typed prompts, metric plot ----------------
    _tab(page, "Evaluation")
    _choose(page, "ev-ckpts", base)
    _choose(page, "ev-ckpts", tuned)
    _fill(page, "ev-prompts", "Code: eval(x) => dangerous\nCode: print(x) => benign")
    _fill(page, "ev-format", "{input}\nLabel:")
    _fill(page, "ev-max", "4")
    page.locator("#ev-compare-btn").click()
    _wait_text(page, "#ev-msg", "compared 2 checkpoints", 120)
    table = page.locator("#ev-compare").inner_text()
    assert "(baseline)" in table and "Code: eval(x)" in table and "dangerous" in table
    _shot(page, artifacts, "3-evaluation-compare")
    page.reload()
    page.wait_for_selector("#pt-launch")
    _tab(page, "Evaluation")
    _choose(page, "ev-run", run_id)
    page.locator("#ev-plot-btn").click()
    # what the run recorded: accuracy per tier and iteration
    expected: dict[str, list[int]] = {}
    for it in forge.show(run_id)["iterations"]:
        for tier, metrics in it["scores"].items():
            if isinstance(metrics.get("accuracy"), (int, float)):
                expected.setdefault(tier, []).append(it["iteration"])
    assert expected and all(len(its) >= 2 for its in expected.values())
    _wait_text(page, "#ev-msg", f"{len(expected)} tier(s) over", 30)
    # the chart (vega, SVG) draws one line per tier through one vertex per iteration, legend by tier
    page.wait_for_function(f"document.querySelectorAll('#ev-plot g.mark-line path').length === {len(expected)}",
                           timeout=15_000)
    drawn = page.evaluate("""() => ({
        lines: [...document.querySelectorAll('#ev-plot g.mark-line path')].map(p => p.getAttribute('d') || ''),
        texts: [...document.querySelectorAll('#ev-plot svg text')].map(t => t.textContent)})""")
    assert set(expected) <= set(drawn["texts"]), drawn  # the legend names each tier
    strokes = page.evaluate("() => [...document.querySelectorAll('#ev-plot g.mark-line path')]"
                            ".map(p => p.getAttribute('stroke'))")
    assert len(set(strokes)) == len(expected), strokes  # a colour per tier
    vertices = sorted(d.count("L") + 1 for d in drawn["lines"] if d.startswith("M"))
    assert vertices == sorted(len(its) for its in expected.values()), drawn
    _shot(page, artifacts, "3-evaluation-metrics")

    # ---- Runs and lineage ------------------------------------------------------------------------
    _tab(page, "Runs and lineage")
    page.locator("#rn-refresh").click()
    _wait_text(page, "#rn-tree", f"main: {run_id} (finished, promoted)", 30)
    # load iteration 1's config (its plans pinned) into the loop form; it validates as it stands
    _choose(page, "rn-id", run_id)
    _fill(page, "rn-iter", "1")
    page.locator("#rn-config").click()
    _wait_text(page, "#rn-msg", "loaded the config of iteration 1", 30)
    _tab(page, "Fine-Tuning")
    page.get_by_role("tab", name="Autonomous loop").click()
    loaded = page.locator("#lp-yaml").inner_text()
    assert f"reproduces iteration 1 of run {run_id}" in loaded and "replay" in loaded
    assert page.locator("#lp-path input, #lp-path textarea").first.input_value() == ""
    page.locator("#lp-validate").click()
    _wait_text(page, "#lp-msg", "the goal is valid", 30)
    # fork the loop run at its last iteration with one changed setting, on a named branch
    _tab(page, "Runs and lineage")
    _fill(page, "rn-iter", "0")
    _fill(page, "rn-overrides", "train.epochs=3")
    _fill(page, "rn-branch", "more-epochs")
    page.locator("#rn-fork").click()
    _wait_text(page, "#rn-msg", "fork started as job", 30)
    fork_job = next(j for j in forge.jobs() if j["kind"] == "fork")
    _tab(page, "Fine-Tuning")
    page.get_by_role("tab", name="Autonomous loop").click()
    _wait_text(page, "#lp-status", "finished", 120)
    assert fork_job["id"] in page.locator("#lp-status").inner_text()
    _tab(page, "Runs and lineage")
    page.locator("#rn-refresh").click()
    (root,) = forge.runs_tree()
    (child,) = root["children"]
    assert child["branch"] == "more-epochs" and child["parent_iteration"] == 2
    _wait_text(page, "#rn-tree", f"more-epochs @ iteration 2: {child['id']}", 30)
    nested = page.evaluate("() => [...document.querySelectorAll('#rn-tree li li')].map(li => li.textContent)")
    assert any(f"{child['id']}" in text for text in nested), page.locator("#rn-tree").inner_html()
    assert [(c["key"], c["b"]) for c in forge.diff(run_id, child["id"])["config"]] == [("train.epochs", 3)]
    stable = forge.registry().channel("stable")[0]["checkpoint_id"]
    _fill(page, "ln-id", stable)
    page.locator("#ln-go").click()
    _wait_text(page, "#ln-md", "ancestors", 30)
    traced = page.locator("#ln-md").inner_text()
    assert "None" not in traced and "examples: generator" in traced
    edge = forge.lineage(stable)["ancestors"][0]
    assert f"{edge['kind']} {edge['id']} ({edge['relation']})" in traced
    _shot(page, artifacts, "4-runs-and-lineage")

    # ---- Review: the Warden's queue, one item approved from the page ---------------------------
    from test_warden import POLICY, _goal

    review_goal = _goal(tmp_path / "review", policy=POLICY + "review: {sample: 0.35, pending: skip}\n",
                        filters="filter: [{backend: safety}, {backend: rules}]\n")
    review_goal.write_text(review_goal.read_text().replace("max_iterations: 3", "max_iterations: 1"))
    forge.run(review_goal, run_id="q")  # a finished run that left items pending review
    pending = forge.review_queue("q")
    assert pending
    _tab(page, "Review")
    page.locator("#rv-refresh").click()
    _wait_text(page, "#rv-msg", f"{len(pending)} pending item(s)", 30)
    item = page.locator("#rv-item input").input_value()
    assert item in {p["item_id"] for p in pending}
    _fill(page, "rv-reviewer", "dashboard-tester")
    _fill(page, "rv-reason", "looks fine")
    page.locator("#rv-approve").click()
    _wait_text(page, "#rv-msg", "approve", 30)
    decided = {r["item_id"]: r for r in forge.review_queue("q", status="decided")}
    assert decided[item]["action"] == "approve" and decided[item]["reviewer"] == "dashboard-tester"
    assert len(forge.review_queue("q")) == len(pending) - 1
    _shot(page, artifacts, "5-review")

    # ---- Playground: chat with two checkpoints side by side -------------------------------------
    _tab(page, "Playground")
    _choose(page, "pg-a", base)
    _choose(page, "pg-b", tuned)
    _fill(page, "pg-format", "{input}\nLabel:")
    _fill(page, "pg-max", "4")
    _fill(page, "pg-msg", "Code: eval(data)")
    page.locator("#pg-send").click()
    page.wait_for_function("document.querySelectorAll('#pg-chat-b .message').length >= 2", timeout=60_000)
    assert "Code: eval(data)" in page.locator("#pg-chat-a").inner_text()
    _shot(page, artifacts, "8-playground")

    # ---- Export: the fine-tuned checkpoint as an hf bundle with a model card, and its zip -------
    import zipfile

    _tab(page, "Export")
    _choose(page, "ex-ckpt", tuned_result["id"])
    _fill(page, "ex-author", "Dash Tester")
    _fill(page, "ex-license", "mit")
    _fill(page, "ex-version", "1.2.3")
    _fill(page, "ex-tags", "colors, demo")
    page.locator("#ex-go").click()
    shown = _wait_text(page, "#ex-msg", "files:", 120)
    out = Path(next(line.split("folder:", 1)[1].strip() for line in shown.splitlines() if "folder:" in line))
    assert out.is_relative_to(home / "exports") and tuned_result["id"] in shown
    written = sorted(str(f.relative_to(out)) for f in out.rglob("*") if f.is_file())
    assert {"config.json", "model.safetensors", "README.md", "forgemind-export.json"} <= set(written)
    assert all(name in shown for name in written)
    card = page.locator("#ex-card").inner_text()
    assert "license: mit" in card and "Dash Tester" in card and "1.2.3" in card and "demo" in card
    assert (out / "README.md").read_text().count("Dash Tester") == 1
    link = page.locator("#ex-file a").first
    link.wait_for(timeout=30_000)
    response = page.request.get(link.evaluate("a => a.href"))
    assert response.ok
    archive = tmp_path / "bundle.zip"
    archive.write_bytes(response.body())
    assert sorted(zipfile.ZipFile(archive).namelist()) == written
    _shot(page, artifacts, "6-export")

    # ---- Learn mode: explainers with defined terms ---------------------------------------------
    _tab(page, "Fine-Tuning")
    page.locator("#learn-toggle input").check()
    term = page.locator("abbr.fm-term", has_text="LoRA rank").first
    term.wait_for(state="visible")
    assert "rank" in (term.get_attribute("title") or "")
    _wait_text(page, "#learn-tip", "Did you know?", 10)
    _shot(page, artifacts, "7-learn-mode")
