"""
The metrics that the evaluation and the training code share: joint-position errors between predicted and
reference poses (MPJPE and PA-MPJPE, in millimetres), and Recall@K of retrieval in an embedding space (percent).

- MPJPE (mean per-joint position error): the mean Euclidean distance between corresponding joints after
  both skeletons are translated so that their root joints coincide (joint 0, the pelvis, by default).
- PA-MPJPE: the same after a Procrustes alignment of the prediction onto the reference: the similarity
  transform (rotation, uniform scale, translation) that minimises the squared joint distances (Umeyama,
  "Least-squares estimation of transformation parameters between two point patterns", TPAMI 1991),
  restricted to proper rotations.

[`pose_errors`] measures poses (rotations) through forward kinematics of the body. Other inputs are joint
positions in metres, `(..., J, 3)` torch tensors or numpy arrays; numpy in gives numpy
(or a float) out. Computations run in float64.

Retrieval metrics take two matched sets of embeddings (`queries[i]` and `candidates[i]` belong together):
[`recall_at_k`] ranks every candidate of the whole set by cosine similarity (in float32, the precision of the
retrieval models) and reports the share of queries whose true candidate is among the first K;
[`text_pose_recalls`] does it in both directions (`R^T2P`, `R^P2T`) and averages them (mRecall). Ties between
the true candidate and others (scores equal up to `TIE_TOLERANCE`) are broken at random: the true candidate
takes a uniformly random place among the candidates it ties with, so a model that gives every item the same
embedding scores at chance, not at 100. The R-precision protocols, FID and the text metrics are in
`unipose.evaluation.paper_metrics`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional, Union

import numpy as np
import torch

from .body_model import pose_to_joints
from .checks import check_same

MILLIMETRES_PER_METRE = 1000.0
# The K of Recall@K: for generated texts and poses (`unipose evaluate`: the paper's tables print 5, 10 and 20; its
# evaluation code also computes 1, and its mRecall is the mean over all four in both directions), and for a
# retrieval model on its own data.
GENERATION_RECALL_K = (1, 5, 10, 20)
RETRIEVAL_MODEL_RECALL_K = (1, 5, 10)
# Queries scored against all candidates at once: bounds the (chunk, num_candidates) similarity matrix.
SIMILARITY_CHUNK_ROWS = 1024
# Scores closer than this (relative to their magnitude) count as ties: float32 products of unit vectors of a
# few hundred dimensions carry rounding errors of about 1e-6.
TIE_TOLERANCE = 1e-5
PERCENT = 100.0

EmbeddingLike = Union[torch.Tensor, np.ndarray]

ArrayLike = Union[torch.Tensor, np.ndarray]


def _read_joints(pred, target) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """Both inputs as float64 tensors of one shape `(..., J, 3)`; also whether to answer in numpy."""
    tensors = []
    for name, value in (("pred_joints", pred), ("target_joints", target)):
        if isinstance(value, torch.Tensor):
            tensor = value
        elif isinstance(value, (np.ndarray, list, tuple)):
            array = np.asarray(value)
            if array.dtype.kind not in "iuf":
                raise TypeError(f"`{name}` must hold real numbers, got dtype {array.dtype}.")
            tensor = torch.from_numpy(np.ascontiguousarray(array))
        else:
            raise TypeError(f"`{name}` must be a torch.Tensor or a numpy array, got {type(value).__name__}.")
        if tensor.is_complex() or tensor.dtype == torch.bool:
            raise TypeError(f"`{name}` must hold real numbers, got dtype {tensor.dtype}.")
        if tensor.ndim < 2 or tensor.shape[-1] != 3 or tensor.shape[-2] == 0:
            raise ValueError(
                f"`{name}` must have shape (..., num_joints, 3) with at least one joint, got "
                f"{tuple(tensor.shape)}."
            )
        if not bool(torch.isfinite(tensor).all()):
            raise ValueError(f"`{name}` contains NaN or infinite values.")
        tensors.append(tensor.to(torch.float64))
    pred_tensor, target_tensor = tensors
    check_same(tuple(pred_tensor.shape), tuple(target_tensor.shape), ("pred_joints", "target_joints"), "shape")
    if pred_tensor.device != target_tensor.device:
        raise ValueError(
            f"`pred_joints` and `target_joints` must be on the same device, got {pred_tensor.device} and "
            f"{target_tensor.device}."
        )
    as_numpy = not isinstance(pred, torch.Tensor) and not isinstance(target, torch.Tensor)
    return pred_tensor, target_tensor, as_numpy


def _finish(errors: torch.Tensor, reduce: bool, as_numpy: bool, dtype: torch.dtype):
    """Per-sample errors `(...)` in mm -> their mean (or themselves), in the caller's array type."""
    result = errors.mean() if reduce else errors
    if as_numpy:
        return float(result) if reduce else result.cpu().numpy()
    return result.to(dtype if dtype.is_floating_point else torch.float32)


