"""
Throughput of the evaluation metrics on 10,000 items.

Retrieval metrics run on random 512-d embeddings (the width of the retrieval models); the joint errors on
random poses through the joints-only forward kinematics; the text metrics on random sentences of 15-40 words
with three references each. Each vectorised retrieval metric is timed against a per-query loop written the
way the reference evaluation scripts do it (a similarity row, a sort, the position of the true item),
measured in the same run on a subset of the queries and reported per item.

    python benchmarks/bench_metrics.py                     # writes benchmarks/results/metrics.json
    python benchmarks/bench_metrics.py --num-items 2000 --out /tmp/metrics.json
"""

from __future__ import annotations

import argparse
import importlib.metadata
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from report import write_report  # noqa: E402

from unipose.evaluation import paper_metrics as M
from unipose.metrics import pose_errors, text_pose_recalls

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "metrics.json"
EMBED_DIM = 512
# Texts are their poses plus this much noise per dimension: a cosine of about 0.08 to the true pose against
# 0 +- 0.04 to the others, so that top-1 scores are far from both 0 and 100.
NOISE_SCALE = 12.0
WORDS = (
    "the person left right arm arms leg legs is are raised bent straight knee elbow forward backward kneeling "
    "standing sitting hands head torso leaning slightly above below their with and while both"
).split()


def timed(function, *args, **kwargs) -> tuple[float, object]:
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - start, result


def loop_recall(queries: torch.Tensor, candidates: torch.Tensor, rows: int, k_values=(5, 10, 20)) -> dict:
    """Recall@K one query at a time: similarity row, full sort, position of the true candidate."""
    queries = torch.nn.functional.normalize(queries, dim=1)
    candidates = torch.nn.functional.normalize(candidates, dim=1)
    hits = dict.fromkeys(k_values, 0)
    for index in range(rows):
        order = (queries[index] @ candidates.T).argsort(descending=True)
        rank = int((order == index).nonzero()[0, 0])
        for k in k_values:
            hits[k] += rank < k
    return {k: 100 * hits[k] / rows for k in k_values}


def loop_r_precision_posescript(queries, candidates, rows: int, pool_size=32, repetitions=10, seed=0) -> dict:
    """PoseScript's protocol one query and one pool at a time, with Python's `random.sample`."""
    sampler = random.Random(seed)
    queries = torch.nn.functional.normalize(queries, dim=1)
    candidates = torch.nn.functional.normalize(candidates, dim=1)
    others = list(range(len(queries)))
    mean_ranks = []
    for index in range(rows):
        total = 0
        for _ in range(repetitions):
            pool = [index] + [j for j in sampler.sample(others, pool_size) if j != index][: pool_size - 1]
            order = (queries[index] @ candidates[pool].T).argsort(descending=True)
            total += int((order == 0).nonzero()[0, 0])
        mean_ranks.append(total / repetitions)
    return {k: 100 * float(np.mean(np.asarray(mean_ranks) < k)) for k in (1, 2, 3)}


def loop_r_precision_grouped(queries, candidates, pool_size=32, seed=0) -> dict:
    """The grouped protocol one group at a time (a distance matrix and an argsort per group)."""
    order = torch.randperm(len(queries), generator=torch.Generator().manual_seed(seed))
    hits, counted = np.zeros(3), 0
    for start in range(0, len(order) - pool_size + 1, pool_size):
        group = order[start : start + pool_size]
        ranking = torch.cdist(queries[group], candidates[group]).argsort(dim=1)
        for row in range(pool_size):
            rank = int((ranking[row] == row).nonzero()[0, 0])
            hits += [rank < k for k in (1, 2, 3)]
        counted += pool_size
    return {k: 100 * hits[k - 1] / counted for k in (1, 2, 3)}


