"""`unipose data synth`: build synthetic corpora."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..data.synthetic import (
    CONTACT_SHEET_FILE,
    DEFAULT_NUM_CAPTIONS,
    IMAGE_FORMATS,
    IMAGE_SIZE,
    KINDS,
    build_synthetic_corpus,
)
from . import call_with_options


def add_synth_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out",
        dest="out_dir",
        type=Path,
        required=True,
        help="Directory to write the corpus to (must not exist).",
    )
    parser.add_argument(
        "--num", type=int, default=1000, help="Records of each pose-only kind (default: 1000)."
    )
    parser.add_argument("--seed", type=int, default=0, help="Random seed (default: 0).")
    parser.add_argument(
        "--num-images",
        type=int,
        default=None,
        help="Records of each image kind (default: --num; image_pair has two).",
    )
    parser.add_argument(
        "--image-size", type=int, default=IMAGE_SIZE, help=f"Image side in pixels (default: {IMAGE_SIZE})."
    )
    parser.add_argument(
        "--captions",
        dest="num_captions",
        type=int,
        default=DEFAULT_NUM_CAPTIONS,
        help=f"Captions per record (default: {DEFAULT_NUM_CAPTIONS}).",
    )
    parser.add_argument(
        "--kinds", nargs="+", choices=KINDS, default=list(KINDS), help="Record kinds to write (default: all)."
    )
    parser.add_argument(
        "--image-format", choices=IMAGE_FORMATS, default="jpeg", help="Image encoding (default: jpeg)."
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="Replace an existing synthetic corpus at --out."
    )
    parser.add_argument(
        "--no-contact-sheet",
        dest="contact_sheet",
        action="store_false",
        help=f"Do not write {CONTACT_SHEET_FILE}.",
    )


def run_synth(args: argparse.Namespace) -> int:
    corpus = call_with_options(build_synthetic_corpus, args, progress=True)
    report = [
        f"{kind}: " + ", ".join(f"{split} {len(data)}" for split, data in splits.items())
        for kind, splits in corpus.items()
    ]
    report.append(
        f"Wrote {args.out_dir}"
        + (f" (samples: {args.out_dir / CONTACT_SHEET_FILE})" if args.contact_sheet else "")
    )
    return "\n".join(report)


ACTIONS = {
    "synth": (add_synth_arguments, run_synth, "Generate the synthetic corpus (poses, captions, images).")
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`unipose data ACTION ...`: one sub-parser per action (`synth`)."""
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    for name, (add, _, help_text) in ACTIONS.items():
        add(actions.add_parser(name, help=help_text, description=help_text))


def run(args: argparse.Namespace) -> int:
    return ACTIONS[args.action][1](args)
