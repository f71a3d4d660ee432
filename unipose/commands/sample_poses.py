"""`unipose sample-poses`: sample procedural poses and write them."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from ..pose_sampler import CATEGORY_TABLE, POSE_CATEGORIES, PoseSampler, save_poses
from ..visualization import contact_sheet


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--num", type=int, default=1000, help="Number of poses (default: 1000).")
    parser.add_argument("--seed", type=int, default=0, help="Random seed (default: 0).")
    parser.add_argument("--out", type=Path, required=True, help="Output .npz with `poses` and `categories`.")
    parser.add_argument(
        "--categories", nargs="+", choices=POSE_CATEGORIES, default=None, help="Restrict to these categories."
    )
    parser.add_argument("--contact-sheet", type=Path, default=None, help="Also draw some poses to this PNG.")
    parser.add_argument("--sheet-size", type=int, default=48, help="Poses on the sheet, by category in turn.")
    parser.add_argument("--sheet-columns", type=int, default=8, help="Poses per row of the contact sheet.")


def _sheet_indices(categories: Sequence[str], size: int) -> list[int]:
    """Up to `size` pose indices taken in turn from each category, grouped by category in table order."""
    by_category: dict[str, list[int]] = {name: [] for name in POSE_CATEGORIES}
    for index, name in enumerate(categories):
        by_category[name].append(index)
    chosen: list[int] = []
    for rank in range(max(map(len, by_category.values()), default=0)):
        chosen += [indices[rank] for indices in by_category.values() if rank < len(indices)]
        if len(chosen) >= size:
            break
    # Keep the first `size` in the round-robin order, then show them grouped by category.
    order = {name: position for position, name in enumerate(POSE_CATEGORIES)}
    return sorted(chosen[:size], key=lambda index: (order[categories[index]], index))


def run(args: argparse.Namespace) -> str:
    """Samples and writes the poses (and a contact sheet); returns what was written."""
    if args.num < 0:
        raise ValueError(f"`--num` must be a non-negative integer, got {args.num}.")
    # Names are checked before anything is written: the files are what their suffixes say.
    outputs = [("--out", args.out, ".npz")]
    if args.contact_sheet is not None:
        outputs.append(("--contact-sheet", args.contact_sheet, ".png"))
    for option, path, suffix in outputs:
        if path.suffix.lower() != suffix or path.is_dir():
            raise ValueError(f"`{option}` must be a {suffix} file, got {str(path)!r}.")
    if args.contact_sheet is not None:  # checked before anything is written
        for option, value in (("--sheet-size", args.sheet_size), ("--sheet-columns", args.sheet_columns)):
            if value < 1:
                raise ValueError(f"`{option}` must be a positive integer, got {value}.")
    sample = PoseSampler(seed=args.seed, categories=args.categories).sample(args.num)
    save_poses(args.out, sample)
    counts = {name: sample.categories.count(name) for name in POSE_CATEGORIES if name in sample.categories}
    report = [f"Wrote {args.num} poses to {args.out}: {counts}"]
    if args.contact_sheet is not None and args.num > 0:
        shown = _sheet_indices(sample.categories, args.sheet_size)
        descriptions = {category.name: category.description for category in CATEGORY_TABLE}
        captions = [descriptions[sample.categories[i]] for i in shown]
        contact_sheet(
            sample.poses[shown], captions=captions, path=args.contact_sheet, columns=args.sheet_columns
        )
        report.append(f"Wrote a contact sheet of {len(shown)} poses to {args.contact_sheet}")
    elif args.contact_sheet is not None:
        report.append(f"Wrote no contact sheet to {args.contact_sheet}: there are no poses to show")
    return "\n".join(report)
