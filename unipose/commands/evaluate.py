"""`unipose evaluate`: evaluate a model on the paper's tasks."""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
from dataclasses import asdict
from pathlib import Path

import torch
from transformers import AutoModelForImageTextToText, AutoProcessor, GenerationConfig
from transformers.utils import logging

from ..body_model import SMPLH_PATH_ENV, BodyJoints, resolve_body_model_path
from ..checkpoints import enable_progress_logging
from ..data.corpus import discover_datasets, load_split
from ..evaluation.paper_metrics import (
    DEFAULT_NUM_REPETITIONS,
    DEFAULT_POOL_SIZE,
    R_PRECISION_PROTOCOLS,
    describe_r_precision_protocol,
    text_metric_sources,
)
from ..evaluation.paper_results import PAPER_CITATION
from ..evaluation.runner import (
    DEFAULT_MAX_NEW_TOKENS,
    TASKS,
    EvaluationSettings,
    PredictionStore,
    RetrievalJudges,
    evaluate_task,
    resolve_device,
    task_run,
    write_report,
)
from ..files import files_fingerprint, resolve_model_path
from ..metrics import GENERATION_RECALL_K
from ..retrieval_models import PosePairTextRetrievalConfig, PoseTextRetrievalConfig, load_retrieval_model
from . import call_with_options

logger = logging.get_logger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="A saved UniPose model (and its processor).")
    parser.add_argument(
        "--task",
        required=True,
        nargs="+",
        choices=[*TASKS, "all"],
        help="Task(s) to evaluate; 'all' runs every task the data has records for.",
    )
    parser.add_argument(
        "--data",
        required=True,
        nargs="+",
        help="Saved datasets, or folders of them (e.g. `unipose data synth` output).",
    )
    parser.add_argument("--split", default="test", help="Split to evaluate (default: test).")
    parser.add_argument(
        "--baselines",
        action="store_true",
        help="Also score each task's simple baseline (constant answer, mean pose, unchanged pose A), computed "
        "from the `train` split of --data.",
    )
    parser.add_argument(
        "--output", default="evaluation", help="Folder for predictions, results.json, report.md and examples."
    )
    parser.add_argument(
        "--retrieval-model", default=None, help="Pose-text retrieval model (R-precision, Recall@K, FID)."
    )
    parser.add_argument(
        "--pair-retrieval-model",
        default=None,
        help="Pose-pair-text retrieval model (Pose-Diff, Image-Diff, Pose Editing).",
    )
    parser.add_argument(
        "--body-model",
        default=None,
        help=f"SMPL-H npz for the joint errors (default: ${SMPLH_PATH_ENV}, else the generated stand-in).",
    )
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument(
        "--max-new-tokens",
        type=int,
        default=None,
        help=f"Longest generated text (default: the model's generation config, else {DEFAULT_MAX_NEW_TOKENS}; "
        "a converted release says 512, as the published program generates).",
    )
    parser.add_argument(
        "--max-samples", type=int, default=None, help="Evaluate only the first N items of each task."
    )
    parser.add_argument(
        "--captions",
        choices=("first", "all"),
        default="first",
        help="Input captions per record (text-to-pose, pose-editing).",
    )
    parser.add_argument(
        "--text-references",
        choices=("first", "all"),
        default="first",
        help="References of a text answer for BLEU-4, ROUGE-L and METEOR: the first caption (the paper's), or all.",
    )
    parser.add_argument(
        "--pool-size", type=int, default=DEFAULT_POOL_SIZE, help="R-precision pool / group size."
    )
    parser.add_argument(
        "--num-repetitions",
        type=int,
        default=DEFAULT_NUM_REPETITIONS,
        help="Pools per query (PoseScript protocol).",
    )
    parser.add_argument("--recall-k", type=int, nargs="+", default=list(GENERATION_RECALL_K))
    parser.add_argument("--num-examples", type=int, default=3, help="Rendered examples per task.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the R-precision pools and tie breaking.")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    parser.add_argument(
        "--overwrite", action="store_true", help="Discard predictions of an earlier, different run."
    )
    parser.add_argument("--no-progress", action="store_true", help="Hide the progress bars.")


def _generation_config(path: str) -> GenerationConfig:
    """The generation config of the model at `path` (transformers' defaults when it has none)."""
    try:
        return GenerationConfig.from_pretrained(resolve_model_path(path, "--model"))
    except OSError:
        return GenerationConfig()


def _load_unipose(path: str, device: torch.device, dtype: str):
    path = resolve_model_path(path, "--model")
    model = AutoModelForImageTextToText.from_pretrained(path, dtype=getattr(torch, dtype)).to(device).eval()
    processor = AutoProcessor.from_pretrained(path)
    return model, processor


