# Copyright 2025 The UniPose contributors. Licensed under the Apache License, Version 2.0.
"""
The published numbers of UniPose that evaluation reports print beside ours.

Source: Yiheng Li, Ruibing Hou, Hong Chang, Shiguang Shan and Xilin Chen, "UniPose: A Unified Multimodal
Framework for Human Pose Comprehension, Generation and Editing", CVPR 2025, arXiv:2411.16781v1, Tables 2-5
(the comparisons on pose comprehension, Text-to-Pose, pose estimation and pose editing), kept as data in
`paper_results.json` with every row of each table, and the ablations quoted in the project's design notes.

Provenance: the tables were transcribed from a copy of the arXiv v1 HTML tables
(`github.com/deep-diver/ai-paper-reviewer`, `content/paper-reviews/2411.16781/index.md`, commit 36d1a02) and
checked against an independent results listing (wizwand.com, paper 68fa77b91e209131cea74fa3), which agrees on
every UniPose number it lists; they were not read from the camera-ready PDF, which may differ. Table 2 prints
no column names under "R-Precision" and "Linguistic metrics": the columns are top-1/2/3 and BLEU-4, ROUGE-L,
METEOR, the order of the paper's text and of its Table 6. Its dataset cells name PoseScript and PoseFix; the
paper fine-tunes and tests on their human-written parts (PoseScript-H, PoseFix-H).

Protocols: the paper's text describes R-precision with groups of 32 ranked by Euclidean distance, so its
R-precision columns correspond to our `"grouped"` protocol; Table 3 does not say over which gallery its
R^T2P / R^P2T recalls rank. Its retrieval models were trained on the real corpora, so its numbers compare with
ours only when ours use retrieval models trained the same way, on the same test splits.
"""

from __future__ import annotations

import json
from pathlib import Path

PAPER_CITATION = (
    'Li, Hou, Chang, Shan and Chen, "UniPose: A Unified Multimodal Framework for Human Pose Comprehension, '
    'Generation and Editing", CVPR 2025 (arXiv:2411.16781v1, Tables 2-5)'
)
PAPER_URL = "https://arxiv.org/abs/2411.16781"
PAPER_BIBTEX = """
@inproceedings{li2025unipose,
  title={UniPose: A Unified Multimodal Framework for Human Pose Comprehension, Generation and Editing},
  author={Li, Yiheng and Hou, Ruibing and Chang, Hong and Shan, Shiguang and Chen, Xilin},
  booktitle={CVPR},
  year={2025}
}
"""
NOT_AVAILABLE = None
# The paper's rows for UniPose trained on all tasks, and on the one task of the row ("UniPose†").
UNIPOSE = "UniPose"
UNIPOSE_SINGLE_TASK = "UniPose (single task)"


def _read_tables() -> tuple[dict, dict]:
    """The paper's tables and ablations, as `paper_results.json` keeps them (a table's columns and rows as
    tuples)."""
    data = json.loads(Path(__file__).with_name("paper_results.json").read_text(encoding="utf-8"))
    for table in data["tables"].values():
        table["columns"] = tuple(table["columns"])
        for section in table["tasks"].values():
            section["rows"] = {method: tuple(values) for method, values in section["rows"].items()}
    return data["tables"], data["ablations"]


# table -> {"title", "columns" (our metric names, or "<metric> (<dataset>)" where a table has two datasets),
#           "tasks": task -> {"dataset": as the table names it, "rows": method -> values in column order,
#                             None for "-"}}; and the ablations quoted in docs/architecture.md, section 6 (the
# pose tokenizer's reconstruction, mixed vs causal attention): name -> {"description", "results", "task"}.
PAPER_TABLES, PAPER_ABLATIONS = _read_tables()

# The test set each task's report compares with; for pose estimation the report's MPJPE / PA-MPJPE are set
# beside the paper's 3DPW columns (Human3.6M is in `PAPER_TABLES["Table 4"]`).
_REPORTED_DATASET = {
    "pose-to-text": "PoseScript-H test",
    "pose-diff": "PoseFix-H test",
    "image-to-text": "ImageScript test",
    "image-diff": "ImageDiff test",
    "text-to-pose": "PoseScript-H test",
    "pose-estimation": "3DPW test (Human3.6M in Table 4)",
    "pose-editing": "PoseFix-H test",
}
_REPORTED_COLUMN = {"MPJPE (3DPW)": "MPJPE", "PA-MPJPE (3DPW)": "PA-MPJPE"}
_UNREPORTED_COLUMNS = {"MPJPE (Human3.6M)", "PA-MPJPE (Human3.6M)"}


def _unipose_results() -> dict[str, dict]:
    """task -> {"table", "dataset", "metrics": our metric name -> the paper's UniPose value}."""
    results = {}
    for table, spec in PAPER_TABLES.items():
        for task, section in spec["tasks"].items():
            values = zip(spec["columns"], section["rows"][UNIPOSE], strict=True)
            metrics = {
                _REPORTED_COLUMN.get(column, column): value
                for column, value in values
                if column not in _UNREPORTED_COLUMNS
            }
            results[task] = {"table": table, "dataset": _REPORTED_DATASET[task], "metrics": metrics}
    return results


# task -> {"table": the paper's table, "dataset": its test set, "metrics": metric -> the UniPose row's value}
PAPER_RESULTS: dict[str, dict] = _unipose_results()

def paper_value(task: str, metric: str) -> float | None:
    """The paper's value of `metric` for `task` (its UniPose row), or `None` where the paper has none."""
    return PAPER_RESULTS.get(task, {}).get("metrics", {}).get(metric)


__all__ = [
    "NOT_AVAILABLE",
    "PAPER_ABLATIONS",
    "PAPER_CITATION",
    "PAPER_RESULTS",
    "PAPER_TABLES",
    "UNIPOSE",
    "UNIPOSE_SINGLE_TASK",
    "paper_value",
]
