"""The detoxify filter on a tiny checkpoint built here and loaded through Detoxify's own
loading path (no download): batching, thresholds from the policy, grey band, weights-only."""

from __future__ import annotations

import os
import pickle

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import forgemind_detoxify
from forgemind_detoxify import DetoxifyFilter, load_model, score_texts
from forgemind_detoxify.testing import build_checkpoint
from forgemind_hookspecs import ConfigError, Example, Policy, ReviewPolicy, collect_backends


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("detoxify")
    return build_checkpoint(root, words={"toxicity": ["scum", "toxicword"], "insult": ["moron"]},
                            label_logits={"threat": -0.3})


def _filter(tiny, **options):
    checkpoint, folder = tiny
    return DetoxifyFilter(DetoxifyFilter.Options(checkpoint=str(checkpoint), config_dir=str(folder), **options))


def test_hook_forgemind_register_filters_offers_detoxify(make_pm):
    assert collect_backends(make_pm(forgemind_detoxify), "filters")["detoxify"].cls is DetoxifyFilter


def test_drops_toxic_examples_with_label_and_score(tiny, stage_context):
    examples = [Example(prompt="hello world", completion=" good"), Example(prompt="you are scum", completion=" x"),
                Example(prompt="thanks", completion=" you moron")]
    verdicts = _filter(tiny, batch_size=2).filter(examples, stage_context)
    assert [v.keep for v in verdicts] == [True, False, False]
    assert (verdicts[1].rule, verdicts[2].rule) == ("toxicity", "insult")
    assert verdicts[1].score > 0.9 and "threshold 0.5" in verdicts[1].reason


def test_thresholds_and_grey_band_come_from_the_policy(tiny, stage_context):
    # threat scores sigmoid(-0.3) = 0.43 on every clean text: under 0.5, inside a 0.1 band.
    stage_context.policy = Policy(thresholds={"threat": 0.5}, review=ReviewPolicy(grey_band=0.1))
    verdict = _filter(tiny).filter([Example(prompt="hello")], stage_context)[0]
    assert verdict.keep and verdict.review and verdict.rule == "threat"
    stage_context.policy = Policy(thresholds={"threat": 0.4})
    verdict = _filter(tiny).filter([Example(prompt="hello")], stage_context)[0]
    assert not verdict.keep and verdict.rule == "threat"
    # The filter's own thresholds override the policy's.
    verdict = _filter(tiny, thresholds={"threat": 0.9}).filter([Example(prompt="hello")], stage_context)[0]
    assert verdict.keep and not verdict.review


def test_batched_scores_equal_one_at_a_time_and_the_model_loads_once(tiny):
    checkpoint, folder = tiny
    model = load_model(checkpoint=str(checkpoint), config_dir=str(folder))
    assert load_model(checkpoint=str(checkpoint), config_dir=str(folder)) is model
    texts = ["hello world", "you are scum and a moron", "the data is nice", "toxicword " * 30]
    batched = score_texts(model, texts, batch_size=4)
    single = score_texts(model, texts, batch_size=1)
    for a, b in zip(batched, single, strict=True):
        assert a.keys() == b.keys() and all(abs(a[k] - b[k]) < 1e-4 for k in a)
    assert batched[3]["toxicity"] > 0.9 > batched[2]["toxicity"]


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_a_checkpoint_holding_code_is_refused(tmp_path):
    path = tmp_path / "evil.ckpt"
    path.write_bytes(pickle.dumps({"config": {}, "state_dict": {}, "x": _Evil()}))
    with pytest.raises(ConfigError, match="refused: not a weights-only"):
        load_model(checkpoint=str(path), config_dir=str(tmp_path))


def test_a_missing_checkpoint_is_one_sentence(tmp_path):
    with pytest.raises(ConfigError, match="no such checkpoint file"):
        load_model(checkpoint=str(tmp_path / "nope.ckpt"))
