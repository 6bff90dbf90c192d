"""Tests of the example plugin, using only forgemind_hookspecs' pytest fixtures."""

import forgemind_keywords
from forgemind_hookspecs import EvalCase, Example, collect_backends


def test_hook_forgemind_register_filters_offers_keywords(make_pm):
    backends = collect_backends(make_pm(forgemind_keywords), "filters")
    assert backends["keywords"].cls is forgemind_keywords.KeywordFilter
    assert backends["keywords"].plugin == "forgemind_keywords"


def test_keyword_filter_drops_banned_words_only(stage_context):
    filt = forgemind_keywords.KeywordFilter(forgemind_keywords.KeywordFilter.Options(banned=("lorem",)))
    examples = [Example(prompt="Lorem ipsum", completion="x"), Example(prompt="hello", completion="world")]
    verdicts = filt.filter(examples, stage_context)
    assert [v.keep for v in verdicts] == [False, True]
    assert verdicts[0].reason == "contains banned word 'Lorem'"


def test_contains_all_scores_partial_matches(stage_context):
    scorer = forgemind_keywords.ContainsAll(forgemind_keywords.ContainsAll.Options())
    cases = [EvalCase(input="q", expected="alpha, beta")]
    [result] = scorer.score(cases, ["ALPHA only"], stage_context)
    assert result.score == 0.5 and not result.passed and result.details["missing"] == ["beta"]


def test_installed_plugin_is_found_by_the_kernel(tmp_path):
    from forgemind_core import Forge

    forge = Forge(home=tmp_path)
    names = {row["name"]: row for row in forge.plugins()}
    assert names["keywords"]["backends"] == {"filters": ["keywords"], "scorers": ["contains_all"]}
