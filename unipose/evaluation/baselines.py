"""Simple baselines every task's metrics are compared with, scored by the same metric code as a model.

- Text outputs (Pose-to-Text, Pose-Diff, Image-to-Text, Image-Diff): a constant answer, the most frequent text
  of the training split (chance level for R-precision, a floor for BLEU / ROUGE-L / METEOR).
- Text-to-Pose and Pose Estimation: the mean pose of the training split (per joint, the rotation closest to
  the mean of the rotation matrices).
- Pose Editing: the unchanged input pose A (so the error to B is the distance between A and B).
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from ..rotations import mean_pose


def constant_answer(train_texts) -> str:
    """The most frequent text of the training split (ties: the first seen)."""
    counts = Counter(text for texts in train_texts for text in texts)
    if not counts:
        raise ValueError("The training split has no texts for a constant-answer baseline.")
    return counts.most_common(1)[0][0]


def baseline_predictions(task_output: str, kind: str, train, test, items: list) -> tuple[str, list[dict]]:
    """The baseline's name and its predictions, in the form of the model's predictions."""
    if task_output == "text":
        answer = constant_answer(train["texts"])
        return f"constant answer ({answer[:40]}...)", [{"text": answer, "pose": None} for _ in items]
    if kind == "pose_pair":
        poses_a = test.with_format("numpy")["pose_a"]
        return "unchanged pose A", [{"text": "", "pose": np.asarray(poses_a[index])} for index, _ in items]
    mean = mean_pose(train.with_format("numpy")["pose"])
    return "mean training pose", [{"text": "", "pose": mean} for _ in items]


__all__ = ["baseline_predictions", "constant_answer", "mean_pose"]
