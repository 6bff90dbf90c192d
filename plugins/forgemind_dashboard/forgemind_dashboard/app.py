"""The Gradio app: one tab per stage of the lifecycle, every action a call on a ``Forge``.

Long work (pre-training, fine-tuning, a run, a fork) is a background job (``Forge.submit``); the
page polls ``Forge.job`` once a second and re-attaches to the newest job of each kind when it
loads, so a browser reload loses nothing. Nothing here trains, evaluates or records by itself.
"""

from __future__ import annotations

import functools
import hmac
import json
import os
import random
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from forgemind_hookspecs import ForgeError

from .learn import GLOSSARY, TIPS, explainer_html, term
from .security import Confinement, Scrubber, check_bind, safe_id, safe_name, store_upload
from .views import (
    comparison_html,
    events_log,
    export_markdown,
    iterations_rows,
    job_status_html,
    lineage_markdown,
    loss_frame,
    metric_frame,
    metric_plot_start,
    pretrain_yaml,
    review_rows,
    run_tree_html,
    train_yaml,
)

__all__ = ["CSS", "build_app", "launch"]

CSS = """
.fm-progress { height: 8px; background: #eee; border-radius: 4px; margin: 4px 0; }
.fm-progress div { height: 8px; background: #0969da; border-radius: 4px; }
.fm-error { color: #cf222e; }
.fm-term { text-decoration: underline dotted; cursor: help; }
.fm-explainer { padding: 4px 0; }
.fm-compare table { border-collapse: collapse; margin: 6px 0; width: 100%; }
.fm-compare td, .fm-compare th { border: 1px solid #ccc; padding: 3px 6px; vertical-align: top; }
.fm-add { background: #d1f5d3; text-decoration: none; }
.fm-del { background: #ffd7d5; }
.fm-regression td:first-child { color: #cf222e; font-weight: bold; }
.fm-pass { background: #f3fbf4; } .fm-fail { background: #fff5f5; }
.fm-up { color: #1a7f37; } .fm-down { color: #cf222e; }
"""


def _message(error: Exception) -> str:
    return f"❌ {error}" if isinstance(error, ForgeError) else f"❌ {type(error).__name__}: {error}"


def _opt(value: Any, cast: Callable[[Any], Any]) -> Any:
    """A form number as an option, or None when left empty or 0."""
    if value is None or value == "" or value == 0:
        return None
    return cast(value)


#: The largest goal file the loader reads (a goal is a few kB).
MAX_GOAL_BYTES = 1 << 20


def _guarded(fn: Callable[..., Any], scrub: Scrubber) -> Callable[..., Any]:
    """``fn`` whose answer is scrubbed of secrets, and whose unexpected error reaches the page as
    one scrubbed sentence (``gr.Error``) instead of gradio's own rendering of the exception."""
    import gradio as gr

    @functools.wraps(fn)
    def guarded(*args: Any) -> Any:
        try:
            return scrub(fn(*args))
        except gr.Error:
            raise
        except Exception as error:
            raise gr.Error(scrub(_message(error))) from None

    return guarded


