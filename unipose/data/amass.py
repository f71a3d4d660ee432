"""
Body poses from AMASS motion-capture sequences, as a `datasets.Dataset`.

AMASS (Mahmood et al., "AMASS: Archive of Motion Capture as Surface Shapes", ICCV 2019) ships every
sequence as an `.npz` file with

- `poses`: `(T, 156)` SMPL-H axis-angle per frame (root 3 + 21 body joints x 3 + two hands x 15 x 3), or
  `(T, 165)` in the SMPL-X release; the first 66 values are the 22 body joints in both;
- `mocap_framerate` (SMPL-H release) or `mocap_frame_rate` (SMPL-X release): frames per second.

Subject folders also hold files without poses (`shape.npz`); they are skipped and counted. MOYO and other
corpora written in the AMASS format are read the same way.

Axes. AMASS's world frame is z-up, while SMPL's body frame (rest pose) is y-up: the root rotation of a
person standing upright in an AMASS file is about 90 degrees about x, mapping the body's up axis (y) onto
the world's (z). Poses can be returned in either world frame (`output_up_axis`): `"z"` keeps AMASS's
(the frame of PoseScript and of the released UniPose models), `"y"` turns the world by -90 degrees about x
so that y is up, the frame of `unipose.pose_sampler` (a person standing upright facing +z has the identity
root rotation).

Heading. The heading of a root rotation R is the direction of the body's left axis (x, the first column
of R) on the ground plane, measured about the vertical axis u from the world's x axis:
`atan2(R e_x . (u x e_x), R e_x . e_x)`; for z-up data that is `atan2(R[1, 0], R[0, 0])`, the yaw of the
decomposition `R = Rz(yaw) Ry(pitch) Rx(roll)`. Normalisation turns the root about u by minus the
heading (`R_u(-heading) @ R`): tilt and roll are kept and every joint's height is unchanged. The
definition commutes with the change of up axis above, so normalising before or after it gives the same
pose.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
import torch
from transformers.utils import logging

from ..files import files_under, open_npz
from ..rotations import (
    MAX_AXIS_ANGLE,
    axis_angle_to_matrix,
    elementary_rotation,
    euler_angles_to_matrix,
    matrix_to_axis_angle,
    matrix_to_euler_angles,
    matrix_to_rotation_6d,
    rotation_6d_to_matrix,
)
from ..skeleton import NUM_BODY_JOINTS

logger = logging.get_logger(__name__)

AMASS_UP_AXIS = "z"
# The vertical axis of SMPL's body frame, and of `unipose.pose_sampler`'s poses.
SMPL_UP_AXIS = "y"
AXIS_INDEX = {"x": 0, "y": 1, "z": 2}
# Vertical axes supported by heading normalisation: the heading is measured from the x axis, which must
# therefore be horizontal.
UP_AXES = ("y", "z")
# The npz keys of the two AMASS releases (SMPL-H, SMPL-X) that hold the capture rate.
FRAME_RATE_KEYS = ("mocap_framerate", "mocap_frame_rate")
POSES_KEY = "poses"
# Axis-angle values per frame for the root and the 21 body joints.
NUM_BODY_POSE_VALUES = NUM_BODY_JOINTS * 3


def _axis_index(axis: str, name: str = "axis", allowed: Sequence[str] = tuple(AXIS_INDEX)) -> int:
    if axis not in allowed:
        raise ValueError(f"`{name}` must be one of {list(allowed)}, got {axis!r}.")
    return AXIS_INDEX[axis]


def _unit_vector(axis: str, dtype: torch.dtype, device: torch.device | None = None) -> torch.Tensor:
    vector = torch.zeros(3, dtype=dtype, device=device)
    vector[AXIS_INDEX[axis]] = 1.0
    return vector


def _tait_bryan_order(up_axis: str) -> str:
    """The Euler order `k j i` of yaw, pitch and roll, `(i, j, k)` a cyclic permutation of `(x, y, z)` with `k`
    the vertical axis."""
    k = _axis_index(up_axis, "up_axis")
    return "xyz"[k] + "xyz"[(k + 2) % 3] + "xyz"[(k + 1) % 3]


def tait_bryan_angles(matrix: torch.Tensor, up_axis: str = AMASS_UP_AXIS) -> torch.Tensor:
    """
    Yaw, pitch and roll of world-frame rotations written as `R = R_k(yaw) @ R_j(pitch) @ R_i(roll)`, where
    `k` is the vertical axis and `(i, j, k)` a cyclic permutation of `(x, y, z)`: `Rz @ Ry @ Rx` for z-up,
    `Ry @ Rx @ Rz` for y-up. Yaw turns about the vertical, pitch and roll about the two horizontal axes.

    Args:
        matrix (`torch.Tensor` of shape `(..., 3, 3)`):
            Rotation matrices.
        up_axis (`str`, *optional*, defaults to `"z"`):
            The vertical axis.

    Returns:
        `torch.Tensor` of shape `(..., 3)`: `(yaw, pitch, roll)` in radians, yaw and roll in `(-pi, pi]`,
        pitch in `[-pi/2, pi/2]`.
    """
    return matrix_to_euler_angles(matrix, _tait_bryan_order(up_axis))


def rotation_from_tait_bryan(angles: torch.Tensor, up_axis: str = AMASS_UP_AXIS) -> torch.Tensor:
    """
    Inverse of [`tait_bryan_angles`]: `R_k(yaw) @ R_j(pitch) @ R_i(roll)`.

    Args:
        angles (`torch.Tensor` of shape `(..., 3)`):
            `(yaw, pitch, roll)` in radians.
        up_axis (`str`, *optional*, defaults to `"z"`):
            The vertical axis `k`.

    Returns:
        `torch.Tensor` of shape `(..., 3, 3)`.
    """
    return euler_angles_to_matrix(angles, _tait_bryan_order(up_axis))


def heading_angle(root_matrix: torch.Tensor, up_axis: str = AMASS_UP_AXIS) -> torch.Tensor:
    """
    Heading of root rotations: the angle about the vertical axis `u` of the body's left axis (the first
    column of R) projected on the ground, measured from the world's x axis.

    Args:
        root_matrix (`torch.Tensor` of shape `(..., 3, 3)`):
            Global orientations (body frame to world frame).
        up_axis (`str`, *optional*, defaults to `"z"`):
            The world's vertical axis, `"z"` (AMASS) or `"y"` (SMPL's rest frame).

    Returns:
        `torch.Tensor` of shape `(...)`: radians in `(-pi, pi]`.
    """
    _axis_index(up_axis, "up_axis", UP_AXES)
    left = root_matrix[..., :, 0]  # (..., 3)
    x_axis = _unit_vector("x", left.dtype, left.device)
    turned_x_axis = torch.linalg.cross(_unit_vector(up_axis, left.dtype, left.device), x_axis, dim=-1)
    return torch.atan2((left * turned_x_axis).sum(-1), (left * x_axis).sum(-1))


def normalize_heading(root_orient: torch.Tensor, up_axis: str = AMASS_UP_AXIS) -> torch.Tensor:
    """
    Turns each root rotation about the vertical axis so that its heading ([`heading_angle`]) is zero; tilt
    and roll are kept.

    Args:
        root_orient (`torch.Tensor` of shape `(..., 3)`):
            Axis-angle global orientations (body frame to world frame).
        up_axis (`str`, *optional*, defaults to `"z"`):
            The world's vertical axis: `"z"` for AMASS files, `"y"` for data in SMPL's y-up frame.

    Returns:
        `torch.Tensor` of shape `(..., 3)`: axis-angle `R_up(-heading) @ R_root`.
    """
    matrix = axis_angle_to_matrix(root_orient)
    return matrix_to_axis_angle(elementary_rotation(-heading_angle(matrix, up_axis), up_axis) @ matrix)


def change_up_axis(root_orient: torch.Tensor, source: str, target: str) -> torch.Tensor:
    """
    Re-expresses global orientations in a world frame whose vertical axis is `target` instead of `source`,
    by turning the world 90 degrees about `source x target` (`"z"` -> `"y"`: -90 degrees about x). Joint
    rotations below the root are unchanged, and a heading of zero stays zero.

    Args:
        root_orient (`torch.Tensor` of shape `(..., 3)`):
            Axis-angle global orientations in the `source` frame.
        source (`str`), target (`str`):
            Vertical axes, `"y"` or `"z"`.

    Returns:
        `torch.Tensor` of shape `(..., 3)`.
    """
    _axis_index(source, "source", UP_AXES)
    _axis_index(target, "target", UP_AXES)
    if source == target:
        return root_orient.clone()
    turn = _up_axis_turn(source, target, root_orient.dtype, root_orient.device)
    return matrix_to_axis_angle(turn @ axis_angle_to_matrix(root_orient))


def _up_axis_turn(source: str, target: str, dtype: torch.dtype, device) -> torch.Tensor:
    """The world's turn `(3, 3)` that takes vertical axis `source` to `target`: 90 degrees about `source x target`."""
    axis = torch.linalg.cross(_unit_vector(source, dtype, device), _unit_vector(target, dtype, device), dim=-1)
    return axis_angle_to_matrix(axis * (math.pi / 2))


