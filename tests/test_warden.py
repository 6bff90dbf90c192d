"""The Warden end to end: policy files, the built-in safety checks, toxicity (detoxify, a tiny
checkpoint built here) and moderation (the OpenAI test server) in a real run, human review
through the API, and the approval gate on promotion."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import ClassVar

import pytest
from attrs import frozen
from click.testing import CliRunner
from colors_pack import write_pack
from forgemind_hookspecs import ConfigError, Example, Source, StageContext, hookimpl
from forgemind_hookspecs.snapshots import read_snapshot

from forgemind_core import Forge
from forgemind_core.cli.main import build_cli
from forgemind_core.warden.policy import load_policy, parse_policy, validate_policy
from forgemind_core.warden.review import ReviewPending
from forgemind_core.warden.safety import SafetyFilter

#: What the tainted generator slips in among the template examples: text -> the rule that
#: must drop it ("filter:rule").
BAD: dict[tuple[str, str], str] = {
    ("the car is red, you filthy scum", " warm"): "detoxify:toxicity",
    ("the cup is blue you idiot", " cool"): "moderation:harassment",
    ("the wall is red, mail bob.smith@corp-mail.com", " warm"): "safety:pii:email",
    ("the door is blue, call +44 20 7946 0958", " cool"): "safety:pii:phone",
    ("the hat is red, key AKIAIOSFODNN7EXAMPLE", " warm"): "safety:pii:api_key",
    ("the lamp is blue", " cool\n-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk=\n"): "safety:pii:private_key",
    ("the bike is red", " warm\n```python\nimport os\nos.system(user_input)\n```"): "safety:code:dangerous_call",
    ("the boat is blue", " cool\n```python\nimport subprocess as sp\nsp.run(cmd, shell=True)\n```"): "safety:code:dangerous_call",
    ("the kite is red", " warm\n```python\ndef broken(:\n```"): "safety:code:parse_error",
    ("the sofa is blue, buy crypto now", " cool"): "safety:deny:spam",
}


class TaintedGenerator:
    """The template generator's examples plus :data:`BAD`."""

    name: ClassVar[str] = "tainted"

    @frozen
    class Options:
        pass

    def __init__(self, options):
        self.options = options

    def generate(self, plan, ctx: StageContext):
        from forgemind_core.foundry.template import TemplateGenerator

        yield from TemplateGenerator(TemplateGenerator.Options()).generate(plan, ctx)
        if ctx.iteration == 1:
            for (prompt, completion), rule in BAD.items():
                category = completion.split()[0]
                yield Example(prompt=f"Sentence: {prompt}\nTemperature:", completion=completion, category=category,
                              source=Source("tainted", prompt_template=rule))


class TaintedPlugin:
    @hookimpl
    def forgemind_register_generators(self, register):
        register(TaintedGenerator)


def _moderation(text: str) -> dict[str, float]:
    return {"harassment": 0.97 if "idiot" in text else 0.01, "violence": 0.0}


POLICY = """\
name: test-policy
deny:
  - {pattern: "(?i)buy crypto", name: spam, reason: "spam"}
thresholds: {toxicity: 0.5, harassment: 0.5, default: 0.8}
code: {fields: [completion], extract: fenced}
"""


def _goal(root: Path, *, policy: str, filters: str, extra: str = "") -> Path:
    write_pack(root)
    (root / "policy.yaml").write_text(policy)
    goal = root / "goal.yaml"
    goal.write_text(textwrap.dedent("""\
        name: colors
        task: "warm or cool"
        pack: .
        seed: 3
        success: {metric: accuracy, threshold: 0.9, tier: full, canary_min: 1.0}
        limits: {base_model: pretrain, method: full, max_iterations: 3}
        generate:
          - backend: tainted
            share: 1.0
        train: {backend: memo}
        evaluate: {runner: {backend: memo}, scorers: [{backend: label_match}]}
        planner: {backend: default, initial_examples: 16}
        review: {policy: policy.yaml}
        """) + filters + extra)
    return goal


@pytest.fixture(scope="module")
def detox(tmp_path_factory):
    pytest.importorskip("detoxify")
    from forgemind_detoxify.testing import build_checkpoint

    return build_checkpoint(tmp_path_factory.mktemp("detoxify"), words={"toxicity": ["scum"]})


@pytest.fixture
def warden_forge(forge_home: Path):
    import kernel_plugins

    return Forge(home=forge_home, plugins=[kernel_plugins, TaintedPlugin()], blocked=["hf"])


# --- policy files ------------------------------------------------------------------------------