def sentences(count: int, rng: np.random.Generator) -> list[str]:
    return [" ".join(rng.choice(WORDS, int(rng.integers(15, 41)))) for _ in range(count)]


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON file to write.")
    parser.add_argument("--num-items", type=int, default=10_000)
    parser.add_argument(
        "--baseline-rows", type=int, default=500, help="Queries timed with the per-query loops."
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1 keeps timings stable on a shared machine)"
    )
    parser.add_argument("--seed", type=int, default=0)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    n = args.num_items
    generator = torch.Generator().manual_seed(args.seed)
    # Correlated pairs, so that the metrics are far from both 0 and 100.
    poses = torch.randn(n, EMBED_DIM, generator=generator)
    texts = poses + NOISE_SCALE * torch.randn(n, EMBED_DIM, generator=generator)
    results = {}

    def record(name, seconds, items, baseline_seconds=None, baseline_items=None, value=None):
        entry = {"items": items, "seconds": seconds, "items_per_second": items / seconds}
        if baseline_seconds is not None:
            entry["baseline_items_per_second"] = baseline_items / baseline_seconds
            entry["speedup"] = entry["items_per_second"] / entry["baseline_items_per_second"]
        if value is not None:
            entry["value"] = value
        results[name] = entry
        print(
            f"{name}: {entry['items_per_second']:.0f} items/s"
            + (f" (x{entry['speedup']:.1f} over the loop)" if "speedup" in entry else "")
        )

    rows = min(args.baseline_rows, n)
    seconds, value = timed(M.r_precision_posescript, texts, poses)
    base_seconds, _ = timed(loop_r_precision_posescript, texts, poses, rows)
    record("r_precision_posescript", seconds, n, base_seconds, rows, value)

    seconds, value = timed(M.r_precision_grouped, texts, poses)
    base_seconds, _ = timed(loop_r_precision_grouped, texts, poses)
    record("r_precision_grouped", seconds, n, base_seconds, n, value)

    seconds, value = timed(text_pose_recalls, texts, poses, (5, 10, 20))
    base_seconds, _ = timed(loop_recall, texts, poses, rows)
    # Both directions for ours, one for the loop: count queries.
    record("recall_at_k_both_directions", seconds, 2 * n, base_seconds, rows, value)

    seconds, value = timed(M.frechet_distance, poses.numpy(), texts.numpy())
    record("fid_512d", seconds, n, value=value)

    from unipose.body_model import pose_to_joints
    from unipose.metrics import mpjpe, pa_mpjpe

    pose_to_joints(torch.zeros(1, 22, 3))  # builds the generated body file once, outside the timing
    predicted = 0.4 * torch.randn(n, 22, 3, generator=generator)
    target = 0.4 * torch.randn(n, 22, 3, generator=generator)
    seconds, value = timed(pose_errors, predicted, target)
    record("pose_errors_with_forward_kinematics", seconds, n, value=value)
    pred_joints, target_joints = pose_to_joints(predicted), pose_to_joints(target)
    seconds, value = timed(
        lambda: (float(mpjpe(pred_joints, target_joints)), float(pa_mpjpe(pred_joints, target_joints)))
    )
    record("mpjpe_and_pa_mpjpe_on_joints", seconds, n, value=list(value))

    rng = np.random.default_rng(args.seed)
    predictions = sentences(n, rng)
    references = [sentences(3, rng) for _ in range(n)]
    for name, function in (("bleu4", M.bleu4), ("rouge_l", M.rouge_l), ("meteor", M.meteor)):
        seconds, value = timed(function, predictions, references)
        record(name, seconds, n, value=value)

    payload = {
        "benchmark": "metrics",
        "description": "evaluation metrics on N items; retrieval metrics vs per-query loops (same run)",
        "num_items": n,
        "embedding_dim": EMBED_DIM,
        "baseline_rows": rows,
        "text_references_per_item": 3,
        "wordnet_available": M.wordnet_available(),
        "torch_threads": args.threads,
        "sacrebleu_version": importlib.metadata.version("sacrebleu"),
        "nltk_version": importlib.metadata.version("nltk"),
        "timing": "one timed call per metric (wall clock)",
        "results": results,
    }
    return write_report(args.out, payload, shown=results)


if __name__ == "__main__":
    sys.exit(main())