def _judges(args, device) -> RetrievalJudges:
    judges = RetrievalJudges()
    for option, attribute, expected in (
        ("retrieval_model", "pose", PoseTextRetrievalConfig.model_type),
        ("pair_retrieval_model", "pair", PosePairTextRetrievalConfig.model_type),
    ):
        path = getattr(args, option)
        if path is None:
            continue
        model, tokenizer = load_retrieval_model(path, device)
        if model.config.model_type != expected:
            raise ValueError(
                f"`--{option.replace('_', '-')}` {path!r} holds a {model.config.model_type!r} model; "
                f"expected {expected!r}."
            )
        setattr(judges, f"{attribute}_model", model)
        setattr(judges, f"{attribute}_tokenizer", tokenizer)
    return judges


def run(args: argparse.Namespace) -> str:
    """
    `unipose evaluate`: every requested task, then `results.json` and `report.md` in `--output`.

    Returns:
        `str`: the metrics of every task, as JSON (the command line prints it).
    """
    enable_progress_logging()
    device = resolve_device(args.device)
    given_max_new_tokens = args.max_new_tokens
    max_new_tokens = DEFAULT_MAX_NEW_TOKENS if given_max_new_tokens is None else given_max_new_tokens
    settings = call_with_options(EvaluationSettings, args, max_new_tokens=max_new_tokens)  # checked before loading
    available = set(discover_datasets(args.data))
    if "all" in args.task:
        tasks = [task for task, spec in TASKS.items() if spec.kind in available]
        skipped = [task for task in TASKS if task not in tasks]
        if skipped:
            logger.warning(f"No records for {skipped} in {args.data}: skipped.")
    else:
        tasks = list(dict.fromkeys(args.task))
        lacking = [task for task in tasks if TASKS[task].kind not in available]
        if lacking:
            raise FileNotFoundError(
                f"No records for {lacking} in {args.data} (they need {sorted({TASKS[t].kind for t in lacking})})."
            )
    if not tasks:
        raise FileNotFoundError(f"No UniPose records in {args.data}.")
    if given_max_new_tokens is None:  # the model's own answer length (a converted release's: 512)
        model_max_new_tokens = _generation_config(args.model).max_new_tokens
        if model_max_new_tokens is not None:
            settings = dataclasses.replace(settings, max_new_tokens=model_max_new_tokens)
    output_dir = Path(args.output)
    # What the predictions depend on: resuming reuses them only when none of it changed (a checkpoint or corpus
    # written again in place, another dtype).
    fingerprint = {
        "model": str(Path(args.model).resolve()),
        "model_files": files_fingerprint(args.model, recursive=False),
        "dtype": args.dtype,
        "data": [str(Path(path).resolve()) for path in args.data],
        "data_files": [files_fingerprint(path) for path in args.data],
        "split": args.split,
        "max_samples": args.max_samples,
    }
    # Every task's records and folder are checked before a model is loaded or anything is written: a refused run
    # leaves the last report whole.
    datasets = {task: load_split(args.data, TASKS[task].kind, args.split) for task in tasks}
    for task, dataset in datasets.items():
        run_fingerprint = task_run(task, dataset, settings, fingerprint)[1]
        if not args.overwrite:
            PredictionStore.check(output_dir / task, run_fingerprint)
    model, processor = _load_unipose(args.model, device, args.dtype)
    judges = _judges(args, device)
    body, body_model = None, "the generated stand-in body (not SMPL-H: no published joint error compares)"
    if args.body_model is not None or os.environ.get(SMPLH_PATH_ENV):
        body_path = resolve_body_model_path(args.body_model)
        body, body_model = BodyJoints.from_body_model_file(body_path), str(body_path)
    else:
        logger.warning(
            f"Joint errors use the generated stand-in body: pass `--body-model` (or set ${SMPLH_PATH_ENV}) with "
            "SMPL-H's SMPLH_NEUTRAL.npz for numbers comparable with published ones."
        )
    output_dir.mkdir(parents=True, exist_ok=True)
    results = {
        "model": args.model,
        "data": list(args.data),
        "body_model": body_model,
        "retrieval_model": args.retrieval_model,
        "pair_retrieval_model": args.pair_retrieval_model,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "settings": asdict(settings),
        "text_metric_sources": text_metric_sources(),
        "r_precision_protocols": {
            protocol: describe_r_precision_protocol(protocol, settings.pool_size, settings.num_repetitions)
            for protocol in R_PRECISION_PROTOCOLS
        },
        "paper": PAPER_CITATION,
        "tasks": {},
    }
    for task in tasks:
        dataset = datasets[task]
        result = evaluate_task(
            task,
            model,
            processor,
            dataset,
            output_dir,
            settings,
            judges=judges,
            fingerprint=fingerprint,
            overwrite=args.overwrite,
            body=body,
            progress=not args.no_progress,
            train_dataset=load_split(args.data, TASKS[task].kind, "train") if args.baselines else None,
        )
        results["tasks"][task] = {"split": args.split, **result}
        # Rewritten after every task, so that a later crash keeps the finished tasks' numbers.
        report = write_report(output_dir, results)
    logger.info(f"Report: {report}")
    # The command line prints what `run` returns: the metrics of every task.
    return json.dumps({task: result["metrics"] for task, result in results["tasks"].items()}, indent=2)
