# Copyright 2025 The UniPose contributors. Licensed under the Apache License, Version 2.0.
"""
`unipose evaluate`: batched generation over a test split, the metrics of the paper for each task, and a
JSON file and a Markdown report with the paper's numbers beside ours.

```bash
unipose evaluate --model runs/stage3 --task pose-to-text --data synthetic \
    --retrieval-model runs/retrieval_posescript --output eval/stage3
unipose evaluate --model runs/stage3 --task all --data synthetic --retrieval-model runs/retrieval_posescript \
    --pair-retrieval-model runs/retrieval_posefix --output eval/stage3
```

| task            | records      | writes      | metrics                                                        |
| --------------- | ------------ | ----------- | -------------------------------------------------------------- |
| pose-to-text    | `pose_text`  | description | R-precision (pose model), BLEU-4, ROUGE-L, METEOR              |
| image-to-text   | `image_pose` | description | R-precision (pose model), BLEU-4, ROUGE-L, METEOR              |
| pose-diff       | `pose_pair`  | instruction | R-precision (pair model), BLEU-4, ROUGE-L, METEOR              |
| image-diff      | `image_pair` | instruction | R-precision (pair model), BLEU-4, ROUGE-L, METEOR              |
| text-to-pose    | `pose_text`  | pose        | R^T2P, R^P2T @1/5/10/20, mRecall, R-precision, FID, (PA-)MPJPE |
| pose-estimation | `image_pose` | pose        | MPJPE, PA-MPJPE                                                |
| pose-editing    | `pose_pair`  | pose B      | R^T2P, R^P2T (pair model), mRecall, FID vs B, (PA-)MPJPE       |

R-precision ranks, for each generated (or given) text, its true pose (or pair) among 32 (see
`unipose.evaluation.paper_metrics`), as the evaluation code of PoseScript and of the UniPose authors does (text
queries, pose candidates), under both protocols in use; every number is labelled with its protocol. Prompts
are the fixed templates of training stages 1-2 (`unipose.task_formats.SIMPLE_TEMPLATES`) in the
tokenizer's chat template; greedy decoding.

Resuming: the predictions of every finished batch are appended to `OUTPUT/TASK/predictions.jsonl` (one
line per batch, flushed and fsync'd) next to `run.json`, which records what the predictions depend on. A run
started again with the same settings skips the batches already there; a line cut short by a crash is
dropped and its batch generated again.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers.utils import logging

from ..checks import check_positive_int
from ..data.amass import change_pose_up_axis
from ..data.schema import RECORD_UP_AXIS
from ..files import atomic_path, write_text_atomically
from ..metrics import GENERATION_RECALL_K, pose_errors_per_item, text_pose_recalls
from ..processing_poses import POSE_START_TOKEN
from ..retrieval_models import embed_pose_pairs, embed_poses, embed_texts
from ..task_formats import IMAGE_SLOTS, SIMPLE_TEMPLATES, TASK_SPECS, render_template
from ..visualization import contact_sheet, render_pose, render_pose_pair, rendering_available
from .baselines import baseline_predictions
from .paper_metrics import (
    DEFAULT_NUM_REPETITIONS,
    DEFAULT_POOL_SIZE,
    R_PRECISION_PROTOCOLS,
    R_PRECISION_TOP_K,
    describe_r_precision_protocol,
    frechet_distance,
    posescript_mean_ranks,
    r_precision_all_protocols,
    rouge_l_per_item,
    text_metrics,
)
from .paper_results import PAPER_ABLATIONS, PAPER_CITATION, PAPER_RESULTS, PAPER_TABLES, paper_value
from .significance import bootstrap_interval, paired_difference, verdict

logger = logging.get_logger(__name__)

PREDICTIONS_NAME = "predictions.jsonl"
RUN_NAME = "run.json"
RESULTS_NAME = "results.json"
REPORT_NAME = "report.md"
EXAMPLES_DIR = "examples"
DEFAULT_MAX_NEW_TOKENS = 128


@dataclass(frozen=True)
class TaskSpec:
    """What a task reads, what the model writes, and which retrieval model judges it."""

    kind: str  # record kind of `unipose.data.schema`
    output: str  # "text" or "pose"
    retrieval: str | None  # "pose" (pose-text model), "pair" (pose-pair-text model) or None
    title: str


TASKS: dict[str, TaskSpec] = {
    "pose-to-text": TaskSpec("pose_text", "text", "pose", "Pose-to-Text"),
    "pose-diff": TaskSpec("pose_pair", "text", "pair", "Pose-Diff"),
    "image-to-text": TaskSpec("image_pose", "text", "pose", "Image-to-Text"),
    "image-diff": TaskSpec("image_pair", "text", "pair", "Image-Diff"),
    "text-to-pose": TaskSpec("pose_text", "pose", "pose", "Text-to-Pose"),
    "pose-estimation": TaskSpec("image_pose", "pose", None, "Pose Estimation"),
    "pose-editing": TaskSpec("pose_pair", "pose", "pair", "Pose Editing"),
}


# ----------------------------------------------------------------------------------------------------
# Prompts
# ----------------------------------------------------------------------------------------------------


@dataclass
class EvaluationPrompt:
    """A prompt and the inputs of its placeholders, in order."""

    text: str
    images: list = field(default_factory=list)
    poses: list = field(default_factory=list)


def evaluation_template(task: str) -> str:
    """The prompt template of `task`: the fixed one of training stages 1-2 (`unipose.training`), so that a
    model is asked the way it was taught."""
    return SIMPLE_TEMPLATES[task.replace("-", "_")]


def evaluation_prompt(
    task: str, record: dict, caption: str | None, tokenizer, up_axis: str = RECORD_UP_AXIS
) -> EvaluationPrompt:
    """
    The prompt of one item: the task's template (see [`evaluation_template`]) as the user turn of the
    tokenizer's chat template. The answer of a pose task is opened with `<p>`, as training writes it
    (`" <p>"` + the pose + `"</p>"`), so that the model writes the pose in one step. The record's poses are
    turned from the records' world (SMPL's, y up) into `up_axis`'s, the world of the model's poses
    (`config.pose_up_axis`).

    Args:
        task (`str`): a key of `TASKS`.
        record (`dict`): one record of the task's kind (`unipose.data.schema`).
        caption (`str`, *optional*): the input text of text-to-pose and pose-editing.
        tokenizer: the UniPose tokenizer (its chat template writes the turn).
        up_axis (`str`, *optional*, defaults to `"y"`): the vertical axis of the model's world.

    Returns:
        [`EvaluationPrompt`]
    """
    spec = TASK_SPECS[task.replace("-", "_")]
    content, media = render_template(evaluation_template(task), caption if spec.text_slot else None)
    images = [record[spec.media[slot]] for slot in media if slot in IMAGE_SLOTS]
    poses = [
        change_pose_up_axis(np.asarray(record[spec.media[slot]], dtype=np.float32), RECORD_UP_AXIS, up_axis)
        for slot in media
        if slot not in IMAGE_SLOTS
    ]
    text = tokenizer.apply_chat_template([{"role": "user", "content": content}], tokenize=False)
    if TASKS[task].output == "pose":
        text += " " + POSE_START_TOKEN
    return EvaluationPrompt(text=text, images=images, poses=poses)


# ----------------------------------------------------------------------------------------------------
# Items and predictions
# ----------------------------------------------------------------------------------------------------


@dataclass
class EvaluationSettings:
    """What the predictions and metrics of a run depend on (besides the model and the data)."""

    batch_size: int = 8
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    max_samples: int | None = None
    captions: str = "first"  # "first" or "all": input captions per record for text-to-pose / pose-editing
    # "first" or "all": the references of a text answer. The paper scores against the first caption of each item.
    text_references: str = "first"
    pool_size: int = DEFAULT_POOL_SIZE
    num_repetitions: int = DEFAULT_NUM_REPETITIONS
    recall_k: tuple[int, ...] = GENERATION_RECALL_K
    seed: int = 0
    num_examples: int = 3

    def __post_init__(self):
        for name in ("batch_size", "max_new_tokens", "pool_size", "num_repetitions"):
            check_positive_int(getattr(self, name), name)
        if self.max_samples is not None and self.max_samples < 1:
            raise ValueError(f"`max_samples` must be a positive integer or None, got {self.max_samples!r}.")
        for name in ("captions", "text_references"):
            if getattr(self, name) not in ("first", "all"):
                raise ValueError(f"`{name}` must be 'first' or 'all', got {getattr(self, name)!r}.")
        if self.num_examples < 0:
            raise ValueError(f"`num_examples` must be >= 0, got {self.num_examples}.")
        # Checked here, before any generation, rather than by the metrics once the whole split is generated.
        if self.pool_size < max(R_PRECISION_TOP_K):
            raise ValueError(
                f"`pool_size` must be at least {max(R_PRECISION_TOP_K)} (R-precision reports top-"
                f"{'/'.join(map(str, R_PRECISION_TOP_K))}), got {self.pool_size}."
            )
        recall_k = tuple(self.recall_k)
        if not recall_k or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in recall_k):
            raise ValueError(f"`recall_k` must be a non-empty sequence of positive integers, got {self.recall_k!r}.")
        self.recall_k = tuple(int(k) for k in self.recall_k)


def task_items(task: str, dataset, settings: EvaluationSettings) -> list[tuple[int, int | None]]:
    """
    The items of a task: `(record index, caption index)`, the caption being the model's input
    (text-to-pose, pose-editing) or `None`. Records without captions are left out of every task that needs
    them (all but pose estimation).
    """
    spec = TASKS[task]
    texts = dataset["texts"] if task != "pose-estimation" else None
    items = []
    for index in range(len(dataset)):
        if texts is None:
            items.append((index, None))
        elif len(texts[index]) == 0:
            continue
        elif spec.output == "pose":
            captions = range(len(texts[index])) if settings.captions == "all" else range(1)
            items.extend((index, caption) for caption in captions)
        else:
            items.append((index, None))
    return items[: settings.max_samples] if settings.max_samples is not None else items


class PredictionStore:
    """
    The predictions of a task, one JSON line per finished batch: `{"batch": b, "predictions": [...]}`.

    Lines are appended, flushed and fsync'd; a last line cut short by a crash is dropped (the file is
    rewritten atomically without it) when the store is opened.
    """

    def __init__(self, directory: Path, fingerprint: dict, overwrite: bool = False):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = self.directory / PREDICTIONS_NAME
        if not overwrite:
            self.check(self.directory, fingerprint)
        if overwrite and self.path.exists():
            self.path.unlink()
        write_text_atomically(self.directory / RUN_NAME, json.dumps(fingerprint, indent=2, sort_keys=True) + "\n")
        self.batches: dict[int, list] = {}
        if self.path.is_file():
            self._read()

    @staticmethod
    def check(directory: Path, fingerprint: dict) -> None:
        """Raises `ValueError` when `directory` holds predictions of a run other than `fingerprint`'s."""
        run_path = Path(directory) / RUN_NAME
        if not run_path.is_file():
            return
        previous = json.loads(run_path.read_text(encoding="utf-8"))
        if previous != fingerprint:
            changed = sorted(
                key for key in set(previous) | set(fingerprint) if previous.get(key) != fingerprint.get(key)
            )
            raise ValueError(
                f"{str(directory)!r} holds predictions of another run (it differs in {changed}). Pass "
                "`--overwrite` to discard them, or choose another `--output`."
            )

    def _read(self) -> None:
        lines = self.path.read_text(encoding="utf-8").splitlines(keepends=True)
        kept = []
        for line in lines:
            try:
                entry = json.loads(line)
                if not line.endswith("\n"):
                    raise ValueError("unterminated line")
            except ValueError:
                logger.warning(f"{self.path}: dropping an incomplete line (its batch is generated again).")
                continue
            self.batches[int(entry["batch"])] = entry["predictions"]
            kept.append(line)
        if len(kept) != len(lines):
            write_text_atomically(self.path, "".join(kept))

    def append(self, batch: int, predictions: list) -> None:
        line = json.dumps({"batch": batch, "predictions": predictions}) + "\n"
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
        self.batches[batch] = predictions

    def ordered(self, num_batches: int) -> list:
        missing = [batch for batch in range(num_batches) if batch not in self.batches]
        if missing:
            raise RuntimeError(f"Batches {missing[:10]} of {num_batches} have no predictions yet.")
        return [prediction for batch in range(num_batches) for prediction in self.batches[batch]]


