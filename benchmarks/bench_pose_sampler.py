"""
Throughput of the procedural pose sampler: one vectorised call for a batch against one call per pose.

Both sides draw from the same categories with the same code (`unipose.pose_sampler.PoseSampler`); the
baseline asks for one pose at a time in a Python loop, which is how a per-pose sampler would be used. Poses
per second are the batch size over the median time of a round; the target is 10,000 poses/s.

    python benchmarks/bench_pose_sampler.py
    python benchmarks/bench_pose_sampler.py --batch-size 10000 --loop-poses 2000 --out results.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from report import write_report  # noqa: E402

from unipose.pose_sampler import POSE_CATEGORIES, PoseSampler  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "pose_sampler.json"
TARGET_POSES_PER_SECOND = 10_000


def median_seconds(function, rounds: int) -> float:
    function()  # warm-up
    return statistics.median(timeit.repeat(function, setup="gc.enable()", number=1, repeat=rounds))


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON file to write.")
    parser.add_argument("--batch-size", type=int, default=10_000, help="Poses per vectorised call.")
    parser.add_argument(
        "--loop-poses", type=int, default=2_000, help="Poses drawn one by one for the baseline."
    )
    parser.add_argument("--rounds", type=int, default=7, help="Timing rounds (median taken).")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def main(argv: list[str] | None = None) -> dict:
    args = make_parser().parse_args(argv)
    sampler = PoseSampler(seed=args.seed)

    def per_pose_loop():
        for _ in range(args.loop_poses):
            sampler.sample(1)

    batched = median_seconds(lambda: sampler.sample(args.batch_size), args.rounds)
    looped = median_seconds(per_pose_loop, args.rounds)
    batched_rate, looped_rate = args.batch_size / batched, args.loop_poses / looped
    results = {
        "benchmark": "pose_sampler",
        "batch_size": args.batch_size,
        "categories": len(POSE_CATEGORIES),
        "vectorised_poses_per_second": round(batched_rate),
        "per_pose_loop_poses_per_second": round(looped_rate),
        "speedup_over_per_pose_loop": round(batched_rate / looped_rate, 1),
        "target_poses_per_second": TARGET_POSES_PER_SECOND,
        "meets_target": batched_rate >= TARGET_POSES_PER_SECOND,
        "rounds": args.rounds,
    }
    write_report(args.out, results)
    return results


if __name__ == "__main__":
    main()
