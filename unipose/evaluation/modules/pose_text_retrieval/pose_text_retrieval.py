"""Pose-text R-precision and Recall@K through a retrieval model, as an `evaluate` module
(`evaluate.load(evaluate_module("pose_text_retrieval"), "text_to_pose")`).

The numbers are those of `unipose evaluate`: both call `unipose.evaluation.paper_metrics` (and `unipose.metrics` for
Recall@K) on embeddings of the same retrieval model.
"""

import datasets
import evaluate

from unipose.evaluation.paper_metrics import (
    DEFAULT_NUM_REPETITIONS,
    DEFAULT_POOL_SIZE,
    evaluate_module_info,
    r_precision_all_protocols,
)
from unipose.metrics import GENERATION_RECALL_K, text_pose_recalls
from unipose.retrieval_models import embed_poses, embed_texts, load_retrieval_model

_DESCRIPTION = """
How well generated poses match their descriptions, or generated descriptions their poses, judged by a pose-text
retrieval model (a pose encoder and a text encoder trained to embed matching poses and texts close together;
`python train/train_retrieval.py` trains one). Each item is a text and a pose; the metric ranks the true partner of
every text among other poses: R-Precision@1/2/3 under the two protocols in use (PoseScript's: the true pose among
31 random others, averaged over repetitions; grouped: consecutive groups of 32 of a shuffled list), and Recall@K
over the whole set in both directions with their mean (mRecall).

Configurations: `text_to_pose` (predictions are generated poses, references their input texts) and `pose_to_text`
(predictions are generated texts, references their input poses).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: generated poses (66 floats each, SMPL-H body axis-angle) for `text_to_pose`, generated texts for
        `pose_to_text`.
    references: the texts they were generated from (`text_to_pose`), or the poses (`pose_to_text`).
    retrieval_model (`str`): folder of a retrieval model saved with its text tokenizer.
    pool_size (`int`, defaults to 32), num_repetitions (`int`, defaults to 10), seed (`int`, defaults to 0): the
        R-precision protocol's settings.
    recall_k (`list[int]`, defaults to [1, 5, 10, 20]): the K of Recall@K (empty: no recall).
Returns:
    `R-Precision@{k} ({protocol})`, `R^T2P@{k}`, `R^P2T@{k}` and `mRecall`, in percent.
"""

_POSE = datasets.Sequence(datasets.Value("float32"), length=66)
_TEXT = datasets.Value("string")


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class PoseTextRetrieval(evaluate.Metric):
    def _info(self):
        if self.config_name not in ("text_to_pose", "pose_to_text"):
            raise ValueError(
                f"The configuration must be `text_to_pose` or `pose_to_text`, got {self.config_name!r}: "
                '`evaluate.load(path, "text_to_pose")`.'
            )
        predictions, references = (_POSE, _TEXT) if self.config_name == "text_to_pose" else (_TEXT, _POSE)
        return evaluate_module_info(_DESCRIPTION, _KWARGS_DESCRIPTION, datasets.Features({"predictions": predictions, "references": references}))

    def _compute(
        self,
        predictions,
        references,
        retrieval_model=None,
        pool_size=DEFAULT_POOL_SIZE,
        num_repetitions=DEFAULT_NUM_REPETITIONS,
        seed=0,
        recall_k=GENERATION_RECALL_K,
    ):
        if retrieval_model is None:
            raise ValueError("Pass `retrieval_model=` (the folder of a saved pose-text retrieval model).")
        model, tokenizer = load_retrieval_model(retrieval_model)
        texts, poses = (references, predictions) if self.config_name == "text_to_pose" else (predictions, references)
        if len(texts) < pool_size:
            raise ValueError(f"R-precision needs at least `pool_size`={pool_size} items, got {len(texts)}.")
        poses = [[list(p[i : i + 3]) for i in range(0, 66, 3)] for p in poses]
        text_embeds, pose_embeds = embed_texts(model, tokenizer, list(texts)), embed_poses(model, poses)
        results = r_precision_all_protocols(text_embeds, pose_embeds, pool_size, num_repetitions, seed)
        if recall_k:
            results.update(text_pose_recalls(text_embeds, pose_embeds, tuple(recall_k), seed))
        return results