@torch.no_grad()
def generate_batch(
    model, processor, task: str, records: list[dict], captions: list[str | None], max_new_tokens: int
) -> list[dict]:
    """
    Generates the answers of one batch.

    The records' poses go to the model in the world of its poses (`config.pose_up_axis`), and the poses it
    writes come back in the records' (SMPL's y-up frame), where they are scored.

    Returns:
        `list[dict]`: per item, `{"text": ...}` for text tasks, or `{"pose": (22, 3) nested list, "text": ...}`
        for pose tasks (`"pose"` is `None` when the model wrote no pose).
    """
    spec = TASKS[task]
    up_axis = model.config.pose_up_axis
    prompts = [
        evaluation_prompt(task, record, caption, processor.tokenizer, up_axis)
        for record, caption in zip(records, captions)
    ]
    inputs = processor(
        text=[prompt.text for prompt in prompts],
        images=[image for prompt in prompts for image in prompt.images] or None,
        poses=[pose for prompt in prompts for pose in prompt.poses] or None,
        add_special_tokens=False,  # the chat template already starts with BOS
        return_tensors="pt",
    ).to(model.device)
    if spec.output == "pose":
        # A pose is `num_pose_tokens` codes and `</p>` after the `<p>` of the prompt.
        max_new_tokens = model.config.num_pose_tokens + 1
    output = model.generate(
        **inputs, max_new_tokens=max_new_tokens, do_sample=False, return_dict_in_generate=True
    )
    new_tokens = output.sequences[:, inputs["input_ids"].shape[1] :]
    texts = [
        text.strip()
        for text in processor.batch_decode(new_tokens, pose_spans="remove", skip_special_tokens=True)
    ]
    if spec.output == "text":
        return [{"text": text} for text in texts]
    return [
        {
            "pose": change_pose_up_axis(poses[0].float().cpu(), up_axis, RECORD_UP_AXIS).tolist()
            if len(poses)
            else None,
            "text": text,
        }
        for poses, text in zip(output.poses, texts)
    ]


