"""Rotation conversions (axis-angle, rotation matrix, 6D) and validation of user poses.

The 6D representation is that of Zhou et al., "On the Continuity of Rotation Representations in Neural
Networks" (CVPR 2019), in PyTorch3D's convention: the first two ROWS of the rotation matrix, flattened
row-major; back to a matrix by Gram-Schmidt on those rows.

User poses enter the pose encoders through [`to_rotation_6d`], which takes matrices and 6D as given (no
Gram-Schmidt), as the published UniPose model does; [`to_rotation_matrix`] and [`to_axis_angle`], for
display, bodies and metrics, bring them onto exact rotations.
"""

import math
from typing import Optional, Sequence, Union

import numpy as np
import torch

from .skeleton import BODY_MIRROR_INDEX, NUM_BODY_JOINTS, SMPLH_MIRROR_INDEX


# A rotation matrix is accepted when max |R R^T - I| and |det R - 1| are both at most this, and 6D input to
# `to_rotation_6d` when max |A A^T - I| of its two rows A is. Real rotations are not exact: SMPL fits and
# AMASS stored in float32, and the UniPose release's own demo poses (`demo_smpl_rotmat_*.npy`), deviate by a
# few 1e-3. A matrix that is no rotation at all (scaled, sheared, a reflection, random) is off by far more.
ORTHONORMAL_ATOL = 1e-2
# A 6D rotation is degenerate when a row is shorter than this, or when the sine of the angle between its
# two rows is below it: Gram-Schmidt has no stable answer then.
DEGENERATE_6D_EPS = 1e-6
# Below this angle (radians) the Rodrigues coefficients use their Taylor series: sin(t)/t and
# (1 - cos t)/t^2 are 0/0 at t = 0, and the series keeps values and gradients finite there.
SMALL_ANGLE = 1e-3
# Longest axis-angle vector (radians) read as a rotation: a few hundred turns. Far beyond it the angle modulo 2 pi
# is lost to floating-point rounding (and from about 1e19 in float32 the vector's length overflows), so larger
# values are refused as data errors instead of becoming meaningless or NaN rotations.
MAX_AXIS_ANGLE = 1e3

PoseLike = Union[torch.Tensor, np.ndarray, Sequence]


def _skew(vector: torch.Tensor) -> torch.Tensor:
    """Cross-product matrix `[v]_x` (so that `[v]_x @ w = v x w`): `(..., 3)` -> `(..., 3, 3)`."""
    x, y, z = vector.unbind(-1)
    zero = torch.zeros_like(x)
    rows = (zero, -z, y, z, zero, -x, -y, x, zero)
    return torch.stack(rows, dim=-1).unflatten(-1, (3, 3))


def axis_angle_to_matrix(axis_angle: torch.Tensor) -> torch.Tensor:
    """
    Rotation matrices from axis-angle vectors (Rodrigues' formula).

    Args:
        axis_angle (`torch.Tensor` of shape `(..., 3)`):
            Rotation axis scaled by the angle in radians.

    Returns:
        `torch.Tensor` of shape `(..., 3, 3)`: the rotation matrices.
    """
    angle_sq = (axis_angle * axis_angle).sum(-1, keepdim=True)[..., None]  # (..., 1, 1)
    small = angle_sq < SMALL_ANGLE**2
    # The exact branch sees a dummy angle where the series is used, so that no 0/0 reaches backward.
    angle = torch.sqrt(torch.where(small, torch.ones_like(angle_sq), angle_sq))
    sin_over_angle = torch.where(small, 1 - angle_sq / 6 + angle_sq**2 / 120, torch.sin(angle) / angle)
    # 2 sin^2(t/2) / t^2 equals (1 - cos t) / t^2 without cancellation at small t.
    one_minus_cos_over_angle_sq = torch.where(
        small, 0.5 - angle_sq / 24 + angle_sq**2 / 720, 2 * torch.sin(angle / 2) ** 2 / angle**2
    )
    skew = _skew(axis_angle)
    identity = torch.eye(3, dtype=axis_angle.dtype, device=axis_angle.device)
    return identity + sin_over_angle * skew + one_minus_cos_over_angle_sq * (skew @ skew)


