"""`unipose convert`: convert the published UniPose checkpoints."""

from __future__ import annotations

import argparse
import json

import torch

from ..conversion import convert_release
from ..verification import format_checks, verify_against_reference
from . import call_with_options


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--base", required=True, help="LLaVA-1.6-Mistral-7B folder (weights and tokenizer).")
    parser.add_argument(
        "--unipose", required=True, help="UniPose release folder (config, tokenizer, trainables, LoRA)."
    )
    parser.add_argument("--pose-tokenizer", required=True, help="Pose VQ-VAE checkpoint (Lightning .ckpt).")
    parser.add_argument("--pose-vit", required=True, help="TokenHMR checkpoint holding the pose ViT.")
    parser.add_argument("--out", dest="output_dir", required=True, help="Folder of the converted checkpoint.")
    parser.add_argument("--dtype", choices=("float32", "bfloat16", "float16"))
    parser.add_argument("--overwrite", action="store_true", help="Replace an existing output folder.")
    parser.add_argument("--vision-num-heads", type=int, help="CLIP's heads (default: 64-wide heads).")
    parser.add_argument("--pose-vit-num-heads", type=int, help="The pose ViT's heads (default: ViT-H's 16).")
    parser.add_argument(
        "--verify",
        metavar="REFERENCE",
        default=None,
        help="A file written by `parity/record_reference.py` in the release's own environment: compare afterwards.",
    )


def run(args: argparse.Namespace) -> str | tuple[str, int]:
    dtype = getattr(torch, args.dtype) if args.dtype else None
    report = call_with_options(convert_release, args, dtype=dtype)
    text = json.dumps({"conversion": report.to_dict()}, indent=2)
    if args.verify is None:
        return text
    checks = verify_against_reference(args.output_dir, args.verify)
    return f"{text}\n{format_checks(checks)}", 0 if all(check.passed for check in checks) else 1