def run_generation(
    model,
    processor,
    task: str,
    dataset,
    items: list,
    store: PredictionStore,
    settings: EvaluationSettings,
    progress: bool = True,
) -> list[dict]:
    """Generates every batch of `items` that `store` lacks; returns all predictions in item order."""
    batches = [
        items[start : start + settings.batch_size] for start in range(0, len(items), settings.batch_size)
    ]
    todo = [index for index in range(len(batches)) if index not in store.batches]
    if len(todo) < len(batches):
        logger.info(f"{task}: {len(batches) - len(todo)} of {len(batches)} batches already done, resuming.")
    bar = tqdm(
        total=len(batches), initial=len(batches) - len(todo), desc=task, unit="batch", disable=not progress
    )
    for index in todo:
        batch = batches[index]
        records = [dataset[record_index] for record_index, _ in batch]
        captions = [
            record["texts"][caption] if caption is not None else None
            for record, (_, caption) in zip(records, batch)
        ]
        store.append(
            index, generate_batch(model, processor, task, records, captions, settings.max_new_tokens)
        )
        bar.update(1)
    bar.close()
    return store.ordered(len(batches))


# ----------------------------------------------------------------------------------------------------
# Metrics
# ----------------------------------------------------------------------------------------------------


@dataclass
class RetrievalJudges:
    """The retrieval models that score a run (either may be missing) and their tokenizers."""

    pose_model: Any = None
    pose_tokenizer: Any = None
    pair_model: Any = None
    pair_tokenizer: Any = None


