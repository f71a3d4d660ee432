"""
Throughput of the automatic captioners: poses and pairs captioned per second.

The captioners measure and select posecodes for a whole batch at once with NumPy; only the wording runs per
caption. The baseline, measured in the same run, captions the same poses one call per pose, which is what
the batching saves. The synthetic corpus writer needs at least 1,000 pose-text records per second, so the
target is 2,000 captions per second.

    python benchmarks/bench_captioning.py                      # 2,000 procedural poses
    python benchmarks/bench_captioning.py --num-poses 500 --output /tmp/captioning.json

Writes `benchmarks/results/captioning.json`.
"""

from __future__ import annotations

import argparse
import statistics
import time
import timeit
from pathlib import Path

import numpy as np
from report import write_report

from unipose.body_model import pose_to_joints
from unipose.data.captioning import PairCaptioner, PoseCaptioner

TARGET_CAPTIONS_PER_SECOND = 2000.0
DEFAULT_OUTPUT = Path(__file__).parent / "results" / "captioning.json"


def procedural_poses(num_poses: int, seed: int) -> tuple[np.ndarray, str]:
    """Poses from `unipose.pose_sampler`, or random joint rotations if it is not available."""
    try:
        from unipose.pose_sampler import sample_poses
    except ImportError:
        rng = np.random.default_rng(seed)
        return rng.normal(scale=0.35, size=(num_poses, 22, 3)), "random axis-angle (pose_sampler missing)"
    return sample_poses(num_poses, seed=seed).astype(np.float64), "unipose.pose_sampler"


def timed(function, repeats: int) -> float:
    """Median wall time of `repeats` calls, in seconds (garbage collection on, as in real use)."""
    return statistics.median(timeit.repeat(function, setup="gc.enable()", number=1, repeat=repeats))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--num-poses", type=int, default=2000)
    parser.add_argument("--baseline-poses", type=int, default=200, help="poses captioned one call each")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()

    poses, source = procedural_poses(args.num_poses, args.seed)
    start = time.perf_counter()
    joints = pose_to_joints(poses)
    kinematics_seconds = time.perf_counter() - start
    # Pairs: each pose with the next one.
    joints_b = np.roll(joints, -1, axis=0)
    few = joints[: args.baseline_poses]

    captioner, pair_captioner = PoseCaptioner(seed=0), PairCaptioner(seed=0)
    captioner.describe(joints[:8])  # compile the tables outside the timings
    pair_captioner.describe(joints[:8], joints_b[:8])

    results = {}
    for num_captions in (1, 3):
        seconds = timed(
            lambda n=num_captions: captioner.describe(joints, num_captions=n, seed=1), args.repeats
        )
        results[f"poses_batched_{num_captions}_captions"] = {
            "poses_per_second": len(joints) / seconds,
            "captions_per_second": len(joints) * num_captions / seconds,
        }
    seconds = timed(lambda: [captioner.describe(pose, seed=1) for pose in few], args.repeats)
    results["poses_one_call_each_baseline"] = {"poses_per_second": len(few) / seconds}
    seconds = timed(lambda: pair_captioner.describe(joints, joints_b, seed=1), args.repeats)
    results["pairs_batched"] = {"pairs_per_second": len(joints) / seconds}
    seconds = timed(
        lambda: [
            pair_captioner.describe(a, b, seed=1) for a, b in zip(few, joints_b[: len(few)], strict=True)
        ],
        args.repeats,
    )
    results["pairs_one_call_each_baseline"] = {"pairs_per_second": len(few) / seconds}

    captions = [c[0] for c in captioner.describe(joints, seed=1)]
    instructions = [c[0] for c in pair_captioner.describe(joints, joints_b, seed=1)]
    poses_per_second = results["poses_batched_1_captions"]["poses_per_second"]
    payload = {
        "benchmark": "captioning",
        "num_poses": len(joints),
        "pose_source": source,
        "forward_kinematics_poses_per_second": len(joints) / kinematics_seconds,
        "results": results,
        "speedup_over_one_call_each": {
            "poses": poses_per_second / results["poses_one_call_each_baseline"]["poses_per_second"],
            "pairs": results["pairs_batched"]["pairs_per_second"]
            / results["pairs_one_call_each_baseline"]["pairs_per_second"],
        },
        "mean_words": {
            "pose_caption": float(np.mean([len(c.split()) for c in captions])),
            "pair_instruction": float(np.mean([len(c.split()) for c in instructions])),
        },
        "target_captions_per_second": TARGET_CAPTIONS_PER_SECOND,
        "meets_target": poses_per_second >= TARGET_CAPTIONS_PER_SECOND,
    }
    return write_report(args.output, payload)


if __name__ == "__main__":
    raise SystemExit(main())
