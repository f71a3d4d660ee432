import ast
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from unipose import rotations
from unipose.rotations import (
    ORTHONORMAL_ATOL,
    SMALL_ANGLE,
    axis_angle_to_matrix,
    axis_angle_to_rotation_6d,
    elementary_rotation,
    euler_angles_to_matrix,
    matrix_to_axis_angle,
    matrix_to_euler_angles,
    matrix_to_rotation_6d,
    mirror_axis_angle,
    rotation_6d_to_axis_angle,
    rotation_6d_to_matrix,
    to_axis_angle,
    to_rotation_6d,
    to_rotation_matrix,
)
from unipose.skeleton import BODY_MIRROR_INDEX, SMPLH_MIRROR_INDEX
from unipose.testing import near_rotation_matrices


def rodrigues(axis_angle: np.ndarray) -> np.ndarray:
    """Reference: R = cos t I + sin t [k]x + (1 - cos t) k k^T for one axis-angle vector."""
    angle = np.linalg.norm(axis_angle)
    if angle == 0:
        return np.eye(3)
    kx, ky, kz = axis_angle / angle
    cross = np.array([[0, -kz, ky], [kz, 0, -kx], [-ky, kx, 0]])
    k = np.array([kx, ky, kz])
    return math.cos(angle) * np.eye(3) + math.sin(angle) * cross + (1 - math.cos(angle)) * np.outer(k, k)


def random_axis_angle(shape, max_angle=math.pi, dtype=torch.float64, seed=0):
    generator = torch.Generator().manual_seed(seed)
    axis = torch.randn(*shape, 3, generator=generator, dtype=torch.float64)
    axis = axis / axis.norm(dim=-1, keepdim=True)
    angle = torch.rand(*shape, 1, generator=generator, dtype=torch.float64) * max_angle
    return (axis * angle).to(dtype)


def unit_axis(dtype=torch.float64):
    return torch.nn.functional.normalize(torch.tensor([0.3, -0.5, 0.8], dtype=dtype), dim=-1)


# ---------------------------------------------------------------- axis-angle <-> matrix


def test_axis_angle_to_matrix_matches_rodrigues_and_scipy():
    axis_angle = random_axis_angle((200,), max_angle=2 * math.pi)
    matrix = axis_angle_to_matrix(axis_angle).numpy()
    expected = np.stack([rodrigues(a) for a in axis_angle.numpy()])
    np.testing.assert_allclose(matrix, expected, atol=1e-13)
    np.testing.assert_allclose(matrix, Rotation.from_rotvec(axis_angle.numpy()).as_matrix(), atol=1e-13)


def test_elementary_rotations_match_scipy_and_name_a_bad_axis():
    angles = torch.linspace(-4.0, 4.0, 9, dtype=torch.float64)
    for axis in "xyz":
        expected = Rotation.from_euler(axis, angles.numpy()[:, None]).as_matrix()
        np.testing.assert_allclose(elementary_rotation(angles, axis).numpy(), expected, atol=1e-13)
    with pytest.raises(ValueError, match=r"`axis` must be one of \['x', 'y', 'z'\], got 'up'"):
        elementary_rotation(angles, "up")


@pytest.mark.parametrize("order", ["xyz", "xzy", "yxz", "yzx", "zxy", "zyx"])
def test_euler_angles_match_scipys_intrinsic_convention_and_invert(order):
    rng = np.random.default_rng(0)
    angles = rng.uniform(-math.pi, math.pi, size=(256, 3))
    angles[:, 1] /= 2.2  # the middle angle within (-pi/2, pi/2), where the inverse is unique
    matrix = euler_angles_to_matrix(torch.from_numpy(angles), order)
    expected = Rotation.from_euler(order.upper(), angles).as_matrix()  # upper case: intrinsic
    np.testing.assert_allclose(matrix.numpy(), expected, atol=1e-13)
    np.testing.assert_allclose(matrix_to_euler_angles(matrix, order).numpy(), angles, atol=1e-12)
    with pytest.raises(ValueError, match=r"`order` must be a permutation of 'xyz' \(such as 'zyx'\), got 'xxz'"):
        euler_angles_to_matrix(torch.from_numpy(angles), "xxz")