def _stack_poses(dataset, indices: Sequence[int], column: str) -> np.ndarray:
    return np.asarray(
        dataset.select_columns([column]).with_format("numpy")[list(indices)][column], dtype=np.float32
    )


def _r_precision_metrics(
    text_embeds, pose_embeds, settings: EvaluationSettings, notes: list[str]
) -> dict[str, float]:
    if len(text_embeds) < settings.pool_size:
        notes.append(
            f"R-precision not computed: it needs at least {settings.pool_size} items, got {len(text_embeds)}."
        )
        return {}
    return r_precision_all_protocols(
        text_embeds, pose_embeds, settings.pool_size, settings.num_repetitions, settings.seed
    )


def _note_reference_r_precision(
    text_embeds, pose_embeds, settings: EvaluationSettings, notes: list[str]
) -> None:
    """
    Notes the R-precision of the test items' own texts against their true poses (or pairs): the retrieval
    model's ceiling on this data, against which a model's R-precision is read.
    """
    scores = _r_precision_metrics(text_embeds, pose_embeds, settings, notes=[])
    if scores:
        notes.append(
            "R-precision of the items' own texts with their true poses (the retrieval model's ceiling here): "
            + ", ".join(f"{name} {value:.2f}" for name, value in scores.items())
            + "."
        )


