"""What every benchmark writes beside its figures: the machine it ran on, and the results file itself."""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from unipose.files import write_json_atomically  # noqa: E402


def machine() -> dict:
    """The machine and the numerical libraries, for reading a figure against the machine it came from."""
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
    }


def write_report(path: Path, payload: dict, shown=None) -> int:
    """Writes `payload` with the `machine` to `path` (JSON, atomically), prints `shown` (by default the
    payload) and returns the exit code 0."""
    write_json_atomically(path, {**payload, "machine": machine()}, sort_keys=False)
    print(json.dumps(payload if shown is None else shown, indent=2))
    print(f"wrote {path}")
    return 0
