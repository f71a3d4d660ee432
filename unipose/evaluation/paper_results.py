# Copyright 2025 The UniPose contributors. Licensed under the Apache License, Version 2.0.
"""
The published numbers of UniPose that evaluation reports print beside ours.

Source: Yiheng Li, Ruibing Hou, Hong Chang, Shiguang Shan and Xilin Chen, "UniPose: A Unified Multimodal
Framework for Human Pose Comprehension, Generation and Editing", CVPR 2025 (arXiv:2411.16781), Tables 2-5
(the comparisons on pose comprehension, generation, estimation and editing) and the ablations quoted below.

Only numbers that were checked against the paper are recorded. Every other entry is `None` ("not
available"): the layout of the tables is here so that a report shows which of our metrics the paper
reports, and a value can be filled in, with its table, once checked. Never fill one from memory or from a
secondary listing.

Protocols: the paper's text describes R-precision with groups of 32 ranked by Euclidean distance, so its
R-precision columns correspond to our `"grouped"` protocol; its retrieval models were trained on the real
corpora (PoseScript, PoseFix), so its numbers compare with ours only when ours use retrieval models
trained the same way, on the same test splits.
"""

from __future__ import annotations

PAPER_CITATION = (
    'Li, Hou, Chang, Shan and Chen, "UniPose: A Unified Multimodal Framework for Human Pose Comprehension, '
    'Generation and Editing", CVPR 2025 (arXiv:2411.16781)'
)
NOT_AVAILABLE = None

_R_PRECISION = ("R-Precision@1 (grouped)", "R-Precision@2 (grouped)", "R-Precision@3 (grouped)")
_TEXT = ("BLEU-4", "ROUGE-L", "METEOR")
_RECALL = ("R^T2P@5", "R^T2P@10", "R^T2P@20", "R^P2T@5", "R^P2T@10", "R^P2T@20")


def _unknown(*metrics: str) -> dict[str, float | None]:
    return dict.fromkeys(metrics, NOT_AVAILABLE)


# task -> {"table": which of Tables 2-5 reports it (None until checked), "dataset": its test set,
#          "metrics": metric -> value or None}
PAPER_RESULTS: dict[str, dict] = {
    "pose-to-text": {
        "table": None,
        "dataset": "PoseScript-H test",
        "metrics": _unknown(*_R_PRECISION, *_TEXT),
    },
    "pose-diff": {
        "table": None,
        "dataset": "PoseFix-H test",
        "metrics": _unknown(*_R_PRECISION, *_TEXT),
    },
    "image-to-text": {
        "table": None,
        "dataset": "ImageScript test",
        "metrics": _unknown(*_R_PRECISION, *_TEXT),
    },
    "image-diff": {
        "table": None,
        "dataset": "ImageDiff test",
        "metrics": _unknown(*_R_PRECISION, *_TEXT),
    },
    "text-to-pose": {
        "table": None,
        "dataset": "PoseScript-H test",
        "metrics": _unknown(*_RECALL, "FID", "MPJPE"),
    },
    "pose-estimation": {
        "table": None,
        "dataset": "3DPW test and Human3.6M test",
        "metrics": _unknown("MPJPE", "PA-MPJPE"),
    },
    "pose-editing": {
        "table": None,
        "dataset": "PoseFix-H test",
        "metrics": _unknown(*_RECALL, "FID", "MPJPE"),
    },
}

# Numbers of the paper recorded in the project's design notes (docs: DESIGN.md sections 2.2 and 2.5).
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
    """The paper's value of `metric` for `task`, or `None` when it is not available here."""
    return PAPER_RESULTS.get(task, {}).get("metrics", {}).get(metric)


__all__ = ["NOT_AVAILABLE", "PAPER_ABLATIONS", "PAPER_CITATION", "PAPER_RESULTS", "paper_value"]