def test_matrix_to_axis_angle_matches_scipy():
    matrix = Rotation.random(500, random_state=0).as_matrix()
    axis_angle = matrix_to_axis_angle(torch.from_numpy(matrix))
    np.testing.assert_allclose(axis_angle.numpy(), Rotation.from_matrix(matrix).as_rotvec(), atol=1e-12)
    assert bool((axis_angle.norm(dim=-1) <= math.pi + 1e-12).all())


@pytest.mark.parametrize(
    "angle",
    [0.0, 1e-12, 1e-8, 1e-6, 1e-4, SMALL_ANGLE * 0.999, SMALL_ANGLE * 1.001, 0.5, 2.0, math.pi - 1e-3,
     math.pi - 1e-6],
)
def test_matrix_to_axis_angle_special_angles(angle):
    axis_angle = unit_axis() * angle
    matrix = torch.from_numpy(rodrigues(axis_angle.numpy()))
    recovered = matrix_to_axis_angle(matrix)
    torch.testing.assert_close(recovered, axis_angle, atol=1e-10, rtol=0)
    torch.testing.assert_close(axis_angle_to_matrix(axis_angle), matrix, atol=1e-14, rtol=0)


@pytest.mark.parametrize("axis", [(1, 0, 0), (0, 1, 0), (0, 0, 1), (0.3, -0.5, 0.8), (-1, -1, 1)])
def test_matrix_to_axis_angle_at_exactly_pi(axis):
    axis = torch.nn.functional.normalize(torch.tensor(axis, dtype=torch.float64), dim=-1)
    matrix = torch.from_numpy(rodrigues((axis * math.pi).numpy()))
    recovered = matrix_to_axis_angle(matrix)
    torch.testing.assert_close(recovered.norm(), torch.tensor(math.pi, dtype=torch.float64))
    # At pi the axis sign is arbitrary; both signs give the same rotation.
    assert min((recovered - axis * math.pi).abs().max(), (recovered + axis * math.pi).abs().max()) < 1e-7
    torch.testing.assert_close(axis_angle_to_matrix(recovered), matrix, atol=1e-12, rtol=0)


def test_angles_beyond_pi_wrap_to_the_same_rotation():
    axis_angle = unit_axis() * 5.0
    recovered = matrix_to_axis_angle(axis_angle_to_matrix(axis_angle))
    torch.testing.assert_close(recovered, unit_axis() * (5.0 - 2 * math.pi))


def test_small_angle_series_is_exact_on_both_sides_of_the_threshold():
    for angle in (SMALL_ANGLE * (1 - 1e-9), SMALL_ANGLE * (1 + 1e-9)):
        axis_angle = unit_axis() * angle
        matrix = axis_angle_to_matrix(axis_angle)
        expected = torch.from_numpy(rodrigues(axis_angle.numpy()))
        torch.testing.assert_close(matrix, expected, atol=1e-15, rtol=0)
        torch.testing.assert_close(matrix_to_axis_angle(matrix), axis_angle, atol=1e-15, rtol=0)


@pytest.mark.parametrize("dtype, atol", [(torch.float32, 2e-5), (torch.float64, 1e-12)])
def test_round_trip_random_batches(dtype, atol):
    axis_angle = random_axis_angle((4, 5, 22), max_angle=math.pi - 1e-3, dtype=dtype)
    matrix = axis_angle_to_matrix(axis_angle)
    assert matrix.shape == (4, 5, 22, 3, 3) and matrix.dtype == dtype
    recovered = matrix_to_axis_angle(matrix)
    assert recovered.shape == axis_angle.shape and recovered.dtype == dtype
    torch.testing.assert_close(axis_angle_to_matrix(recovered), matrix, atol=atol, rtol=0)
    # Batched result equals the flat one: no mixing across the leading axes.
    torch.testing.assert_close(matrix.reshape(-1, 3, 3), axis_angle_to_matrix(axis_angle.reshape(-1, 3)))


def test_float32_near_pi_stays_a_rotation():
    axis_angle = (unit_axis() * (math.pi - 1e-6)).float()
    matrix = axis_angle_to_matrix(axis_angle)
    recovered = matrix_to_axis_angle(matrix)
    assert torch.isfinite(recovered).all()
    torch.testing.assert_close(axis_angle_to_matrix(recovered), matrix, atol=1e-5, rtol=0)