def test_policy_mistakes_are_one_sentence_each_with_file_line_and_field(tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text(textwrap.dedent("""\
        deny:
          - "(?i)fine"
          - {pattern: "[unclosed", name: broken}
        pii: {email: true, phnoe: false}
        thresholds: {toxicity: 1.5}
        review: {grey_band: 0.1, pending: later}
        approval_required: maybe
        """))
    errors = [str(e) for e in validate_policy(path)]
    assert errors == [
        f"{path}:3: deny[1].pattern: not a valid regular expression (unterminated character set at position 0)",
        f"{path}:4: pii.phnoe: unknown key (did you mean 'phone'?); allowed keys: email, phone, api_key, private_key, patterns, allow",
        f"{path}:5: thresholds.toxicity: expected a score between 0 and 1, got 1.5",
        f"{path}:6: review.pending: expected one of 'wait', 'skip', 'keep', got 'later'",
        f"{path}:7: approval_required: expected true or false, got 'maybe'",
    ]
    with pytest.raises(ConfigError) as info:
        load_policy(path)
    assert len(info.value.__notes__) == 4


def test_a_goal_with_a_bad_policy_fails_validation_with_exit_code_2(tmp_path, forge_home):
    goal = _goal(tmp_path / "p", policy="review: {sample: 2}\n", filters="filter: [{backend: safety}]\n")
    result = CliRunner().invoke(build_cli(Forge(home=forge_home, blocked=["hf", "openai"])), ["validate", str(goal)])
    assert result.exit_code == 2
    assert "policy.yaml:1: review.sample: expected a number between 0 and 1, got 2" in result.output
    assert "Traceback" not in result.output


def test_the_quickstart_policy_loads_and_keeps_every_python_security_template_example(stage_context):
    from forgemind_hookspecs import GenerationPlan

    from forgemind_core.foundry.packs import load_pack
    from forgemind_core.foundry.template import TemplateGenerator

    root = Path(__file__).resolve().parents[1] / "examples" / "python-security"
    policy = load_policy(root / "policy.yaml")
    assert not policy.approval_required  # the quickstart never waits for a human
    stage_context.pack = load_pack(str(root))
    stage_context.policy = policy
    plan = GenerationPlan("template", 400, strategy="varied")
    examples = list(TemplateGenerator(TemplateGenerator.Options()).generate(plan, stage_context))
    verdicts = SafetyFilter().filter(examples, stage_context)
    dropped = [(v.rule, v.reason) for v in verdicts if not v.keep]
    assert len(examples) > 300 and dropped == []


# --- the built-in checks -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("completion", "rule"),
    [
        ("```python\nfrom os import system as run\nrun('ls ' + d)\n```", "code:dangerous_call"),
        ("```py\nimport pickle\nobj = pickle.loads(blob)\n```", "code:dangerous_call"),
        ("```python\nresult = eval(expr)\n```", "code:dangerous_call"),
        ("```python\nimport subprocess\nsubprocess.check_output(cmd, shell=True)\n```", "code:dangerous_call"),
        ("```python\nimport subprocess\nsubprocess.run(['ls', d], shell=False)\n```", "ok"),
        ("```python\nimport ast\nvalue = ast.literal_eval(text)\n```", "ok"),
        ("```python\nmodel.eval()\n```", "ok"),
        ("```python\nif x\n    pass\n```", "code:parse_error"),
        ("```python\nx = 1\x00\n```", "code:parse_error"),  # null byte: an error without a line
        ("```bash\nrm -rf / && eval $x\n```", "ok"),  # not Python: not parsed
        ("use eval() only on trusted input", "ok"),  # prose, no code block
        ("token ghp_abcdefghijklmnopqrstuvwxyz0123456789", "pii:api_key"),
        ("Authorization: Bearer abcdefghijklmnop0123456789", "pii:api_key"),
        ("released 2024-01-05, version 3.11.2, port 8080", "ok"),
        ("write to admin@example.com", "ok"),  # allowed by the policy below
    ],
)
def test_safety_rules(completion, rule, stage_context):
    stage_context.policy = parse_policy({"pii": {"allow": [r"@example\.com$"]}})
    verdict = SafetyFilter().filter([Example(prompt="q", completion=completion)], stage_context)[0]
    assert verdict.rule == rule and verdict.keep == (rule == "ok"), verdict.reason