def build_app(forge: Any, *, max_upload_bytes: int = 200 * 1024 * 1024, learn: bool = False,
              allow: Iterable[str | os.PathLike[str]] | None = None, token: str | None = None) -> Any:
    """The dashboard as a ``gr.Blocks`` over ``forge`` (anything with the ``Forge`` API).

    Every path it reads or writes lies in the ForgeMind home or a folder of ``allow`` (default: the
    current folder); ``token`` and the process's secret environment values never leave it."""
    import gradio as gr
    import pandas as pd

    home = Path(forge.home).resolve()
    confine = Confinement(home, allow)

    def upload(file: Any) -> str | None:
        if not file:
            return None
        path = file if isinstance(file, str) else getattr(file, "name", str(file))
        source = confine.path(path, field="upload")  # gradio's upload cache lies in the home
        return str(store_upload(home, source, Path(path).name, max_upload_bytes))

    def checkpoint_choices(by_id: bool = False) -> list[tuple[str, str]]:
        """Every checkpoint, labelled with its source; the value is its folder (what the runners
        take), or its id where ``by_id`` (what ``Forge.export`` takes)."""
        try:
            rows = forge.checkpoints()
        except Exception:  # an empty home, a busy registry: offer what there is
            rows = []
        return [(f"{r['id']} · {r.get('source')} {r.get('method') or ''}".strip(),
                 r["id"] if by_id or not Path(r["path"]).exists() else r["path"]) for r in rows]

    def job_choices(kinds: tuple[str, ...]) -> list[tuple[str, str]]:
        # the status is not in the label: it changes, and the panel below shows it live
        return [(f"{j['id']} ({j['kind']})", j["id"]) for j in forge.jobs() if j["kind"] in kinds]

    learn_blocks: list[Any] = []

    def explainer(key: str, terms: tuple[str, ...]) -> None:
        with gr.Accordion("Learn: what happens here", open=True, visible=learn) as acc:
            gr.HTML(explainer_html(key))
            gr.HTML("Terms on this screen: " + " · ".join(term(t) for t in terms), elem_classes=["fm-terms"])
        learn_blocks.append(acc)

    def job_panel(prefix: str, kinds: tuple[str, ...]) -> dict[str, Any]:
        with gr.Group():
            with gr.Row():
                job = gr.Dropdown(label="Job", choices=[], allow_custom_value=True, elem_id=f"{prefix}-job", scale=3)
                refresh = gr.Button("Refresh jobs", size="sm", scale=1)
            status = gr.HTML("no job yet", elem_id=f"{prefix}-status")
            with gr.Row():
                log = gr.Textbox(label="Live log", lines=10, max_lines=14, autoscroll=True, elem_id=f"{prefix}-log")
                plot = gr.LinePlot(loss_frame([]), x="step", y="loss", color="series",
                                   title="Training loss", elem_id=f"{prefix}-plot", height=260)
            result = gr.Markdown(elem_id=f"{prefix}-result")
        refresh.click(lambda: gr.Dropdown(choices=job_choices(kinds)), outputs=job)
        return {"job": job, "status": status, "log": log, "plot": plot, "result": result, "kinds": kinds}

    def poll(job_id: str | None) -> tuple[Any, ...]:
        if not job_id:
            return "no job yet", "", loss_frame([]), ""
        try:
            data = forge.job(safe_id(job_id, "job id"))
        except Exception as error:
            return _message(error), "", loss_frame([]), ""
        result_md = ""
        res = data.get("result")
        if isinstance(res, Mapping) and res.get("path"):
            result_md = (f"**Saved model:** `{res['path']}`  \ncheckpoint `{res.get('id')}` "
                         f"({res.get('method')}, {res.get('kind')}) — pick it as a base in Fine-Tuning, "
                         f"or compare it in Evaluation.")
        elif isinstance(res, Mapping) and res.get("run_id"):
            stable = res.get("stable_checkpoint") or {}
            result_md = (f"**Run {res['run_id']}: {res.get('outcome')}** — " + "; ".join(res.get("reasons") or [])
                         + (f"  \nstable model: `{stable.get('path')}`" if stable else ""))
        log = events_log(data.get("events") or [])
        if data.get("status") == "failed" and data.get("log"):
            log += "\n" + data["log"][-3000:]
        return job_status_html(data), log, loss_frame(data.get("events") or []), result_md

    def attach(panel: dict[str, Any], timer: Any) -> None:
        outs = [panel["status"], panel["log"], panel["plot"], panel["result"]]
        panel["job"].change(poll, inputs=panel["job"], outputs=outs)
        timer.tick(poll, inputs=panel["job"], outputs=outs)

    def newest(kinds: tuple[str, ...]) -> Any:
        choices = job_choices(kinds)
        return gr.Dropdown(choices=choices, value=choices[0][1] if choices else None)

    with gr.Blocks(title="ForgeMind", analytics_enabled=False) as demo:
        with gr.Row():
            gr.Markdown(f"# ForgeMind dashboard\nhome: `{home}`")
            learn_toggle = gr.Checkbox(label="Learn mode", value=learn, elem_id="learn-toggle",
                                       info="Explainers, tips and definitions on every tab")
        tip = gr.Markdown(random.choice(TIPS), visible=learn, elem_id="learn-tip")
        learn_blocks.append(tip)
        timer = gr.Timer(1.0)

        # ---- 1. Full Training ---------------------------------------------------------------
        with gr.Tab("Full Training", id="full"):
            explainer("full_training", ("preset", "tokens", "loss", "batch size", "learning rate", "checkpoint"))
            with gr.Row():
                with gr.Column():
                    pt_corpus = gr.File(label="Raw corpus (.txt, .jsonl with a text field)",
                                        file_types=[".txt", ".jsonl"], elem_id="pt-corpus")
                    pt_preset = gr.Dropdown(["tiny", "small", "base"], value="tiny", label="Size (preset)",
                                            elem_id="pt-preset",
                                            info="Start from scratch at this size; to start from a base model, "
                                                 "fine-tune it in the next tab")
                    with gr.Row():
                        pt_steps = gr.Number(label="Steps (0 = from the preset's tokens)", value=0, precision=0,
                                             elem_id="pt-steps")
                        pt_epochs = gr.Number(label="Training tokens (0 = the preset's)", value=0, precision=0,
                                              elem_id="pt-tokens")
                    with gr.Row():
                        pt_batch = gr.Number(label="Batch size (rows per step, 0 = preset)", value=0, precision=0,
                                             elem_id="pt-batch")
                        pt_lr = gr.Number(label="Learning rate (0 = preset)", value=0, elem_id="pt-lr")
                    with gr.Accordion("Model shape (0 = the preset's)", open=False):
                        with gr.Row():
                            pt_layers = gr.Number(label="layers", value=0, precision=0, elem_id="pt-layers")
                            pt_hidden = gr.Number(label="hidden", value=0, precision=0, elem_id="pt-hidden")
                            pt_heads = gr.Number(label="heads", value=0, precision=0, elem_id="pt-heads")
                        with gr.Row():
                            pt_ffn = gr.Number(label="ffn", value=0, precision=0, elem_id="pt-ffn")
                            pt_vocab = gr.Number(label="vocab", value=0, precision=0, elem_id="pt-vocab")
                            pt_seq = gr.Number(label="seq_len", value=0, precision=0, elem_id="pt-seq")
                with gr.Column():
                    pt_yaml = gr.Code(pretrain_yaml(None, "tiny", {}), label="The configuration that will run",
                                      language="yaml", interactive=False, elem_id="pt-yaml")
                    pt_launch = gr.Button("Launch pre-training", variant="primary", elem_id="pt-launch")
                    pt_msg = gr.Markdown(elem_id="pt-msg")
            pt_panel = job_panel("pt", ("pretrain",))
            pt_inputs = [pt_corpus, pt_preset, pt_steps, pt_epochs, pt_batch, pt_lr, pt_layers, pt_hidden, pt_heads,
                         pt_ffn, pt_vocab, pt_seq]

            def pt_options(steps: Any, epochs: Any, batch: Any, lr: Any, *shape: Any) -> dict[str, Any]:
                options: dict[str, Any] = {}
                for key, value, cast in (("steps", steps, int), ("tokens", epochs, int), ("batch_size", batch, int),
                                         ("learning_rate", lr, float)):
                    if _opt(value, cast) is not None:
                        options[key] = cast(value)
                for key, value in zip(("layers", "hidden", "heads", "ffn", "vocab", "seq_len"), shape, strict=True):
                    if _opt(value, int) is not None:
                        options[key] = int(value)
                return options

            def pt_preview(corpus: Any, preset: str, *rest: Any) -> str:
                name = Path(corpus).name if corpus else None
                return pretrain_yaml(name and f"<home>/uploads/…/{safe_name(name)}", preset, pt_options(*rest))

            def pt_start(corpus: Any, preset: str, *rest: Any) -> tuple[Any, str]:
                try:
                    if not corpus:
                        return gr.Dropdown(), "❌ upload a corpus first"
                    path = upload(corpus)
                    job_id = forge.submit("pretrain", {"corpus": path, "preset": preset, "options": pt_options(*rest)})
                except Exception as error:
                    return gr.Dropdown(), _message(error)
                return (gr.Dropdown(choices=job_choices(("pretrain",)), value=job_id),
                        f"started job `{job_id}` on `{path}`")

            # one endpoint for every field's change (not one per field)
            gr.on([c.change for c in pt_inputs], pt_preview, inputs=pt_inputs, outputs=pt_yaml)
            pt_launch.click(pt_start, inputs=pt_inputs, outputs=[pt_panel["job"], pt_msg])
            attach(pt_panel, timer)

        # ---- 2. Fine-Tuning and the loop ------------------------------------------------------
        with gr.Tab("Fine-Tuning", id="finetune"):
            explainer("fine_tuning", ("full fine-tuning", "LoRA", "QLoRA", "LoRA rank", "epochs", "batch size",
                                      "learning rate", "overfitting"))
            with gr.Tab("Train on a dataset"):
                with gr.Row():
                    with gr.Column():
                        ft_data = gr.File(label="Dataset (.jsonl prompt/completion or chat, .csv)",
                                          file_types=[".jsonl", ".csv"], elem_id="ft-data")
                        ft_format = gr.Dropdown(["auto", "prompt_completion", "chat", "csv"], value="auto",
                                                label="Format", elem_id="ft-format")
                        with gr.Accordion("CSV column mapping", open=False):
                            ft_col_prompt = gr.Textbox(label="prompt column", elem_id="ft-col-prompt")
                            ft_col_completion = gr.Textbox(label="completion column", elem_id="ft-col-completion")
                            ft_col_category = gr.Textbox(label="category column (optional)")
                        ft_validate = gr.Button("Validate the data", elem_id="ft-validate")
                        ft_valid_md = gr.Markdown(elem_id="ft-valid")
                        ft_rows = gr.Dataframe(label="Rows as read / problems, row by row", interactive=False,
                                               elem_id="ft-rows", wrap=True, max_height=300)
                    with gr.Column():
                        ft_base = gr.Dropdown(label="Base model (a checkpoint, a folder or a hub id)", choices=[],
                                              allow_custom_value=True, elem_id="ft-base")
                        ft_refresh = gr.Button("Refresh checkpoints", size="sm")
                        ft_method = gr.Radio(["full", "lora", "qlora"], value="lora", label="Method",
                                             elem_id="ft-method",
                                             info="QLoRA needs a CUDA GPU (4-bit); it refuses to run without one")
                        with gr.Row():
                            ft_epochs = gr.Number(label="epochs", value=2.0, elem_id="ft-epochs")
                            ft_batch = gr.Number(label="batch size", value=16, precision=0, elem_id="ft-batch")
                            ft_lr = gr.Number(label="learning rate", value=0.001, elem_id="ft-lr")
                        with gr.Row():
                            ft_maxlen = gr.Number(label="max length (tokens)", value=256, precision=0)
                            ft_lora_r = gr.Number(label="LoRA rank", value=16, precision=0, elem_id="ft-lora-r")
                            ft_lora_alpha = gr.Number(label="LoRA alpha", value=32, precision=0)
                        ft_yaml = gr.Code(train_yaml(None, None, None, {}, "lora", {}),
                                          label="The configuration that will run", language="yaml",
                                          interactive=False, elem_id="ft-yaml")
                        with gr.Row():
                            ft_estimate = gr.Button("Estimate", elem_id="ft-estimate")
                            ft_launch = gr.Button("Launch fine-tuning", variant="primary", elem_id="ft-launch")
                        ft_est_md = gr.Markdown(elem_id="ft-est")
                ft_panel = job_panel("ft", ("train",))
            ft_inputs = [ft_data, ft_format, ft_col_prompt, ft_col_completion, ft_col_category, ft_base, ft_method,
                         ft_epochs, ft_batch, ft_lr, ft_maxlen, ft_lora_r, ft_lora_alpha]

            def ft_args(data: Any, fmt: str, c_prompt: str, c_completion: str, c_category: str, base: str,
                        method: str, epochs: Any, batch: Any, lr: Any, maxlen: Any, lora_r: Any,
                        lora_alpha: Any) -> dict[str, Any]:
                columns = {k: v.strip() for k, v in (("prompt", c_prompt), ("completion", c_completion),
                                                     ("category", c_category)) if v and v.strip()}
                hyper: dict[str, Any] = {"epochs": float(epochs or 1), "batch_size": int(batch or 1),
                                         "learning_rate": float(lr or 1e-3), "max_length": int(maxlen or 256)}
                if method != "full":
                    hyper.update(lora_r=int(lora_r or 16), lora_alpha=int(lora_alpha or 32))
                return {"base": base or None, "data": data, "format": None if fmt == "auto" else fmt,
                        "columns": columns, "method": method, "hyperparameters": hyper}

            def ft_preview(*values: Any) -> str:
                a = ft_args(*values)
                name = Path(a["data"]).name if a["data"] else None
                return train_yaml(a["base"], name and f"<home>/uploads/…/{safe_name(name)}", a["format"],
                                  a["columns"], a["method"], a["hyperparameters"])

            def ft_check(*values: Any) -> tuple[str, Any]:
                a = ft_args(*values)
                if not a["data"]:
                    return "❌ upload a dataset first", None
                try:
                    path = upload(a["data"])
                    preview = forge.preview_data(path, format=a["format"], columns=a["columns"] or None)
                except Exception as error:
                    return _message(error), None
                if preview["problems"]:
                    rows = [[p.line, p.field, getattr(p, "message", str(p))] for p in preview["problems"]]
                    return (f"❌ {len(rows)} bad row(s); fix them and upload again",
                            pd.DataFrame(rows, columns=["line", "field", "problem"]))
                rows = [[i + 1, r["prompt"] if not r.get("messages") else json.dumps(r["messages"])[:300],
                         r["completion"], r.get("category") or ""] for i, r in enumerate(preview["rows"])]
                return (f"✅ valid: showing the first {len(rows)} row(s) as they will be trained",
                        pd.DataFrame(rows, columns=["row", "prompt / messages", "completion", "category"]))

            def ft_estimate_fn(*values: Any) -> str:
                a = ft_args(*values)
                if not a["data"] or not a["base"]:
                    return "❌ upload a dataset and choose a base model first"
                try:
                    est = forge.estimate(confine.reference(a["base"], field="base"), upload(a["data"]), format=a["format"],
                                         columns=a["columns"] or None, method=a["method"],
                                         hyperparameters=a["hyperparameters"])
                except Exception as error:
                    return _message(error)
                return (f"**Estimate:** {est.tokens:,} tokens, {est.steps} steps, ~{est.seconds:.0f} s, "
                        f"${est.cost_usd:.4f} ({est.basis}; {est.details.get('device', '')})")

            def ft_start(*values: Any) -> tuple[Any, str]:
                a = ft_args(*values)
                if not a["data"] or not a["base"]:
                    return gr.Dropdown(), "❌ upload a dataset and choose a base model first"
                try:
                    a["base"] = confine.reference(a["base"], field="base")
                    a["data"] = upload(a["data"])
                    a["columns"] = a["columns"] or None
                    job_id = forge.submit("train", {k: v for k, v in a.items() if v is not None})
                except Exception as error:
                    return gr.Dropdown(), _message(error)
                return gr.Dropdown(choices=job_choices(("train",)), value=job_id), f"started job `{job_id}`"

            gr.on([c.change for c in ft_inputs], ft_preview, inputs=ft_inputs, outputs=ft_yaml)
            ft_validate.click(ft_check, inputs=ft_inputs, outputs=[ft_valid_md, ft_rows])
            ft_estimate.click(ft_estimate_fn, inputs=ft_inputs, outputs=ft_est_md)
            ft_launch.click(ft_start, inputs=ft_inputs, outputs=[ft_panel["job"], ft_est_md])
            ft_refresh.click(lambda: gr.Dropdown(choices=checkpoint_choices()), outputs=ft_base)
            attach(ft_panel, timer)

            with gr.Tab("Autonomous loop"):
                explainer("loop", ("canary", "adversarial", "promotion"))
                with gr.Row():
                    with gr.Column():
                        lp_path = gr.Textbox(label="Goal file on this machine", elem_id="lp-path",
                                             placeholder="examples/python-security/goal.yaml")
                        lp_load = gr.Button("Load goal file", elem_id="lp-load")
                        with gr.Accordion("…or write one in a form", open=False):
                            lp_name = gr.Textbox(label="name", value="my-goal")
                            lp_task = gr.Textbox(label="task", value="Say whether a snippet is dangerous")
                            lp_pack = gr.Textbox(label="task pack folder", placeholder="examples/python-security")
                            with gr.Row():
                                lp_threshold = gr.Number(label="accuracy to reach (full tier)", value=0.9)
                                lp_iters = gr.Number(label="max iterations", value=3, precision=0)
                                lp_budget = gr.Number(label="budget (USD)", value=1.0)
                            with gr.Row():
                                lp_base = gr.Textbox(label="base model", value="pretrain")
                                lp_method = gr.Radio(["full", "lora", "qlora"], value="lora", label="method")
                            lp_form = gr.Button("Write the goal from the form")
                    with gr.Column():
                        lp_yaml = gr.Code(label="Goal (YAML) that will run", language="yaml", interactive=True,
                                          elem_id="lp-yaml")
                        with gr.Row():
                            lp_check = gr.Button("Validate goal", elem_id="lp-validate")
                            lp_run = gr.Button("Run the loop", variant="primary", elem_id="lp-run")
                        lp_msg = gr.Markdown(elem_id="lp-msg")
                lp_panel = job_panel("lp", ("run", "resume", "fork"))
                lp_iters_table = gr.Dataframe(headers=["iteration", "stages done", "canary", "full", "adversarial"],
                                              label="Iterations", interactive=False, elem_id="lp-iterations")

            def lp_load_fn(path: str) -> tuple[str, str]:
                if not path or not path.strip():
                    return "", "❌ give the path of a goal file"
                try:
                    resolved = confine.path(path.strip(), field="goal file")
                    if not resolved.is_file() or resolved.stat().st_size > MAX_GOAL_BYTES:
                        return "", f"❌ {path}: not a goal file (a regular file of at most 1 MB)"
                    text = resolved.read_text(encoding="utf-8")
                    confine.goal_text(text, resolved.parent)
                except ForgeError as error:
                    return "", _message(error)
                except (OSError, UnicodeDecodeError) as error:
                    return "", f"❌ {path}: {getattr(error, 'strerror', None) or 'not UTF-8 text'}"
                return text, f"loaded `{path}`"

            def lp_form_fn(name: str, task: str, pack: str, threshold: Any, iters: Any, budget: Any, base: str,
                           method: str) -> str:
                import yaml

                goal: dict[str, Any] = {"name": safe_name(name or "goal"), "task": task}
                if pack:
                    try:
                        goal["pack"] = str(confine.path(pack, field="pack"))
                    except ForgeError as error:
                        return f"# {_message(error)}\n"
                goal["success"] = {"metric": "accuracy", "threshold": float(threshold or 0.9), "tier": "full"}
                goal["limits"] = {"base_model": base or "pretrain", "method": method,
                                  "max_iterations": int(iters or 3), "budget_usd": float(budget or 1.0)}
                return str(yaml.safe_dump(goal, sort_keys=False))

            def lp_goal_file(text: str, path: str) -> Path:
                """The file to run: the loaded one if unchanged, else the text saved under the home;
                every path the goal (and its pack) names is checked first.

                :raises ForgeError: the goal file or a path it names is outside the allowed folders.
                """
                folder = home / "uploads" / "goals"
                loaded = confine.path(path, field="goal file") if path and path.strip() else None
                confine.goal_text(text, loaded.parent if loaded else folder)
                if loaded is not None and loaded.is_file() and loaded.stat().st_size <= MAX_GOAL_BYTES:
                    path = str(loaded)
                    if loaded.read_text(encoding="utf-8").strip() == text.strip():
                        return loaded
                    import yaml

                    # an edited copy is saved under the home: its relative pack stays the original's
                    try:
                        data = yaml.safe_load(text)
                    except yaml.YAMLError:
                        data = None
                    if isinstance(data, dict) and isinstance(data.get("pack"), str) and \
                            not Path(data["pack"]).is_absolute():
                        data["pack"] = str((Path(path).resolve().parent / data["pack"]).resolve())
                        text = str(yaml.safe_dump(data, sort_keys=False))
                import hashlib

                folder.mkdir(parents=True, exist_ok=True)
                target = folder / f"goal-{hashlib.sha256(text.encode()).hexdigest()[:12]}.yaml"
                # atomically: two clicks validating the same text must not read a half-written file
                tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
                tmp.write_text(text, encoding="utf-8")
                os.replace(tmp, target)
                return target

            def lp_validate_fn(text: str, path: str) -> str:
                if not text or not text.strip():
                    return "❌ load or write a goal first"
                try:
                    problems = forge.validate_goal(lp_goal_file(text, path))
                except (ForgeError, OSError, UnicodeDecodeError) as error:
                    return _message(error)
                return "✅ the goal is valid" if not problems else "\n".join(f"❌ {p}" for p in problems)

            def lp_run_fn(text: str, path: str) -> tuple[Any, str]:
                if not text or not text.strip():
                    return gr.Dropdown(), "❌ load or write a goal first"
                try:
                    goal_file = lp_goal_file(text, path)
                    problems = forge.validate_goal(goal_file)
                    if problems:
                        return gr.Dropdown(), "\n".join(f"❌ {p}" for p in problems)
                    job_id = forge.submit("run", {"goal": str(goal_file)})
                except Exception as error:
                    return gr.Dropdown(), _message(error)
                return (gr.Dropdown(choices=job_choices(("run", "resume", "fork")), value=job_id),
                        f"started run `{job_id}` from `{goal_file}`")

            def lp_iterations(job_id: str | None) -> Any:
                if not job_id:
                    return None
                try:
                    job = forge.job(safe_id(job_id, "job id"), events=False)
                    run_id = (job.get("result") or {}).get("run_id") or job["params"].get("run_id") or \
                        job["params"].get("new_run_id")
                    return iterations_rows(forge.status(run_id)) if run_id else None
                except Exception:
                    return None

            lp_load.click(lp_load_fn, inputs=lp_path, outputs=[lp_yaml, lp_msg])
            lp_form.click(lp_form_fn, inputs=[lp_name, lp_task, lp_pack, lp_threshold, lp_iters, lp_budget, lp_base,
                                              lp_method], outputs=lp_yaml)
            lp_check.click(lp_validate_fn, inputs=[lp_yaml, lp_path], outputs=lp_msg)
            lp_run.click(lp_run_fn, inputs=[lp_yaml, lp_path], outputs=[lp_panel["job"], lp_msg])
            attach(lp_panel, timer)
            timer.tick(lp_iterations, inputs=lp_panel["job"], outputs=lp_iters_table)

        # ---- 3. Evaluation --------------------------------------------------------------------
        with gr.Tab("Evaluation", id="evaluation"):
            explainer("evaluation", ("checkpoint", "diversity", "style match", "canary", "adversarial"))
            with gr.Row():
                with gr.Column():
                    ev_ckpts = gr.Dropdown(label="Checkpoints to compare (the first is the baseline)", choices=[],
                                           multiselect=True, allow_custom_value=True, elem_id="ev-ckpts")
                    ev_refresh = gr.Button("Refresh checkpoints", size="sm")
                    ev_suite = gr.File(label="Evaluation set (.jsonl: input, expected, category?)",
                                       file_types=[".jsonl"], elem_id="ev-suite")
                    ev_prompts = gr.Textbox(label="…or type test prompts, one per line (input => expected)", lines=4,
                                            elem_id="ev-prompts")
                    with gr.Row():
                        ev_format = gr.Textbox(label="Prompt format ({input} marks the spot)", value="{input}",
                                               elem_id="ev-format")
                        ev_max = gr.Number(label="max new tokens", value=16, precision=0, elem_id="ev-max")
                    ev_go = gr.Button("Compare", variant="primary", elem_id="ev-compare-btn")
                with gr.Column():
                    ev_msg = gr.Markdown(elem_id="ev-msg")
                    ev_html = gr.HTML(elem_id="ev-compare")
            with gr.Row():
                ev_run = gr.Dropdown(label="Run", choices=[], allow_custom_value=True, elem_id="ev-run")
                ev_metric = gr.Dropdown(["accuracy", "pass_rate", "distinct_1", "distinct_2", "format_match",
                                         "length_ratio"], value="accuracy", label="Metric", elem_id="ev-metric")
                ev_plot_btn = gr.Button("Plot per tier and iteration", elem_id="ev-plot-btn")
            ev_plot = gr.LinePlot(metric_plot_start(), x="iteration", y="value", color="tier",
                                  title="Metric per tier and iteration", elem_id="ev-plot", x_title="iteration",
                                  y_title="metric")

            def ev_compare(ckpts: list[str] | None, suite: Any, typed: str, fmt: str, max_tokens: Any) -> tuple[str, str]:
                ckpts = list(ckpts or [])
                if len(ckpts) < 2:
                    return "❌ choose at least two checkpoints", ""
                cases: Any = None
                if suite:
                    cases = upload(suite)
                elif typed and typed.strip():
                    cases = []
                    for line in typed.splitlines():
                        if line.strip():
                            text, _, expected = line.partition("=>")
                            cases.append({"input": text.strip(), "expected": expected.strip()})
                try:
                    ckpts = [confine.reference(c) for c in ckpts]
                    result = forge.compare(ckpts, suite=cases, prompt_format=fmt or "{input}",
                                           max_new_tokens=int(max_tokens or 16))
                except Exception as error:
                    return _message(error), ""
                return (f"compared {len(ckpts)} checkpoints; {len(result.get('regressions') or [])} regression(s)",
                        comparison_html(result))

            def ev_plot_fn(run_id: str | None, metric: str) -> tuple[Any, str]:
                if not run_id:
                    return metric_frame(None, metric), "❌ choose a run"
                try:
                    frame = metric_frame(forge.show(safe_id(run_id, "run id")), metric)
                except Exception as error:
                    return metric_frame(None, metric), _message(error)
                if frame.empty:
                    return frame, f"run `{run_id}` has no {metric} scores yet"
                return frame, (f"{metric} of run `{run_id}`: {frame['tier'].nunique()} tier(s) over "
                               f"{frame['iteration'].nunique()} iteration(s)")

            ev_refresh.click(lambda: gr.Dropdown(choices=checkpoint_choices()), outputs=ev_ckpts)
            ev_go.click(ev_compare, inputs=[ev_ckpts, ev_suite, ev_prompts, ev_format, ev_max], outputs=[ev_msg, ev_html])
            ev_plot_btn.click(ev_plot_fn, inputs=[ev_run, ev_metric], outputs=[ev_plot, ev_msg])

        # ---- 4. Runs and lineage ------------------------------------------------------------
        with gr.Tab("Runs and lineage", id="runs"):
            explainer("runs", ("lineage", "promotion", "checkpoint"))
            rn_refresh = gr.Button("Refresh runs", elem_id="rn-refresh")
            gr.Markdown("**Run tree** (as `forge runs --tree`): each run as branch @ the iteration it was forked "
                        "at: id (status, outcome); forks sit under the run they came from.")
            rn_tree = gr.HTML("<p>no runs yet</p>", elem_id="rn-tree")
            rn_table = gr.Dataframe(label="Runs", interactive=False, elem_id="rn-table", wrap=True)
            with gr.Row():
                rn_id = gr.Dropdown(label="Run", choices=[], allow_custom_value=True, elem_id="rn-id")
                rn_iter = gr.Number(label="Iteration (0 = the whole run / its last)", value=0, precision=0,
                                    elem_id="rn-iter")
            with gr.Row():
                rn_show = gr.Button("Show run", elem_id="rn-show")
                rn_config = gr.Button("Load its config into Fine-Tuning → Autonomous loop", elem_id="rn-config")
            rn_overrides = gr.Textbox(label="Fork: overrides, one KEY=VALUE per line, as forge fork --set "
                                            "(e.g. train.epochs=3)", lines=3, elem_id="rn-overrides")
            with gr.Row():
                rn_branch = gr.Textbox(label="branch name (optional)", elem_id="rn-branch")
                rn_fork = gr.Button("Fork from this iteration", variant="primary", elem_id="rn-fork")
            rn_msg = gr.Markdown(elem_id="rn-msg")
            rn_detail = gr.JSON(label="Run", elem_id="rn-detail")
            with gr.Row():
                ln_id = gr.Textbox(label="Lineage of (a checkpoint, dataset, example, run or stable:v1)",
                                   elem_id="ln-id")
                ln_go = gr.Button("Trace", elem_id="ln-go")
            ln_md = gr.Markdown(elem_id="ln-md")

            def rn_refresh_fn() -> tuple[str, Any, Any, Any]:
                try:
                    runs = forge.runs()
                    tree = forge.runs_tree()
                except Exception as error:
                    return _message(error), None, gr.Dropdown(), gr.Dropdown()
                rows = [[r.get("id"), r.get("goal_name"), r.get("status"), r.get("outcome"), r.get("branch"),
                         r.get("parent_run"), r.get("parent_iteration")] for r in runs]
                frame = pd.DataFrame(rows, columns=["run", "goal", "status", "outcome", "branch", "forked from",
                                                    "at iteration"])
                ids = [r.get("id") for r in runs]
                return (run_tree_html(tree), frame, gr.Dropdown(choices=ids, value=ids[0] if ids else None),
                        gr.Dropdown(choices=ids, value=ids[0] if ids else None))

            def rn_show_fn(run_id: str | None) -> tuple[Any, str]:
                if not run_id:
                    return None, "❌ choose a run"
                try:
                    return forge.show(safe_id(run_id, "run id")), ""
                except Exception as error:
                    return None, _message(error)

            def rn_config_fn(run_id: str | None, iteration: Any) -> tuple[Any, Any, str, Any]:
                if not run_id:
                    return gr.Code(), gr.Textbox(), "❌ choose a run", gr.Markdown()
                try:
                    text = forge.config(safe_id(run_id, "run id"), int(iteration or 0) or None)
                except Exception as error:
                    return gr.Code(), gr.Textbox(), _message(error), gr.Markdown()
                what = f"iteration {int(iteration)} of `{run_id}`" if iteration else f"`{run_id}`"
                # the goal file path is cleared: what runs is this text, saved under the home
                return (text, "", f"loaded the config of {what} into Fine-Tuning → Autonomous loop",
                        f"loaded the config of {what} (`forge show {run_id} --config`); edit it and run it")

            def rn_fork_fn(run_id: str | None, iteration: Any, overrides: str, branch: str) -> tuple[Any, str]:
                if not run_id:
                    return gr.Dropdown(), "❌ choose a run"
                import yaml

                values: dict[str, Any] = {}
                for line in (overrides or "").splitlines():
                    if not line.strip():
                        continue
                    key, sep, raw = line.partition("=")
                    if not sep or not key.strip():
                        return gr.Dropdown(), f"❌ override {line!r} must look like KEY=VALUE (e.g. train.epochs=3)"
                    try:  # read as YAML, as forge fork --set does: 3 a number, true a boolean, [a, b] a list
                        values[key.strip()] = yaml.safe_load(raw) if raw.strip() else ""
                    except yaml.YAMLError:
                        values[key.strip()] = raw.strip()
                try:
                    run_id = safe_id(run_id, "run id")
                except ForgeError as error:
                    return gr.Dropdown(), _message(error)
                params = {"run_id": run_id, "iteration": int(iteration or 0) or None, "overrides": values,
                          "branch": branch or None}
                try:
                    job_id = forge.submit("fork", params)
                except Exception as error:
                    return gr.Dropdown(), _message(error)
                return (gr.Dropdown(choices=job_choices(("run", "resume", "fork")), value=job_id),
                        f"fork started as job `{job_id}`; follow it in Fine-Tuning → Autonomous loop, then "
                        "Refresh runs to see its branch")

            def ln_fn(node: str) -> str:
                if not node or not node.strip():
                    return "❌ give an id"
                try:
                    return lineage_markdown(forge.lineage(safe_id(node, "id")))
                except Exception as error:
                    return _message(error)

            rn_outputs = [rn_tree, rn_table, rn_id, ev_run]
            rn_refresh.click(rn_refresh_fn, outputs=rn_outputs)
            rn_show.click(rn_show_fn, inputs=rn_id, outputs=[rn_detail, rn_msg])
            rn_config.click(rn_config_fn, inputs=[rn_id, rn_iter], outputs=[lp_yaml, lp_path, lp_msg, rn_msg])
            rn_fork.click(rn_fork_fn, inputs=[rn_id, rn_iter, rn_overrides, rn_branch], outputs=[lp_panel["job"], rn_msg])
            ln_go.click(ln_fn, inputs=ln_id, outputs=ln_md)

        # ---- 5. Review --------------------------------------------------------------------------
        with gr.Tab("Review", id="review"):
            explainer("review", ("promotion", "checkpoint"))
            rv_available = hasattr(forge, "review_queue") and hasattr(forge, "review")
            if not rv_available:
                gr.Markdown("The Warden's review queue is not part of this kernel yet (`Forge.review_queue`).")
            rv_refresh = gr.Button("Refresh the queue", elem_id="rv-refresh", interactive=rv_available)
            rv_table = gr.Dataframe(label="Pending items", interactive=False, elem_id="rv-table", wrap=True)
            with gr.Row():
                rv_item = gr.Dropdown(label="Item", choices=[], allow_custom_value=True, elem_id="rv-item")
                rv_reviewer = gr.Textbox(label="Reviewer", value=os.environ.get("USER", "reviewer"), elem_id="rv-reviewer")
            rv_reason = gr.Textbox(label="Reason (optional)", elem_id="rv-reason")
            rv_edit = gr.Textbox(label="Edited completion (for Edit)", elem_id="rv-edit")
            with gr.Row():
                rv_approve = gr.Button("Approve", variant="primary", elem_id="rv-approve", interactive=rv_available)
                rv_reject = gr.Button("Reject", variant="stop", elem_id="rv-reject", interactive=rv_available)
                rv_editbtn = gr.Button("Save edit", elem_id="rv-editbtn", interactive=rv_available)
            rv_msg = gr.Markdown(elem_id="rv-msg")

            def rv_refresh_fn() -> tuple[Any, Any, str]:
                try:
                    items = forge.review_queue()
                except Exception as error:
                    return None, gr.Dropdown(), _message(error)
                rows = review_rows(items)
                frame = pd.DataFrame(rows, columns=["item", "kind", "run", "iteration", "what", "why"])
                ids = [r[0] for r in rows]
                return frame, gr.Dropdown(choices=ids, value=ids[0] if ids else None), f"{len(ids)} pending item(s)"

            def rv_decide(action: str) -> Callable[..., tuple[Any, Any, str]]:
                def decide(item: str | None, reviewer: str, reason: str, edit: str) -> tuple[Any, Any, str]:
                    if not item:
                        return gr.Dataframe(), gr.Dropdown(), "❌ choose an item"
                    try:
                        forge.review(safe_id(item, "review item"), action, reason=reason or None, reviewer=reviewer or None,
                                     edit={"completion": edit} if action == "edit" else None)
                    except Exception as error:
                        return gr.Dataframe(), gr.Dropdown(), _message(error)
                    frame, items, _ = rv_refresh_fn()
                    return frame, items, f"✅ {action}: `{item}` by {reviewer or 'you'}"
                return decide

            rv_refresh.click(rv_refresh_fn, outputs=[rv_table, rv_item, rv_msg])
            rv_inputs = [rv_item, rv_reviewer, rv_reason, rv_edit]
            rv_approve.click(rv_decide("approve"), inputs=rv_inputs, outputs=[rv_table, rv_item, rv_msg])
            rv_reject.click(rv_decide("reject"), inputs=rv_inputs, outputs=[rv_table, rv_item, rv_msg])
            rv_editbtn.click(rv_decide("edit"), inputs=rv_inputs, outputs=[rv_table, rv_item, rv_msg])

        # ---- 6. Export --------------------------------------------------------------------------
        with gr.Tab("Export", id="export"):
            explainer("export", ("checkpoint",))
            ex_available = hasattr(forge, "export")
            targets = sorted(forge.catalogue().get("exporters", {})) if ex_available else []
            if not ex_available:
                gr.Markdown("Export is not part of this kernel yet (`Forge.export`).")
            elif not targets:
                gr.Markdown("No exporter is installed (`pip install -e plugins/forgemind_hf` offers hf, gguf, ollama).")
            with gr.Row():
                ex_ckpt = gr.Dropdown(label="Checkpoint (a run's, or one trained or pre-trained here)", choices=[],
                                      allow_custom_value=True, elem_id="ex-ckpt", scale=3)
                ex_target = gr.Dropdown(targets, value="hf" if "hf" in targets else (targets[0] if targets else None),
                                        label="Target", elem_id="ex-target", scale=1,
                                        info="hf: a transformers folder; gguf: one llama.cpp file; "
                                             "ollama: a Modelfile with its model")
                ex_refresh = gr.Button("Refresh checkpoints", size="sm", scale=1)
            with gr.Row():
                ex_author = gr.Textbox(label="author", elem_id="ex-author")
                ex_license = gr.Textbox(label="license", value="apache-2.0", elem_id="ex-license")
                ex_version = gr.Textbox(label="version", value="0.1.0", elem_id="ex-version")
                ex_tags = gr.Textbox(label="tags (comma-separated)", elem_id="ex-tags")
            ex_options = gr.Textbox(label="exporter options, one KEY=VALUE per line, as forge export --option "
                                          "(hf: mode=both|merged|adapter; gguf: dtype=f32|f16; "
                                          "ollama: source=gguf|safetensors|adapter)", lines=1, elem_id="ex-options")
            ex_go = gr.Button("Export", variant="primary", elem_id="ex-go", interactive=bool(ex_available and targets))
            with gr.Row():
                with gr.Column():
                    ex_msg = gr.Markdown(elem_id="ex-msg")
                    ex_file = gr.File(label="Download the bundle (.zip)", interactive=False, elem_id="ex-file")
                ex_card = gr.Markdown(label="Model card", elem_id="ex-card", max_height=600)

            def ex_fn(ckpt: str | None, target: str | None, author: str, license_: str, version: str,
                      tags: str, options_text: str) -> tuple[str, Any, str]:
                import shutil
                import time

                import yaml

                if not ckpt or not target:
                    return "❌ choose a checkpoint and a target", None, ""
                metadata = {"author": author, "license": license_, "version": version,
                            "tags": [t.strip() for t in (tags or "").split(",") if t.strip()]}
                metadata = {k: v for k, v in metadata.items() if v}
                options: dict[str, Any] = {}
                for line in (options_text or "").splitlines():
                    if line.strip():
                        key, sep, raw = line.partition("=")
                        if not sep or not key.strip():
                            return f"❌ option {line!r} must look like KEY=VALUE (e.g. mode=merged)", None, ""
                        options[key.strip()] = yaml.safe_load(raw) if raw.strip() else ""
                # a new folder per export (forge export refuses a folder that is not empty)
                name = f"{safe_name(Path(ckpt).name)[:40]}-{target}-{time.strftime('%Y%m%d-%H%M%S')}"
                out = home / "exports" / name
                n = 1
                while out.exists() or out.with_suffix(".zip").exists():
                    n += 1
                    out = home / "exports" / f"{name}-{n}"
                try:
                    result = forge.export(confine.reference(ckpt), target, out, metadata, options)
                except Exception as error:
                    return _message(error), None, ""
                archive = shutil.make_archive(str(out), "zip", root_dir=out)
                card_path = Path(result.get("out") or out) / "README.md"
                card = card_path.read_text(encoding="utf-8") if card_path.is_file() else ""
                if card.startswith("---\n"):  # the front matter as a YAML block, the body as Markdown
                    front, _, body = card[4:].partition("\n---\n")
                    card = f"```yaml\n{front}\n```\n{body}"
                return export_markdown(result, archive), archive, card

            ex_refresh.click(lambda: gr.Dropdown(choices=checkpoint_choices(by_id=True)), outputs=ex_ckpt)
            ex_go.click(ex_fn, inputs=[ex_ckpt, ex_target, ex_author, ex_license, ex_version, ex_tags, ex_options],
                        outputs=[ex_msg, ex_file, ex_card])

        # ---- 8. Playground ----------------------------------------------------------------------
        with gr.Tab("Playground", id="playground"):
            explainer("playground", ("temperature", "checkpoint", "tokens"))
            with gr.Row():
                pg_a = gr.Dropdown(label="Checkpoint A", choices=[], allow_custom_value=True, elem_id="pg-a")
                pg_b = gr.Dropdown(label="Checkpoint B (optional)", choices=[], allow_custom_value=True, elem_id="pg-b")
                pg_refresh = gr.Button("Refresh checkpoints", size="sm")
            with gr.Row():
                pg_chat_a = gr.Chatbot(label="A", elem_id="pg-chat-a", height=300)
                pg_chat_b = gr.Chatbot(label="B", elem_id="pg-chat-b", height=300)
            with gr.Row():
                pg_temp = gr.Slider(0.0, 2.0, value=0.0, step=0.1, label="temperature", elem_id="pg-temp")
                pg_max = gr.Number(label="max new tokens", value=32, precision=0, elem_id="pg-max")
                pg_format = gr.Textbox(label="Prompt format ({input} marks the spot)", value="{input}", elem_id="pg-format")
            pg_msg = gr.Textbox(label="Message (each message is completed on its own)", elem_id="pg-msg")
            pg_send = gr.Button("Send", variant="primary", elem_id="pg-send")
            pg_err = gr.Markdown(elem_id="pg-err")

            def pg_send_fn(a: str | None, b: str | None, message: str, temp: float, max_tokens: Any, fmt: str,
                           hist_a: list[Any] | None, hist_b: list[Any] | None) -> tuple[Any, Any, str, str]:
                hist_a, hist_b = list(hist_a or []), list(hist_b or [])
                if not a or not message.strip():
                    return hist_a, hist_b, message, "❌ choose checkpoint A and type a message"
                prompt = (fmt or "{input}").replace("{input}", message)
                try:
                    for ckpt, hist in ((a, hist_a), (b, hist_b)):
                        if not ckpt:
                            continue
                        answer = forge.generate(confine.reference(ckpt), [prompt], max_new_tokens=int(max_tokens or 32),
                                                temperature=float(temp))[0]
                        hist += [{"role": "user", "content": message}, {"role": "assistant", "content": answer}]
                except Exception as error:
                    return hist_a, hist_b, message, _message(error)
                return hist_a, hist_b, "", ""

            pg_refresh.click(lambda: (gr.Dropdown(choices=checkpoint_choices()), gr.Dropdown(choices=checkpoint_choices())),
                             outputs=[pg_a, pg_b])
            pg_send.click(pg_send_fn, inputs=[pg_a, pg_b, pg_msg, pg_temp, pg_max, pg_format, pg_chat_a, pg_chat_b],
                          outputs=[pg_chat_a, pg_chat_b, pg_msg, pg_err])

        # ---- 7. Learn mode: one toggle for every explainer and the tip ---------------------------
        with gr.Tab("Glossary", id="glossary"):
            gr.HTML("<dl>" + "".join(f"<dt><b>{term(word)}</b></dt><dd>{definition}</dd>"
                                     for word, definition in GLOSSARY.items()) + "</dl>")

        learn_toggle.change(lambda on: [gr.update(visible=on) for _ in learn_blocks], inputs=learn_toggle,
                            outputs=learn_blocks)

        def on_load() -> tuple[Any, ...]:
            """A (re)loaded page: the newest job of each kind, the checkpoints and runs there are."""
            choices = checkpoint_choices()
            first = choices[0][1] if choices else None
            by_id = checkpoint_choices(by_id=True)
            try:
                run_ids = [r.get("id") for r in forge.runs()]
            except Exception:
                run_ids = []
            return (newest(("pretrain",)), newest(("train",)), newest(("run", "resume", "fork")),
                    gr.Dropdown(choices=choices, value=first), gr.Dropdown(choices=choices),
                    gr.Dropdown(choices=choices, value=first), gr.Dropdown(choices=choices),
                    gr.Dropdown(choices=by_id, value=by_id[0][1] if by_id else None),
                    gr.Dropdown(choices=run_ids, value=run_ids[0] if run_ids else None),
                    gr.Dropdown(choices=run_ids, value=run_ids[0] if run_ids else None))

        demo.load(on_load, outputs=[pt_panel["job"], ft_panel["job"], lp_panel["job"], ft_base, ev_ckpts, pg_a, pg_b,
                                    ex_ckpt, rn_id, ev_run])
    scrub = Scrubber(token)
    for block_fn in demo.fns.values():  # every endpoint, also one added later
        block_fn.fn = _guarded(block_fn.fn, scrub)
    return demo


