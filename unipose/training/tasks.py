"""
Training examples of the seven UniPose tasks, built from the record kinds of `unipose.data.schema`, and
mixtures of them over several corpora.

Every example is a single-turn conversation in one schema, [`CONVERSATION_FEATURES`], whatever its task:

| column                 | holds                                                                       |
| ---------------------- | --------------------------------------------------------------------------- |
| `messages`             | the user turn (`{"type": "pose"}` / `{"type": "image"}` items) and answer   |
| `images`               | the images of the prompt, in the order of its `<image>` items               |
| `poses`                | the input poses `(22, 3)` axis-angle, in the order of its `<pose>` items    |
| `target_poses`         | the pose the answer produces (`{"type": "pose_query"}`); none for text      |
| `task`, `id`, `source` | the task, and the record and corpus the example comes from                  |

| task              | record kind  | prompt                           | answer                       |
| ----------------- | ------------ | -------------------------------- | ---------------------------- |
| `pose_to_text`    | `pose_text`  | pose                             | a description (one of texts) |
| `text_to_pose`    | `pose_text`  | a description                    | the pose                     |
| `pose_diff`       | `pose_pair`  | pose A, pose B                   | an instruction A -> B        |
| `pose_editing`    | `pose_pair`  | pose A, an instruction           | pose B                       |
| `image_to_text`   | `image_pose` | image                            | a description                |
| `pose_estimation` | `image_pose` | image                            | the pose                     |
| `image_diff`      | `image_pair` | image A, image B                 | an instruction A -> B        |

A mixture lists corpora with the tasks to draw from each and a weight: a task of a corpus of `n` usable
records contributes `round(weight * n)` examples (weight 1 = every record once per epoch; 2 = twice, with
new draws of template and caption; 0.5 = a random half). The draws (records, templates, captions) are
functions of the mixture's seed, so every process of a distributed run builds the same examples.

The stock `trl sft` command trains the text-output tasks on conversations whose input poses are written out
as code tokens: [`text_only_conversations`] builds them, `unipose conversations` writes them as
JSON lines.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from datasets import (
    Array2D,
    Dataset,
    DatasetDict,
    Features,
    Image,
    List,
    Value,
    concatenate_datasets,
    load_dataset,
    load_from_disk,
)
from transformers import AutoConfig
from transformers.utils import logging

from ..data.amass import change_pose_up_axis
from ..data.schema import POSE_SHAPE, RECORD_UP_AXIS, record_kind
from ..files import atomic_path
from ..modeling_pose_vqvae import PoseVQVAE
from ..modeling_unipose import UniPoseForConditionalGeneration
from ..processing_poses import POSE_END_TOKEN, POSE_START_TOKEN, pose_code_token
from ..task_formats import (
    IMAGE_SLOTS,
    POSE_SLOTS,
    TASK_SPECS,
    TASKS,
    TASKS_BY_KIND,
    TEMPLATE_STYLES,
    TEXT_ONLY_TASKS,
    render_template,
    templates_for,
)

logger = logging.get_logger(__name__)

_CONTENT_ITEM = {"type": Value("string"), "text": Value("string")}
CONVERSATION_FEATURES = Features(
    {
        "messages": List({"role": Value("string"), "content": List(_CONTENT_ITEM)}),
        "images": List(Image()),
        "poses": List(Array2D(shape=POSE_SHAPE, dtype="float32")),
        "target_poses": List(Array2D(shape=POSE_SHAPE, dtype="float32")),
        "task": Value("string"),
        "id": Value("string"),
        "source": Value("string"),
    }
)


def build_example(record: dict, task: str, template: str, text: str | None = None) -> dict:
    """
    One conversation of `task` from one record.

    Args:
        record (`dict`): a row of a dataset of the task's record kind.
        task (`str`): one of [`TASKS`].
        template (`str`): the user prompt, with the task's slots.
        text (`str`, *optional*): the record text used by the example: the answer of a text-output task, the
            caption of Text-to-Pose, the instruction of Pose Editing.

    Returns:
        `dict`: a row of [`CONVERSATION_FEATURES`].
    """
    spec = TASK_SPECS[task]
    if spec.needs_text and not text:
        raise ValueError(f"The task {task!r} needs a text from the record `texts`, got {text!r}.")
    content, media = render_template(template, text if spec.text_slot else None)
    if sorted(media) != sorted(spec.media):
        raise ValueError(
            f"The template {template!r} has the media slots {media}; {task!r} needs {sorted(spec.media)}."
        )
    if spec.target is None:
        answer = [{"type": "text", "text": text.strip()}]
    else:
        answer = [{"type": "pose_query", "text": None}]
    return {
        "messages": [{"role": "user", "content": content}, {"role": "assistant", "content": answer}],
        "images": [record[spec.media[slot]] for slot in media if slot in IMAGE_SLOTS],
        "poses": [record[spec.media[slot]] for slot in media if slot in POSE_SLOTS],
        "target_poses": [] if spec.target is None else [record[spec.target]],
        "task": task,
        "id": record["id"],
        "source": record["source"],
    }


def _draw_example(
    record: dict, index: int, task: str, templates: Sequence[str], stream: Sequence[int]
) -> dict:
    """`build_example` with the template and the text drawn from a generator seeded by `(*stream, index)`."""
    rng = np.random.default_rng([*stream, index])
    template = templates[int(rng.integers(len(templates)))]
    texts = record["texts"]
    text = texts[int(rng.integers(len(texts)))] if TASK_SPECS[task].needs_text else None
    return build_example(record, task, template, text)


def task_examples(
    records: Dataset,
    task: str,
    style: str = "simple",
    weight: float = 1.0,
    seed: int = 0,
    stream: Sequence[int] = (),
    name: str | None = None,
) -> Dataset:
    """
    The examples of one task drawn from one corpus.

    Args:
        records (`Dataset`): records of the task's kind (`unipose.data.schema`).
        task (`str`): one of [`TASKS`].
        style (`str`, *optional*, defaults to `"simple"`): `"simple"` (one template, stages 1-2) or
            `"instruction"` (many phrasings, stage 3).
        weight (`float`, *optional*, defaults to 1.0): examples per usable record (see the module docstring).
        seed (`int`, *optional*, defaults to 0): seed of the draws.
        stream (`Sequence[int]`, *optional*): more seed material, so that two tasks or corpora of one mixture
            draw independently.
        name (`str`, *optional*): the corpus name used in log messages.

    Returns:
        `Dataset` with [`CONVERSATION_FEATURES`].
    """
    if task not in TASK_SPECS:
        raise ValueError(f"`task` must be one of {TASKS}, got {task!r}.")
    spec = TASK_SPECS[task]
    kind = record_kind(records.features)
    if kind != spec.kind:
        raise ValueError(
            f"The task {task!r} reads `{spec.kind}` records, but `records` holds `{kind}` records."
        )
    if (
        isinstance(weight, bool)
        or not isinstance(weight, (int, float))
        or not math.isfinite(weight)
        or weight < 0
    ):
        raise ValueError(f"`weight` must be a finite number >= 0, got {weight!r}.")
    templates = templates_for(task, style)
    name = name or "records"

    usable = np.arange(len(records))
    if spec.needs_text:
        has_text = np.array([len(texts) > 0 for texts in records["texts"]], dtype=bool)
        usable = usable[has_text]
        if len(usable) < len(records):
            logger.warning(
                f"{name}: {len(records) - len(usable)} of {len(records)} records have no text and are left "
                f"out of {task!r}, which needs one."
            )
    count = round(weight * len(usable))
    if count == 0:
        logger.warning(f"{name}: {task!r} gets no examples ({len(usable)} usable records, weight {weight}).")
    # Whole permutations first, so that every record is used before any is used again.
    rng = np.random.default_rng([seed, *stream])
    repeats = math.ceil(count / len(usable)) if len(usable) else 0
    permutations = [usable[rng.permutation(len(usable))] for _ in range(repeats)]
    order = np.concatenate(permutations)[:count] if permutations else usable[:0]

    selected = records.select(order.tolist())
    # Images pass through as encoded bytes: decoding and re-encoding them would only cost time.
    for column in ("image", "image_a", "image_b"):
        if column in selected.column_names:
            selected = selected.cast_column(column, Image(decode=False))
    examples = selected.map(
        _draw_example,
        with_indices=True,
        fn_kwargs={"task": task, "templates": templates, "stream": [seed, *stream]},
        remove_columns=selected.column_names,
        features=CONVERSATION_FEATURES,
        desc=f"{name}: {task}",
    )
    logger.info(f"{name}: {len(examples)} {task!r} examples from {len(usable)} records (weight {weight}).")
    return examples


@dataclass
class TaskMixtureComponent:
    """
    One corpus of a training mixture.

    Args:
        path (`str`):
            A dataset saved with `save_to_disk` (a `Dataset`, or a `DatasetDict` from which `split` is taken),
            or a name or path that `datasets.load_dataset` reads.
        split (`str`, *optional*, defaults to `"train"`):
            The split to use.
        tasks (`list[str]`, *optional*):
            The tasks drawn from this corpus; all tasks of its record kind by default.
        weight (`float`, *optional*, defaults to 1.0):
            Examples per usable record, for each task.
        name (`str`, *optional*):
            A name for log messages (defaults to `path`).
    """

    path: str
    split: str = "train"
    tasks: list[str] | None = None
    weight: float = 1.0
    name: str | None = None

    def __post_init__(self):
        if isinstance(self.tasks, str):
            self.tasks = [self.tasks]
        unknown = [task for task in self.tasks or () if task not in TASKS]
        if unknown:
            raise ValueError(
                f"`tasks` of the corpus {self.path!r} holds unknown tasks {unknown}; known: {TASKS}."
            )
        if isinstance(self.weight, bool) or not isinstance(self.weight, (int, float)) or self.weight < 0:
            raise ValueError(
                f"`weight` of the corpus {self.path!r} must be a number >= 0, got {self.weight!r}."
            )


def load_records(path: str | os.PathLike, split: str = "train") -> Dataset:
    """
    The records of `split` of a corpus: a directory written by `save_to_disk` (a `Dataset`, or a
    `DatasetDict` such as `unipose data synth --out DIR` writes under DIR/pose_text ...), or anything
    `datasets.load_dataset` reads."""
    path = os.fspath(path)
    # A Hub id is `name` or `owner/name`; anything else that does not exist is a missing local corpus.
    looks_local = os.path.isabs(path) or path.startswith((".", "~")) or path.count("/") > 1
    if looks_local and not os.path.exists(os.path.expanduser(path)):
        raise FileNotFoundError(
            f"The corpus {path!r} does not exist; write one with `unipose data synth --out DIR` or point the "
            "recipe's `datasets` at your corpus."
        )
    saved = os.path.isdir(path) and any(
        os.path.isfile(os.path.join(path, name)) for name in ("dataset_dict.json", "state.json")
    )
    if saved:
        data = load_from_disk(path)
    else:
        try:
            data = load_dataset(path)
        except (FileNotFoundError, ConnectionError) as error:  # offline, or no such Hub dataset
            if os.path.exists(os.path.expanduser(path)):
                raise
            # `data/posescript-A` reads as a Hub id too: say that neither the folder nor the Hub dataset is there.
            raise FileNotFoundError(
                f"The corpus {path!r} is neither a local folder nor a dataset the Hub gives "
                f"({type(error).__name__}: {error}). Write one with `unipose data synth --out DIR`, or point the "
                "recipe's `datasets` at your corpus."
            ) from error
    if isinstance(data, DatasetDict):
        if split not in data:
            raise ValueError(f"The corpus {path!r} has the splits {sorted(data)}, not `split`={split!r}.")
        data = data[split]
    record_kind(data.features)  # refuses anything that is not a UniPose record schema
    return data


def build_task_mixture(
    components: Sequence[TaskMixtureComponent | dict], style: str = "simple", seed: int = 0
) -> Dataset:
    """
    The examples of every task of every corpus of a mixture, concatenated (the trainer shuffles them).

    Args:
        components (`Sequence[TaskMixtureComponent]`): the corpora, their tasks and weights (dicts are read as
            [`TaskMixtureComponent`] fields).
        style (`str`, *optional*, defaults to `"simple"`): template style, see [`task_examples`].
        seed (`int`, *optional*, defaults to 0): seed of every draw.

    Returns:
        `Dataset` with [`CONVERSATION_FEATURES`].
    """
    if style not in TEMPLATE_STYLES:
        raise ValueError(f"`style` must be one of {TEMPLATE_STYLES}, got {style!r}.")
    if not components:
        raise ValueError("The mixture needs at least one corpus in `components`.")
    parts, counts = [], {}
    for index, component in enumerate(components):
        if isinstance(component, dict):
            component = TaskMixtureComponent(**component)
        records = load_records(component.path, component.split)
        name = component.name or component.path
        for task, examples in mix_records(
            records, component.tasks, component.weight, style, seed, index, name
        ).items():
            parts.append(examples)
            counts[task] = counts.get(task, 0) + len(examples)
    mixture = concatenate_datasets(parts)
    logger.info(f"Task mixture of {len(mixture)} examples: {counts}")
    return mixture


def mix_records(
    records: Dataset,
    tasks: Sequence[str] | None,
    weight: float,
    style: str,
    seed: int,
    index: int = 0,
    name: str | None = None,
) -> dict[str, Dataset]:
    """The examples of each of `tasks` (all tasks of the records' kind by default) drawn from one corpus;
    `index` (the corpus' place in its mixture) keeps the draws of different corpora independent."""
    kind = record_kind(records.features)
    tasks = list(TASKS_BY_KIND[kind] if tasks is None else tasks)
    wrong = [task for task in tasks if TASK_SPECS[task].kind != kind]
    if wrong:
        raise ValueError(
            f"The corpus {name or 'records'} holds `{kind}` records, which serve {TASKS_BY_KIND[kind]}, not "
            f"{wrong}."
        )
    return {
        task: task_examples(records, task, style, weight, seed, stream=(index, TASKS.index(task)), name=name)
        for task in tasks
    }


# ----------------------------------------------------------------------------------------------------------
# Text-only conversations for the stock `trl sft` command
# ----------------------------------------------------------------------------------------------------------


def pose_span_text(codes: Sequence[int]) -> str:
    """A pose written out as tokens: `<p><pose_12><pose_7>...</p>`."""
    return POSE_START_TOKEN + "".join(pose_code_token(int(code)) for code in codes) + POSE_END_TOKEN


def text_only_conversations(conversations: Dataset, pose_tokenizer, batch_size: int = 256) -> Dataset:
    """
    The text-output examples of a conversation dataset with their input poses written as code tokens.

    The result has a single `messages` column of `{"role", "content": str}` turns, the conversational format
    of TRL, and needs neither a custom collator nor the pose tokenizer at training time. Examples of the other
    tasks (an image in the prompt, or a pose to produce) are left out and counted in a warning: the stock
    collator cannot feed images or train the parallel pose outputs.

    Args:
        conversations (`Dataset`): examples with [`CONVERSATION_FEATURES`] (e.g. from [`build_task_mixture`]).
        pose_tokenizer ([`PoseVQVAE`]): the frozen pose tokenizer of the model that will be fine-tuned.
        batch_size (`int`, *optional*, defaults to 256): examples written out at a time (their poses are
            encoded one by one, as the collator encodes them, turned into the tokenizer's world first).

    Returns:
        `Dataset` with a `messages` column.
    """
    # Read from the task names: reading the `images` column would decode every image.
    keep = [task in TEXT_ONLY_TASKS for task in conversations["task"]]
    dropped = len(keep) - sum(keep)
    if dropped:
        logger.warning(
            f"{dropped} of {len(keep)} examples have an image or a pose to produce and are left out of the "
            f"text-only conversations (tasks kept: {TEXT_ONLY_TASKS})."
        )
    kept = conversations.select(np.flatnonzero(keep).tolist())
    up_axis = pose_tokenizer.config.up_axis

    def write_out(batch: dict) -> dict:
        # One pose at a time, in the tokenizer's world, as the collator and the model encode it.
        with torch.no_grad():
            codes = [
                pose_tokenizer.encode(change_pose_up_axis(np.asarray(pose, np.float32), RECORD_UP_AXIS, up_axis))[0]
                for sample in batch["poses"]
                for pose in sample
            ]
        spans = iter(pose_span_text(row.tolist()) for row in codes)
        messages = []
        for conversation in batch["messages"]:
            messages.append(
                [
                    {
                        "role": turn["role"],
                        "content": " ".join(
                            next(spans) if item["type"] == "pose" else item["text"]
                            for item in turn["content"]
                        ),
                    }
                    for turn in conversation
                ]
            )
        return {"messages": messages}

    return kept.map(write_out, batched=True, batch_size=batch_size, remove_columns=kept.column_names)


def load_pose_tokenizer(path: str | os.PathLike):
    """The pose tokenizer of a UniPose checkpoint, or a pose tokenizer saved on its own (stage 0)."""
    config = AutoConfig.from_pretrained(path, trust_remote_code=True)
    if getattr(config, "model_type", None) == PoseVQVAE.config_class.model_type:
        return PoseVQVAE.from_pretrained(path).eval()
    return UniPoseForConditionalGeneration.from_pretrained(path).model.pose_tokenizer.eval()


def write_json_lines(dataset: Dataset, path: str | os.PathLike) -> Path:
    """Write `dataset` as JSON lines, atomically (a temporary file in the same directory, then renamed)."""
    path = Path(path)
    with atomic_path(path) as temporary:
        dataset.to_json(str(temporary), lines=True, force_ascii=False)
    return path


__all__ = [
    "CONVERSATION_FEATURES",
    "TaskMixtureComponent",
    "build_example",
    "build_task_mixture",
    "load_records",
    "mix_records",
    "pose_span_text",
    "task_examples",
    "text_only_conversations",
    "write_json_lines",
]

