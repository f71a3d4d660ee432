# Copyright 2025 The UniPose contributors. Licensed under the Apache License, Version 2.0.
"""
The results of a `unipose evaluate` run summed up for a model card or a README: per task and headline metric, our
mean with its 95 % bootstrap interval, the baseline's, the paired difference with its interval and a verdict that
says "better" or "worse" only where that interval excludes 0 (`unipose.evaluation.significance`).

- [`evaluation_table`]: the headline table of a `results.json`, in Markdown, with the meaning of its metrics.
- [`evaluation_section`]: a card's evaluation section: what was scored (split, items), how the intervals are
  computed, the table and where the other metrics are.
- [`evaluation_caveats`]: one sentence per headline metric on which the model does not beat its baseline.

`unipose.model_card.render_model_card(..., evaluation=evaluation_section(results))` writes the section into a
card; `train/build_unipose_tiny.py --steps card` does so for the bundled model.
"""

from __future__ import annotations

from .paper_metrics import DEFAULT_NUM_REPETITIONS, DEFAULT_POOL_SIZE
from .runner import R_PRECISION_HEADLINE, TASKS
from .significance import DEFAULT_NUM_RESAMPLES, MIN_ITEMS_FOR_VERDICT, TOO_FEW_ITEMS

# Unit and meaning of each headline metric of `unipose evaluate` (`runner.HEADLINE_METRICS`); the pools of the
# R-precision are those of the run's settings.
METRIC_UNITS = {
    "MPJPE": ("mm", "mean per-joint position error after aligning the pelvis, 22 body joints"),
    "PA-MPJPE": ("mm", "MPJPE after a Procrustes similarity alignment"),
    "ROUGE-L": (
        "F-measure, %",
        "ROUGE-L F-measure of the generated text against its item's first reference text, as the paper scores it",
    ),
    R_PRECISION_HEADLINE: (
        "% of texts",
        "share of generated texts whose true pose (or pose pair), ranked by the retrieval model among "
        "{pool_size} candidates in each of {num_repetitions} random pools, has a mean rank below 1 (0 is "
        "first); chance is about 1/{pool_size} = {chance:.1f} %",
    ),
}
# How the table names a metric whose key is terse.
METRIC_NAMES = {R_PRECISION_HEADLINE: "R-Precision@1, PoseScript protocol"}
VERDICTS = {
    "better": "**better**",
    "worse": "**worse**",
    "no significant difference": "not significant",
    TOO_FEW_ITEMS: "too few items",
}


def _meaning(metric: str, results: dict) -> str:
    settings = results.get("settings", {})
    pool_size = settings.get("pool_size", DEFAULT_POOL_SIZE)
    return METRIC_UNITS[metric][1].format(
        pool_size=pool_size,
        num_repetitions=settings.get("num_repetitions", DEFAULT_NUM_REPETITIONS),
        chance=100 / pool_size,
    )


def _task_titles() -> dict[str, str]:
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
        unit = METRIC_UNITS.get(metric, ("", ""))[0]
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
        f"- {METRIC_NAMES.get(metric, metric)}: {_meaning(metric, results)}."
        for metric in used
        if metric in METRIC_UNITS
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
    tasks = results.get("tasks", {}) if isinstance(results, dict) else {}
    if not tasks:
        return evaluation_table(results)
    # Per task: an item is a record, or a (record, caption) pair with `--captions all`, and a task leaves out the
    # records it cannot use (those without texts), so tasks of one kind may score different numbers of items.
    lines = ["Items scored, per task:", ""]
    for task, result in tasks.items():
        kind = TASKS[task].kind if task in TASKS else "?"
        split, count = result.get("split", "test"), result["num_items"]
        total = (corpus_splits or {}).get(kind, {}).get(split)
        records = f"{total:,} `{split}` records" if total else f"`{split}` records"
        title = TASKS[task].title if task in TASKS else task
        lines.append(f"- {title}: {count:,} items from the {records} of `{kind}`.")
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
        if baseline is not None and entry.get("unanswered"):
            caveats.append(
                f"{title}, {METRIC_NAMES.get(metric, metric)}: the model wrote no pose for {entry['unanswered']} of "
                f"{entry['unanswered'] + entry['ours']['num_items']} items; the figures and the verdict compare the "
                f"{entry['ours']['num_items']} it answered."
            )
        if baseline is None or entry["verdict"] == "better":
            continue
        unit = METRIC_UNITS.get(metric, ("", ""))[0]
        figures = (
            f"{entry['ours']['mean']:.1f} against {entry['baseline']['mean']:.1f} {unit} for the baseline "
            f"({baseline}); difference {_interval_cell(entry['difference'], signed=True)}"
        )
        if entry["verdict"] == "worse":
            caveats.append(f"{title}, {METRIC_NAMES.get(metric, metric)}: the baseline is better, {figures}.")
        elif entry["verdict"] == TOO_FEW_ITEMS:
            caveats.append(
                f"{title}, {METRIC_NAMES.get(metric, metric)}: too few items for a verdict (fewer than "
                f"{MIN_ITEMS_FOR_VERDICT} independent ones), {figures}."
            )
        else:
            caveats.append(
                f"{title}, {METRIC_NAMES.get(metric, metric)}: no significant difference from the baseline, {figures}."
            )
    return caveats


__all__ = ["METRIC_UNITS", "evaluation_caveats", "evaluation_section", "evaluation_table"]