def elementary_rotation(angle: torch.Tensor, axis: str) -> torch.Tensor:
    """
    Rotations by `angle` radians about one coordinate axis.

    Args:
        angle (`torch.Tensor` of shape `(...)`):
            Angles in radians (right-hand rule).
        axis (`str`):
            `"x"`, `"y"` or `"z"`.

    Returns:
        `torch.Tensor` of shape `(..., 3, 3)`.
    """
    cos, sin = torch.cos(angle), torch.sin(angle)
    zero, one = torch.zeros_like(angle), torch.ones_like(angle)
    entries = {
        "x": (one, zero, zero, zero, cos, -sin, zero, sin, cos),
        "y": (cos, zero, sin, zero, one, zero, -sin, zero, cos),
        "z": (cos, -sin, zero, sin, cos, zero, zero, zero, one),
    }
    if axis not in entries:
        raise ValueError(f"`axis` must be one of {list(entries)}, got {axis!r}.")
    return torch.stack(entries[axis], dim=-1).unflatten(-1, (3, 3))


def _check_euler_order(order: str) -> None:
    if not isinstance(order, str) or sorted(order) != ["x", "y", "z"]:
        raise ValueError(f"`order` must be a permutation of 'xyz' (such as 'zyx'), got {order!r}.")


def euler_angles_to_matrix(angles: torch.Tensor, order: str) -> torch.Tensor:
    """
    Rotation matrices from intrinsic Euler angles: `R = R_a(angles[..., 0]) @ R_b(angles[..., 1]) @
    R_c(angles[..., 2])` for `order = "abc"` (the convention of scipy's `Rotation.from_euler` with an upper-case
    sequence).

    Args:
        angles (`torch.Tensor` of shape `(..., 3)`):
            Radians, in the order of `order`.
        order (`str`):
            A permutation of `"xyz"`.

    Returns:
        `torch.Tensor` of shape `(..., 3, 3)`.
    """
    _check_euler_order(order)
    first, second, third = (elementary_rotation(angles[..., n], axis) for n, axis in enumerate(order))
    return first @ second @ third


def matrix_to_euler_angles(matrix: torch.Tensor, order: str) -> torch.Tensor:
    """
    Intrinsic Euler angles of rotation matrices, the inverse of [`euler_angles_to_matrix`].

    Args:
        matrix (`torch.Tensor` of shape `(..., 3, 3)`):
            Rotation matrices.
        order (`str`):
            A permutation of `"xyz"`.

    Returns:
        `torch.Tensor` of shape `(..., 3)`: radians in the order of `order`, the middle one in `[-pi/2, pi/2]`
        and the other two in `(-pi, pi]`.
    """
    _check_euler_order(order)
    i, j, k = ("xyz".index(axis) for axis in order)
    # +1 for a cyclic order (xyz, yzx, zxy), -1 otherwise: the sign pattern of the matrix entries.
    parity = 1.0 if (j - i) % 3 == 1 else -1.0
    first = torch.atan2(-parity * matrix[..., j, k], matrix[..., k, k])
    second = torch.asin((parity * matrix[..., i, k]).clamp(-1.0, 1.0))
    third = torch.atan2(-parity * matrix[..., i, j], matrix[..., i, i])
    return torch.stack((first, second, third), dim=-1)


def _matrix_to_quaternion(matrix: torch.Tensor) -> torch.Tensor:
    """
    Unit quaternions `(w, x, y, z)` with `w >= 0` from rotation matrices `(..., 3, 3)` -> `(..., 4)`.

    Shepperd's method: each of the four components can be recovered from the diagonal, and the others
    from off-diagonal sums divided by it. Dividing by the largest of the four (at least 1/2) keeps every
    branch well conditioned, including the angle-pi case where `w` vanishes.
    """
    m = matrix
    m00, m01, m02 = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
    m10, m11, m12 = m[..., 1, 0], m[..., 1, 1], m[..., 1, 2]
    m20, m21, m22 = m[..., 2, 0], m[..., 2, 1], m[..., 2, 2]
    # 4 w^2, 4 x^2, 4 y^2, 4 z^2; they sum to 4, so the largest is at least 1.
    four_squares = torch.stack(
        (1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22), dim=-1
    )
    # Row k holds 4 q_k * (w, x, y, z).
    scaled = torch.stack(
        (
            torch.stack((four_squares[..., 0], m21 - m12, m02 - m20, m10 - m01), dim=-1),
            torch.stack((m21 - m12, four_squares[..., 1], m01 + m10, m02 + m20), dim=-1),
            torch.stack((m02 - m20, m01 + m10, four_squares[..., 2], m12 + m21), dim=-1),
            torch.stack((m10 - m01, m02 + m20, m12 + m21, four_squares[..., 3]), dim=-1),
        ),
        dim=-2,
    )  # (..., 4, 4)
    # The floor only touches branches that are not selected (the selected one is >= 1); it keeps their
    # square roots, and so the gradients through `gather`, finite.
    candidates = scaled / (2 * torch.sqrt(four_squares.clamp_min(0.1)))[..., None]
    best = four_squares.argmax(dim=-1)[..., None, None].expand(*four_squares.shape[:-1], 1, 4)
    quaternion = candidates.gather(-2, best).squeeze(-2)
    quaternion = torch.where(quaternion[..., :1] < 0, -quaternion, quaternion)
    return quaternion / quaternion.norm(dim=-1, keepdim=True)