def test_code_checks_spare_categories_not_meant_to_be_safe_and_never_run_code(stage_context, tmp_path):
    marker = tmp_path / "ran"
    code = f"```python\nimport os\nos.system('touch {marker}')\n```"
    stage_context.policy = parse_policy({"code": {"allow_categories": ["insecure-demo"]}})
    kept, dropped = SafetyFilter().filter(
        [Example(prompt="q", completion=code, category="insecure-demo"), Example(prompt="q", completion=code)],
        stage_context)
    assert kept.keep and not dropped.keep and dropped.rule == "code:dangerous_call"
    assert not marker.exists()


# --- the done-when run -------------------------------------------------------------------------


def test_a_run_keeps_no_toxic_pii_or_unsafe_code_example_and_names_each_rule(tmp_path, warden_forge, detox):
    from forgemind_openai.testing import FakeOpenAIServer

    checkpoint, config_dir = detox
    with FakeOpenAIServer(moderation=_moderation) as server:
        goal = _goal(tmp_path / "colors", policy=POLICY, filters=textwrap.dedent(f"""\
            filter:
              - backend: safety
              - backend: detoxify
                checkpoint: {checkpoint}
                config_dir: {config_dir}
              - backend: moderation
                base_url: {server.base_url}
              - backend: rules
            """))
        summary = warden_forge.run(goal)
    registry = warden_forge.registry()
    bad_ids = {Example(prompt=f"Sentence: {p}\nTemperature:", completion=c).id: rule for (p, c), rule in BAD.items()}
    trained: set[str] = set()
    for item in summary["iterations"]:
        dataset = registry.lineage(item["data"]["dataset_id"])["datasets"][0]
        trained |= {e.id for e in read_snapshot(dataset["path"])}
    assert trained and not (trained & bad_ids.keys())
    rejections = {r["example_id"]: r for r in registry.rejections(summary["run_id"])}
    for example_id, rule in bad_ids.items():
        row = rejections[example_id]
        assert f"{row['filter']}:{row['rule']}" == rule, (rule, row)
        assert row["reason"]
    cli = build_cli(warden_forge)
    shown = json.loads(CliRunner().invoke(cli, ["show", summary["run_id"], "--rejections", "--json"]).output)
    assert {r["example_id"] for r in shown} >= bad_ids.keys()


# --- human review through the API and the loop -------------------------------------------------


def test_the_loop_waits_for_review_then_trains_on_decisions(tmp_path, warden_forge):
    policy = POLICY + "review: {sample: 0.25, pending: wait, wait_timeout_s: 0.3, poll_s: 0.05}\n"
    goal = _goal(tmp_path / "colors", policy=policy,
                 filters="filter: [{backend: safety}, {backend: rules}]\n",
                 extra="")
    goal.write_text(goal.read_text().replace("max_iterations: 3", "max_iterations: 1"))
    with pytest.raises(ReviewPending, match=r"paused: .* still undecided"):
        warden_forge.run(goal, run_id="rev")
    queue = warden_forge.review_queue("rev")
    assert len(queue) == 4 and all(r["status"] == "pending" for r in queue)
    assert all(r["reasons"] == ["random sample (25% of kept examples)"] for r in queue)
    assert warden_forge.status("rev")["status"] == "paused"
    first, second, *rest = queue
    warden_forge.review(first["item_id"][:8], "reject", reason="wrong label", reviewer="ann")
    relabel = " warm" if second["payload"]["example"]["completion"] == " cool" else " cool"
    edited = warden_forge.review(second["item_id"], "edit", edit={"completion": relabel}, reviewer="bob")
    assert edited["status"] == "decided"
    warden_forge.review(rest[0]["item_id"], "skip", reviewer="ann")  # recorded, still pending
    assert len(warden_forge.review_queue("rev")) == 2
    for row in rest:
        warden_forge.review(row["item_id"], "approve")
    assert warden_forge.review_queue("rev") == []
    summary = warden_forge.resume("rev")
    assert summary["iterations"][0]["data"]["dropped_by_reason"]["review.rejected"] == 1
    dataset = json.loads((warden_forge.home / "runs" / "rev" / "iter-1" / "dataset.json").read_text())["dataset"]
    members = {e.id: e for e in read_snapshot(dataset["path"])}
    assert first["subject_id"] not in members and second["subject_id"] not in members
    edits = [e for e in members.values() if e.meta.get("edited_from") == second["subject_id"]]
    assert len(edits) == 1 and edits[0].completion == relabel and edits[0].meta["edited_by"] == "bob"
    rejected = {r["example_id"]: r for r in warden_forge.registry().rejections("rev") if r["filter"] == "review"}
    assert rejected[first["subject_id"]]["rule"] == "rejected"
    assert rejected[first["subject_id"]]["reason"] == "rejected by ann: wrong label"
    assert rejected[second["subject_id"]]["rule"] == "edited"
    decided = warden_forge.review_queue("rev", status="decided")
    assert {r["reviewer"] for r in decided} >= {"ann", "bob"} and all(r["decided"] for r in decided)