def compute_task_metrics(
    task: str,
    dataset,
    items: list,
    predictions: list[dict],
    judges: RetrievalJudges,
    settings: EvaluationSettings,
    body=None,
    per_item: dict | None = None,
) -> tuple[dict[str, float], list[str]]:
    """
    The metrics of a task from its predictions.

    Args:
        per_item (`dict`, *optional*): filled with the headline metrics item by item, `name -> {position: value}`
            (positions in `items`), for their bootstrap intervals ([`HEADLINE_METRICS`]).

    Returns:
        `tuple[dict[str, float], list[str]]`: metric name -> value, and notes on what could not be computed
        (and why) or how a number was obtained.
    """
    spec = TASKS[task]
    notes: list[str] = []
    metrics: dict[str, float] = {}
    record_indices = [index for index, _ in items]
    # The texts column alone: reading whole records would decode every image again.
    all_texts = dataset["texts"]
    judge = judges.pose_model if spec.retrieval == "pose" else judges.pair_model
    judge_tokenizer = judges.pose_tokenizer if spec.retrieval == "pose" else judges.pair_tokenizer
    option = "--retrieval-model" if spec.retrieval == "pose" else "--pair-retrieval-model"

    def embed_true_poses():
        if spec.retrieval == "pose":
            return embed_poses(judge, _stack_poses(dataset, record_indices, "pose"))
        return embed_pose_pairs(
            judge,
            _stack_poses(dataset, record_indices, "pose_a"),
            _stack_poses(dataset, record_indices, "pose_b"),
        )

    if spec.output == "text":
        generated = [prediction["text"] for prediction in predictions]
        references = [list(all_texts[index]) for index in record_indices]
        if settings.text_references == "first":  # the paper's protocol: one reference, each item's first caption
            references = [texts[:1] for texts in references]
        metrics.update(text_metrics(generated, references))
        if per_item is not None:
            per_item["ROUGE-L"] = dict(enumerate(rouge_l_per_item(generated, references).tolist()))
        if judge is None:
            notes.append(f"R-precision not computed: no `{option}` given.")
        else:
            text_embeds = embed_texts(judge, judge_tokenizer, generated)
            true_pose_embeds = embed_true_poses()
            metrics.update(_r_precision_metrics(text_embeds, true_pose_embeds, settings, notes))
            if per_item is not None and len(generated) >= settings.pool_size:
                ranks = posescript_mean_ranks(
                    text_embeds, true_pose_embeds, settings.pool_size, settings.num_repetitions, settings.seed
                )
                per_item[R_PRECISION_HEADLINE] = dict(enumerate(((ranks < 1).double() * 100.0).tolist()))
            first_references = [texts[0] for texts in references]
            _note_reference_r_precision(
                embed_texts(judge, judge_tokenizer, first_references), true_pose_embeds, settings, notes
            )
        return metrics, notes

    # Pose outputs. A missing pose (the model wrote none) cannot be scored: count it and leave it out.
    written = [position for position, prediction in enumerate(predictions) if prediction["pose"] is not None]
    if len(written) < len(predictions):
        notes.append(
            f"{len(predictions) - len(written)} of {len(predictions)} items got no pose; they are left out."
        )
    metrics["pose rate (%)"] = 100.0 * len(written) / max(1, len(predictions))
    if not written:
        return metrics, notes
    generated = np.asarray([predictions[position]["pose"] for position in written], dtype=np.float32)
    kept = [items[position] for position in written]
    kept_records = [index for index, _ in kept]
    target_column = {"pose_text": "pose", "image_pose": "pose", "pose_pair": "pose_b"}[spec.kind]
    targets = _stack_poses(dataset, kept_records, target_column)
    errors = pose_errors_per_item(generated, targets, body=body)
    metrics.update({name: float(values.mean()) for name, values in errors.items()})
    if per_item is not None:
        per_item.update({name: dict(zip(written, values.tolist())) for name, values in errors.items()})
    if spec.retrieval is None:
        return metrics, notes
    if judge is None:
        notes.append(f"Recall@K not computed: no `{option}` given.")
    else:
        captions = [all_texts[index][caption] for index, caption in kept]
        text_embeds = embed_texts(judge, judge_tokenizer, captions)
        if spec.retrieval == "pose":
            generated_embeds, true_embeds = embed_poses(judge, generated), embed_poses(judge, targets)
        else:
            poses_a = _stack_poses(dataset, kept_records, "pose_a")
            generated_embeds = embed_pose_pairs(judge, poses_a, generated)
            true_embeds = embed_pose_pairs(judge, poses_a, targets)
        k_values = tuple(k for k in settings.recall_k if k <= len(kept))
        if len(k_values) < len(settings.recall_k):
            notes.append(f"Recall@K for K > {len(kept)} (the number of items) not computed.")
        if k_values:
            metrics.update(text_pose_recalls(text_embeds, generated_embeds, k_values, settings.seed))
        metrics.update(_r_precision_metrics(text_embeds, generated_embeds, settings, notes))
        _note_reference_r_precision(text_embeds, true_embeds, settings, notes)
    # FID compares single poses in the pose-text model's feature space (for editing: real B vs generated B).
    if judges.pose_model is None:
        notes.append("FID not computed: no `--retrieval-model` (its pose features are the FID features).")
    elif len(kept) < 2:
        notes.append("FID not computed: it needs at least 2 poses.")
    else:
        metrics["FID"] = frechet_distance(
            embed_poses(judges.pose_model, targets), embed_poses(judges.pose_model, generated)
        )
        if len(kept) <= judges.pose_model.config.embed_dim:
            notes.append(
                f"FID from {len(kept)} poses in {judges.pose_model.config.embed_dim} dimensions: the covariances are "
                "singular and the value is only indicative."
            )
    return metrics, notes


# ----------------------------------------------------------------------------------------------------
# Reports
# ----------------------------------------------------------------------------------------------------


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _fmt_published(value: float | None) -> str:
    """A published number as printed (0.038 stays 0.038)."""
    return "n/a" if value is None else f"{value:g}"


def _one_line(text: str) -> str:
    """`text` on one Markdown line (generated text may hold newlines)."""
    return " ".join(text.split())


def _save_png(image, path: Path) -> str:
    """Writes a PIL image as PNG atomically; returns the file name."""
    with atomic_path(path) as temporary:
        image.convert("RGB").save(temporary, format="PNG")
    return path.name


def render_examples(
    task: str, dataset, items: list, predictions: list[dict], directory: Path, count: int
) -> list[dict]:
    """
    Pictures of the first `count` items (the inputs, the reference and the prediction) in `directory`.

    Returns:
        `list[dict]`: per example, the picture file names (relative to the report) and its texts.
    """
    if count == 0:
        return []
    if not rendering_available():
        logger.warning("No examples rendered: rendering needs matplotlib; install the `demo` extra.")
        return []
    directory.mkdir(parents=True, exist_ok=True)
    spec = TASKS[task]
    examples = []
    for number, ((index, caption), prediction) in enumerate(zip(items[:count], predictions[:count])):
        record = dataset[index]
        pictures = {
            key.replace("_", "-"): record[key] for key in ("image", "image_a", "image_b") if key in record
        }
        if spec.kind == "pose_text" and spec.output == "text":
            pictures["poses"] = render_pose(record["pose"], title="input pose")
        elif task == "pose-diff":
            pictures["poses"] = render_pose_pair(record["pose_a"], record["pose_b"])
        elif spec.output == "pose" and prediction.get("pose") is not None:
            if task == "pose-editing":
                poses = [record["pose_a"], record["pose_b"], prediction["pose"]]
                labels = ["A", "B (reference)", "B (generated)"]
            else:
                poses, labels = [record["pose"], prediction["pose"]], ["reference", "generated"]
            pictures["poses"] = contact_sheet(
                np.asarray(poses, dtype=np.float32), captions=labels, columns=len(poses)
            )
        names = [
            _save_png(image, directory / f"{task}-{number}-{suffix}.png")
            for suffix, image in pictures.items()
        ]
        examples.append(
            {
                "pictures": [f"{EXAMPLES_DIR}/{name}" for name in names],
                "input": record["texts"][caption] if caption is not None else None,
                "generated": prediction.get("text") if spec.output == "text" else None,
                "references": list(record["texts"]) if spec.output == "text" else None,
            }
        )
    return examples


