"""Hub model cards for UniPose checkpoints (the bundled model, converted checkpoints, trained ones)."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

from huggingface_hub import ModelCard, ModelCardData

TEMPLATE = Path(__file__).parent / "templates" / "model_card.md"
# Every UniPose card carries these; `custom_code` tells the Hub that loading needs `trust_remote_code=True`.
_TAGS = ("unipose", "human-pose", "smpl", "multimodal", "3d-human-pose", "custom_code")
# A Hub repository id: `name` or `owner/name`.
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")

_SOURCES = {
    "converted": {
        "summary": "Converted from the published UniPose weights with `unipose convert`.",
        "training": "Trained by the UniPose authors (stages 0–3 of the paper); converted, not retrained.",
        "limitations": "Outputs follow the published model; the conversion report lists every weight mapped "
        "or dropped (`conversion_report.json`).",
    },
    "trained": {
        "summary": "Trained with the UniPose training scripts.",
        "training": "See the recipes and logs next to the weights.",
        "limitations": "Quality depends on the training data named above.",
    },
}


def _is_hub_id(name: str) -> bool:
    """Whether `name` reads as a Hub repository id rather than a local folder (the metadata takes only ids)."""
    return bool(_HUB_ID.fullmatch(name)) and not os.path.exists(name)


# The headline metrics of `unipose evaluate` (`unipose.evaluation.runner.HEADLINE_METRICS`): unit and meaning.
HEADLINE_METRICS = {
    "MPJPE": ("mm", "mean per-joint position error after aligning the pelvis, 22 body joints"),
    "PA-MPJPE": ("mm", "MPJPE after a Procrustes similarity alignment"),
    "ROUGE-L": ("F-measure, %", "ROUGE-L F-measure of the generated text against the best of its reference texts"),
    "R-Precision@1 (posescript)": (
        "% of texts",
        "share of generated texts whose true pose (or pose pair) the retrieval model ranks first among 32 "
        "candidates in every one of 10 random pools; chance is about 1/32 = 3.1 %",
    ),
}
# How the table names a metric whose key is terse.
METRIC_NAMES = {"R-Precision@1 (posescript)": "R-Precision@1, PoseScript protocol"}
VERDICTS = {"better": "**better**", "worse": "**worse**", "no significant difference": "not significant"}


def _task_titles() -> dict[str, str]:
    from .evaluation.runner import TASKS

    return {task: spec.title for task, spec in TASKS.items()}


def _interval_cell(entry: dict, signed: bool = False) -> str:
    number = "{:+.1f}" if signed else "{:.1f}"
    return f"{number.format(entry['mean'])} [{number.format(entry['low'])}, {number.format(entry['high'])}]"


def _headline_rows(results: dict):
    """`(task, title, metric, entry, baseline name)` for every headline metric of `results`, in task order."""
    titles = _task_titles()
    order = [task for task in titles if task in results["tasks"]] + [
        task for task in results["tasks"] if task not in titles
    ]
    for task in order:
        result = results["tasks"][task]
        for metric, entry in result.get("significance", {}).items():
            baseline = result.get("baseline", {}).get("name") if "difference" in entry else None
            yield task, titles.get(task, task), metric, entry, baseline


def evaluation_table(results: dict) -> str:
    """
    The headline table of a `unipose evaluate` run: per task and headline metric, its unit, our mean with its 95 %
    bootstrap interval over the test items, the baseline's (and what it is), the paired difference (ours -
    baseline) with its interval, and the verdict, "better" or "worse" only where that interval excludes 0.

    Args:
        results (`dict`): the contents of the run's `results.json` (its tasks' `significance` entries).

    Returns:
        `str`: a Markdown table and the meaning of its metrics.
    """
    if not isinstance(results, dict) or "tasks" not in results:
        raise ValueError(
            f"`results` must be the contents of a `unipose evaluate` results.json (a dict with `tasks`), got "
            f"{type(results).__name__}{' without `tasks`' if isinstance(results, dict) else ''}."
        )
    rows = list(_headline_rows(results))
    if not rows:
        return (
            "This evaluation has no intervals (it predates them): run `unipose evaluate` again to get the "
            "headline table."
        )
    lines = [
        "| task | metric | unit | ours [95 % CI] | baseline [95 % CI] | baseline is | ours − baseline [95 % CI] "
        "| verdict |",
        "| --- | --- | --- | ---: | ---: | --- | ---: | --- |",
    ]
    for _, title, metric, entry, baseline in rows:
        unit = HEADLINE_METRICS.get(metric, ("", ""))[0]
        direction = "lower is better" if entry["lower_is_better"] else "higher is better"
        cells = [title, f"{METRIC_NAMES.get(metric, metric)} ({direction})", unit, _interval_cell(entry["ours"])]
        if baseline is None:
            cells += ["–", "–", "–", "–"]
        else:
            cells += [
                _interval_cell(entry["baseline"]),
                baseline.replace("|", "\\|"),
                _interval_cell(entry["difference"], signed=True),
                VERDICTS.get(entry["verdict"], entry["verdict"]),
            ]
        lines.append("| " + " | ".join(cells) + " |")
    used = dict.fromkeys(metric for _, _, metric, _, _ in rows)
    lines += [""] + [
        f"- {METRIC_NAMES.get(metric, metric)}: {HEADLINE_METRICS[metric][1]}."
        for metric in used
        if metric in HEADLINE_METRICS
    ]
    return "\n".join(lines)


def evaluation_section(results: dict, corpus_splits: dict | None = None, details: str | None = None) -> str:
    """
    The evaluation section of a card from a `unipose evaluate` run: what was scored (split, items, how the intervals
    are computed), the headline table ([`evaluation_table`]) and `details`.

    Args:
        results (`dict`): the contents of the run's `results.json`.
        corpus_splits (`dict`, *optional*): record kind -> split -> number of records of the evaluated corpus (the
            `splits` of a synthetic corpus's `synthetic_corpus.json`), to say how much of each split was scored.
        details (`str`, *optional*): Markdown after the table (where the raw metrics are, how to reproduce them).
    """
    from .evaluation.runner import TASKS
    from .evaluation.significance import DEFAULT_NUM_RESAMPLES

    tasks = results.get("tasks", {}) if isinstance(results, dict) else {}
    if not tasks:
        return evaluation_table(results)
    kinds: dict[str, list[str]] = {}
    for task in tasks:
        kind = TASKS[task].kind if task in TASKS else "?"
        kinds.setdefault(kind, []).append(task)
    lines = ["Items scored, per record kind of the evaluated corpus:", ""]
    for kind, kind_tasks in kinds.items():
        first = tasks[kind_tasks[0]]
        split, count = first.get("split", "test"), first["num_items"]
        total = (corpus_splits or {}).get(kind, {}).get(split)
        scope = f"the first {count:,} of its {total:,} `{split}` records" if total and total > count else (
            f"all {count:,} of its `{split}` records" if total else f"{count:,} items of its `{split}` split"
        )
        titles = ", ".join(TASKS[task].title if task in TASKS else task for task in kind_tasks)
        lines.append(f"- `{kind}` ({titles}): {scope}.")
    seed = results.get("settings", {}).get("seed", 0)
    lines += [
        "",
        f"Intervals are 95 % percentile-bootstrap intervals of the mean over the items ({DEFAULT_NUM_RESAMPLES:,} "
        f"resamples, seed {seed}). Each baseline is scored by the same code on the same items, and the difference "
        "is paired (ours − baseline, item by item); the verdict says **better** or **worse** only where the "
        "interval of the difference excludes 0.",
        "",
        evaluation_table(results),
    ]
    if details:
        lines += ["", details]
    return "\n".join(lines)


def evaluation_caveats(results: dict) -> list[str]:
    """
    Where a `unipose evaluate` run does not show the model beating its baseline: one sentence per headline metric
    whose paired difference is not significant or favours the baseline, with the figures of `results`.
    """
    caveats = []
    for _, title, metric, entry, baseline in _headline_rows(results):
        if baseline is None or entry["verdict"] == "better":
            continue
        unit = HEADLINE_METRICS.get(metric, ("", ""))[0]
        figures = (
            f"{entry['ours']['mean']:.1f} against {entry['baseline']['mean']:.1f} {unit} for the baseline "
            f"({baseline}); difference {_interval_cell(entry['difference'], signed=True)}"
        )
        if entry["verdict"] == "worse":
            caveats.append(f"{title}, {METRIC_NAMES.get(metric, metric)}: the baseline is better, {figures}.")
        else:
            caveats.append(
                f"{title}, {METRIC_NAMES.get(metric, metric)}: no significant difference from the baseline, {figures}."
            )
    return caveats


def _markdown_table(results: dict) -> str:
    if not results:
        return "No evaluation was run for this checkpoint."
    rows = ["| metric | value |", "| --- | --- |"]
    rows += [f"| {name} | {value:.4g} |" if isinstance(value, float) else f"| {name} | {value} |" for name, value in results.items()]
    return "\n".join(rows)


def render_model_card(
    config,
    source: str = "trained",
    repo_id: str = "path/to/this/checkpoint",
    model_name: str = "UniPose",
    training: str | None = None,
    evaluation: dict | None = None,
    evaluation_results: dict | None = None,
    corpus_splits: dict | None = None,
    evaluation_details: str | None = None,
    limitations: str | None = None,
    conversion_report: dict | None = None,
    license: str = "apache-2.0",
    summary: str | None = None,
    base_model: str | None = None,
    datasets: Sequence[str] = (),
    adapter: bool = False,
    tags: Sequence[str] = (),
) -> ModelCard:
    """The model card of a checkpoint whose `UniPoseConfig` is `config`.

    Args:
        source (`str`): `"converted"` (from the published weights) or `"trained"` (with our scripts).
        training (`str`, *optional*): Markdown describing the data and recipe (overrides the default).
        evaluation (`dict`, *optional*): metric name -> value, shown as a table (when there is no
            `evaluation_results`).
        evaluation_results (`dict`, *optional*): the contents of a `unipose evaluate` `results.json`; the
            evaluation section is then its headline table with intervals and baselines ([`evaluation_section`]).
        corpus_splits (`dict`, *optional*), evaluation_details (`str`, *optional*): see [`evaluation_section`].
        limitations (`str`, *optional*): one more limitation in Markdown.
        summary (`str`, *optional*): the card's first paragraph (overrides the default of `source`).
        base_model (`str`, *optional*): the checkpoint this one was trained from; written into the metadata
            when it is a Hub id (`owner/name`, not a local folder).
        datasets (sequence of `str`): the training corpora; the Hub ids among them go into the metadata.
        adapter (`bool`, *optional*, defaults to `False`): the folder holds a PEFT adapter of `base_model`
            rather than a whole model (`library_name: peft`, tagged `peft` and `lora`).
        tags (sequence of `str`): more tags, after UniPose's own (which include `custom_code`).
    """
    if source not in _SOURCES:
        raise ValueError(f"`source` must be one of {sorted(_SOURCES)}, got {source!r}.")
    if isinstance(datasets, str) or isinstance(tags, str):
        raise TypeError(
            f"`datasets` and `tags` must be sequences of strings, got {datasets!r} and {tags!r}: wrap a single "
            "name in a list."
        )
    defaults = _SOURCES[source]
    text_config = config.text_config
    all_tags = [*_TAGS, *(("peft", "lora") if adapter else ()), *tags]
    hub_datasets = [name for name in datasets if _is_hub_id(name)]
    card_data = ModelCardData(
        license=license,
        library_name="peft" if adapter else "transformers",
        pipeline_tag="image-text-to-text",
        tags=list(dict.fromkeys(all_tags)),  # in order, without repeats
        base_model=base_model if base_model is not None and _is_hub_id(base_model) else None,
        datasets=hub_datasets or None,
    )
    training_text = training or defaults["training"]
    if conversion_report:
        training_text += f"\n\nConversion: {conversion_report.get('num_mapped', 0)} weights mapped, LoRA merged into " \
            f"{len(conversion_report.get('merged_lora_modules', []))} modules."
    return ModelCard.from_template(
        card_data,
        template_path=str(TEMPLATE),
        model_name=model_name,
        repo_id=repo_id,
        summary=summary or defaults["summary"],
        text_model=text_config.model_type,
        text_layers=text_config.num_hidden_layers,
        text_width=text_config.hidden_size,
        clip_width=config.vision_config.hidden_size,
        image_tokens=config.image_seq_length,
        pose_vit_width=config.pose_vision_config.hidden_size,
        num_pose_tokens=config.num_pose_tokens,
        codebook_size=config.pose_codebook_size,
        num_joints=config.num_joints,
        training=training_text,
        evaluation=evaluation_section(evaluation_results, corpus_splits, evaluation_details)
        if evaluation_results is not None
        else _markdown_table(evaluation or {}),
        limitations=limitations or defaults["limitations"],
    )


def write_model_card(output_dir: str | os.PathLike, config, **kwargs) -> Path:
    """Write `README.md` (the model card) into `output_dir`, atomically; returns its path."""
    path = Path(output_dir) / "README.md"
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(str(render_model_card(config, **kwargs)), encoding="utf-8")
    os.replace(tmp, path)
    return path


__all__ = [
    "evaluation_caveats",
    "evaluation_section",
    "evaluation_table",
    "render_model_card",
    "write_model_card",
]