def matrix_to_axis_angle(matrix: torch.Tensor) -> torch.Tensor:
    """
    Axis-angle vectors from rotation matrices, with angles in `[0, pi]`.

    Goes through a unit quaternion (Shepperd's method) and recovers the angle with `atan2`, which stays
    accurate at angle 0, at pi and near both. At exactly pi the axis sign is arbitrary (both describe the
    same rotation).

    Args:
        matrix (`torch.Tensor` of shape `(..., 3, 3)`):
            Rotation matrices.

    Returns:
        `torch.Tensor` of shape `(..., 3)`: axis times angle in radians.
    """
    quaternion = _matrix_to_quaternion(matrix)
    w, vector = quaternion[..., :1], quaternion[..., 1:]
    sin_half = vector.norm(dim=-1, keepdim=True)
    half_angle = torch.atan2(sin_half, w)  # in [0, pi/2] since w >= 0
    small = half_angle < SMALL_ANGLE / 2
    # angle / sin(angle / 2) = 2 h / sin h, with its series 2 (1 + h^2 / 6) near h = 0.
    safe_sin_half = torch.where(small, torch.ones_like(sin_half), sin_half)
    scale = torch.where(small, 2 + half_angle**2 / 3, 2 * half_angle / safe_sin_half)
    return vector * scale


def matrix_to_rotation_6d(matrix: torch.Tensor) -> torch.Tensor:
    """
    6D rotations: the first two rows of each matrix, flattened row-major.

    Args:
        matrix (`torch.Tensor` of shape `(..., 3, 3)`):
            Rotation matrices.

    Returns:
        `torch.Tensor` of shape `(..., 6)`: `(R00, R01, R02, R10, R11, R12)`.
    """
    return matrix[..., :2, :].flatten(-2)


def rotation_6d_to_matrix(rotation_6d: torch.Tensor) -> torch.Tensor:
    """
    Rotation matrices from 6D rotations by Gram-Schmidt on the two rows.

    Any pair of non-parallel rows gives an orthonormal matrix with determinant +1; the first row keeps its
    direction. (Degenerate input is not checked here, so that this stays a cheap differentiable map;
    `to_rotation_6d` rejects it for user data.)

    Args:
        rotation_6d (`torch.Tensor` of shape `(..., 6)`):
            First two rows of each matrix, flattened row-major; need not be orthonormal.

    Returns:
        `torch.Tensor` of shape `(..., 3, 3)`: rotation matrices whose first two rows span the same plane.
    """
    row1, row2 = rotation_6d[..., :3], rotation_6d[..., 3:]
    row1 = torch.nn.functional.normalize(row1, dim=-1)
    row2 = row2 - (row1 * row2).sum(-1, keepdim=True) * row1
    row2 = torch.nn.functional.normalize(row2, dim=-1)
    row3 = torch.linalg.cross(row1, row2, dim=-1)
    return torch.stack((row1, row2, row3), dim=-2)


def axis_angle_to_rotation_6d(axis_angle: torch.Tensor) -> torch.Tensor:
    """
    6D rotations from axis-angle vectors.

    Args:
        axis_angle (`torch.Tensor` of shape `(..., 3)`):
            Rotation axis scaled by the angle in radians.

    Returns:
        `torch.Tensor` of shape `(..., 6)`.
    """
    return matrix_to_rotation_6d(axis_angle_to_matrix(axis_angle))


def rotation_6d_to_axis_angle(rotation_6d: torch.Tensor) -> torch.Tensor:
    """
    Axis-angle vectors (angles in `[0, pi]`) from 6D rotations.

    Args:
        rotation_6d (`torch.Tensor` of shape `(..., 6)`):
            First two rows of each matrix, flattened row-major.

    Returns:
        `torch.Tensor` of shape `(..., 3)`.
    """
    return matrix_to_axis_angle(rotation_6d_to_matrix(rotation_6d))


