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
    demo = launch(forge, port=port, block=False, quiet=True, max_upload_bytes=2 * 1024 * 1024)
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
    tuned = next(j for j in forge.jobs() if j["kind"] == "train")["result"]["path"]

    # path traversal in an upload's name lands inside the home
    page.locator("#ft-data button[aria-label*='Clear'], #ft-data button[aria-label*='clear']").first.click()
    page.locator("#ft-data input[type=file]").set_input_files(
        {"name": "../../evil.jsonl", "mimeType": "application/json",
         "buffer": b'{"prompt": "p", "completion": "c"}\n'})
    page.locator("#ft-validate").click()
    _wait_text(page, "#ft-valid", "valid")
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
    page.wait_for_timeout(3000)
    assert page.locator("#ev-plot canvas, #ev-plot svg").count() > 0
    _shot(page, artifacts, "3-evaluation-metrics")

    # ---- Runs and lineage ------------------------------------------------------------------------
    _tab(page, "Runs and lineage")
    page.locator("#rn-refresh").click()
    _wait_text(page, "#rn-tree", run_id, 30)
    stable = forge.registry().channel("stable")[0]["checkpoint_id"]
    _fill(page, "ln-id", stable)
    page.locator("#ln-go").click()
    _wait_text(page, "#ln-md", "ancestors", 30)
    assert "dataset" in page.locator("#ln-md").inner_text()
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

    # ---- Learn mode: explainers with defined terms ---------------------------------------------
    _tab(page, "Fine-Tuning")
    page.locator("#learn-toggle input").check()
    term = page.locator("abbr.fm-term", has_text="LoRA rank").first
    term.wait_for(state="visible")
    assert "rank" in (term.get_attribute("title") or "")
    _wait_text(page, "#learn-tip", "Did you know?", 10)
    _shot(page, artifacts, "7-learn-mode")
