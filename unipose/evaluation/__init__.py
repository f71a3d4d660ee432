# Copyright 2025 The UniPose contributors. Licensed under the Apache License, Version 2.0.
"""
The UniPose evaluation suite: the retrieval models that score generated texts and poses, the metrics of the
paper (R-precision under both protocols in use, Recall@K, FID, BLEU-4, ROUGE-L, METEOR, MPJPE, PA-MPJPE),
the paper's published numbers, and the `unipose evaluate` command (`unipose.evaluation.runner`).
"""

from ..metrics import pose_errors
from .metrics import (
    R_PRECISION_PROTOCOLS,
    bleu4,
    evaluate_module,
    frechet_distance,
    meteor,
    r_precision,
    recall_at_k,
    rouge_l,
    text_metric_sources,
    text_metrics,
    text_pose_recalls,
)
from .paper_results import PAPER_ABLATIONS, PAPER_CITATION, PAPER_RESULTS, PAPER_TABLES
from .retrieval import (
    PosePairTextRetrievalConfig,
    PosePairTextRetrievalModel,
    PoseTextRetrievalConfig,
    PoseTextRetrievalModel,
    embed_pose_pairs,
    embed_poses,
    embed_texts,
    load_retrieval_model,
)

__all__ = [
    "PAPER_ABLATIONS",
    "PAPER_CITATION",
    "PAPER_RESULTS",
    "PAPER_TABLES",
    "evaluate_module",
    "R_PRECISION_PROTOCOLS",
    "PosePairTextRetrievalConfig",
    "PosePairTextRetrievalModel",
    "PoseTextRetrievalConfig",
    "PoseTextRetrievalModel",
    "bleu4",
    "embed_pose_pairs",
    "embed_poses",
    "embed_texts",
    "frechet_distance",
    "load_retrieval_model",
    "meteor",
    "pose_errors",
    "r_precision",
    "recall_at_k",
    "rouge_l",
    "text_metric_sources",
    "text_metrics",
    "text_pose_recalls",
]
