# Copyright 2025 The UniPose contributors. Licensed under the Apache License, Version 2.0.
"""
The UniPose evaluation suite: the retrieval models that score generated texts and poses, the metrics of the
paper (R-precision under both protocols in use, Recall@K, FID, BLEU-4, ROUGE-L, METEOR, MPJPE, PA-MPJPE),
the paper's published numbers, and the `unipose evaluate` command.
"""
