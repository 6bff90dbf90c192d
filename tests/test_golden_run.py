"""Golden tests (issue 17, step 0): what a finished run writes, pinned as literals before the
kernel's modules move into per-pillar packages, so the move is checked, not hoped.

Only the public API is used (``Forge`` through the ``forge`` fixture of tests/conftest.py, with the
memo test backends of tests/kernel_plugins.py): the run folder layout, the keys of every stage
file, the registry tables (row counts and columns), the event kinds in order, and the scores and
decisions of the plain run. Run ids, pids and lock files are normalised or left out.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

# --- expectations, taken from a run of the code before the move (2349f11) and reviewed -----------

PLAIN_LAYOUT = ['<run>/base.json', '<run>/goal.json', '<run>/iter-1/dataset.json', '<run>/iter-1/decide.json',
 '<run>/iter-1/estimate.json', '<run>/iter-1/evaluate.json', '<run>/iter-1/examples.jsonl',
 '<run>/iter-1/filter.json', '<run>/iter-1/generate.json', '<run>/iter-1/plan.json',
 '<run>/iter-1/train.json', '<run>/iter-1/train/model.json', '<run>/iter-1/verdicts.jsonl',
 '<run>/iter-2/dataset.json', '<run>/iter-2/decide.json', '<run>/iter-2/estimate.json',
 '<run>/iter-2/evaluate.json', '<run>/iter-2/examples.jsonl', '<run>/iter-2/filter.json',
 '<run>/iter-2/generate.json', '<run>/iter-2/plan.json', '<run>/iter-2/train.json',
 '<run>/iter-2/train/model.json', '<run>/iter-2/verdicts.jsonl', '<run>/state.json']

CANDIDATES_LAYOUT = ['<run>-c1.0/base.json', '<run>-c1.0/candidate.json', '<run>-c1.0/goal.json',
 '<run>-c1.0/iter-1/dataset.json', '<run>-c1.0/iter-1/decide.json', '<run>-c1.0/iter-1/estimate.json',
 '<run>-c1.0/iter-1/evaluate.json', '<run>-c1.0/iter-1/examples.jsonl', '<run>-c1.0/iter-1/filter.json',
 '<run>-c1.0/iter-1/generate.json', '<run>-c1.0/iter-1/plan.json', '<run>-c1.0/iter-1/train.json',
 '<run>-c1.0/iter-1/train/model.json', '<run>-c1.0/iter-1/verdicts.jsonl', '<run>-c1.0/journal.jsonl',
 '<run>-c1.0/state.json', '<run>-c1.1/base.json', '<run>-c1.1/candidate.json', '<run>-c1.1/goal.json',
 '<run>-c1.1/iter-1/dataset.json', '<run>-c1.1/iter-1/decide.json', '<run>-c1.1/iter-1/estimate.json',
 '<run>-c1.1/iter-1/evaluate.json', '<run>-c1.1/iter-1/examples.jsonl', '<run>-c1.1/iter-1/filter.json',
 '<run>-c1.1/iter-1/generate.json', '<run>-c1.1/iter-1/plan.json', '<run>-c1.1/iter-1/train.json',
 '<run>-c1.1/iter-1/train/model.json', '<run>-c1.1/iter-1/verdicts.jsonl', '<run>-c1.1/journal.jsonl',
 '<run>-c1.1/state.json', '<run>-c2.0/base.json', '<run>-c2.0/candidate.json', '<run>-c2.0/goal.json',
 '<run>-c2.0/iter-1/dataset.json', '<run>-c2.0/iter-1/decide.json', '<run>-c2.0/iter-1/estimate.json',
 '<run>-c2.0/iter-1/evaluate.json', '<run>-c2.0/iter-1/examples.jsonl', '<run>-c2.0/iter-1/filter.json',
 '<run>-c2.0/iter-1/generate.json', '<run>-c2.0/iter-1/plan.json', '<run>-c2.0/iter-1/train.json',
 '<run>-c2.0/iter-1/verdicts.jsonl', '<run>-c2.0/iter-2/dataset.json', '<run>-c2.0/iter-2/decide.json',
 '<run>-c2.0/iter-2/estimate.json', '<run>-c2.0/iter-2/evaluate.json', '<run>-c2.0/iter-2/examples.jsonl',
 '<run>-c2.0/iter-2/filter.json', '<run>-c2.0/iter-2/generate.json', '<run>-c2.0/iter-2/plan.json',
 '<run>-c2.0/iter-2/train.json', '<run>-c2.0/iter-2/train/model.json', '<run>-c2.0/iter-2/verdicts.jsonl',
 '<run>-c2.0/journal.jsonl', '<run>-c2.0/state.json', '<run>-c2.1/base.json', '<run>-c2.1/candidate.json',
 '<run>-c2.1/goal.json', '<run>-c2.1/iter-1/dataset.json', '<run>-c2.1/iter-1/decide.json',
 '<run>-c2.1/iter-1/estimate.json', '<run>-c2.1/iter-1/evaluate.json', '<run>-c2.1/iter-1/examples.jsonl',
 '<run>-c2.1/iter-1/filter.json', '<run>-c2.1/iter-1/generate.json', '<run>-c2.1/iter-1/plan.json',
 '<run>-c2.1/iter-1/train.json', '<run>-c2.1/iter-1/verdicts.jsonl', '<run>-c2.1/iter-2/dataset.json',
 '<run>-c2.1/iter-2/decide.json', '<run>-c2.1/iter-2/estimate.json', '<run>-c2.1/iter-2/evaluate.json',
 '<run>-c2.1/iter-2/examples.jsonl', '<run>-c2.1/iter-2/filter.json', '<run>-c2.1/iter-2/generate.json',
 '<run>-c2.1/iter-2/plan.json', '<run>-c2.1/iter-2/train.json', '<run>-c2.1/iter-2/train/model.json',
 '<run>-c2.1/iter-2/verdicts.jsonl', '<run>-c2.1/journal.jsonl', '<run>-c2.1/state.json', '<run>/base.json',
 '<run>/goal.json', '<run>/iter-1/candidates.json', '<run>/iter-1/dataset.json', '<run>/iter-1/decide.json',
 '<run>/iter-1/estimate.json', '<run>/iter-1/evaluate.json', '<run>/iter-1/examples.jsonl',
 '<run>/iter-1/filter.json', '<run>/iter-1/generate.json', '<run>/iter-1/plan.json',
 '<run>/iter-1/train.json', '<run>/iter-1/verdicts.jsonl', '<run>/iter-2/candidates.json',
 '<run>/iter-2/dataset.json', '<run>/iter-2/decide.json', '<run>/iter-2/estimate.json',
 '<run>/iter-2/evaluate.json', '<run>/iter-2/examples.jsonl', '<run>/iter-2/filter.json',
 '<run>/iter-2/generate.json', '<run>/iter-2/plan.json', '<run>/iter-2/train.json',
 '<run>/iter-2/verdicts.jsonl', '<run>/state.json']

FORK_LAYOUT = ['<run>/base.json', '<run>/goal.json', '<run>/iter-1/dataset.json', '<run>/iter-1/decide.json',
 '<run>/iter-1/estimate.json', '<run>/iter-1/evaluate.json', '<run>/iter-1/examples.jsonl',
 '<run>/iter-1/filter.json', '<run>/iter-1/generate.json', '<run>/iter-1/plan.json',
 '<run>/iter-1/train.json', '<run>/iter-1/verdicts.jsonl', '<run>/iter-2/dataset.json',
 '<run>/iter-2/decide.json', '<run>/iter-2/estimate.json', '<run>/iter-2/evaluate.json',
 '<run>/iter-2/examples.jsonl', '<run>/iter-2/filter.json', '<run>/iter-2/generate.json',
 '<run>/iter-2/plan.json', '<run>/iter-2/train.json', '<run>/iter-2/train/model.json',
 '<run>/iter-2/verdicts.jsonl', '<run>/log.jsonl', '<run>/state.json', 'parent/base.json', 'parent/goal.json',
 'parent/iter-1/dataset.json', 'parent/iter-1/decide.json', 'parent/iter-1/estimate.json',
 'parent/iter-1/evaluate.json', 'parent/iter-1/examples.jsonl', 'parent/iter-1/filter.json',
 'parent/iter-1/generate.json', 'parent/iter-1/plan.json', 'parent/iter-1/train.json',
 'parent/iter-1/train/model.json', 'parent/iter-1/verdicts.jsonl', 'parent/iter-2/dataset.json',
 'parent/iter-2/decide.json', 'parent/iter-2/estimate.json', 'parent/iter-2/evaluate.json',
 'parent/iter-2/examples.jsonl', 'parent/iter-2/filter.json', 'parent/iter-2/generate.json',
 'parent/iter-2/plan.json', 'parent/iter-2/train.json', 'parent/iter-2/train/model.json',
 'parent/iter-2/verdicts.jsonl', 'parent/state.json']

PLAIN_STAGE_KEYS = {'base.json': {'checkpoint': ['base_model', 'dataset_id', 'id', 'kind', 'manifest', 'method', 'parent',
                              'path'],
               'seconds': None},
 'goal.json': {'evaluate': ['adversarial_per_iteration', 'adversary', 'runner', 'scorers'],
               'executor': ['backend', 'options'],
               'export': [],
               'filter': None,
               'generate': None,
               'limits': ['base_model', 'budget_usd', 'max_iterations', 'max_tokens', 'method', 'patience',
                          'wall_clock_s'],
               'name': None,
               'pack': None,
               'planner': ['backend', 'options'],
               'pretrain': ['corpus', 'options', 'preset'],
               'report_to': None,
               'review': ['backend', 'options', 'policy'],
               'search': ['candidates', 'space', 'storage'],
               'seed': None,
               'source': None,
               'success': ['adversarial_min', 'canary_min', 'metric', 'threshold', 'tier'],
               'task': None,
               'train': ['backend', 'options']},
 'iter-1/dataset.json': {'dataset': ['id', 'n_examples', 'parents', 'path', 'stats'], 'seconds': None},
 'iter-1/decide.json': {'decision': ['action', 'checkpoint_id', 'next_plan', 'reasons'], 'seconds': None},
 'iter-1/estimate.json': {'affordable': None,
                          'estimate': ['basis', 'cost_usd', 'details', 'generation_cost_usd', 'seconds',
                                       'steps', 'tokens'],
                          'reason': None,
                          'seconds': None},
 'iter-1/evaluate.json': {'reports': ['canary', 'full'], 'scores': ['canary', 'full'], 'seconds': None},
 'iter-1/filter.json': {'dropped': None,
                        'dropped_by_reason': [],
                        'kept': None,
                        'kept_by_category': ['cool', 'warm'],
                        'kept_ids': None,
                        'seconds': None},
 'iter-1/generate.json': {'by_generator': ['template'],
                          'cost_usd': None,
                          'file': None,
                          'generated': None,
                          'note': None,
                          'seconds': None},
 'iter-1/plan.json': {'adversarial_cases': None,
                      'plan': ['candidate', 'dataset_size', 'generation', 'iteration', 'reasons', 'train'],
                      'seconds': None},
 'iter-1/train.json': {'checkpoint': ['base_model', 'dataset_id', 'id', 'kind', 'manifest', 'method',
                                      'parent', 'path'],
                       'seconds': None},
 'iter-2/dataset.json': {'dataset': ['id', 'n_examples', 'parents', 'path', 'stats'], 'seconds': None},
 'iter-2/decide.json': {'decision': ['action', 'checkpoint_id', 'next_plan', 'reasons'], 'seconds': None},
 'iter-2/estimate.json': {'affordable': None,
                          'estimate': ['basis', 'cost_usd', 'details', 'generation_cost_usd', 'seconds',
                                       'steps', 'tokens'],
                          'reason': None,
                          'seconds': None},
 'iter-2/evaluate.json': {'reports': ['canary', 'full'], 'scores': ['canary', 'full'], 'seconds': None},
 'iter-2/filter.json': {'dropped': None,
                        'dropped_by_reason': [],
                        'kept': None,
                        'kept_by_category': ['cool', 'warm'],
                        'kept_ids': None,
                        'seconds': None},
 'iter-2/generate.json': {'by_generator': ['template'],
                          'cost_usd': None,
                          'file': None,
                          'generated': None,
                          'note': None,
                          'seconds': None},
 'iter-2/plan.json': {'adversarial_cases': None,
                      'plan': ['candidate', 'dataset_size', 'generation', 'iteration', 'reasons', 'train'],
                      'seconds': None},
 'iter-2/train.json': {'checkpoint': ['base_model', 'dataset_id', 'id', 'kind', 'manifest', 'method',
                                      'parent', 'path'],
                       'seconds': None},
 'state.json': {'elapsed_s': None,
                'finished': None,
                'goal': None,
                'iteration': None,
                'outcome': None,
                'parent': [],
                'reasons': None,
                'run_id': None,
                'spent_usd': None,
                'stable_checkpoint': None,
                'stage': None,
                'started': None,
                'status': None}}

FORK_STATE_PARENT_KEYS = ['branch', 'changed', 'iteration', 'parent_branch', 'rerun_from', 'reused', 'run_id']

REGISTRY_COLUMNS = {'all_edges': ('src', 'src_kind', 'dst', 'dst_kind', 'relation', 'run_id'),
 'checkpoints': ('id', 'run_id', 'iteration', 'stage', 'path', 'base_model', 'method', 'kind', 'dataset_id',
                 'parent', 'manifest', 'record'),
 'dataset_examples': ('dataset_id', 'example_id', 'category', 'generator', 'model', 'prompt_template',
                      'seed'),
 'datasets': ('id', 'run_id', 'iteration', 'path', 'n_examples', 'parents', 'stats', 'members_loaded'),
 'decisions': ('run_id', 'iteration', 'event_id', 'action', 'reasons', 'checkpoint_id', 'next_plan', 'time'),
 'eval_reports': ('run_id', 'iteration', 'event_id', 'checkpoint_id', 'tier', 'metrics', 'report'),
 'eval_results': ('run_id', 'iteration', 'event_id', 'checkpoint_id', 'tier', 'case_id', 'output', 'score',
                  'passed', 'scorer', 'category', 'expected', 'details'),
 'events': ('id', 'run_id', 'seq', 'kind', 'iteration', 'stage', 'time', 'payload'),
 'examples': ('id', 'run_id', 'iteration', 'event_id', 'prompt', 'completion', 'messages', 'category',
              'generator', 'model', 'prompt_template', 'seed', 'tokens', 'cost_usd', 'meta'),
 'iterations': ('run_id', 'iteration', 'plan', 'planner_decision', 'decision', 'dataset_id', 'checkpoint_id',
                'estimate'),
 'journal_offsets': ('file', 'byte_offset'),
 'lineage_edges': ('src', 'src_kind', 'dst', 'dst_kind', 'relation', 'run_id'),
 'meta': ('key', 'value'),
 'metrics': ('run_id', 'iteration', 'stage', 'event_id', 'seq', 'name', 'step', 'value', 'time'),
 'promotions': ('channel', 'version', 'checkpoint_id', 'run_id', 'iteration', 'event_id', 'time'),
 'reviews': ('item_id', 'run_id', 'iteration', 'subject_kind', 'subject_id', 'payload', 'scores', 'reasons',
             'created', 'action', 'reviewer', 'reason', 'edited', 'decided'),
 'served_models': ('run_id', 'key', 'checkpoint_id', 'served_model', 'pillar', 'client', 'field', 'ref',
                   'checkpoint_run', 'goal', 'version', 'event_id'),
 'runs': ('id', 'goal_name', 'task', 'goal_file', 'parent_run', 'parent_iteration', 'branch',
          'forgemind_version', 'status', 'started', 'finished', 'outcome', 'reasons', 'stable_checkpoint',
          'goal', 'cost_usd'),
 'verdicts': ('run_id', 'iteration', 'event_id', 'example_id', 'filter', 'keep', 'rule', 'score', 'reason')}

PLAIN_ROWS = {'all_edges': 67,
 'checkpoints': 3,
 'dataset_examples': 56,
 'datasets': 2,
 'decisions': 2,
 'eval_reports': 4,
 'eval_results': 40,
 'events': 66,
 'examples': 40,
 'iterations': 2,
 'journal_offsets': 1,
 'lineage_edges': 11,
 'meta': 1,
 'metrics': 10,
 'promotions': 1,
 'reviews': 0,
 'runs': 1,
 'served_models': 0,
 'verdicts': 40}

CANDIDATES_ROWS = {'all_edges': 148,
 'checkpoints': 5,
 'dataset_examples': 112,
 'datasets': 4,
 'decisions': 8,
 'eval_reports': 7,
 'eval_results': 64,
 'events': 210,
 'examples': 80,
 'iterations': 8,
 'journal_offsets': 5,
 'lineage_edges': 36,
 'meta': 1,
 'metrics': 19,
 'promotions': 1,
 'reviews': 0,
 'runs': 5,
 'served_models': 0,
 'verdicts': 80}

FORK_ROWS = {'all_edges': 76,
 'checkpoints': 4,
 'dataset_examples': 56,
 'datasets': 2,
 'decisions': 4,
 'eval_reports': 6,
 'eval_results': 60,
 'events': 110,
 'examples': 40,
 'iterations': 4,
 'journal_offsets': 2,
 'lineage_edges': 20,
 'meta': 1,
 'metrics': 15,
 'promotions': 2,
 'reviews': 0,
 'runs': 2,
 'served_models': 0,
 'verdicts': 40}

PLAIN_EVENTS = [(0, '', 'run.started'), (0, 'base', 'stage.started'), (0, 'base', 'stage.finished'),
 (0, 'base', 'checkpoint'), (1, 'plan', 'stage.started'), (1, 'plan', 'stage.finished'), (1, 'plan', 'plan'),
 (1, 'generate', 'stage.started'), (1, 'generate', 'examples'), (1, 'generate', 'stage.finished'),
 (1, 'filter', 'stage.started'), (1, 'filter', 'verdicts'), (1, 'filter', 'stage.finished'),
 (1, 'dataset', 'stage.started'), (1, 'dataset', 'stage.finished'), (1, 'dataset', 'dataset'),
 (1, 'estimate', 'stage.started'), (1, 'estimate', 'stage.finished'), (1, 'estimate', 'estimate'),
 (1, 'train', 'stage.started'), (1, 'train', 'metric'), (1, 'train', 'metric'), (1, 'train', 'metric'),
 (1, 'train', 'stage.finished'), (1, 'train', 'checkpoint'), (1, 'evaluate', 'stage.started'),
 (1, 'evaluate', 'metric'), (1, 'evaluate', 'metric'), (1, 'evaluate', 'stage.finished'),
 (1, 'evaluate', 'eval.report'), (1, 'evaluate', 'eval.report'), (1, 'decide', 'stage.started'),
 (1, 'decide', 'stage.finished'), (1, 'decide', 'decision'), (2, 'plan', 'stage.started'),
 (2, 'plan', 'stage.finished'), (2, 'plan', 'plan'), (2, 'generate', 'stage.started'),
 (2, 'generate', 'examples'), (2, 'generate', 'stage.finished'), (2, 'filter', 'stage.started'),
 (2, 'filter', 'verdicts'), (2, 'filter', 'stage.finished'), (2, 'dataset', 'stage.started'),
 (2, 'dataset', 'stage.finished'), (2, 'dataset', 'dataset'), (2, 'estimate', 'stage.started'),
 (2, 'estimate', 'stage.finished'), (2, 'estimate', 'estimate'), (2, 'train', 'stage.started'),
 (2, 'train', 'metric'), (2, 'train', 'metric'), (2, 'train', 'metric'), (2, 'train', 'stage.finished'),
 (2, 'train', 'checkpoint'), (2, 'evaluate', 'stage.started'), (2, 'evaluate', 'metric'),
 (2, 'evaluate', 'metric'), (2, 'evaluate', 'stage.finished'), (2, 'evaluate', 'eval.report'),
 (2, 'evaluate', 'eval.report'), (2, 'decide', 'stage.started'), (2, 'decide', 'stage.finished'),
 (2, 'decide', 'decision'), (2, 'decide', 'promotion'), (0, '', 'run.finished')]

CANDIDATES_EVENTS = [(0, '', 'run.started'), (0, 'base', 'stage.started'), (0, 'base', 'stage.finished'),
 (0, 'base', 'checkpoint'), (1, 'plan', 'stage.started'), (1, 'plan', 'stage.finished'), (1, 'plan', 'plan'),
 (1, 'candidates', 'stage.started'), (1, 'candidates', 'candidates.launched'), (1, 'candidates', 'cost'),
 (1, 'candidates', 'cost'), (1, 'candidates', 'stage.finished'), (1, 'generate', 'stage.finished'),
 (1, 'filter', 'stage.finished'), (1, 'dataset', 'stage.finished'), (1, 'dataset', 'dataset'),
 (1, 'estimate', 'stage.finished'), (1, 'estimate', 'estimate'), (1, 'train', 'stage.finished'),
 (1, 'train', 'checkpoint'), (1, 'evaluate', 'stage.finished'), (1, 'evaluate', 'eval.report'),
 (1, 'evaluate', 'eval.report'), (1, 'decide', 'stage.started'), (1, 'decide', 'stage.finished'),
 (1, 'decide', 'decision'), (2, 'plan', 'stage.started'), (2, 'plan', 'stage.finished'), (2, 'plan', 'plan'),
 (2, 'candidates', 'stage.started'), (2, 'candidates', 'candidates.launched'), (2, 'candidates', 'cost'),
 (2, 'candidates', 'cost'), (2, 'candidates', 'stage.finished'), (2, 'generate', 'stage.finished'),
 (2, 'filter', 'stage.finished'), (2, 'dataset', 'stage.finished'), (2, 'dataset', 'dataset'),
 (2, 'estimate', 'stage.finished'), (2, 'estimate', 'estimate'), (2, 'train', 'stage.finished'),
 (2, 'train', 'checkpoint'), (2, 'evaluate', 'stage.finished'), (2, 'evaluate', 'eval.report'),
 (2, 'evaluate', 'eval.report'), (2, 'decide', 'stage.started'), (2, 'decide', 'stage.finished'),
 (2, 'decide', 'decision'), (2, 'decide', 'promotion'), (0, '', 'run.finished')]

FORK_EVENTS = [(0, '', 'run.started'), (0, 'base', 'stage.finished'), (0, 'base', 'checkpoint'),
 (1, 'plan', 'stage.finished'), (1, 'plan', 'plan'), (1, 'generate', 'stage.finished'),
 (1, 'filter', 'stage.finished'), (1, 'dataset', 'stage.finished'), (1, 'dataset', 'dataset'),
 (1, 'estimate', 'stage.finished'), (1, 'estimate', 'estimate'), (1, 'train', 'stage.finished'),
 (1, 'train', 'checkpoint'), (1, 'evaluate', 'stage.finished'), (1, 'evaluate', 'eval.report'),
 (1, 'evaluate', 'eval.report'), (1, 'decide', 'stage.finished'), (1, 'decide', 'decision'),
 (2, 'plan', 'stage.finished'), (2, 'plan', 'plan'), (2, 'generate', 'stage.finished'),
 (2, 'filter', 'stage.finished'), (2, 'dataset', 'stage.finished'), (2, 'dataset', 'dataset'),
 (2, 'estimate', 'stage.started'), (2, 'estimate', 'stage.finished'), (2, 'estimate', 'estimate'),
 (2, 'train', 'stage.started'), (2, 'train', 'metric'), (2, 'train', 'metric'), (2, 'train', 'metric'),
 (2, 'train', 'stage.finished'), (2, 'train', 'checkpoint'), (2, 'evaluate', 'stage.started'),
 (2, 'evaluate', 'metric'), (2, 'evaluate', 'metric'), (2, 'evaluate', 'stage.finished'),
 (2, 'evaluate', 'eval.report'), (2, 'evaluate', 'eval.report'), (2, 'decide', 'stage.started'),
 (2, 'decide', 'stage.finished'), (2, 'decide', 'decision'), (2, 'decide', 'promotion'),
 (0, '', 'run.finished')]

CANDIDATES_RUNS = [('<run>', 'main', 'None', 'promoted'), ('<run>-c1.0', 'candidate-1.0-planned', '<run>', 'stopped'),
 ('<run>-c1.1', 'candidate-1.1-strategy=varied', '<run>', 'stopped'),
 ('<run>-c2.0', 'candidate-2.0-planned', '<run>', 'met'),
 ('<run>-c2.1', 'candidate-2.1-strategy=basic', '<run>', 'stopped')]


# --- what a run is observed to write ----------------------------------------------------------

def _layout(forge, run_id: str) -> list[str]:
    """Relative paths of every file under runs/, run ids replaced by <run>; no locks, no pids."""
    root = Path(forge.home) / "runs"
    paths = []
    for p in root.rglob("*"):
        rel = p.relative_to(root).as_posix()
        if not p.is_file() or p.name == ".lock" or "/.attempts/" in f"/{rel}":
            continue
        paths.append(rel.replace(run_id, "<run>"))
    return sorted(paths)


def _keys(data: dict) -> dict:
    """Top-level keys, and the keys one level down where the value is a mapping."""
    return {k: sorted(v) if isinstance(v, dict) else None for k, v in sorted(data.items())}


def _stage_keys(run_dir: Path) -> dict[str, dict]:
    return {p.relative_to(run_dir).as_posix(): _keys(json.loads(p.read_text()))
            for p in sorted(run_dir.rglob("*.json")) if "train/" not in p.relative_to(run_dir).as_posix()}


def _tables(forge) -> dict[str, tuple[int, list[str]]]:
    names = [r["table_name"] for r in forge.sql(
        "SELECT table_name FROM information_schema.tables ORDER BY table_name")]
    out = {}
    for name in names:
        cols = [r["column_name"] for r in forge.sql(
            f"SELECT column_name FROM information_schema.columns WHERE table_name = '{name}' ORDER BY ordinal_position")]
        n = forge.sql(f"SELECT count(*) AS n FROM {name}")[0]["n"]
        out[name] = (n, cols)
    return out


def _event_kinds(forge, run_id: str) -> list[tuple[int, str, str]]:
    rows = forge.sql(f"SELECT iteration, stage, kind FROM events WHERE run_id = '{run_id}' ORDER BY seq", max_rows=0)
    return [(r["iteration"], r["stage"], r["kind"]) for r in rows]


@pytest.fixture
def plain(forge, colors_goal):
    return forge.run(colors_goal)


def test_plain_run_folder_layout(forge, plain):
    assert _layout(forge, plain["run_id"]) == PLAIN_LAYOUT


def test_plain_run_stage_files_state_and_goal_keys(plain):
    assert _stage_keys(Path(plain["run_dir"])) == PLAIN_STAGE_KEYS


def test_plain_run_registry_tables_and_event_kinds(forge, plain):
    tables = _tables(forge)
    assert {name: cols for name, (_, cols) in tables.items()} == {k: list(v) for k, v in REGISTRY_COLUMNS.items()}
    assert {name: n for name, (n, _) in tables.items()} == PLAIN_ROWS
    assert _event_kinds(forge, plain["run_id"]) == PLAIN_EVENTS
    assert [(r["branch"], r["parent_run"], r["status"], r["outcome"]) for r in forge.runs()] == [
        ("main", None, "finished", "promoted")]
    assert [(r["channel"], r["version"], r["iteration"]) for r in forge.sql(
        "SELECT channel, version, iteration FROM promotions")] == [("stable", 1, 2)]


def test_plain_run_scores_and_decisions(plain):
    assert (plain["outcome"], plain["status"]) == ("promoted", "finished")
    assert plain["reasons"] == ["full accuracy 100% >= 90%, canary green, adversarial 100% >= 0%"]
    assert sorted(plain) == ["best_checkpoint", "cost_usd", "goal", "home", "iterations", "outcome", "reasons",
                             "run_dir", "run_id", "stable_checkpoint", "status", "wall_s"]
    iterations = plain["iterations"]
    assert [sorted(it) for it in iterations] == [
        ["checkpoint", "cost_usd", "data", "decision", "estimate", "estimate_error", "iteration", "plan", "scores",
         "seconds"]] * 2
    assert [it["scores"] for it in iterations] == [{"canary": 1.0, "full": 0.75}, {"canary": 1.0, "full": 1.0}]
    assert [(it["plan"]["dataset_size"], it["data"]["kept"]) for it in iterations] == [(16, 16), (24, 24)]
    assert [it["plan"]["generation"][0]["strategy"] for it in iterations] == ["basic", "varied"]
    first, last = (it["decision"] for it in iterations)
    assert first["action"] == "iterate" and first["reasons"] == [
        "full accuracy 75.0% < 90%",
        "full at 75% while training loss is 0.340: the model fits the data it saw but not new shapes"
        " -> strategy 'basic' -> 'varied'",
        "category warm at 50% of 8 cases (full) -> 2.3x its share of new data",
        "full below 90% -> 24 new examples (was 16)"]
    assert first["next_plan"]["generation"][0]["category_weights"] == {"cool": 1.0, "warm": 2.33}
    assert last == {"action": "promote", "checkpoint_id": iterations[1]["checkpoint"], "next_plan": None,
                    "reasons": ["full accuracy 100% >= 90%, canary green, adversarial 100% >= 0%"]}
    assert plain["stable_checkpoint"]["id"] == iterations[1]["checkpoint"]


def test_candidates_run_layout_registry_and_events(forge, colors_goal):
    colors_goal.write_text(colors_goal.read_text() + "search: {candidates: 2, space: {strategy: [basic, varied]}}\n")
    summary = forge.run(colors_goal)
    run_id = summary["run_id"]
    assert summary["outcome"] == "promoted"
    assert [it["scores"] for it in summary["iterations"]] == [{"canary": 1.0, "full": 0.75}, {"canary": 1.0, "full": 1.0}]
    assert _layout(forge, run_id) == CANDIDATES_LAYOUT
    assert {name: n for name, (n, _) in _tables(forge).items()} == CANDIDATES_ROWS
    assert _event_kinds(forge, run_id) == CANDIDATES_EVENTS
    runs = sorted((r["id"].replace(run_id, "<run>"), r["branch"], str(r["parent_run"]).replace(run_id, "<run>"),
                   r["outcome"]) for r in forge.runs())
    assert runs == CANDIDATES_RUNS


def test_forked_run_layout_registry_and_events(forge, colors_goal):
    forge.run(colors_goal, run_id="parent")
    child = forge.fork("parent", overrides={"train.epochs": 3}, branch="more-epochs", new_run_id="child")
    assert child["outcome"] == "promoted"
    assert [it["scores"] for it in child["iterations"]] == [{"canary": 1.0, "full": 0.75}, {"canary": 1.0, "full": 1.0}]
    assert _layout(forge, "child") == FORK_LAYOUT
    keys = _stage_keys(Path(child["run_dir"]))
    assert keys == {**PLAIN_STAGE_KEYS, "state.json": {**PLAIN_STAGE_KEYS["state.json"], "parent": FORK_STATE_PARENT_KEYS}}
    assert {name: n for name, (n, _) in _tables(forge).items()} == FORK_ROWS
    assert _event_kinds(forge, "child") == FORK_EVENTS
    assert sorted((r["id"], r["branch"], r["parent_run"]) for r in forge.runs()) == [
        ("child", "more-epochs", "parent"), ("parent", "main", None)]


def test_plain_run_checkpoints_are_listed_through_the_registry_contract(forge, plain):
    # forge checkpoints reads recorded checkpoints with Registry.checkpoints(), not SQL of its own
    recorded = [row for row in forge.checkpoints() if row["source"] == "registry"]
    assert [(row["run_id"], row["iteration"]) for row in recorded] == [(plain["run_id"], n) for n in (2, 1, 0)]
    assert [row["id"] for row in recorded[:2]] == [it["checkpoint"] for it in reversed(plain["iterations"])]
    assert recorded[2]["id"] not in {row["id"] for row in recorded[:2]}  # iteration 0: the base it started from
