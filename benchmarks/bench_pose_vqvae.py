"""Throughput of the pose tokenizer: encode + decode of axis-angle poses, at the paper's size, on CPU.

    python benchmarks/bench_pose_vqvae.py                       # batch sizes 1 and 1024
    python benchmarks/bench_pose_vqvae.py --batch-sizes 1 64 1024 --min-seconds 5

Each batch size is warmed up once, then timed over repeated `decode(encode(poses))` calls until
`--min-seconds` have passed (at least one call); throughput comes from the median call. The first batch
size is the baseline: the JSON written to `benchmarks/results/pose_vqvae.json` gives poses per second for
every batch size and the per-pose speed-up of each over the baseline, all measured in the same run on the
same machine.
"""

import argparse
import os
import statistics
import time
from pathlib import Path

import torch
from report import write_report

from unipose.configuration_pose_vqvae import PoseVQVAEConfig
from unipose.modeling_pose_vqvae import PoseVQVAE

RESULTS_PATH = Path(__file__).resolve().parent / "results" / "pose_vqvae.json"


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--batch-sizes", type=int, nargs="+", default=[1, 1024], help="batch sizes; the first is the baseline"
    )
    parser.add_argument("--min-seconds", type=float, default=2.0, help="timed duration per batch size")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=RESULTS_PATH)
    return parser


def build_tokenizer(seed: int) -> PoseVQVAE:
    """The default (paper-size) tokenizer with a random codebook, in eval mode."""
    torch.manual_seed(seed)
    model = PoseVQVAE(PoseVQVAEConfig()).eval()
    # A codebook of encoder-like scale; an all-zero one would make every distance tie.
    config = model.config
    model.quantizer.set_codebook(0.1 * torch.randn(config.codebook_size, config.code_dim))
    return model


@torch.inference_mode()
def time_batch(model: PoseVQVAE, batch_size: int, min_seconds: float, seed: int) -> dict:
    generator = torch.Generator().manual_seed(seed)
    poses = 0.5 * torch.randn(batch_size, model.config.num_joints, 3, generator=generator)  # axis-angle
    model.decode(model.encode(poses))  # warm-up: kernel selection and allocator
    call_seconds = []
    while not call_seconds or sum(call_seconds) < min_seconds:
        start = time.perf_counter()
        model.decode(model.encode(poses))
        call_seconds.append(time.perf_counter() - start)
    # The median call resists the stalls that other processes cause on a shared machine.
    poses_per_second = batch_size / statistics.median(call_seconds)
    return {
        "batch_size": batch_size,
        "calls": len(call_seconds),
        "seconds": round(sum(call_seconds), 4),
        "poses_per_second": round(poses_per_second, 3),
        "milliseconds_per_pose": round(1000.0 / poses_per_second, 4),
    }


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    model = build_tokenizer(args.seed)
    load_before = os.getloadavg()[0]
    results = [time_batch(model, size, args.min_seconds, args.seed) for size in args.batch_sizes]
    load_after = os.getloadavg()[0]
    baseline = results[0]
    payload = {
        "benchmark": "pose_vqvae encode + decode (axis-angle in, 6D out)",
        "device": "cpu",
        "threads": torch.get_num_threads(),
        # Other processes skew small batches most: the threads of each call wait for one another.
        "load_average_1min": {"before": round(load_before, 2), "after": round(load_after, 2)},
        "config": {
            key: getattr(model.config, key)
            for key in ("num_joints", "num_tokens", "codebook_size", "code_dim", "hidden_size")
        },
        "parameters": sum(parameter.numel() for parameter in model.parameters()),
        "results": results,
        "baseline_batch_size": baseline["batch_size"],
        # Per-pose throughput relative to the baseline batch size, from this run only.
        "speedup_per_pose_vs_baseline": {
            str(result["batch_size"]): round(result["poses_per_second"] / baseline["poses_per_second"], 3)
            for result in results
        },
    }
    for result in results:
        print(
            f"batch {result['batch_size']:>5}: {result['poses_per_second']:10.1f} poses/s "
            f"({result['milliseconds_per_pose']:.3f} ms/pose, {result['calls']} calls)"
        )
    return write_report(args.output, payload, shown=payload["speedup_per_pose_vs_baseline"])


if __name__ == "__main__":
    raise SystemExit(main())