# ----------------------------------------------------------------------------------------------------
# User poses in any format
# ----------------------------------------------------------------------------------------------------


def _as_float_tensor(poses: PoseLike, name: str) -> torch.Tensor:
    """A float32 (or float64, when given float64) tensor from a tensor, an array or nested lists."""
    if isinstance(poses, torch.Tensor):
        tensor = poses
    elif isinstance(poses, (np.ndarray, list, tuple)):
        try:
            array = np.asarray(poses)
        except (ValueError, TypeError) as error:
            raise ValueError(
                f"`{name}` could not be read as a numeric array (ragged nested lists?): {error}"
            ) from error
        if array.dtype.kind not in "iuf":
            example = f" such as {array.flat[0]!r}" if array.size else ""
            raise TypeError(f"`{name}` must hold real numbers, got elements of dtype {array.dtype}{example}.")
        tensor = torch.from_numpy(np.ascontiguousarray(array))
    else:
        raise TypeError(
            f"`{name}` must be a torch.Tensor, a numpy array or a nested list of numbers, "
            f"got {type(poses).__name__}."
        )
    if tensor.dtype == torch.bool or tensor.is_complex():
        raise TypeError(f"`{name}` must hold real numbers, got a tensor of dtype {tensor.dtype}.")
    return tensor.to(torch.float64 if tensor.dtype == torch.float64 else torch.float32)


def _parse_poses(poses: PoseLike, num_joints: int, name: str) -> tuple[torch.Tensor, str]:
    """
    Reads user poses into `(B, J, 3)` axis-angle, `(B, J, 3, 3)` matrices or `(B, J, 6)` 6D.

    Returns the tensor and its kind, one of `"axis_angle"`, `"matrix"`, `"rotation_6d"`. Where two layouts
    share a shape (possible only for J = 2 or 3) the unbatched reading wins.
    """
    if isinstance(num_joints, bool) or not isinstance(num_joints, int) or num_joints < 1:
        raise ValueError(f"`num_joints` must be a positive integer, got {num_joints!r}.")
    tensor = _as_float_tensor(poses, name)
    shape, joints = tuple(tensor.shape), num_joints
    if shape == (joints * 3,):
        tensor, kind = tensor.reshape(1, joints, 3), "axis_angle"
    elif shape == (joints, 3):
        tensor, kind = tensor[None], "axis_angle"
    elif shape == (joints, 6):
        tensor, kind = tensor[None], "rotation_6d"
    elif shape == (joints, 3, 3):
        tensor, kind = tensor[None], "matrix"
    elif len(shape) == 2 and shape[1] == joints * 3:
        tensor, kind = tensor.reshape(shape[0], joints, 3), "axis_angle"
    elif len(shape) == 3 and shape[1:] == (joints, 3):
        kind = "axis_angle"
    elif len(shape) == 3 and shape[1:] == (joints, 6):
        kind = "rotation_6d"
    elif len(shape) == 4 and shape[1:] == (joints, 3, 3):
        kind = "matrix"
    else:
        raise ValueError(
            f"`{name}` has shape {shape}, which is no pose layout for {joints} joints. Expected axis-angle "
            f"({joints * 3},), ({joints}, 3), rotation matrices ({joints}, 3, 3) or 6D ({joints}, 6), "
            f"optionally with a leading batch axis, e.g. (B, {joints}, 3)."
        )
    return tensor, kind


def _check_finite(tensor: torch.Tensor, name: str) -> None:
    finite = torch.isfinite(tensor)
    if not bool(finite.all()):
        bad = (~finite).nonzero()
        first = tuple(bad[0].tolist())
        raise ValueError(
            f"`{name}` contains {len(bad)} NaN or infinite value(s); the first is {tensor[first].item()} at "
            f"index {first} (of the pose batch read as shape {tuple(tensor.shape)})."
        )