def _interval(entry: dict) -> str:
    return f"{entry['mean']:.2f} [{entry['low']:.2f}, {entry['high']:.2f}]"


def _significance_lines(significance: dict, baseline: dict | None) -> list[str]:
    """The headline metrics with their 95 % bootstrap intervals and, against the baseline, the paired difference."""
    if not significance:
        return []
    lines = ["", "Headline metrics with 95 % bootstrap intervals over the items"]
    if baseline is not None:
        lines[-1] += " and the paired difference with the baseline (ours - baseline; a verdict only where its "
        lines[-1] += "interval excludes 0):"
        lines += ["", "| metric | ours | baseline | difference | verdict |", "| --- | ---: | ---: | ---: | --- |"]
    else:
        lines[-1] += ":"
        lines += ["", "| metric | ours |", "| --- | ---: |"]
    for name, entry in significance.items():
        cells = [_interval(entry["ours"])]
        if baseline is not None:
            cells += [_interval(entry["baseline"]), _interval(entry["difference"]), entry["verdict"]] if (
                "difference" in entry
            ) else ["", "", ""]
        lines.append(f"| {name}{' (lower is better)' if entry['lower_is_better'] else ''} | " + " | ".join(cells) + " |")
    return lines


def _task_section(task: str, result: dict) -> list[str]:
    spec = TASKS[task]
    paper = PAPER_RESULTS.get(task, {})
    lines = [f"## {spec.title}", ""]
    lines.append(
        f"{result['num_items']} items from `{result['split']}`; paper: {paper.get('dataset', 'n/a')}."
    )
    baseline = result.get("baseline")
    if baseline is not None:
        lines += ["", f"Baseline: {baseline['name']}."]
        lines += ["", "| metric | ours | baseline | paper |", "| --- | ---: | ---: | ---: |"]
    else:
        lines += ["", "| metric | ours | paper |", "| --- | ---: | ---: |"]
    names = list(result["metrics"]) + [
        name for name in paper.get("metrics", {}) if name not in result["metrics"]
    ]
    for name in names:
        cells = [_fmt(result["metrics"].get(name))]
        if baseline is not None:
            cells.append(_fmt(baseline["metrics"].get(name)))
        cells.append(_fmt_published(paper_value(task, name)))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += _significance_lines(result.get("significance", {}), baseline)
    if paper:
        table = PAPER_TABLES[paper["table"]]
        section = table["tasks"][task]
        lines += ["", f"Paper, {paper['table']} ({section['dataset']}):", ""]
        lines += ["| method | " + " | ".join(table["columns"]) + " |"]
        lines += ["| --- |" + " ---: |" * len(table["columns"])]
        for method, values in section["rows"].items():
            lines.append(f"| {method} | " + " | ".join(_fmt_published(value) for value in values) + " |")
    for ablation in PAPER_ABLATIONS.values():
        if ablation.get("task") == task:
            lines += ["", f"Paper ablation, {ablation['description']}:"]
            for setting, values in ablation["results"].items():
                lines.append(f"- {setting}: " + ", ".join(f"{k} {v}" for k, v in values.items()))
    if result["notes"]:
        lines += [""] + [f"- {note}" for note in result["notes"]]
    for number, example in enumerate(result["examples"]):
        lines += ["", f"**Example {number + 1}**", ""]
        lines += [f"![{task} example {number + 1}]({picture})" for picture in example["pictures"]]
        if example["input"] is not None:
            lines += ["", f"- input: {_one_line(example['input'])}"]
        if example["generated"] is not None:
            lines += ["", f"- generated: {_one_line(example['generated']) or '(empty)'}"]
            lines += [f"- reference: {_one_line(reference)}" for reference in example["references"]]
    return lines + [""]


