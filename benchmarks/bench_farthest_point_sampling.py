"""
Farthest-point sampling of poses under MPJPE: the pruned sampler of `unipose.data.image_corpora` against the
plain algorithm, which updates every pose's distance at every step (the baseline, measured in the same run).

The poses are procedural (`unipose.pose_sampler`), turned into root-aligned joints by
`unipose.data.image_corpora.pose_features`. Both samplers start from the same pose, must return the same
selection, and are timed on one thread by process CPU time, in alternating rounds, so that other work on a
shared machine weighs little on the ratio.

    python benchmarks/bench_farthest_point_sampling.py                    # 100k poses, 20k samples
    python benchmarks/bench_farthest_point_sampling.py --num-poses 100000 --num-samples 50000 --device cuda
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from transformers.utils import logging as transformers_logging

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from report import write_report  # noqa: E402

from unipose.data.image_corpora import _mpjpe_to, farthest_point_sampling, pose_features  # noqa: E402
from unipose.pose_sampler import sample_poses  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "farthest_point_sampling.json"


def plain_farthest_point_sampling(joints: torch.Tensor, num_samples: int, start_index: int) -> list[int]:
    """
    The textbook algorithm, vectorised over poses: one full distance update per selected pose, with the same
    coordinate-major distance kernel as the pruned sampler.
    """
    coordinates = joints.permute(2, 0, 1).contiguous()  # (3, N, J)
    distance = torch.full((len(joints),), torch.inf, device=joints.device)
    selected = [start_index]
    for _ in range(num_samples - 1):
        update = _mpjpe_to(coordinates, coordinates[:, selected[-1]])
        torch.minimum(distance, update, out=distance)
        distance[selected[-1]] = -torch.inf
        selected.append(int(distance.argmax()))
    return selected


def timed(function, device: str) -> tuple[float, object]:
    clock = time.perf_counter if device != "cpu" else time.process_time
    if device != "cpu":
        torch.cuda.synchronize()
    start = clock()
    result = function()
    if device != "cpu":
        torch.cuda.synchronize()
    return clock() - start, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-poses", type=int, default=100_000)
    parser.add_argument("--num-samples", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    transformers_logging.disable_progress_bar()

    joints = torch.from_numpy(pose_features(sample_poses(args.num_poses, seed=0), up_axis="y")).to(
        args.device
    )
    start_index = 0
    timings = {"pruned": [], "plain": []}
    for _ in range(args.rounds):
        seconds, pruned = timed(
            lambda: farthest_point_sampling(joints, args.num_samples, start_index, args.device), args.device
        )
        timings["pruned"].append(seconds)
        seconds, plain = timed(
            lambda: plain_farthest_point_sampling(joints, args.num_samples, start_index), args.device
        )
        timings["plain"].append(seconds)
        if pruned.tolist() != plain:
            raise RuntimeError("The pruned and the plain sampler selected different poses.")
    median = {name: statistics.median(values) for name, values in timings.items()}
    result = {
        "benchmark": "farthest_point_sampling",
        "num_poses": args.num_poses,
        "num_samples": args.num_samples,
        "device": args.device if args.device == "cpu" else torch.cuda.get_device_name(),
        "clock": "process CPU time, 1 thread" if args.device == "cpu" else "wall time",
        "seconds": median,
        "speedup_over_plain": median["plain"] / median["pruned"],
        "same_selection": True,
    }
    return write_report(args.out, result)


if __name__ == "__main__":
    raise SystemExit(main())