def _check_axis_angle(axis_angle: torch.Tensor, name: str) -> None:
    """Raises if any `(B, J, 3)` rotation vector is longer than `MAX_AXIS_ANGLE` radians."""
    with torch.no_grad():
        angles = axis_angle.double().norm(dim=-1)
        if bool((angles > MAX_AXIS_ANGLE).any()):
            batch, joint = divmod(int(angles.argmax()), angles.shape[1])
            raise ValueError(
                f"`{name}` holds an axis-angle rotation of {angles[batch, joint].item():.3g} radians at pose "
                f"{batch}, joint {joint}; expected angles within {MAX_AXIS_ANGLE:g} radians (values this large "
                "are not rotations: check the units and the data)."
            )


def _orthonormality_error(rows: torch.Tensor) -> torch.Tensor:
    """`max |A A^T - I|` of each set of rows `A`: `(..., k, 3)` -> `(...)`."""
    identity = torch.eye(rows.shape[-2], dtype=rows.dtype, device=rows.device)
    return (rows @ rows.transpose(-1, -2) - identity).abs().amax(dim=(-1, -2))


def _check_rotation_matrices(matrix: torch.Tensor, name: str, atol: float) -> None:
    """Raises if any `(B, J, 3, 3)` matrix is not orthonormal with determinant +1 within `atol`."""
    with torch.no_grad():
        orthogonality_error = _orthonormality_error(matrix)
        determinant = torch.linalg.det(matrix)
        for error, label in (
            (orthogonality_error, "max |R R^T - I|"),
            ((determinant - 1).abs(), "|det R - 1|"),
        ):
            if bool((error > atol).any()):
                batch, joint = divmod(int(error.argmax()), error.shape[1])
                hint = " (det -1 is a reflection, not a rotation)" if label.startswith("|det") else ""
                raise ValueError(
                    f"`{name}` holds a matrix that is not a rotation: at pose {batch}, joint {joint}, "
                    f"{label} = {error[batch, joint].item():.3g} > atol {atol:g} "
                    f"(det = {determinant[batch, joint].item():.6g}){hint}. Expected orthonormal matrices "
                    f"with determinant +1."
                )


def _check_rotation_6d(rotation_6d: torch.Tensor, name: str) -> None:
    """Raises if any `(B, J, 6)` rotation has a zero row or two parallel rows."""
    with torch.no_grad():
        row1, row2 = rotation_6d[..., :3], rotation_6d[..., 3:]
        norm1, norm2 = row1.norm(dim=-1), row2.norm(dim=-1)
        cross = torch.linalg.cross(row1, row2, dim=-1).norm(dim=-1)
        sine = cross / (norm1 * norm2).clamp_min(torch.finfo(rotation_6d.dtype).tiny)
        degenerate = (norm1 < DEGENERATE_6D_EPS) | (norm2 < DEGENERATE_6D_EPS) | (sine < DEGENERATE_6D_EPS)
        if bool(degenerate.any()):
            batch, joint = degenerate.nonzero()[0].tolist()
            raise ValueError(
                f"`{name}` holds a degenerate 6D rotation at pose {batch}, joint {joint}: "
                f"{rotation_6d[batch, joint].tolist()} (row norms {norm1[batch, joint].item():.3g} and "
                f"{norm2[batch, joint].item():.3g}, sine between rows {sine[batch, joint].item():.3g}). "
                f"Expected two non-zero, non-parallel rows."
            )


def _check_orthonormal_6d(rotation_6d: torch.Tensor, name: str, atol: float) -> None:
    """Raises if the two rows of any `(B, J, 6)` rotation are not orthonormal within `atol`. (Their third row
    would be their cross product, so the determinant needs no check.)"""
    with torch.no_grad():
        error = _orthonormality_error(rotation_6d.unflatten(-1, (2, 3)))
        if bool((error > atol).any()):
            batch, joint = divmod(int(error.argmax()), error.shape[1])
            raise ValueError(
                f"`{name}` holds a 6D rotation whose rows are not orthonormal: at pose {batch}, joint "
                f"{joint}, max |A A^T - I| of its two rows A = {error[batch, joint].item():.3g} > atol "
                f"{atol:g} ({rotation_6d[batch, joint].tolist()}). The pose encoder reads 6D as given, so it "
                "must be the first two rows of a rotation matrix; project other 6D onto rotations first, "
                "e.g. with `to_rotation_6d(to_rotation_matrix(poses))`."
            )