def write_report(output_dir: Path, results: dict) -> Path:
    """Writes `results.json` and `report.md` into `output_dir` (atomically) and returns the report's path."""
    write_text_atomically(output_dir / RESULTS_NAME, json.dumps(results, indent=2, sort_keys=True) + "\n")
    settings = results["settings"]
    lines = [
        "# UniPose evaluation",
        "",
        f"- model: `{results['model']}`",
        f"- data: {', '.join(f'`{path}`' for path in results['data'])}",
        f"- pose-text retrieval model: `{results['retrieval_model']}`",
        f"- pose-pair-text retrieval model: `{results['pair_retrieval_model']}`",
        f"- written: {results['date']}",
        "",
        (
            f'Paper numbers: {PAPER_CITATION}, UniPose row; the tables and their provenance are in '
            '`unipose/evaluation/paper_results.py`. "n/a": not reported by the paper. The paper\'s R-precision '
            "is the grouped protocol."
        ),
        "",
        "R-precision protocols:",
    ]
    for protocol in R_PRECISION_PROTOCOLS:
        lines.append(
            f"- `{protocol}`: "
            + describe_r_precision_protocol(protocol, settings["pool_size"], settings["num_repetitions"])
        )
    lines += ["", "Text metrics:"] + [
        f"- {name}: {source}" for name, source in results["text_metric_sources"].items()
    ]
    if settings.get("text_references", "first") == "first":
        lines += ["- References: each item's first caption, as the paper scores them."]
    else:
        lines += ["- References: all captions of each item (the paper scores against the first only)."]
    lines += [
        "",
        f"Joint errors (mm, the 22 body joints of {results.get('body_model', 'the generated stand-in body')}): "
        "MPJPE after aligning the pelvis, PA-MPJPE after a Procrustes similarity alignment. The paper's differ in "
        "protocol, so its columns are context, not a like-for-like comparison: Text-to-Pose and Pose Editing over "
        "the 52 SMPL-H joints (fingers included), Pose Estimation over 14 joints regressed from the mesh against "
        "each dataset's measured keypoints (real body shapes).",
        "",
    ]
    for task, result in results["tasks"].items():
        lines += _task_section(task, result)
    path = output_dir / REPORT_NAME
    write_text_atomically(path, "\n".join(lines))
    return path


# ----------------------------------------------------------------------------------------------------
# Driver
# ----------------------------------------------------------------------------------------------------


def _check_finite_poses(dataset, records: list[int], task: str) -> None:
    """Refuses records whose poses hold NaN or infinite values before anything is generated (the metrics would
    refuse them only once the whole split is generated), naming the record."""
    columns = [column for column in ("pose", "pose_a", "pose_b") if column in dataset.column_names]
    selected = dataset.select(records).select_columns(columns)
    for column in columns:
        poses = np.asarray(selected[column], dtype=np.float64)
        bad = ~np.isfinite(poses.reshape(len(records), -1)).all(axis=1)
        if bad.any():
            index = records[int(np.flatnonzero(bad)[0])]
            raise ValueError(
                f"Record {index} (id {dataset[index]['id']!r}) of the `{TASKS[task].kind}` records holds NaN or "
                f"infinite values in `{column}` ({int(bad.sum())} record(s) in all); {task} cannot score it."
            )


def task_run(task: str, dataset, settings: EvaluationSettings, fingerprint: dict | None = None) -> tuple[list, dict]:
    """The items of `task` in `dataset` and the fingerprint of its predictions: `fingerprint` (what the run's
    model and data are) with the task's own settings. [`PredictionStore.check`] compares it with what a folder
    holds before anything is written."""
    if task not in TASKS:
        raise ValueError(f"`task` must be one of {sorted(TASKS)}, got {task!r}.")
    items = task_items(task, dataset, settings)
    if not items:
        raise ValueError(f"The `{TASKS[task].kind}` records hold no item for {task} (no captions?).")
    _check_finite_poses(dataset, sorted({record for record, _ in items}), task)
    run_fingerprint = {
        **(fingerprint or {}),
        "task": task,
        # Predictions made with other prompts are never mixed in.
        "template": evaluation_template(task),
        "num_items": len(items),
        "batch_size": settings.batch_size,
        "captions": settings.captions,
    }
    if TASKS[task].output != "pose":  # a pose answer is `<p>`, its codes and `</p>` whatever the limit
        run_fingerprint["max_new_tokens"] = settings.max_new_tokens
    return items, run_fingerprint


