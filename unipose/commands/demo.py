"""`unipose demo`: run the seven tasks on the bundled inputs and write a report."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..demo import DEFAULT_MODEL, TASK_TITLES, load_inputs, run_demo


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        default=str(DEFAULT_MODEL),
        help="A UniPose checkpoint folder (default: the bundled model).",
    )
    parser.add_argument("--out", default="outputs/demo", help="Output folder (default: outputs/demo).")
    parser.add_argument("--pose-a", help="First input pose (.npz, .npy or .json), any rotation format.")
    parser.add_argument("--pose-b", help="Second input pose (the target of Pose-Diff).")
    parser.add_argument("--image-a", help="First input image.")
    parser.add_argument("--image-b", help="Second input image (for Image-Diff).")
    parser.add_argument("--caption", help="Description for Text-to-Pose.")
    parser.add_argument("--instruction", help="Instruction for Pose Editing.")
    parser.add_argument(
        "--body-model", help="SMPLH_NEUTRAL.npz for meshes (default: the generated body model)."
    )
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> str:
    inputs = load_inputs(args.pose_a, args.pose_b, args.image_a, args.image_b, args.caption, args.instruction)
    summary = run_demo(args.model, args.out, inputs, args.body_model, args.max_new_tokens, args.seed)
    lines = [
        f"{TASK_TITLES[task]}: {entry['text'] or '-'} ({entry['num_poses']} pose(s))"
        for task, entry in summary.items()
    ]
    return "\n".join(lines + [f"Report: {Path(args.out) / 'report.md'}"])