def _read_poses(poses: PoseLike, num_joints: int, name: str, atol: float) -> tuple[torch.Tensor, str]:
    if not (isinstance(atol, (int, float)) and not isinstance(atol, bool) and 0 < atol < math.inf):
        raise ValueError(f"`atol` must be a positive finite number, got {atol!r}.")
    tensor, kind = _parse_poses(poses, num_joints, name)
    _check_finite(tensor, name)
    if kind == "matrix":
        _check_rotation_matrices(tensor, name, atol)
    elif kind == "rotation_6d":
        _check_rotation_6d(tensor, name)
    else:
        _check_axis_angle(tensor, name)
    return tensor, kind


def to_rotation_6d(
    poses: PoseLike, num_joints: int = NUM_BODY_JOINTS, name: str = "poses", atol: float = ORTHONORMAL_ATOL
) -> torch.Tensor:
    """
    6D poses, as the pose encoders read them, from user poses in any supported format, after validation.

    Axis-angle is converted exactly (Rodrigues, then the first two rows). Rotation matrices and 6D are taken
    as given, not re-orthonormalised: the 6D of a matrix is its raw first two rows, flattened row-major, and
    6D input is returned unchanged (as a copy). This is how the published UniPose model encodes poses, and
    real rotations (float32 SMPL fits, AMASS, the release's demo poses) are a few 1e-3 away from exact ones:
    projecting them would hand the encoder slightly different numbers from those it was trained and
    published with. Both must be within `atol` of a rotation. Every format of an exact rotation gives the
    same 6D (up to rounding); [`to_rotation_matrix`] gives exact rotations (Gram-Schmidt on the two rows).

    Args:
        poses (`torch.Tensor`, `np.ndarray` or nested lists):
            Axis-angle of shape `(J * 3,)` or `(J, 3)`, rotation matrices `(J, 3, 3)` or 6D `(J, 6)`, each
            optionally with a leading batch axis. float64 input stays float64; anything else becomes
            float32. Torch input keeps its device and its autograd graph.
        num_joints (`int`, *optional*, defaults to 22):
            Number of joints J.
        name (`str`, *optional*, defaults to `"poses"`):
            Argument name used in error messages.
        atol (`float`, *optional*, defaults to `ORTHONORMAL_ATOL`):
            Tolerance on `max |R R^T - I|` and `|det R - 1|` for rotation-matrix input, and on
            `max |A A^T - I|` of the two rows `A` of 6D input.

    Returns:
        `torch.Tensor` of shape `(batch, num_joints, 6)`.

    Raises:
        `TypeError`: if `poses` is not a tensor, an array or nested lists of real numbers.
        `ValueError`: for an unknown shape, NaN or infinite values, matrices that are not rotations, or
            6D rotations that are degenerate or whose rows are not orthonormal.

    Example:

    ```python
    >>> import torch
    >>> to_rotation_6d(torch.zeros(66)).shape
    torch.Size([1, 22, 6])
    ```
    """
    tensor, kind = _read_poses(poses, num_joints, name, atol)
    if kind == "axis_angle":
        return axis_angle_to_rotation_6d(tensor)
    if kind == "matrix":
        tensor = matrix_to_rotation_6d(tensor)
    else:
        # Matrices were checked against `atol` already; 6D is passed on as given only if it is as close.
        _check_orthonormal_6d(tensor, name, atol)
    # A copy: the input may share memory with the caller's tensor or array.
    return tensor.clone(memory_format=torch.contiguous_format)


def to_rotation_matrix(
    poses: PoseLike, num_joints: int = NUM_BODY_JOINTS, name: str = "poses", atol: float = ORTHONORMAL_ATOL
) -> torch.Tensor:
    """
    Rotation matrices from user poses in any format accepted by [`to_rotation_6d`] (same validation, except
    that 6D needs only two non-parallel rows): exact rotations, matrices and 6D being brought onto one by
    Gram-Schmidt on their first two rows.

    Returns:
        `torch.Tensor` of shape `(batch, num_joints, 3, 3)`.
    """
    tensor, kind = _read_poses(poses, num_joints, name, atol)
    if kind == "axis_angle":
        return axis_angle_to_matrix(tensor)
    if kind == "matrix":
        tensor = matrix_to_rotation_6d(tensor)
    return rotation_6d_to_matrix(tensor)