def change_pose_up_axis(poses, source: str, target: str):
    """
    SMPL poses re-expressed in a world whose vertical axis is `target` instead of `source`: the root orientation
    turns (see [`change_up_axis`]), the joint rotations stay. This is how a corpus's poses (SMPL's y-up frame,
    `unipose.data.schema.RECORD_UP_AXIS`) meet a model whose poses stand in another frame
    (`UniPoseConfig.pose_up_axis`), and how its poses come back.

    Args:
        poses (`np.ndarray` or `torch.Tensor`):
            Poses with the root orientation first, as axis-angle `(..., num_joints, 3)`, rotation matrices
            `(..., num_joints, 3, 3)` or 6D rotations `(..., num_joints, 6)` (the first two rows of each matrix).
        source (`str`), target (`str`):
            Vertical axes, `"y"` or `"z"`.

    Returns:
        The poses in the same type, layout and dtype; `poses` itself when the two frames are the same.
    """
    _axis_index(source, "source", UP_AXES)
    _axis_index(target, "target", UP_AXES)
    if source == target:
        return poses
    values = torch.as_tensor(poses)
    turned = values.clone()
    turn = _up_axis_turn(source, target, torch.float64, values.device)
    if values.dim() >= 3 and values.shape[-2:] == (3, 3):  # rotation matrices
        turned[..., 0, :, :] = (turn @ values[..., 0, :, :].double()).to(values.dtype)
    elif values.shape[-1] == 6:  # 6D: the first two rows of the matrix, which the turn mixes with the third
        root = rotation_6d_to_matrix(values[..., 0, :].double())
        turned[..., 0, :] = matrix_to_rotation_6d(turn @ root).to(values.dtype)
    elif values.shape[-1] == 3:
        root = axis_angle_to_matrix(values[..., 0, :].double())
        turned[..., 0, :] = matrix_to_axis_angle(turn @ root).to(values.dtype)
    else:
        raise ValueError(
            f"`poses` must be axis-angle (..., J, 3), matrices (..., J, 3, 3) or 6D (..., J, 6), got shape "
            f"{tuple(values.shape)}."
        )
    return turned.numpy() if isinstance(poses, np.ndarray) else turned