def evaluate_task(
    task: str,
    model,
    processor,
    dataset,
    output_dir: Path,
    settings: EvaluationSettings,
    judges: RetrievalJudges | None = None,
    fingerprint: dict | None = None,
    overwrite: bool = False,
    body=None,
    progress: bool = True,
    train_dataset=None,
) -> dict:
    """
    Generation (resumable) and metrics of one task on `dataset` (records of the task's kind).

    Args:
        task (`str`): a key of `TASKS`.
        model, processor: a UniPose model and its processor.
        dataset (`datasets.Dataset`): the test records.
        output_dir (`Path`): the run's folder; predictions go to `output_dir/TASK/`.
        settings ([`EvaluationSettings`]): batch size, sample limit, metric settings.
        judges ([`RetrievalJudges`], *optional*): the retrieval models.
        fingerprint (`dict`, *optional*): what identifies the model and data, stored with the predictions.
        overwrite (`bool`, *optional*, defaults to `False`): discard predictions of a different run.
        body (*optional*): the `BodyJoints` of the joint errors (defaults to the generated body).
        progress (`bool`, *optional*, defaults to `True`): show a progress bar.
        train_dataset (`datasets.Dataset`, *optional*): the training records; when given, the task's simple
            baseline ([`~unipose.evaluation.baselines`]) is scored too, by the same code.

    Returns:
        `dict`: `metrics`, `notes`, `num_items`, `examples` (and what they were computed on), `significance` (the
        headline metrics' intervals, see [`headline_significance`]), `per_item` (the headline metrics item by item,
        `{"ours": ..., "baseline": ...}`, see [`per_item_lists`]), and `baseline` (its name and metrics) when
        `train_dataset` is given.
    """
    items, run_fingerprint = task_run(task, dataset, settings, fingerprint)
    store = PredictionStore(Path(output_dir) / task, run_fingerprint, overwrite=overwrite)
    predictions = run_generation(model, processor, task, dataset, items, store, settings, progress)
    ours_per_item: dict = {}
    metrics, notes = compute_task_metrics(
        task, dataset, items, predictions, judges or RetrievalJudges(), settings, body, ours_per_item
    )
    examples = render_examples(
        task, dataset, items, predictions, Path(output_dir) / EXAMPLES_DIR, settings.num_examples
    )
    result = {"metrics": metrics, "notes": notes, "num_items": len(items), "examples": examples}
    if train_dataset is not None:
        name, baseline = baseline_predictions(TASKS[task].output, TASKS[task].kind, train_dataset, dataset, items)
        baseline_per_item: dict = {}
        baseline_metrics, _ = compute_task_metrics(
            task, dataset, items, baseline, judges or RetrievalJudges(), settings, body, baseline_per_item
        )
        result["baseline"] = {"name": name, "metrics": baseline_metrics}
    else:
        baseline_per_item = None
    records = [index for index, _ in items]
    result["significance"] = headline_significance(ours_per_item, baseline_per_item, settings.seed, records)
    result["per_item"] = {"ours": per_item_lists(ours_per_item, len(items))}
    if baseline_per_item is not None:
        result["per_item"]["baseline"] = per_item_lists(baseline_per_item, len(items))
    return result


def per_item_lists(per_item: dict, num_items: int) -> dict[str, list[float | None]]:
    """
    The headline metrics item by item, as lists in the order of the task's items ([`task_items`]): `None` where an
    item has no value (a pose task's item whose answer held no pose). Kept in `results.json`, so that the intervals
    can be recomputed and a slice of the items scored again and compared.
    """
    return {
        name: [values.get(position) for position in range(num_items)] for name, values in per_item.items()
    }


# Headline metrics, per item, and whether lower is better.
R_PRECISION_HEADLINE = "R-Precision@1 (posescript)"
HEADLINE_METRICS = {"MPJPE": True, "PA-MPJPE": True, "ROUGE-L": False, R_PRECISION_HEADLINE: False}


def headline_significance(ours: dict, baseline: dict | None, seed: int = 0, records: list | None = None) -> dict:
    """
    Each headline metric with its 95 % bootstrap interval over the test items, and against the baseline the paired
    difference (ours - baseline) with its interval and a verdict: `"better"` or `"worse"` only when the interval
    excludes zero (and there are enough items, see [`~unipose.evaluation.significance.verdict`]). Against a baseline,
    both intervals and the difference are taken over the same items, those the model answered; `"unanswered"`
    counts the others (items without a pose), which the caveats name. `records` gives each item's record: where a
    record gives several items (`--captions all`), records are resampled whole.
    """
    report = {}
    for name, lower_is_better in HEADLINE_METRICS.items():
        if name not in ours or not ours[name]:
            continue
        compared = baseline is not None and bool(baseline.get(name))
        items = sorted(set(ours[name]) & set(baseline[name])) if compared else list(ours[name])
        groups = [records[i] for i in items] if records is not None else None
        options = {"seed": seed, "groups": groups if groups and len(set(groups)) < len(groups) else None}
        entry = {"ours": bootstrap_interval([ours[name][i] for i in items], **options).to_dict(),
                 "lower_is_better": lower_is_better}
        if compared:
            entry["baseline"] = bootstrap_interval([baseline[name][i] for i in items], **options).to_dict()
            unanswered = len(set(baseline[name]) - set(ours[name]))
            if unanswered:
                entry["unanswered"] = unanswered
            difference = paired_difference(
                [ours[name][i] for i in items], [baseline[name][i] for i in items], **options
            )
            entry["difference"] = difference.to_dict()
            entry["verdict"] = verdict(difference, lower_is_better)
        report[name] = entry
    return report


def resolve_device(value: str):
    """A `--device` value as a `torch.device`: `auto` (CUDA when available), or a device torch knows and has."""
    if value == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(value)
    except RuntimeError:
        raise ValueError(f"`--device` must be `auto`, `cpu`, `cuda`, `cuda:N`, `mps`, ...; got {value!r}.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"`--device` is {value!r} but this machine has no CUDA device; use `cpu` or `auto`.")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"`--device` is {value!r} but this machine has {torch.cuda.device_count()} CUDA device(s).")
    return device


__all__ = [
    "TASKS",
    "EvaluationPrompt",
    "EvaluationSettings",
    "PredictionStore",
    "RetrievalJudges",
    "compute_task_metrics",
    "evaluate_task",
    "evaluation_prompt",
    "headline_significance",
    "per_item_lists",
    "task_items",
    "task_run",
    "write_report",
]