def to_axis_angle(
    poses: PoseLike, num_joints: int = NUM_BODY_JOINTS, name: str = "poses", atol: float = ORTHONORMAL_ATOL
) -> torch.Tensor:
    """
    Axis-angle poses from user poses in any format accepted by [`to_rotation_6d`] (same validation, except
    that 6D needs only two non-parallel rows). Matrices and 6D are brought onto rotations by Gram-Schmidt
    first.

    Axis-angle input is returned as given (a copy, reshaped), not wrapped into `[0, pi]`.

    Returns:
        `torch.Tensor` of shape `(batch, num_joints, 3)`.
    """
    tensor, kind = _read_poses(poses, num_joints, name, atol)
    if kind == "axis_angle":
        return tensor.clone()
    if kind == "matrix":
        tensor = matrix_to_rotation_6d(tensor)
    return rotation_6d_to_axis_angle(tensor)


def mirror_axis_angle(
    axis_angle: Union[torch.Tensor, np.ndarray], mirror_index: Optional[Sequence[int]] = None
) -> Union[torch.Tensor, np.ndarray]:
    """
    Mirror poses across the body's sagittal plane (x = 0): left and right joints swap, and each rotation R
    becomes M R M with M = diag(-1, 1, 1), which for axis-angle negates the y and z components.

    Mirroring twice gives the input back.

    Args:
        axis_angle (`torch.Tensor` or `np.ndarray` of shape `(..., J, 3)`):
            Axis-angle poses in SMPL axes (x = body's left).
        mirror_index (sequence of `int` of length J, *optional*):
            Index of each joint's left/right counterpart. Defaults to the SMPL-H body map for J = 22 and
            the full SMPL-H map for J = 52.

    Returns:
        Mirrored poses, of the same type, shape and dtype as `axis_angle`.
    """
    if not isinstance(axis_angle, (torch.Tensor, np.ndarray)):
        raise TypeError(
            f"`axis_angle` must be a torch.Tensor or a numpy array, got {type(axis_angle).__name__}."
        )
    shape = tuple(axis_angle.shape)
    if len(shape) < 2 or shape[-1] != 3:
        raise ValueError(f"`axis_angle` must have shape (..., J, 3), got {shape}.")
    num_joints = shape[-2]
    if mirror_index is None:
        defaults = {len(BODY_MIRROR_INDEX): BODY_MIRROR_INDEX, len(SMPLH_MIRROR_INDEX): SMPLH_MIRROR_INDEX}
        if num_joints not in defaults:
            raise ValueError(
                f"`mirror_index` is required for {num_joints} joints; defaults exist only for "
                f"{sorted(defaults)} joints (`axis_angle` has shape {shape})."
            )
        mirror_index = defaults[num_joints]
    mirror_index = [int(i) for i in mirror_index]
    if sorted(mirror_index) != list(range(num_joints)):
        raise ValueError(
            f"`mirror_index` must be a permutation of range({num_joints}) to match `axis_angle` of shape "
            f"{shape}, got {mirror_index}."
        )
    flip = (1.0, -1.0, -1.0)
    if isinstance(axis_angle, torch.Tensor):
        flip = torch.tensor(flip, dtype=axis_angle.dtype, device=axis_angle.device)
    else:
        flip = np.asarray(flip, dtype=axis_angle.dtype)
    return axis_angle[..., mirror_index, :] * flip


def mean_pose(poses: np.ndarray) -> np.ndarray:
    """The chordal mean of each joint's rotation: `(N, J, 3)` axis-angle -> `(J, 3)`."""
    summed = axis_angle_to_matrix(torch.as_tensor(np.asarray(poses), dtype=torch.float64)).sum(0)  # (J, 3, 3)
    u, _, vh = torch.linalg.svd(summed)
    # The nearest rotation to the sum (a reflection is turned into the nearest proper rotation).
    fix = torch.ones(summed.shape[:-1], dtype=summed.dtype)
    fix[..., -1] = torch.sign(torch.linalg.det(u @ vh))
    return matrix_to_axis_angle(u @ torch.diag_embed(fix) @ vh).numpy().astype(np.float32)


__all__ = [
    "DEGENERATE_6D_EPS",
    "MAX_AXIS_ANGLE",
    "ORTHONORMAL_ATOL",
    "SMALL_ANGLE",
    "axis_angle_to_matrix",
    "axis_angle_to_rotation_6d",
    "elementary_rotation",
    "euler_angles_to_matrix",
    "matrix_to_euler_angles",
    "matrix_to_axis_angle",
    "matrix_to_rotation_6d",
    "mean_pose",
    "mirror_axis_angle",
    "rotation_6d_to_axis_angle",
    "rotation_6d_to_matrix",
    "to_axis_angle",
    "to_rotation_6d",
    "to_rotation_matrix",
]