def subsample_frame_indices(num_frames: int, source_fps: float, target_fps: float | None) -> np.ndarray:
    """
    Frame indices that resample a sequence from `source_fps` to (at most) `target_fps`.

    Frame k of the output is the input frame nearest to time `k / target_fps`; a target at or above the
    source rate keeps every frame (no frame is ever repeated).

    Args:
        num_frames (`int`): frames in the sequence.
        source_fps (`float`): capture rate of the sequence.
        target_fps (`float`, *optional*): wanted rate; `None` keeps every frame.

    Returns:
        `np.ndarray` of shape `(num_kept,)`, increasing int64 indices.
    """
    if target_fps is None or target_fps >= source_fps:
        return np.arange(num_frames, dtype=np.int64)
    if not (target_fps > 0 and math.isfinite(target_fps)):
        raise ValueError(f"`target_fps` must be a positive number or None, got {target_fps!r}.")
    step = source_fps / target_fps
    indices = np.round(np.arange(0.0, num_frames, step)).astype(np.int64)
    return np.unique(indices[indices < num_frames])


@dataclass
class AmassSequence:
    """The body poses of one sequence: `poses` `(T, 22, 3)` float32 axis-angle and the kept frame indices."""

    path: Path
    poses: np.ndarray
    frames: np.ndarray