def _similarity_transform(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """
    Least-squares similarity alignment of `pred` onto `target`, both float64 `(..., J, 3)`.

    Returns:
        `torch.Tensor` of shape `(..., J, 3)`: `scale * pred @ R^T + t`.
    """
    pred_mean, target_mean = pred.mean(dim=-2, keepdim=True), target.mean(dim=-2, keepdim=True)
    pred_centred, target_centred = pred - pred_mean, target - target_mean
    pred_variance = (pred_centred**2).sum(dim=(-2, -1))  # (...), J times the variance
    covariance = target_centred.transpose(-1, -2) @ pred_centred  # (..., 3, 3)
    u, singular_values, vh = torch.linalg.svd(covariance)
    # Reflection guard: if the best orthogonal map is a reflection, flip the weakest axis, which gives the
    # best proper rotation instead.
    sign = torch.sign(torch.linalg.det(u) * torch.linalg.det(vh))
    sign = torch.where(sign == 0, torch.ones_like(sign), sign)
    correction = torch.ones_like(singular_values)
    correction[..., -1] = sign
    rotation = u @ (correction[..., :, None] * vh)  # (..., 3, 3)
    # A prediction whose joints all coincide has no rotation or scale to fit: it maps onto the target's mean.
    scale = (singular_values * correction).sum(-1) / pred_variance.clamp_min(torch.finfo(pred.dtype).tiny)
    scale = torch.where(pred_variance > 0, scale, torch.zeros_like(scale))
    return scale[..., None, None] * pred_centred @ rotation.transpose(-1, -2) + target_mean


def procrustes_align(pred_joints: ArrayLike, target_joints: ArrayLike) -> ArrayLike:
    """
    Aligns each predicted skeleton onto its reference by the best similarity transform (rotation with
    determinant +1, uniform scale, translation) in the least-squares sense.

    Args:
        pred_joints (`torch.Tensor` or `np.ndarray` of shape `(..., J, 3)`):
            Predicted joint positions.
        target_joints (`torch.Tensor` or `np.ndarray` of shape `(..., J, 3)`):
            Reference joint positions.

    Returns:
        The aligned prediction, of shape `(..., J, 3)`: a numpy array for numpy input, else a tensor in the
        dtype of `pred_joints`.
    """
    pred, target, as_numpy = _read_joints(pred_joints, target_joints)
    aligned = _similarity_transform(pred, target)
    if as_numpy:
        return aligned.cpu().numpy().astype(np.result_type(np.asarray(pred_joints).dtype, np.float32))
    dtype = pred_joints.dtype if isinstance(pred_joints, torch.Tensor) else torch.float64
    return aligned.to(dtype if dtype.is_floating_point else torch.float32)


def _per_joint_mm(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean per-joint distance of float64 `(..., J, 3)` in metres -> `(...)` in millimetres."""
    return (pred - target).norm(dim=-1).mean(dim=-1) * MILLIMETRES_PER_METRE


def _result_dtype(*values) -> torch.dtype:
    for value in values:
        if isinstance(value, torch.Tensor):
            return value.dtype
    return torch.float64


def mpjpe(
    pred_joints: ArrayLike, target_joints: ArrayLike, root_index: Optional[int] = 0, reduce: bool = True
) -> Union[torch.Tensor, np.ndarray, float]:
    """
    Mean per-joint position error in millimetres, after root alignment.

    Args:
        pred_joints (`torch.Tensor` or `np.ndarray` of shape `(..., J, 3)`):
            Predicted joint positions in metres.
        target_joints (`torch.Tensor` or `np.ndarray` of shape `(..., J, 3)`):
            Reference joint positions in metres.
        root_index (`int`, *optional*, defaults to 0):
            The joint that both skeletons are translated to before comparing (0 is the pelvis); `None`
            compares the positions as given.
        reduce (`bool`, *optional*, defaults to `True`):
            Average over all samples; otherwise return one error per sample.

    Returns:
        The error in millimetres: a scalar (a float for numpy input) or an array of shape `(...)`.

    Example:

    ```python
    >>> import torch
    >>> target = torch.zeros(1, 22, 3)
    >>> pred = target.clone()
    >>> pred[0, 5, 1] = 0.022  # one joint off by 22 mm
    >>> float(mpjpe(pred, target))
    1.0
    ```
    """
    pred, target, as_numpy = _read_joints(pred_joints, target_joints)
    if root_index is not None:
        num_joints = pred.shape[-2]
        is_index = isinstance(root_index, int) and not isinstance(root_index, bool)
        if not is_index or not 0 <= root_index < num_joints:
            raise ValueError(
                f"`root_index` must be None or a joint index from 0 to {num_joints - 1}, got {root_index!r}."
            )
        pred = pred - pred[..., root_index : root_index + 1, :]
        target = target - target[..., root_index : root_index + 1, :]
    errors = _per_joint_mm(pred, target)
    return _finish(errors, reduce, as_numpy, _result_dtype(pred_joints, target_joints))


def pa_mpjpe(
    pred_joints: ArrayLike, target_joints: ArrayLike, reduce: bool = True
) -> Union[torch.Tensor, np.ndarray, float]:
    """
    Mean per-joint position error in millimetres after Procrustes alignment (see [`procrustes_align`]).

    Args:
        pred_joints (`torch.Tensor` or `np.ndarray` of shape `(..., J, 3)`):
            Predicted joint positions in metres.
        target_joints (`torch.Tensor` or `np.ndarray` of shape `(..., J, 3)`):
            Reference joint positions in metres.
        reduce (`bool`, *optional*, defaults to `True`):
            Average over all samples; otherwise return one error per sample.

    Returns:
        The error in millimetres: a scalar (a float for numpy input) or an array of shape `(...)`.
    """
    pred, target, as_numpy = _read_joints(pred_joints, target_joints)
    errors = _per_joint_mm(_similarity_transform(pred, target), target)
    return _finish(errors, reduce, as_numpy, _result_dtype(pred_joints, target_joints))


def pose_errors_per_item(pred_poses, target_poses, body=None) -> dict[str, np.ndarray]:
    """`"MPJPE"` and `"PA-MPJPE"` of each pose, in millimetres, `(N,)` each (see [`pose_errors`])."""
    with torch.no_grad():
        pred_joints = pose_to_joints(pred_poses, body=body)
        target_joints = pose_to_joints(target_poses, body=body)
    if pred_joints.shape != target_joints.shape:
        raise ValueError(
            f"`pred_poses` and `target_poses` must hold as many poses, got {pred_joints.shape[0]} and "
            f"{target_joints.shape[0]}."
        )
    return {
        "MPJPE": np.asarray(mpjpe(pred_joints, target_joints, reduce=False), dtype=np.float64),
        "PA-MPJPE": np.asarray(pa_mpjpe(pred_joints, target_joints, reduce=False), dtype=np.float64),
    }


def pose_errors(pred_poses, target_poses, body=None) -> dict[str, float]:
    """
    MPJPE (root-aligned at the pelvis) and PA-MPJPE of poses, through forward kinematics of the body.

    Args:
        pred_poses, target_poses (array, tensor or nested lists):
            Batches of poses in any format of `unipose.rotations.to_rotation_matrix`, e.g. axis-angle
            `(N, 22, 3)`.
        body ([`~unipose.body_model.BodyJoints`], *optional*):
            The body; defaults to the generated stand-in (see `unipose.body_model.pose_to_joints`).

    Returns:
        `dict[str, float]`: `"MPJPE"` and `"PA-MPJPE"` in millimetres, averaged over the poses.
    """
    return {name: float(values.mean()) for name, values in pose_errors_per_item(pred_poses, target_poses, body).items()}


# ----------------------------------------------------------------------------------------------------
# Retrieval: embeddings, ranks, Recall@K
# ----------------------------------------------------------------------------------------------------


def _as_embeddings(value: EmbeddingLike, name: str, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """`value` as a finite tensor of shape `(N, D)`, float32 by default (the precision of the retrieval
    models)."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "iuf":
            raise TypeError(f"`{name}` must hold real numbers, got dtype {value.dtype}.")
        value = torch.from_numpy(np.ascontiguousarray(value))
    elif not isinstance(value, torch.Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor or a numpy array, got {type(value).__name__}.")
    if value.is_complex() or value.dtype == torch.bool:
        raise TypeError(f"`{name}` must hold real numbers, got dtype {value.dtype}.")
    if value.ndim != 2 or value.shape[0] == 0 or value.shape[1] == 0:
        raise ValueError(
            f"`{name}` must have shape (num_items, dim) with both > 0, got {tuple(value.shape)}."
        )
    value = value.detach().to("cpu", dtype)
    if not bool(torch.isfinite(value).all()):
        raise ValueError(f"`{name}` contains NaN or infinite values.")
    return value


def _matched_pair(queries: EmbeddingLike, candidates: EmbeddingLike) -> tuple[torch.Tensor, torch.Tensor]:
    queries, candidates = _as_embeddings(queries, "queries"), _as_embeddings(candidates, "candidates")
    if queries.shape != candidates.shape:
        raise ValueError(
            "`queries` and `candidates` must be matched one to one, with the same shape (num_items, dim); got "
            f"{tuple(queries.shape)} and {tuple(candidates.shape)}."
        )
    return queries, candidates


def _check_top_k(top_k: Sequence[int], limit: int, name: str) -> tuple[int, ...]:
    values = tuple(top_k)
    if not values or any(
        isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1 for k in values
    ):
        raise ValueError(f"`{name}` must be a non-empty sequence of positive integers, got {top_k!r}.")
    if max(values) > limit:
        raise ValueError(f"`{name}` asks for k={max(values)}, more than the {limit} candidates to rank.")
    return tuple(int(k) for k in values)


def _normalize(embeddings: torch.Tensor) -> torch.Tensor:
    return embeddings / embeddings.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(embeddings.dtype).tiny)


def _similarity_chunks(queries: torch.Tensor, candidates: torch.Tensor):
    """
    Cosine similarities of the queries, a chunk of rows at a time, with every candidate, candidate `i` being the
    true match of query `i`: yields `(rows, similarity (chunk, N), true_score (chunk,))`.
    """
    queries, candidates = _normalize(queries), _normalize(candidates)
    num_items = queries.shape[0]
    for start in range(0, num_items, SIMILARITY_CHUNK_ROWS):
        rows = torch.arange(start, min(start + SIMILARITY_CHUNK_ROWS, num_items))
        similarity = queries[rows] @ candidates.T
        yield rows, similarity, similarity[torch.arange(len(rows)), rows]


def _tie_broken_rank(
    scores: torch.Tensor, true_score: torch.Tensor, generator: torch.Generator, higher_is_better: bool = True
) -> torch.Tensor:
    """
    0-based rank of the true candidate among `scores` when it takes a uniformly random place among the
    candidates that tie with it (scores within `TIE_TOLERANCE`, relative to the score's magnitude, so that
    rounding in the matrix products does not decide a tie).

    Args:
        scores (`torch.Tensor` of shape `(..., num_others)`): scores of the other candidates.
        true_score (`torch.Tensor` of shape `(...)`): score of the true candidate.
        higher_is_better (`bool`, *optional*, defaults to `True`): similarities (`True`) or distances.

    Returns:
        `torch.Tensor` of shape `(...)`, int64.
    """
    true_score = true_score[..., None]
    tolerance = TIE_TOLERANCE * (1 + true_score.abs())
    difference = scores - true_score if higher_is_better else true_score - scores
    better = (difference > tolerance).sum(-1)
    tied = (difference.abs() <= tolerance).sum(-1)
    uniform = torch.rand(better.shape, generator=generator, dtype=torch.float64)
    return better + torch.floor(uniform * (tied + 1)).long()


def recall_at_k(
    queries: EmbeddingLike,
    candidates: EmbeddingLike,
    k_values: Sequence[int] = GENERATION_RECALL_K,
    seed: int = 0,
) -> dict[str, float]:
    """
    Recall@K over the whole set: the share of queries whose true candidate is among the K candidates of
    highest cosine similarity.

    Args:
        queries (`torch.Tensor` or `np.ndarray` of shape `(N, D)`):
            Query embeddings.
        candidates (`torch.Tensor` or `np.ndarray` of shape `(N, D)`):
            Candidate embeddings; `candidates[i]` is the true match of `queries[i]`.
        k_values (`Sequence[int]`, *optional*, defaults to `(1, 5, 10, 20)`):
            The K to report; each must be at most N.
        seed (`int`, *optional*, defaults to 0):
            Seed of the tie breaking.

    Returns:
        `dict[str, float]`: `"R@{k}"` -> percentage of queries.
    """
    queries, candidates = _matched_pair(queries, candidates)
    num_items = queries.shape[0]
    k_values = _check_top_k(k_values, num_items, "k_values")
    generator = torch.Generator().manual_seed(seed)
    ranks = torch.empty(num_items, dtype=torch.long)
    for rows, similarity, true_score in _similarity_chunks(queries, candidates):
        is_true = torch.zeros_like(similarity, dtype=torch.bool)
        is_true[torch.arange(len(rows)), rows] = True
        others = similarity[~is_true].view(len(rows), num_items - 1)
        ranks[rows] = _tie_broken_rank(others, true_score, generator)
    return {f"R@{k}": float((ranks < k).double().mean()) * PERCENT for k in k_values}


def text_pose_recalls(
    text_embeds: EmbeddingLike,
    pose_embeds: EmbeddingLike,
    k_values: Sequence[int] = GENERATION_RECALL_K,
    seed: int = 0,
) -> dict[str, float]:
    """
    Recall@K in both directions and their mean.

    Args:
        text_embeds (`torch.Tensor` or `np.ndarray` of shape `(N, D)`):
            Text embeddings.
        pose_embeds (`torch.Tensor` or `np.ndarray` of shape `(N, D)`):
            Pose (or pose-pair) embeddings, matched to the texts.
        k_values (`Sequence[int]`, *optional*, defaults to `(1, 5, 10, 20)`):
            The K to report.
        seed (`int`, *optional*, defaults to 0):
            Seed of the tie breaking.

    Returns:
        `dict[str, float]`: `"R^T2P@{k}"` (text -> pose), `"R^P2T@{k}"` (pose -> text) and `"mRecall"`, the
        mean of all of them, in percent.
    """
    text_to_pose = recall_at_k(text_embeds, pose_embeds, k_values, seed)
    pose_to_text = recall_at_k(pose_embeds, text_embeds, k_values, seed)
    results = {f"R^T2P@{name[2:]}": value for name, value in text_to_pose.items()}
    results.update({f"R^P2T@{name[2:]}": value for name, value in pose_to_text.items()})
    results["mRecall"] = float(np.mean(list(results.values())))
    return results


__all__ = [
    "GENERATION_RECALL_K",
    "RETRIEVAL_MODEL_RECALL_K",
    "mpjpe",
    "pa_mpjpe",
    "pose_errors",
    "pose_errors_per_item",
    "procrustes_align",
    "recall_at_k",
    "text_pose_recalls",
]
