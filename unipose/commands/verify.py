"""`unipose verify`: compare a converted checkpoint with recorded reference outputs."""

from __future__ import annotations

from ..verification import DEFAULT_ATOL, format_checks, verify_against_reference


def add_arguments(parser) -> None:
    parser.add_argument("--model", required=True, help="A folder written by `unipose convert`.")
    parser.add_argument("--reference", required=True, help="A file written by `parity/record_reference.py`.")
    parser.add_argument(
        "--atol", type=float, default=DEFAULT_ATOL, help="Tolerance of the float comparisons."
    )


def run(args) -> tuple[str, int]:
    """The table of checks, and the exit code: 1 when any check fails."""
    checks = verify_against_reference(args.model, args.reference, atol=args.atol)
    return format_checks(checks), 0 if all(check.passed for check in checks) else 1