def test_pending_skip_leaves_undecided_examples_out_and_in_the_queue(tmp_path, warden_forge):
    policy = POLICY + "review: {sample: 0.5, pending: skip}\n"
    goal = _goal(tmp_path / "colors", policy=policy, filters="filter: [{backend: safety}, {backend: rules}]\n")
    goal.write_text(goal.read_text().replace("max_iterations: 3", "max_iterations: 1"))
    summary = warden_forge.run(goal, run_id="skip")
    pending = warden_forge.review_queue("skip")
    data = summary["iterations"][0]["data"]
    assert len(pending) == (data["kept"] + len(pending)) // 2 > 0  # half the filters' survivors, drawn
    assert data["dropped_by_reason"]["review.pending"] == len(pending)
    dataset = warden_forge.registry().lineage(data["dataset_id"])["datasets"][0]
    assert not {r["subject_id"] for r in pending} & {e.id for e in read_snapshot(dataset["path"])}
    # the review stage shows in status, in its place (runs without a policy have none)
    stages = warden_forge.status("skip")["iterations"][0]["stages_done"]
    assert stages[:5] == ["plan", "generate", "filter", "review", "dataset"]


# --- approval gate -----------------------------------------------------------------------------


def test_a_promotion_that_needs_approval_waits_for_forge_approve(tmp_path, warden_forge):
    goal = _goal(tmp_path / "colors", policy=POLICY + "approval_required: true\n",
                 filters="filter: [{backend: safety}, {backend: rules}]\n")
    summary = warden_forge.run(goal, run_id="gate")
    assert summary["outcome"] == "candidate" and summary["stable_checkpoint"] is None
    registry = warden_forge.registry()
    assert registry.channel("stable") == []
    candidate = registry.run("gate")["run"]
    assert candidate["outcome"] == "candidate"
    [item] = warden_forge.review_queue("gate", subject_kind="promotion")
    checkpoint = item["subject_id"]
    assert any("forge approve" in r for r in summary["reasons"])
    cli = build_cli(warden_forge)
    assert CliRunner().invoke(cli, ["approve", "nope"]).exit_code == 2
    result = CliRunner().invoke(cli, ["approve", checkpoint[:10], "--reviewer", "carol", "--json"])
    assert result.exit_code == 0, result.output
    stable = registry.channel("stable")
    assert [r["checkpoint_id"] for r in stable] == [checkpoint]
    approvals = registry.lineage(checkpoint)["reviews"]
    assert [(a["action"], a["reviewer"]) for a in approvals] == [("approve", "carol")] and approvals[0]["decided"]
    assert registry.run("gate")["run"]["outcome"] == "promoted"
    assert warden_forge.status("gate")["approval"]["reviewer"] == "carol"
    again = CliRunner().invoke(cli, ["approve", checkpoint])
    assert again.exit_code == 2 and "already approved by carol" in again.output


def test_every_pii_needle_is_in_every_match_of_its_pattern():
    """The safety filter skips a built-in pattern on a text holding none of its needles; that is
    only sound if every match holds one (checked on a match of each pattern, mixed case too)."""
    import re

    from forgemind_core.warden.safety import _NEEDLES, PII_PATTERNS

    samples = ["bob.smith@corp-mail.com", "key AKIAIOSFODNN7EXAMPLE", "ghp_" + "a" * 36, "github_pat_" + "b" * 40,
               "sk-proj-" + "c" * 24, "xoxb-1234567890-abc", "AIza" + "d" * 35, "rk_live_" + "e" * 16,
               "eyJhbGciOiJI.eyJzdWIiOiIx.SflKxwRJSMeKKF2QT4f", 'API_KEY = "abcdefghijklmnop1234"',
               'Access-Token: "abcdefghijklmnop1234"', "AUTHORIZATION: Bearer abcdefghijklmnop0123",
               "-----BEGIN RSA PRIVATE KEY-----"]
    assert set(_NEEDLES) <= {p for patterns in PII_PATTERNS.values() for p in patterns}
    for pattern, needles in _NEEDLES.items():
        compiled = re.compile(pattern)
        hits = [m.group(0) for text in samples for m in compiled.finditer(text)]
        assert hits, pattern
        fold = bool(compiled.flags & re.IGNORECASE)
        assert all(any(n in (h.lower() if fold else h) for n in needles) for h in hits), pattern