@pytest.mark.parametrize("angle", [0.0, 1e-10, 1e-5, 1.0, math.pi - 1e-6])
def test_gradients_are_finite(angle):
    for dtype in (torch.float32, torch.float64):
        axis_angle = (unit_axis(dtype) * angle).requires_grad_()
        recovered = matrix_to_axis_angle(axis_angle_to_matrix(axis_angle))
        (recovered * torch.tensor([1.0, 2.0, 3.0], dtype=dtype)).sum().backward()
        assert torch.isfinite(axis_angle.grad).all()
        if angle < 1:  # away from pi the round trip is the identity, so is its Jacobian
            torch.testing.assert_close(axis_angle.grad, torch.tensor([1.0, 2.0, 3.0], dtype=dtype))


def test_gradcheck():
    axis_angle = random_axis_angle((6,), max_angle=3.0).requires_grad_()
    assert torch.autograd.gradcheck(axis_angle_to_matrix, (axis_angle,))
    matrix = torch.from_numpy(Rotation.random(6, random_state=1).as_matrix()).requires_grad_()
    assert torch.autograd.gradcheck(matrix_to_axis_angle, (matrix,))
    rotation_6d = torch.randn(6, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(rotation_6d_to_matrix, (rotation_6d,))


# ---------------------------------------------------------------- 6D


def test_rotation_6d_is_the_first_two_rows():
    matrix = torch.from_numpy(Rotation.random(10, random_state=2).as_matrix())
    rotation_6d = matrix_to_rotation_6d(matrix)
    for r, m in zip(rotation_6d, matrix):
        expected = [m[0, 0], m[0, 1], m[0, 2], m[1, 0], m[1, 1], m[1, 2]]
        torch.testing.assert_close(r, torch.stack(expected))
    torch.testing.assert_close(rotation_6d_to_matrix(rotation_6d), matrix)


def test_gram_schmidt_gives_proper_rotations_from_any_6d():
    torch.manual_seed(0)
    rotation_6d = torch.randn(3, 100, 6, dtype=torch.float64) * 3
    matrix = rotation_6d_to_matrix(rotation_6d)
    identity = torch.eye(3, dtype=torch.float64).expand_as(matrix)
    torch.testing.assert_close(matrix @ matrix.transpose(-1, -2), identity)
    torch.testing.assert_close(torch.linalg.det(matrix), torch.ones(3, 100, dtype=torch.float64))
    row1, row2 = rotation_6d[..., :3], rotation_6d[..., 3:]
    # First row keeps its direction; second row lies in the plane of the inputs, on row2's side.
    torch.testing.assert_close(matrix[..., 0, :], row1 / row1.norm(dim=-1, keepdim=True))
    normal = torch.linalg.cross(row1, row2, dim=-1)
    assert (matrix[..., 1, :] * normal).sum(-1).abs().max() < 1e-12
    assert bool(((matrix[..., 1, :] * row2).sum(-1) > 0).all())


def test_6d_compositions():
    axis_angle = random_axis_angle((50,), max_angle=3.0)
    rotation_6d = axis_angle_to_rotation_6d(axis_angle)
    expected = Rotation.from_rotvec(axis_angle.numpy()).as_matrix()[:, :2, :].reshape(50, 6)
    np.testing.assert_allclose(rotation_6d.numpy(), expected, atol=1e-13)
    torch.testing.assert_close(rotation_6d_to_axis_angle(rotation_6d), axis_angle)


# ---------------------------------------------------------------- to_rotation_6d


def pose_batch(batch=3, joints=22, seed=0):
    return random_axis_angle((batch, joints), max_angle=3.0, seed=seed)


def reference_6d(axis_angle: torch.Tensor) -> np.ndarray:
    flat = axis_angle.reshape(-1, 3).numpy()
    return Rotation.from_rotvec(flat).as_matrix()[:, :2, :].reshape(*axis_angle.shape[:-1], 6)


def sheared_6d(rotation_6d: torch.Tensor) -> torch.Tensor:
    """A non-orthonormal 6D of the same rotation: rows rescaled and the second one sheared along the first."""
    row1, row2 = rotation_6d[..., :3], rotation_6d[..., 3:]
    return torch.cat((2.5 * row1, 0.7 * row2 + 0.4 * row1), dim=-1)


def all_formats(axis_angle: torch.Tensor):
    """Every accepted layout of one exact `(22, 3)` pose, in torch, numpy and nested lists."""
    matrix = axis_angle_to_matrix(axis_angle)
    layouts = {
        "flat": axis_angle.reshape(-1),
        "axis_angle": axis_angle,
        "matrix": matrix,
        "6d": matrix_to_rotation_6d(matrix),
    }
    for label, tensor in list(layouts.items()):
        layouts[f"{label}_batched"] = tensor[None]
        layouts[f"{label}_numpy"] = tensor.numpy()
        layouts[f"{label}_list"] = tensor.tolist()
    return layouts


def test_every_format_maps_to_the_same_6d():
    axis_angle = pose_batch(batch=1)[0]
    expected = torch.from_numpy(reference_6d(axis_angle))[None]
    for label, poses in all_formats(axis_angle).items():
        result = to_rotation_6d(poses)
        assert result.shape == (1, 22, 6), label
        torch.testing.assert_close(result.double(), expected, atol=1e-12, rtol=0, msg=label)


def test_batched_formats():
    axis_angle = pose_batch(batch=4)
    expected = torch.from_numpy(reference_6d(axis_angle))
    matrix = axis_angle_to_matrix(axis_angle)
    rotation_6d = matrix_to_rotation_6d(matrix)
    for poses in (axis_angle, axis_angle.reshape(4, 66), matrix, rotation_6d, matrix.numpy()):
        torch.testing.assert_close(to_rotation_6d(poses), expected, atol=1e-12, rtol=0)


def test_dtypes():
    axis_angle = pose_batch(batch=2)
    assert to_rotation_6d(axis_angle).dtype == torch.float64
    assert to_rotation_6d(axis_angle.numpy()).dtype == torch.float64
    assert to_rotation_6d(axis_angle.tolist()).dtype == torch.float64  # Python floats are doubles
    assert to_rotation_6d(axis_angle.float()).dtype == torch.float32
    assert to_rotation_6d(axis_angle.half()).dtype == torch.float32
    assert to_rotation_6d(axis_angle.numpy().astype(np.float32)).dtype == torch.float32
    zeros = to_rotation_6d(np.zeros((22, 3), dtype=np.int64))
    assert zeros.dtype == torch.float32
    torch.testing.assert_close(zeros[0], torch.tensor([1.0, 0, 0, 0, 1, 0]).expand(22, 6))


def test_other_joint_counts_and_conveniences():
    axis_angle = pose_batch(batch=2, joints=52)
    matrix = to_rotation_matrix(axis_angle, num_joints=52)
    assert matrix.shape == (2, 52, 3, 3)
    torch.testing.assert_close(to_rotation_6d(matrix, num_joints=52), matrix_to_rotation_6d(matrix))
    torch.testing.assert_close(to_axis_angle(matrix, num_joints=52), axis_angle)
    torch.testing.assert_close(to_axis_angle(matrix_to_rotation_6d(matrix), num_joints=52), axis_angle)
    returned = to_axis_angle(axis_angle.reshape(2, -1), num_joints=52)
    torch.testing.assert_close(returned, axis_angle)
    returned += 1  # a copy: the caller's tensor is untouched
    assert not torch.equal(returned, axis_angle)


def test_gradients_flow_through_the_entry_point():
    axis_angle = pose_batch(batch=2).requires_grad_()
    to_rotation_6d(axis_angle).sum().backward()
    assert axis_angle.grad is not None and torch.isfinite(axis_angle.grad).all()


def test_matrices_within_tolerance_are_accepted_as_given():
    matrix = axis_angle_to_matrix(pose_batch(batch=1))
    nudged = matrix + ORTHONORMAL_ATOL / 10
    assert torch.equal(to_rotation_6d(nudged), nudged[..., :2, :].flatten(-2))
    # The conversions for display and metrics still give exact rotations.
    rebuilt = to_rotation_matrix(nudged)
    identity = torch.eye(3, dtype=torch.float64).expand_as(rebuilt)
    torch.testing.assert_close(rebuilt @ rebuilt.transpose(-1, -2), identity)


def test_float32_matrices_off_by_a_few_thousandths_are_encoded_as_given():
    """Real data (float32 SMPL fits, AMASS, the release's `demo_smpl_rotmat_*.npy`) is off by a few 1e-3; the
    published model feeds the raw first two rows of each matrix to its pose encoder."""
    matrix = near_rotation_matrices(pose_batch(batch=2))
    identity = torch.eye(3).expand_as(matrix)
    deviation = (matrix @ matrix.transpose(-1, -2) - identity).abs().amax()
    assert 3.5e-3 < deviation < 4.5e-3  # four times the tolerance of 1e-3 this module had before
    raw_rows = matrix[..., :2, :].reshape(2, 22, 6)
    for given in (matrix, matrix.numpy(), matrix[0]):
        result = to_rotation_6d(given)
        assert result.dtype == torch.float32
        assert torch.equal(result, raw_rows[: result.shape[0]])  # bit for bit: no Gram-Schmidt
    # ... which is not what Gram-Schmidt would give, so the test can tell the two apart.
    gram_schmidt = matrix_to_rotation_6d(rotation_6d_to_matrix(raw_rows))
    assert not torch.allclose(gram_schmidt, raw_rows, atol=1e-4, rtol=0)
    # The conversions for display and metrics project onto exact rotations.
    projected = to_rotation_matrix(matrix)
    torch.testing.assert_close(projected @ projected.transpose(-1, -2), identity, atol=1e-6, rtol=0)


def test_6d_is_passed_through_unchanged_as_a_copy():
    rotation_6d = near_rotation_matrices(pose_batch(batch=2))[..., :2, :].reshape(2, 22, 6)
    result = to_rotation_6d(rotation_6d)
    assert torch.equal(result, rotation_6d)
    result += 1  # a copy: the caller's tensor is untouched
    assert not torch.equal(result, rotation_6d)
    array = rotation_6d.numpy().copy()
    assert torch.equal(to_rotation_6d(array[0]), rotation_6d[:1])
    to_rotation_6d(array).add_(1)
    np.testing.assert_array_equal(array, rotation_6d.numpy())


def test_non_orthonormal_6d_is_refused_for_encoding_but_projected_for_display():
    axis_angle = pose_batch(batch=1)[0]
    sheared = sheared_6d(axis_angle_to_rotation_6d(axis_angle))
    rows = sheared.unflatten(-1, (2, 3))
    deviation = (rows @ rows.transpose(-1, -2) - torch.eye(2, dtype=rows.dtype)).abs().amax(dim=(-1, -2))
    joint = int(deviation.argmax())
    # The pose encoder reads 6D as given: far from a rotation, it would get numbers it never saw.
    message = f"`my_pose` .*not orthonormal.*pose 0, joint {joint},.* = {deviation[joint].item():.3g} > atol"
    with pytest.raises(ValueError, match=message):
        to_rotation_6d(sheared, name="my_pose")
    # Conversions to rotations bring it onto the rotation it shears.
    expected = axis_angle_to_matrix(axis_angle)[None]
    torch.testing.assert_close(to_rotation_matrix(sheared), expected, atol=1e-12, rtol=0)
    torch.testing.assert_close(to_axis_angle(sheared), axis_angle[None], atol=1e-12, rtol=0)


@pytest.mark.parametrize("kind", ["scaled", "skewed", "random", "reflection"])
def test_clear_non_rotations_are_refused_with_their_deviation(kind):
    if kind == "random":
        matrix = torch.rand(2, 22, 3, 3, generator=torch.Generator().manual_seed(0))
    else:
        matrix = bad_matrix(kind)
    identity = torch.eye(3, dtype=matrix.dtype)
    orthogonality = (matrix @ matrix.transpose(-1, -2) - identity).abs().amax(dim=(-1, -2))
    determinant = (torch.linalg.det(matrix) - 1).abs()
    # The check that fails first reports its figure: orthonormality, or the determinant of an orthonormal one.
    deviation = orthogonality if bool((orthogonality > ORTHONORMAL_ATOL).any()) else determinant
    worst = deviation.max().item()
    assert worst > 5 * ORTHONORMAL_ATOL
    with pytest.raises(ValueError, match=f"= {worst:.3g} > atol {ORTHONORMAL_ATOL:g}"):
        to_rotation_6d(matrix)


def bad_matrix(kind):
    matrix = axis_angle_to_matrix(pose_batch(batch=2))
    if kind == "scaled":
        matrix[1, 5] *= 1 + 3 * ORTHONORMAL_ATOL
    elif kind == "reflection":  # orthonormal, det -1
        matrix[0, 7, 2] *= -1
    elif kind == "skewed":
        matrix[0, 3, 0, 1] += 0.1
    return matrix


def degenerate_6d(kind):
    rotation_6d = axis_angle_to_rotation_6d(pose_batch(batch=2))
    if kind == "zero_first_row":
        rotation_6d[1, 4, :3] = 0
    elif kind == "zero_second_row":
        rotation_6d[1, 4, 3:] = 0
    elif kind == "parallel_rows":
        rotation_6d[0, 0, 3:] = -2 * rotation_6d[0, 0, :3]
    return rotation_6d


def with_value(value, layout):
    poses = pose_batch(batch=2)
    if layout == "matrix":
        poses = axis_angle_to_matrix(poses)
    elif layout == "6d":
        poses = axis_angle_to_rotation_6d(poses)
    poses = poses.contiguous()
    poses.view(-1)[17] = value
    return poses


LAYOUTS = ("aa", "matrix", "6d")
DEGENERATE_6D_KINDS = ("zero_first_row", "zero_second_row", "parallel_rows")
VALUE_ERRORS = {
    "shape_21_joints": lambda: torch.zeros(21, 3),
    "shape_65": lambda: torch.zeros(65),
    "shape_22x4": lambda: torch.zeros(22, 4),
    "shape_22x3x4": lambda: torch.zeros(22, 3, 4),
    "shape_5d": lambda: torch.zeros(1, 2, 22, 3, 3),
    "shape_scalar": lambda: torch.tensor(1.0),
    "shape_empty_list": lambda: [],
    "ragged_list": lambda: [[0.0, 0.0, 0.0]] * 21 + [[0.0, 0.0]],
    **{f"nan_{layout}": (lambda layout=layout: with_value(math.nan, layout)) for layout in LAYOUTS},
    **{f"inf_{layout}": (lambda layout=layout: with_value(-math.inf, layout)) for layout in LAYOUTS},
    "nan_numpy": lambda: np.full((22, 3), np.nan),
    **{f"matrix_{kind}": (lambda kind=kind: bad_matrix(kind)) for kind in ("scaled", "reflection", "skewed")},
    **{f"6d_{kind}": (lambda kind=kind: degenerate_6d(kind)) for kind in DEGENERATE_6D_KINDS},
}


@pytest.mark.parametrize("case", sorted(VALUE_ERRORS))
@pytest.mark.parametrize("convert", [to_rotation_6d, to_rotation_matrix, to_axis_angle])
def test_rejections_raise_value_error_naming_the_argument(case, convert):
    with pytest.raises(ValueError, match="`my_pose`"):
        convert(VALUE_ERRORS[case](), name="my_pose")


def test_rejection_messages_say_what_was_received():
    with pytest.raises(ValueError, match=r"\(21, 3\)"):
        to_rotation_6d(torch.zeros(21, 3))
    with pytest.raises(ValueError, match=r"det -1 is a reflection"):
        to_rotation_6d(bad_matrix("reflection"))
    with pytest.raises(ValueError, match=r"pose 1, joint 5"):
        to_rotation_6d(bad_matrix("scaled"))
    with pytest.raises(ValueError, match=r"pose 0, joint 0"):
        to_rotation_6d(degenerate_6d("parallel_rows"))
    with pytest.raises(ValueError, match="nan"):
        to_rotation_6d(with_value(math.nan, "aa"))


def test_tolerance_is_configurable():
    matrix = bad_matrix("scaled")
    with pytest.raises(ValueError):
        to_rotation_6d(matrix)
    assert to_rotation_6d(matrix, atol=10 * ORTHONORMAL_ATOL).shape == (2, 22, 6)
    for atol in (0.0, -1.0, math.nan, "1e-3"):
        with pytest.raises(ValueError, match="`atol`"):
            to_rotation_6d(matrix, atol=atol)
    with pytest.raises(ValueError, match="`num_joints`"):
        to_rotation_6d(matrix, num_joints=0)


@pytest.mark.parametrize(
    "poses",
    [
        "pelvis",
        {"poses": [0.0] * 66},
        [["a", "b", "c"]] * 22,
        [[None, 0.0, 0.0]] * 22,
        None,
        3.0,
        torch.zeros(22, 3, dtype=torch.bool),
        torch.zeros(22, 3, dtype=torch.complex64),
        np.zeros((22, 3), dtype=bool),
    ],
    ids=["str", "dict", "str_list", "none_list", "none", "float", "bool_tensor", "complex", "bool_array"],
)
def test_non_numeric_input_raises_type_error(poses):
    with pytest.raises(TypeError, match="`my_pose`"):
        to_rotation_6d(poses, name="my_pose")


# ---------------------------------------------------------------- mirroring


@pytest.mark.parametrize("joints, mirror_index", [(22, BODY_MIRROR_INDEX), (52, SMPLH_MIRROR_INDEX)])
def test_mirror_twice_is_identity_and_matches_the_reflected_matrices(joints, mirror_index):
    axis_angle = pose_batch(batch=3, joints=joints)
    mirrored = mirror_axis_angle(axis_angle)
    assert mirrored.shape == axis_angle.shape and mirrored.dtype == axis_angle.dtype
    assert not torch.allclose(mirrored, axis_angle)
    torch.testing.assert_close(mirror_axis_angle(mirrored), axis_angle)
    # Independent check: joint j of the mirror is M R_{mirror(j)} M with M the reflection x -> -x.
    reflection = torch.diag(torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64))
    matrix = axis_angle_to_matrix(axis_angle)
    expected = reflection @ matrix[:, list(mirror_index)] @ reflection
    torch.testing.assert_close(axis_angle_to_matrix(mirrored), expected)


