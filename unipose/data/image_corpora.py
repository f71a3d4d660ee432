"""
ImageScript and ImageDiff: images of people described by the automatic captioners, built from a dataset of
`image_pose` records (PoseEst, see `unipose.data.pose_estimation`, or the synthetic corpus).

ImageScript ([`build_imagescript`]) keeps a diverse subset of the records and describes each pose with
`unipose.data.captioning.PoseCaptioner`. ImageDiff ([`build_imagediff`]) pairs each pose of such a subset with
a similar pose that differs in enough posecodes, and writes the instructions from one to the other with
`unipose.data.captioning.PairCaptioner`. Images are copied from the input records unchanged (no
re-encoding).

The steps, each a function of its own:

1. Pose features ([`pose_features`]): the 22 joints of each pose by forward kinematics
   (`unipose.body_model.pose_to_joints`) after putting the root in a y-up world (the frame the captioners
   measure in) and zeroing its heading, with the pelvis moved to the origin ("root-aligned"). Neither the
   camera's viewpoint about the vertical nor the person's place in the picture counts, while their tilt does
   (lying and standing differ).
2. Selection ([`farthest_point_sampling`]): farthest-point sampling under the mean per-joint position error
   (MPJPE) of those joints. It starts at the pose farthest from the mean pose and then repeatedly takes the
   pose farthest from everything taken so far; any prefix of the selection is itself such a sample. The
   updates are exact, but pruned with the triangle inequality so that a step touches only the poses whose
   nearest selected pose may change.
3. Posecodes ([`posecode_categories`]): the category of every posecode of `unipose.data.posecodes`, measured
   without the random threshold shifts that captions use.
4. Pairs ([`mine_pairs`]): for each selected pose A, the `num_candidates` (100) most similar poses of the
   whole input dataset by cosine similarity of the flattened root-aligned joints of step 1; B is the most
   similar of them whose posecode categories differ from A's in at least `min_posecode_difference` (10)
   posecodes. A pose with no such candidate yields no pair; their number is logged.

Since both poses of a pair are heading-normalised on their own, the instructions never ask for a turn of the
whole body: two photographs share no world frame.

Example:

```python
>>> from unipose.data.pose_estimation import load_pose_estimation
>>> from unipose.data.image_corpora import build_imagediff, build_imagescript
>>> poseest = load_pose_estimation("~/data/hmr2/coco_2014_train.npz", "~/data/coco")  # doctest: +SKIP
>>> imagescript = build_imagescript(poseest, num_poses=50_000)  # doctest: +SKIP
>>> imagediff = build_imagediff(poseest, num_poses=50_000)  # doctest: +SKIP
```
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional, Union

import datasets
import numpy as np
import torch
from transformers.utils import logging

from ..body_model import pose_to_joints
from ..skeleton import NUM_BODY_JOINTS
from .amass import change_up_axis, normalize_heading
from .captioning import PairCaptioner, PoseCaptioner
from .pose_estimation import CAMERA_UP_AXIS, OUTPUT_UP_AXES, camera_to_up_axis
from .posecodes import POSECODES, PosecodeTable, categorize, measure_posecodes, prepare_points
from .schema import IMAGE_PAIR_FEATURES, IMAGE_POSE_FEATURES, RECORD_UP_AXIS

logger = logging.get_logger(__name__)

DEFAULT_NUM_CANDIDATES = 100
DEFAULT_MIN_POSECODE_DIFFERENCE = 10
# PoseScript-A gives three automatic captions per pose.
DEFAULT_NUM_CAPTIONS = 3
# Poses per forward-kinematics, posecode and captioning call: bounds memory, keeps the progress bar alive.
BATCH_SIZE = 4096
# Anchors per similarity block in pair mining: a block holds `SIMILARITY_BLOCK x num_poses` floats.
SIMILARITY_BLOCK = 256
# Relative slack on the triangle-inequality test of farthest-point sampling, so that float rounding can only
# make it visit more poses, never skip one it should update.
PRUNING_SLACK = 1e-4


# ---------------------------------------------------------------------------------------------------------
# 1. Pose features
# ---------------------------------------------------------------------------------------------------------


def _to_y_up(root_orient: np.ndarray, up_axis: str) -> torch.Tensor:
    if up_axis == CAMERA_UP_AXIS:
        root_orient = camera_to_up_axis(root_orient, "y")
    root = torch.from_numpy(np.asarray(root_orient, dtype=np.float64))
    return change_up_axis(root, "z", "y") if up_axis == "z" else root


def pose_features(
    poses: np.ndarray, up_axis: str = CAMERA_UP_AXIS, body=None, batch_size: int = BATCH_SIZE
) -> np.ndarray:
    """
    Root-aligned, heading-normalised joint positions in a y-up world (step 1 of the module docstring).

    Args:
        poses (`np.ndarray` of shape `(num_poses, 22, 3)`):
            Axis-angle body poses.
        up_axis (`str`, *optional*, defaults to `"-y"`):
            The world's up axis in the poses' frame: `"-y"` for the camera frame of PoseEst fits, `"y"` for
            SMPL's frame, `"z"` for AMASS's.
        body (`unipose.body_model.BodyJoints`, *optional*):
            The body to pose; the generated stand-in by default.
        batch_size (`int`, *optional*): poses per forward-kinematics call.

    Returns:
        `np.ndarray` of shape `(num_poses, 22, 3)`, float32, in metres, pelvis at the origin.
    """
    if up_axis not in OUTPUT_UP_AXES:
        raise ValueError(f"`up_axis` must be one of {list(OUTPUT_UP_AXES)}, got {up_axis!r}.")
    poses = np.asarray(poses)
    if poses.ndim != 3 or poses.shape[1:] != (NUM_BODY_JOINTS, 3):
        raise ValueError(f"`poses` must have shape (num_poses, {NUM_BODY_JOINTS}, 3), got {poses.shape}.")
    joints = np.empty(poses.shape, dtype=np.float32)
    for start in logging.tqdm(
        range(0, len(poses), batch_size), desc="Pose features", unit="batch", leave=False
    ):
        batch = poses[start : start + batch_size].astype(np.float32)
        batch[:, 0] = normalize_heading(_to_y_up(batch[:, 0], up_axis), "y").numpy()
        batch_joints = np.asarray(pose_to_joints(batch, body=body), dtype=np.float32)
        joints[start : start + batch_size] = batch_joints - batch_joints[:, :1]
    return joints


# ---------------------------------------------------------------------------------------------------------
# 2. Farthest-point sampling
# ---------------------------------------------------------------------------------------------------------


def _mpjpe_to(coordinates: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """
    Mean per-joint distance of poses to one reference pose.

    Args:
        coordinates (`torch.Tensor` of shape `(3, n, J)`): the poses, coordinate-major: summing the squares
            over the first axis is much faster than over a trailing axis of 3.
        reference (`torch.Tensor` of shape `(3, J)`): the reference pose, same layout.

    Returns:
        `torch.Tensor` of shape `(n,)`.
    """
    difference = coordinates - reference[:, None]
    return difference.square_().sum(0).sqrt_().mean(-1)


def farthest_point_sampling(
    joints,
    num_samples: int,
    start_index: Optional[int] = None,
    device: Optional[Union[str, torch.device]] = None,
) -> np.ndarray:
    """
    Farthest-point sampling of poses under the mean per-joint position error.

    Every selected pose is a cluster centre; each pose keeps its distance to the nearest centre and that
    centre's index, and each centre the largest such distance among its poses (its radius). When pose `c`
    becomes a centre, a pose `i` of cluster `j` can only come closer to `c` than to `j` if
    `d(c, j) < 2 d(i, j)`, so only the clusters with `d(c, j) < 2 radius_j` are visited. The result is the
    same as that of the plain algorithm, which updates every pose at every step.

    Args:
        joints (`np.ndarray` or `torch.Tensor` of shape `(num_poses, num_joints, 3)`):
            Joint positions (root-aligned, see [`pose_features`]).
        num_samples (`int`):
            Poses to select, at most `num_poses`.
        start_index (`int`, *optional*):
            The first pose; defaults to the pose farthest from the mean pose, which makes the result
            independent of the order of the poses (up to ties).
        device (`str` or `torch.device`, *optional*):
            Where to compute (a GPU makes large selections much faster); the CPU by default.

    Returns:
        `np.ndarray` of shape `(num_samples,)`, int64: indices in selection order.
    """
    points = torch.as_tensor(np.asarray(joints) if not isinstance(joints, torch.Tensor) else joints)
    if points.ndim != 3 or points.shape[-1] != 3 or not len(points):
        raise ValueError(
            "`joints` must have shape (num_poses, num_joints, 3) with num_poses > 0, got "
            f"{tuple(points.shape)}."
        )
    if not bool(torch.isfinite(points).all()):
        raise ValueError("`joints` contains NaN or infinite values.")
    num_poses = len(points)
    if not (isinstance(num_samples, (int, np.integer)) and 0 < num_samples <= num_poses):
        raise ValueError(
            f"`num_samples` must be an int in [1, {num_poses}] (the number of poses), got {num_samples!r}."
        )
    coordinates = points.to(device=device, dtype=torch.float32).permute(2, 0, 1).contiguous()  # (3, N, J)
    if start_index is None:
        start_index = int(_mpjpe_to(coordinates, coordinates.mean(1)).argmax())
    elif not (isinstance(start_index, (int, np.integer)) and 0 <= start_index < num_poses):
        raise ValueError(f"`start_index` must be an index in [0, {num_poses}), got {start_index!r}.")
    device = coordinates.device
    selected = torch.empty(num_samples, dtype=torch.long, device=device)
    centres = torch.empty((3, num_samples, coordinates.shape[2]), dtype=coordinates.dtype, device=device)
    selected[0] = start_index
    centres[:, 0] = coordinates[:, start_index]
    distance = _mpjpe_to(coordinates, centres[:, 0])  # to the nearest centre, (N,)
    cluster = torch.zeros(num_poses, dtype=torch.long, device=device)  # index into `selected`
    radius = torch.zeros(num_samples, dtype=distance.dtype, device=device)
    radius[0] = distance.max()
    # A selected pose can never be selected again, even when duplicates leave every distance at zero.
    distance[start_index] = -torch.inf
    for k in logging.tqdm(range(1, num_samples), desc="Farthest-point sampling", unit="pose", leave=False):
        centre = int(distance.argmax())
        selected[k] = centre
        centres[:, k] = coordinates[:, centre]
        centre_distance = _mpjpe_to(centres[:, :k], centres[:, k])  # to the other centres, (k,)
        visited = centre_distance <= 2 * radius[:k] * (1 + PRUNING_SLACK)
        # `index_select` rather than advanced indexing: several times faster on the CPU for these gathers.
        rows = torch.nonzero(visited.index_select(0, cluster)).flatten()
        old = distance.index_select(0, rows)
        new = _mpjpe_to(coordinates.index_select(1, rows), centres[:, k])
        closer = new < old
        updated = torch.where(closer, new, old)
        distance[rows] = updated
        cluster[rows] = torch.where(closer, k, cluster.index_select(0, rows))
        distance[centre] = -torch.inf
        # Recompute the radii of the visited clusters and of the new one from their current members.
        radius[:k].masked_fill_(visited, 0.0)
        radius.scatter_reduce_(0, cluster[rows], updated.clamp_min(0.0), reduce="amax")
    return selected.cpu().numpy()


# ---------------------------------------------------------------------------------------------------------
# 3. Posecodes and 4. pairs
# ---------------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _posecode_table() -> PosecodeTable:
    return PosecodeTable.build(POSECODES)


def posecode_categories(joints: np.ndarray, batch_size: int = BATCH_SIZE) -> np.ndarray:
    """
    The category of every posecode, without random threshold shifts.

    Args:
        joints (`np.ndarray` of shape `(num_poses, 22, 3)`): joint positions in metres, y up.
        batch_size (`int`, *optional*): poses per measurement call.

    Returns:
        `np.ndarray` of shape `(num_poses, num_posecodes)`, int8 category indices, in the order of
        `unipose.data.posecodes.POSECODES`.
    """
    joints = np.asarray(joints)
    if joints.ndim != 3 or joints.shape[1:] != (NUM_BODY_JOINTS, 3):
        raise ValueError(f"`joints` must have shape (num_poses, {NUM_BODY_JOINTS}, 3), got {joints.shape}.")
    table = _posecode_table()
    categories = np.empty((len(joints), len(table)), dtype=np.int8)
    for start in range(0, len(joints), batch_size):
        points, _ = prepare_points(joints[start : start + batch_size])
        categories[start : start + batch_size] = categorize(measure_posecodes(points, table), table)
    return categories


@dataclass
class MinedPairs:
    """
    Pairs from [`mine_pairs`], one per anchor that found a partner.

    Args:
        anchors (`np.ndarray` of shape `(num_pairs,)`): indices of poses A.
        partners (`np.ndarray` of shape `(num_pairs,)`): indices of poses B.
        similarity (`np.ndarray` of shape `(num_pairs,)`): cosine similarity of their features.
        posecode_difference (`np.ndarray` of shape `(num_pairs,)`): posecodes whose categories differ.
    """

    anchors: np.ndarray
    partners: np.ndarray
    similarity: np.ndarray
    posecode_difference: np.ndarray


def mine_pairs(
    features: np.ndarray,
    categories: np.ndarray,
    anchors: Sequence[int],
    num_candidates: int = DEFAULT_NUM_CANDIDATES,
    min_posecode_difference: int = DEFAULT_MIN_POSECODE_DIFFERENCE,
    device: Optional[Union[str, torch.device]] = None,
) -> MinedPairs:
    """
    For each anchor, the most similar pose among its `num_candidates` nearest (by cosine similarity of
    `features`) that differs from it in at least `min_posecode_difference` posecodes.

    Args:
        features (`np.ndarray` of shape `(num_poses, ...)`): pose features, flattened per pose (the joints of
            [`pose_features`]).
        categories (`np.ndarray` of shape `(num_poses, num_posecodes)`): posecode categories
            ([`posecode_categories`]).
        anchors (`Sequence[int]`): indices of the poses A.
        num_candidates (`int`, *optional*, defaults to 100): nearest poses searched, at most `num_poses - 1`.
        min_posecode_difference (`int`, *optional*, defaults to 10): posecodes that must differ.
        device (`str` or `torch.device`, *optional*): where to compute the similarities.

    Returns:
        [`MinedPairs`], in the order of `anchors`; anchors without a partner are left out (and logged).
    """
    features = torch.as_tensor(np.asarray(features, dtype=np.float32)).flatten(1).to(device)
    categories = torch.as_tensor(np.asarray(categories)).to(device)
    num_poses = len(features)
    if categories.ndim != 2 or len(categories) != num_poses:
        raise ValueError(
            f"`categories` must have shape ({num_poses}, num_posecodes) to match `features`, got "
            f"{tuple(categories.shape)}."
        )
    anchors = torch.as_tensor(np.asarray(anchors, dtype=np.int64)).to(device)
    if anchors.ndim != 1 or (len(anchors) and not bool(((anchors >= 0) & (anchors < num_poses)).all())):
        raise ValueError(f"`anchors` must be a 1-D sequence of indices in [0, {num_poses}).")
    if not (isinstance(num_candidates, int) and 0 < num_candidates < num_poses):
        raise ValueError(
            f"`num_candidates` must be an int in [1, {num_poses - 1}] (the other poses of the dataset), got "
            f"{num_candidates!r}."
        )
    if not (isinstance(min_posecode_difference, int) and 0 <= min_posecode_difference <= categories.shape[1]):
        raise ValueError(
            f"`min_posecode_difference` must be an int in [0, {categories.shape[1]}] (the number of "
            f"posecodes), got {min_posecode_difference!r}."
        )
    unit = torch.nn.functional.normalize(features, dim=1)
    kept, partners, similarities, differences = [], [], [], []
    for start in logging.tqdm(
        range(0, len(anchors), SIMILARITY_BLOCK), desc="Mining pairs", unit="block", leave=False
    ):
        block = anchors[start : start + SIMILARITY_BLOCK]
        similarity = unit[block] @ unit.T  # (block, num_poses)
        similarity[torch.arange(len(block), device=similarity.device), block] = -torch.inf
        top_similarity, candidates = similarity.topk(num_candidates, dim=1)  # most similar first
        difference = (categories[block][:, None, :] != categories[candidates]).sum(
            -1
        )  # (block, num_candidates)
        qualifies = difference >= min_posecode_difference
        found = qualifies.any(1)
        first = qualifies.to(torch.int8).argmax(1)  # the most similar qualifying candidate
        rows = torch.arange(len(block), device=block.device)
        kept.append(block[found])
        partners.append(candidates[rows, first][found])
        similarities.append(top_similarity[rows, first][found])
        differences.append(difference[rows, first][found])
    result = MinedPairs(
        *(
            torch.cat(parts).cpu().numpy() if parts else np.zeros(0, dtype=dtype)
            for parts, dtype in (
                (kept, np.int64),
                (partners, np.int64),
                (similarities, np.float32),
                (differences, np.int64),
            )
        )
    )
    if len(result.anchors) < len(anchors):
        logger.warning(
            f"{len(anchors) - len(result.anchors)} of {len(anchors)} poses have no pose among their "
            f"{num_candidates} most similar that differs in at least {min_posecode_difference} posecodes; "
            "they yield no pair."
        )
    return result


# ---------------------------------------------------------------------------------------------------------
# The corpora
# ---------------------------------------------------------------------------------------------------------


def _dataset_poses(dataset) -> np.ndarray:
    if dataset.features != IMAGE_POSE_FEATURES:
        raise ValueError(
            f"`dataset` must hold `image_pose` records with the features {dict(IMAGE_POSE_FEATURES)}, got "
            f"{dict(dataset.features)}; see `unipose.data.schema`."
        )
    if not len(dataset):
        raise ValueError("`dataset` is empty.")
    return np.asarray(dataset.with_format("numpy", columns=["pose"])["pose"][:], dtype=np.float32)


def _selection(num_poses, indices, joints, device) -> np.ndarray:
    if (num_poses is None) == (indices is None):
        raise ValueError(
            f"Give exactly one of `num_poses` and `indices`, got num_poses={num_poses!r} and "
            f"indices={indices!r}."
        )
    if indices is None:
        return farthest_point_sampling(joints, num_poses, device=device)
    indices = np.asarray(indices, dtype=np.int64)
    if indices.ndim != 1 or not len(indices) or indices.min() < 0 or indices.max() >= len(joints):
        raise ValueError(
            f"`indices` must be a non-empty 1-D sequence of record indices in [0, {len(joints)})."
        )
    if len(np.unique(indices)) != len(indices):
        raise ValueError("`indices` lists a record more than once.")
    return indices


def _describe(captioner, num_captions: int, *joints: np.ndarray) -> list[list[str]]:
    if not (isinstance(num_captions, int) and num_captions > 0):
        raise ValueError(f"`num_captions` must be a positive int, got {num_captions!r}.")
    texts = []
    for start in logging.tqdm(
        range(0, len(joints[0]), BATCH_SIZE), desc="Captioning", unit="batch", leave=False
    ):
        batch = [part[start : start + BATCH_SIZE] for part in joints]
        texts.extend(captioner.describe(*batch, num_captions=num_captions))
    return texts


def _replace_columns(dataset, texts: list, source: str, features):
    dataset = dataset.remove_columns(["texts", "source"])
    dataset = dataset.add_column("texts", texts, feature=features["texts"])
    dataset = dataset.add_column("source", [source] * len(texts), feature=features["source"])
    return dataset.select_columns(list(features))


def build_imagescript(
    dataset,
    num_poses: Optional[int] = None,
    indices: Optional[Sequence[int]] = None,
    num_captions: int = DEFAULT_NUM_CAPTIONS,
    seed: int = 0,
    up_axis: str = RECORD_UP_AXIS,
    source: str = "imagescript-A",
    body=None,
    device: Optional[Union[str, torch.device]] = None,
):
    """
    ImageScript: a diverse subset of `image_pose` records, each pose described by the automatic captioner.

    Args:
        dataset (`datasets.Dataset`):
            `image_pose` records (their texts are replaced).
        num_poses (`int`, *optional*):
            Records to select by farthest-point sampling (see the module docstring).
        indices (`Sequence[int]`, *optional*):
            The records to keep instead (exactly one of `num_poses` and `indices`).
        num_captions (`int`, *optional*, defaults to 3):
            Captions per pose.
        seed (`int`, *optional*, defaults to 0):
            Seed of the captioner.
        up_axis (`str`, *optional*, defaults to `"y"`):
            The world's up axis in the records' poses, `"y"` for the project's records (see [`pose_features`]).
        source (`str`, *optional*, defaults to `"imagescript-A"`):
            The `source` column of the result.
        body (`unipose.body_model.BodyJoints`, *optional*):
            The body for forward kinematics; the generated stand-in by default.
        device (`str` or `torch.device`, *optional*):
            Where to run farthest-point sampling.

    Returns:
        `datasets.Dataset` of `image_pose` records, in selection order, with their ids, images and poses.
    """
    poses = _dataset_poses(dataset)
    joints = pose_features(poses, up_axis, body)
    selected = _selection(num_poses, indices, joints, device)
    texts = _describe(PoseCaptioner(seed=seed), num_captions, joints[selected])
    return _replace_columns(dataset.select(selected), texts, source, IMAGE_POSE_FEATURES)


def build_imagediff(
    dataset,
    num_poses: Optional[int] = None,
    indices: Optional[Sequence[int]] = None,
    num_candidates: int = DEFAULT_NUM_CANDIDATES,
    min_posecode_difference: int = DEFAULT_MIN_POSECODE_DIFFERENCE,
    num_captions: int = DEFAULT_NUM_CAPTIONS,
    seed: int = 0,
    up_axis: str = RECORD_UP_AXIS,
    source: str = "imagediff-A",
    body=None,
    device: Optional[Union[str, torch.device]] = None,
):
    """
    ImageDiff: pairs of `image_pose` records whose poses are similar yet differ in enough posecodes, with the
    automatic instructions from pose A to pose B.

    Args:
        dataset (`datasets.Dataset`):
            `image_pose` records; partners are searched among all of them.
        num_poses (`int`, *optional*):
            Poses A to select by farthest-point sampling.
        indices (`Sequence[int]`, *optional*):
            The records to use as poses A instead (exactly one of `num_poses` and `indices`).
        num_candidates (`int`, *optional*, defaults to 100):
            Most similar poses searched for a partner.
        min_posecode_difference (`int`, *optional*, defaults to 10):
            Posecodes whose categories must differ between A and B.
        num_captions (`int`, *optional*, defaults to 3):
            Instructions per pair.
        seed, up_axis, body:
            As in [`build_imagescript`].
        source (`str`, *optional*, defaults to `"imagediff-A"`):
            The `source` column of the result.
        device (`str` or `torch.device`, *optional*):
            Where to run the sampling and the similarity search.

    Returns:
        `datasets.Dataset` of `image_pair` records (`id` `"<id A>+<id B>"`), one per pose A with a partner.
    """
    poses = _dataset_poses(dataset)
    joints = pose_features(poses, up_axis, body)
    anchors = _selection(num_poses, indices, joints, device)
    pairs = mine_pairs(
        joints, posecode_categories(joints), anchors, num_candidates, min_posecode_difference, device
    )
    if not len(pairs.anchors):
        raise ValueError(
            f"No pair found: none of the {len(anchors)} poses A has a pose among its {num_candidates} most "
            f"similar that differs in at least {min_posecode_difference} posecodes; raise `num_candidates` "
            "or lower `min_posecode_difference`."
        )
    texts = _describe(PairCaptioner(seed=seed), num_captions, joints[pairs.anchors], joints[pairs.partners])
    sides = []
    for side, rows in (("a", pairs.anchors), ("b", pairs.partners)):
        part = dataset.select(rows).remove_columns(["texts", "source"])
        sides.append(part.rename_columns({name: f"{name}_{side}" for name in ("id", "image", "pose")}))
    paired = datasets.concatenate_datasets(sides, axis=1)
    ids = [f"{a}+{b}" for a, b in zip(paired["id_a"], paired["id_b"])]
    paired = paired.remove_columns(["id_a", "id_b"]).add_column("id", ids, feature=IMAGE_PAIR_FEATURES["id"])
    paired = paired.add_column("texts", texts, feature=IMAGE_PAIR_FEATURES["texts"])
    paired = paired.add_column("source", [source] * len(ids), feature=IMAGE_PAIR_FEATURES["source"])
    return paired.select_columns(list(IMAGE_PAIR_FEATURES))


__all__ = [
    "DEFAULT_MIN_POSECODE_DIFFERENCE",
    "DEFAULT_NUM_CANDIDATES",
    "MinedPairs",
    "build_imagediff",
    "build_imagescript",
    "farthest_point_sampling",
    "mine_pairs",
    "pose_features",
    "posecode_categories",
]
