# Copyright 2025 The UniPose contributors. Licensed under the Apache License, Version 2.0.
"""
The UniPose evaluation suite: the metrics of the paper (R-precision under both protocols in use, Recall@K, FID,
BLEU-4, ROUGE-L, METEOR, MPJPE, PA-MPJPE), the paper's published numbers, and the `unipose evaluate` command
(`unipose.evaluation.runner`). The retrieval models that score generated texts and poses (`unipose.retrieval_models`,
trained by `unipose.training.retrieval`), Recall@K and the joint errors (`unipose.metrics`) are the library's,
shared with the training code, and imported from there.
"""

from .paper_metrics import (
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
    "bleu4",
    "frechet_distance",
    "meteor",
    "r_precision",
    "rouge_l",
    "text_metric_sources",
    "text_metrics",
]