def read_amass_sequence(
    path: str | os.PathLike,
    target_fps: float | None = None,
    heading_normalization: bool = True,
    output_up_axis: str = AMASS_UP_AXIS,
) -> AmassSequence | None:
    """
    Reads the 22 body joints of one AMASS `.npz` sequence.

    Args:
        path (`str` or `os.PathLike`):
            The `.npz` file.
        target_fps (`float`, *optional*):
            Subsample to this rate (see [`subsample_frame_indices`]); `None` keeps every frame.
        heading_normalization (`bool`, *optional*, defaults to `True`):
            Zero each frame's heading (see [`normalize_heading`]).
        output_up_axis (`str`, *optional*, defaults to `"z"`):
            Vertical axis of the returned poses' world frame: `"z"` keeps AMASS's, `"y"` is SMPL's rest frame
            (see [`change_up_axis`]).

    Returns:
        [`AmassSequence`], or `None` when the file holds no `poses` array (such as AMASS's `shape.npz`).

    Raises:
        `FileNotFoundError`: if `path` does not exist.
        `ValueError`: if `poses` has fewer than 66 values per frame or non-finite values, or if
            `target_fps` is set and the file gives no capture rate.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"AMASS sequence file not found: {str(path)!r}.")
    if target_fps is not None and not (isinstance(target_fps, (int, float)) and 0 < target_fps < math.inf):
        raise ValueError(f"`target_fps` must be a positive number of frames per second or None, got {target_fps!r}.")
    with open_npz(path, "AMASS sequence file") as npz:
        if POSES_KEY not in npz:
            return None
        poses = np.asarray(npz[POSES_KEY])
        rate_key = next((key for key in FRAME_RATE_KEYS if key in npz), None)
        source_fps = float(npz[rate_key]) if rate_key is not None else None
    if source_fps is not None and not (0 < source_fps < math.inf):
        raise ValueError(f"`{rate_key}` in {str(path)!r} is {source_fps}; a capture rate must be a positive number.")
    if poses.ndim != 2 or poses.shape[1] < NUM_BODY_POSE_VALUES:
        raise ValueError(
            f"`{POSES_KEY}` in {str(path)!r} has shape {poses.shape}; expected (frames, values) with at "
            f"least {NUM_BODY_POSE_VALUES} axis-angle values per frame (root + 21 body joints)."
        )
    body_values = poses[:, :NUM_BODY_POSE_VALUES]
    if not np.issubdtype(body_values.dtype, np.number) or not np.isfinite(body_values).all():
        raise ValueError(f"`{POSES_KEY}` in {str(path)!r} contains NaN, infinite or non-numeric values.")
    # Rotations beyond a thousand radians are not poses but corrupt numbers (their sines and cosines are noise).
    largest = float(np.abs(body_values).max()) if body_values.size else 0.0
    if largest > MAX_AXIS_ANGLE:
        row = int(np.abs(body_values).max(axis=1).argmax())
        raise ValueError(
            f"`{POSES_KEY}` in {str(path)!r} holds an axis-angle value of {largest:.3g} at frame {row}; "
            f"values beyond {MAX_AXIS_ANGLE:g} radians are not rotations."
        )
    if target_fps is None:
        frames = np.arange(len(poses), dtype=np.int64)
    else:
        if source_fps is None:
            raise ValueError(
                f"{str(path)!r} gives no capture rate (none of the keys {list(FRAME_RATE_KEYS)}), so it "
                f"cannot be subsampled to `target_fps`={target_fps}; set `target_fps` to None to keep every "
                "frame."
            )
        frames = subsample_frame_indices(len(poses), source_fps, target_fps)
    body = torch.from_numpy(poses[frames, :NUM_BODY_POSE_VALUES].astype(np.float64)).reshape(
        -1, NUM_BODY_JOINTS, 3
    )
    if heading_normalization and len(body):
        body[:, 0] = normalize_heading(body[:, 0], AMASS_UP_AXIS)
    if output_up_axis != AMASS_UP_AXIS and len(body):
        body[:, 0] = change_up_axis(body[:, 0], AMASS_UP_AXIS, output_up_axis)
    return AmassSequence(path=path, poses=body.numpy().astype(np.float32), frames=frames)


def find_amass_files(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Path]:
    """
    The `.npz` files under the given folders (searched recursively, through linked sub-folders too) and files,
    sorted, without duplicates.

    Raises:
        `FileNotFoundError`: if a path does not exist, or if no `.npz` file is found at all.
        `ValueError`: for a file that is not an `.npz` archive.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    paths = [Path(path) for path in paths]
    if not paths:
        raise ValueError("`paths` is empty; give at least one AMASS folder or .npz file.")
    files = set()
    for path in paths:
        if path.is_dir():
            files.update(files_under(path, ".npz"))
        elif path.is_file():
            if path.suffix != ".npz":
                raise ValueError(f"AMASS files are .npz archives; {str(path)!r} is not one.")
            files.add(path)
        else:
            raise FileNotFoundError(
                f"AMASS path not found: {str(path)!r}. Point it at a folder of AMASS .npz sequences "
                f"(downloaded from https://amass.is.tue.mpg.de) or at single .npz files."
            )
    if not files:
        raise FileNotFoundError(
            f"No .npz file under {[str(path) for path in paths]}. Expected AMASS sequences (`*.npz` with a "
            f"`{POSES_KEY}` array) in these folders or their sub-folders."
        )
    return sorted(files)