def test_mirror_numpy_and_leading_axes():
    axis_angle = pose_batch(batch=6).reshape(2, 3, 22, 3)
    mirrored = mirror_axis_angle(axis_angle.numpy().astype(np.float32))
    assert isinstance(mirrored, np.ndarray) and mirrored.dtype == np.float32
    np.testing.assert_allclose(mirrored, mirror_axis_angle(axis_angle).numpy(), atol=1e-6)
    np.testing.assert_allclose(mirror_axis_angle(mirrored), axis_angle.numpy(), atol=1e-6)


def test_mirror_swaps_left_and_right():
    axis_angle = torch.zeros(22, 3)
    axis_angle[18] = torch.tensor([0.1, 0.2, 0.3])  # left elbow
    mirrored = mirror_axis_angle(axis_angle)
    torch.testing.assert_close(mirrored[19], torch.tensor([0.1, -0.2, -0.3]))  # right elbow
    assert mirrored.abs().sum() == axis_angle.abs().sum()


def test_mirror_rejections():
    with pytest.raises(ValueError, match="`mirror_index`"):
        mirror_axis_angle(torch.zeros(10, 3))
    with pytest.raises(ValueError, match="`mirror_index`"):
        mirror_axis_angle(torch.zeros(22, 3), mirror_index=[0] * 22)
    with pytest.raises(ValueError, match="`axis_angle`"):
        mirror_axis_angle(torch.zeros(22, 6))
    with pytest.raises(TypeError, match="`axis_angle`"):
        mirror_axis_angle([[0.0, 0.0, 0.0]] * 22)
    mirror_axis_angle(torch.zeros(2, 3), mirror_index=[1, 0])  # any size with an explicit map


def test_rotations_imports_stay_in_the_closure():
    tree = ast.parse(Path(rotations.__file__).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            assert {alias.name.split(".")[0] for alias in node.names} <= {"math", "typing", "numpy", "torch"}
        elif isinstance(node, ast.ImportFrom):
            assert (node.level == 1 and "." not in (node.module or ".")) or (
                node.level == 0 and node.module.split(".")[0] in {"math", "typing", "numpy", "torch"}
            )
