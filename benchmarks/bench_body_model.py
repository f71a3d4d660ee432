"""
Throughput of the joints-only forward kinematics against smplx's full-mesh forward.

Both run on the same body-model file in the same process: `unipose.body_model.BodyJoints` (22 body joints
from rotation matrices, no mesh) and `smplx.SMPLH` (6,890 vertices and 73 joints from axis-angle, the way
it is usually called), at batch sizes 1 and 256, with the mean shape and poses drawn once per batch size.
Poses per second are the batch size over the median time of one call; the ratio is joints-only over smplx.

    python benchmarks/bench_body_model.py                       # the generated stand-in body model
    python benchmarks/bench_body_model.py --body-model /path/to/SMPLH_NEUTRAL.npz --out results.json
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import io
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from report import write_report  # noqa: E402

from unipose.body_model import BodyJoints, _import_smplx, resolve_body_model_path  # noqa: E402
from unipose.rotations import axis_angle_to_matrix  # noqa: E402
from unipose.skeleton import NUM_BODY_JOINTS  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "body_model.json"
NUM_HAND_POSE_VALUES = 45


def seconds_per_call(function, min_seconds: float) -> float:
    """Mean seconds per call over one round of calls lasting at least `min_seconds`."""
    calls, start = 0, time.perf_counter()
    while True:
        function()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return elapsed / calls


def compare(functions: dict, min_seconds: float, rounds: int) -> dict[str, float]:
    """
    Median seconds per call of each function. Rounds of the functions alternate, so that a change of load
    on a shared machine affects both sides of the comparison alike.
    """
    for function in functions.values():  # warm-up
        for _ in range(3):
            function()
    timings = {name: [] for name in functions}
    for _ in range(rounds):
        for name, function in functions.items():
            timings[name].append(seconds_per_call(function, min_seconds))
    return {name: statistics.median(values) for name, values in timings.items()}


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON file to write.")
    parser.add_argument(
        "--body-model", default="generated", help='SMPL-H npz file or folder, or "generated" (the default).'
    )
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 256])
    parser.add_argument("--min-seconds", type=float, default=0.3, help="Shortest duration of a timing round.")
    parser.add_argument("--rounds", type=int, default=7, help="Timing rounds per measurement (median taken).")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1 keeps timings stable on a shared machine)"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    path = resolve_body_model_path(args.body_model)
    smplx = _import_smplx()
    joints_only = BodyJoints.from_body_model_file(path).to(device)
    with contextlib.redirect_stdout(io.StringIO()):  # smplx prints a note about the file's 16 betas
        full_mesh = smplx.SMPLH(
            model_path=str(path), ext="npz", use_pca=False, num_betas=joints_only.num_betas
        )
    full_mesh = full_mesh.to(device)

    results = []
    generator = torch.Generator().manual_seed(args.seed)
    for batch_size in args.batch_sizes:
        axis_angle = (0.5 * torch.randn(batch_size, NUM_BODY_JOINTS, 3, generator=generator)).to(device)
        rotmats = axis_angle_to_matrix(axis_angle)
        smplx_inputs = {
            "betas": torch.zeros(batch_size, joints_only.num_betas, device=device),
            "global_orient": axis_angle[:, 0],
            "body_pose": axis_angle[:, 1:].reshape(batch_size, -1),
            "left_hand_pose": torch.zeros(batch_size, NUM_HAND_POSE_VALUES, device=device),
            "right_hand_pose": torch.zeros(batch_size, NUM_HAND_POSE_VALUES, device=device),
            "transl": torch.zeros(batch_size, 3, device=device),
        }
        synchronize = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

        def run_joints_only():
            joints_only(rotmats)
            synchronize()

        def run_full_mesh():
            full_mesh(**smplx_inputs)
            synchronize()

        with torch.inference_mode():
            # Same numbers from both paths, or the comparison means nothing.
            reference = full_mesh(**smplx_inputs).joints[:, :NUM_BODY_JOINTS]
            difference = (joints_only(rotmats) - reference).abs().max()
            seconds = compare({"joints": run_joints_only, "mesh": run_full_mesh}, args.min_seconds, args.rounds)
        joints_seconds, mesh_seconds = seconds["joints"], seconds["mesh"]
        results.append(
            {
                "batch_size": batch_size,
                "joints_only_poses_per_second": batch_size / joints_seconds,
                "smplx_full_mesh_poses_per_second": batch_size / mesh_seconds,
                "speedup": mesh_seconds / joints_seconds,
                "max_joint_difference_m": float(difference),
            }
        )
        result = results[-1]
        print(
            f"batch {batch_size:4d}: joints-only {result['joints_only_poses_per_second']:12.0f} poses/s, "
            f"smplx full mesh {result['smplx_full_mesh_poses_per_second']:10.0f} poses/s, "
            f"x{result['speedup']:.1f} (max joint difference {result['max_joint_difference_m']:.1e} m)"
        )

    report = {
        "benchmark": "body_model",
        "description": "joints-only forward kinematics (BodyJoints) vs smplx.SMPLH full-mesh forward",
        "body_model_file": "generated" if args.body_model == "generated" else str(path),
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "smplx_version": importlib.metadata.version("smplx"),
        "timing": {
            "rounds": args.rounds,
            "min_seconds_per_round": args.min_seconds,
            "statistic": "median of alternating rounds",
        },
        "results": results,
    }
    return write_report(args.out, report, shown=results)


if __name__ == "__main__":
    sys.exit(main())
