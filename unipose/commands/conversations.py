"""`unipose conversations`: write task conversations as JSON lines for `trl sft`."""

from __future__ import annotations

import argparse
from pathlib import Path

from datasets import concatenate_datasets

from ..data.schema import record_kind
from ..task_formats import TASK_SPECS, TEMPLATE_STYLES, TEXT_ONLY_TASKS
from ..training.tasks import (
    load_pose_tokenizer,
    load_records,
    mix_records,
    text_only_conversations,
    write_json_lines,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--records", nargs="+", required=True, help="Corpora (save_to_disk directories) to read."
    )
    parser.add_argument("--split", default="train", help="Split of each corpus.")
    parser.add_argument(
        "--tasks", nargs="+", default=list(TEXT_ONLY_TASKS), choices=TEXT_ONLY_TASKS, help="Tasks to draw."
    )
    parser.add_argument(
        "--pose_tokenizer", required=True, help="UniPose checkpoint (or stage-0 pose tokenizer)."
    )
    parser.add_argument(
        "--output", required=True, help="Directory of the JSON-lines dataset (`train.jsonl`)."
    )
    parser.add_argument("--style", default="instruction", choices=TEMPLATE_STYLES, help="Template style.")
    parser.add_argument("--weight", type=float, default=1.0, help="Examples per record and task.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the draws.")
    parser.add_argument("--overwrite", action="store_true", help="Replace an existing `OUTPUT/train.jsonl`.")


def run(args: argparse.Namespace) -> str:
    """Write the text-only conversations that `trl sft --dataset_name OUTPUT` trains on."""
    output = Path(args.output) / "train.jsonl"
    if output.exists() and not args.overwrite:
        raise FileExistsError(
            f"`--output` {args.output!r} already holds train.jsonl: pass `--overwrite` to replace it, or choose "
            "another folder."
        )
    parts = []
    for index, path in enumerate(args.records):
        records = load_records(path, args.split)
        tasks = [task for task in args.tasks if TASK_SPECS[task].kind == record_kind(records.features)]
        parts += mix_records(records, tasks, args.weight, args.style, args.seed, index, path).values()
    if not parts:
        raise ValueError(
            f"None of `--tasks` {args.tasks} reads the record kinds of `--records` {args.records}."
        )
    conversations = text_only_conversations(
        concatenate_datasets(parts), load_pose_tokenizer(args.pose_tokenizer)
    )
    path = write_json_lines(conversations, output)
    return f"Wrote {len(conversations)} conversations to {path}"
