# Copyright 2025 The UniPose contributors. Licensed under the Apache License, Version 2.0.
"""
The UniPose evaluation suite: the metrics of the paper (R-precision under both protocols in use, Recall@K, FID,
BLEU-4, ROUGE-L, METEOR, MPJPE, PA-MPJPE), the paper's published numbers, and the `unipose evaluate` command
(`unipose.evaluation.runner`). The retrieval models that score generated texts and poses (`unipose.retrieval_models`,
trained by `unipose.training.retrieval`), Recall@K and the joint errors (`unipose.metrics`) are the library's,
shared with the training code; they are listed here too, as the suite's public names.
"""

from ..metrics import pose_errors, recall_at_k, text_pose_recalls
from ..retrieval_models import (
    PosePairTextRetrievalConfig,
    PosePairTextRetrievalModel,
    PoseTextRetrievalConfig,
    PoseTextRetrievalModel,
    embed_pose_pairs,
    embed_poses,
    embed_texts,
    load_retrieval_model,
)
from .metrics import (
    R_PRECISION_PROTOCOLS,
    bleu4,
    evaluate_module,
    frechet_distance,
    meteor,
    r_precision,
    rouge_l,
    text_metric_sources,
    text_metrics,
)
from .paper_results import PAPER_ABLATIONS, PAPER_CITATION, PAPER_RESULTS, PAPER_TABLES

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