def launch(forge: Any, *, host: str = "127.0.0.1", port: int = 7860, token: str | None = None,
           max_upload_bytes: int = 200 * 1024 * 1024, learn: bool = False, block: bool = True,
           quiet: bool = False, allow: Iterable[str | os.PathLike[str]] | None = None) -> Any:
    """Serve the dashboard. Uploads land in ``<home>/uploads`` (gradio's own upload cache too);
    paths typed into the page must lie in the home or a folder of ``allow`` (default: the current
    folder); beyond loopback every visitor logs in with ``token`` as the password. Returns the
    Blocks (``block=False``: the server runs in a thread; call ``.close()`` to stop it)."""
    check_bind(host, token)
    home = Path(forge.home).resolve()
    incoming = home / "uploads" / ".incoming"
    incoming.mkdir(parents=True, exist_ok=True)
    os.environ["GRADIO_TEMP_DIR"] = str(incoming)  # gradio's upload cache: inside the home
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    demo = build_app(forge, max_upload_bytes=max_upload_bytes, learn=learn, allow=allow, token=token)
    auth = None
    if token:
        secret = token.strip()

        def auth(_user: str, password: str) -> bool:
            return hmac.compare_digest(password.encode(), secret.encode())

    demo.queue(default_concurrency_limit=4)
    (home / "exports").mkdir(parents=True, exist_ok=True)
    demo.launch(server_name=host, server_port=port, auth=auth, max_file_size=max_upload_bytes,
                allowed_paths=[str(home / "exports")],  # the export zips, offered for download
                prevent_thread_lock=not block, quiet=quiet, show_error=True, ssr_mode=False, mcp_server=False,
                css=CSS, footer_links=[], auth_message="Log in with the dashboard's access token as password.")
    return demo