def load_amass_poses(
    paths: str | os.PathLike | Sequence[str | os.PathLike],
    target_fps: float | None = None,
    heading_normalization: bool = True,
    output_up_axis: str = AMASS_UP_AXIS,
) -> tuple[np.ndarray, list[str], np.ndarray]:
    """
    The body poses of every AMASS sequence under `paths`, concatenated.

    Args:
        paths (`str`, `os.PathLike` or a sequence of them):
            Folders (searched recursively) and `.npz` files.
        target_fps, heading_normalization, output_up_axis:
            As in [`read_amass_sequence`].

    Returns:
        A tuple `(poses, sequences, frames)`: `poses` `(N, 22, 3)` float32 axis-angle; `sequences` the
        source file of each pose (a path string); `frames` `(N,)` the frame index within its file.

    Raises:
        `FileNotFoundError`: for a missing path, or when no file under `paths` holds poses.
    """
    _axis_index(output_up_axis, "output_up_axis", UP_AXES)
    files = find_amass_files(paths)
    all_poses, sequences, all_frames, skipped = [], [], [], []
    for file in files:
        sequence = read_amass_sequence(file, target_fps, heading_normalization, output_up_axis)
        if sequence is None:
            skipped.append(file)
            continue
        all_poses.append(sequence.poses)
        all_frames.append(sequence.frames)
        sequences.extend([str(file)] * len(sequence.poses))
    if skipped:
        logger.warning(
            f"Skipped {len(skipped)} of {len(files)} .npz files that hold no `{POSES_KEY}` array "
            f"(e.g. {str(skipped[0])!r}); AMASS keeps body shapes in such files."
        )
    if not all_poses or not sum(len(poses) for poses in all_poses):
        raise FileNotFoundError(
            f"None of the {len(files)} .npz files under {[str(Path(p)) for p in _as_list(paths)]} holds "
            f"poses (a `{POSES_KEY}` array with frames). Expected AMASS motion sequences."
        )
    poses = np.concatenate(all_poses)
    logger.info(f"Read {len(poses)} poses from {len(files) - len(skipped)} AMASS sequences.")
    return poses, sequences, np.concatenate(all_frames)


def _as_list(paths) -> list:
    return [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)


def build_amass_dataset(
    paths: str | os.PathLike | Sequence[str | os.PathLike],
    target_fps: float | None = None,
    heading_normalization: bool = True,
    output_up_axis: str = AMASS_UP_AXIS,
):
    """
    A `datasets.Dataset` of the body poses under `paths`.

    Columns: `pose` (`(22, 3)` float32 axis-angle), `sequence` (source file) and `frame` (frame index in
    that file, before subsampling), so that a pose can be traced back to AMASS.

    Args:
        paths, target_fps, heading_normalization, output_up_axis:
            As in [`load_amass_poses`].

    Returns:
        `datasets.Dataset`.

    Example:

    ```python
    >>> dataset = build_amass_dataset("~/data/AMASS/CMU", target_fps=30)  # doctest: +SKIP
    >>> dataset[0]["pose"].shape  # doctest: +SKIP
    (22, 3)
    ```
    """
    poses, sequences, frames = load_amass_poses(paths, target_fps, heading_normalization, output_up_axis)
    features = datasets.Features(
        {
            "pose": datasets.Array2D(shape=(NUM_BODY_JOINTS, 3), dtype="float32"),
            "sequence": datasets.Value("string"),
            "frame": datasets.Value("int64"),
        }
    )
    return datasets.Dataset.from_dict(
        {"pose": poses, "sequence": sequences, "frame": frames}, features=features
    )


__all__ = [
    "AMASS_UP_AXIS",
    "SMPL_UP_AXIS",
    "AmassSequence",
    "build_amass_dataset",
    "change_pose_up_axis",
    "change_up_axis",
    "find_amass_files",
    "heading_angle",
    "load_amass_poses",
    "normalize_heading",
    "read_amass_sequence",
    "rotation_from_tait_bryan",
    "subsample_frame_indices",
    "tait_bryan_angles",
]
