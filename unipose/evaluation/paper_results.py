# Copyright 2025 The UniPose contributors. Licensed under the Apache License, Version 2.0.
"""
The published numbers of UniPose that evaluation reports print beside ours.

Source: Yiheng Li, Ruibing Hou, Hong Chang, Shiguang Shan and Xilin Chen, "UniPose: A Unified Multimodal
Framework for Human Pose Comprehension, Generation and Editing", CVPR 2025, arXiv:2411.16781v1, Tables 2-5
(the comparisons on pose comprehension, Text-to-Pose, pose estimation and pose editing), kept below as data
with every row of each table, and the ablations quoted in the project's design notes.

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

_R_PRECISION = ("R-Precision@1 (grouped)", "R-Precision@2 (grouped)", "R-Precision@3 (grouped)")
_TEXT = ("BLEU-4", "ROUGE-L", "METEOR")
_RECALL = ("R^T2P@5", "R^T2P@10", "R^T2P@20", "R^P2T@5", "R^P2T@10", "R^P2T@20")

# table -> {"title", "columns" (our metric names, or "<metric> (<dataset>)" where a table has two datasets),
#           "tasks": task -> {"dataset": as the table names it, "rows": method -> values in column order,
#                             None for "-"}}
PAPER_TABLES: dict[str, dict] = {
    "Table 2": {
        "title": "Comparisons on pose comprehension tasks",
        "columns": (*_R_PRECISION, *_TEXT),
        "tasks": {
            "pose-to-text": {
                "dataset": "PoseScript",
                "rows": {
                    "PoseScript": (91.6, 95.6, 97.0, 12.9, 33.9, 34.2),
                    UNIPOSE_SINGLE_TASK: (18.1, 30.0, 39.1, 10.8, 30.1, 29.5),
                    UNIPOSE: (85.6, 95.2, 97.6, 12.1, 33.3, 30.8),
                },
            },
            "pose-diff": {
                "dataset": "PoseFix",
                "rows": {
                    "PoseFix": (64.6, 77.1, 83.0, 12.0, 33.5, 36.7),
                    UNIPOSE_SINGLE_TASK: (8.4, 14.6, 19.2, 8.5, 28.2, 27.3),
                    UNIPOSE: (67.9, 81.8, 88.6, 13.8, 33.7, 31.2),
                },
            },
            "image-to-text": {
                "dataset": "ImageScript",
                "rows": {
                    "LLaVA": (5.7, 12.0, 18.9, 3.2, 21.8, 32.9),
                    "Qwen-VL": (8.9, 15.6, 19.8, 1.4, 15.9, 21.6),
                    "GPT4V": (17.7, 24.0, 32.3, 7.1, 29.1, 34.2),
                    UNIPOSE_SINGLE_TASK: (22.4, 32.8, 41.2, 18.2, 42.4, 45.2),
                    UNIPOSE: (24.5, 35.4, 43.2, 18.2, 42.5, 44.7),
                },
            },
            "image-diff": {
                "dataset": "ImageDiff",
                "rows": {
                    "GPT4V": (7.3, 13.5, 18.8, 1.3, 16.1, 21.8),
                    UNIPOSE_SINGLE_TASK: (13.0, 18.8, 26.4, 14.0, 34.1, 40.1),
                    UNIPOSE: (13.5, 25.0, 33.8, 15.9, 36.5, 39.6),
                },
            },
        },
    },
    "Table 3": {
        "title": "Comparisons on the Text-to-Pose generation task",
        "columns": (*_RECALL, "MPJPE", "PA-MPJPE", "FID"),
        "tasks": {
            "text-to-pose": {
                "dataset": "PoseScript",
                "rows": {
                    "PoseScript": (73.3, 82.5, 89.4, 70.0, 82.5, 87.4, 318.0, 161.3, 0.075),
                    "ChatPose": (17.6, 25.3, 35.8, 28.0, 39.0, 54.4, None, None, None),
                    "ChatHuman": (41.8, 52.6, 65.1, 42.1, 52.3, 66.5, None, None, None),
                    UNIPOSE_SINGLE_TASK: (67.5, 77.6, 85.5, 62.8, 74.8, 83.6, 342.7, 190.0, 0.046),
                    UNIPOSE: (73.7, 82.4, 89.6, 70.9, 80.5, 89.6, 308.6, 171.1, 0.038),
                },
            },
        },
    },
    "Table 4": {
        "title": "Comparisons on the pose estimation task",
        "columns": ("MPJPE (3DPW)", "PA-MPJPE (3DPW)", "MPJPE (Human3.6M)", "PA-MPJPE (Human3.6M)"),
        "tasks": {
            "pose-estimation": {
                "dataset": "3DPW and Human3.6M",
                "rows": {
                    "HMR": (130.0, 76.7, 88.0, 56.8),
                    "PyMAF": (92.8, 58.9, 57.7, 40.5),
                    "SMPLer": (73.7, 43.4, 45.2, 32.4),
                    "HMR2.0": (70.0, 44.5, 44.8, 33.6),
                    "Zolly": (76.2, 47.9, 49.4, 32.3),
                    "MEGA": (67.5, 41.0, None, None),
                    "TokenHMR": (71.0, 44.3, None, None),
                    "ChatPose": (163.6, 81.9, 126.0, 82.4),
                    UNIPOSE_SINGLE_TASK: (97.4, 61.2, 65.8, 39.4),
                    UNIPOSE: (94.7, 59.1, 69.2, 41.8),
                },
            },
        },
    },
    "Table 5": {
        "title": "Comparisons on the pose editing task",
        "columns": ("MPJPE", "PA-MPJPE", "FID"),
        "tasks": {
            "pose-editing": {
                "dataset": "PoseFix",
                "rows": {
                    "PoseFix": (300.2, 144.1, 0.019),
                    UNIPOSE_SINGLE_TASK: (310.8, 157.0, 0.019),
                    UNIPOSE: (270.3, 138.9, 0.015),
                },
            },
        },
    },
}

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

# Numbers of the paper's ablations (the pose tokenizer's reconstruction, mixed vs causal attention); see
# docs/architecture.md, section 6.
PAPER_ABLATIONS: dict[str, dict] = {
    "pose-tokenizer": {
        "description": "Pose tokenizer reconstruction (MPJPE / PA-MPJPE in mm), trained with and without "
        "global-orientation noise",
        "results": {
            "AMASS test, with orientation noise": {"MPJPE": 6.2, "PA-MPJPE": 3.7},
            "AMASS test, without orientation noise": {"MPJPE": 6.7, "PA-MPJPE": 3.8},
            "MOYO validation, with orientation noise": {"MPJPE": 23.1, "PA-MPJPE": 11.3},
            "MOYO validation, without orientation noise": {"MPJPE": 32.6, "PA-MPJPE": 11.7},
        },
    },
    "mixed-attention": {
        "description": "Text-to-Pose with mixed vs causal attention over the pose tokens (R^T2P in %, "
        "pose-generation latency in s)",
        "task": "text-to-pose",
        "results": {
            "mixed attention": {"R^T2P@5": 13.8, "R^T2P@10": 20.3, "R^T2P@20": 28.8, "latency_s": 0.2},
            "causal attention": {"R^T2P@5": 9.0, "R^T2P@10": 14.2, "R^T2P@20": 20.8, "latency_s": 2.5},
        },
    },
}


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
