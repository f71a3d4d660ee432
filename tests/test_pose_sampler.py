"""Tests of the procedural pose sampler: reproducibility, joint limits, plausibility by forward kinematics."""

import argparse
from collections import Counter

import numpy as np
import pytest
import torch

from unipose.body_model import BodyJoints, pose_to_joints
from unipose.commands import sample_poses as sample_poses_command
from unipose.pose_sampler import (
    ARM_STYLES,
    CATEGORY_TABLE,
    JOINT_LIMITS_DEG,
    POSE_CATEGORIES,
    PoseSampler,
    joint_angles_to_pose,
    pose_to_joint_angles,
    sample_poses,
)
from unipose.rotations import axis_angle_to_matrix
from unipose.skeleton import BODY_JOINT_NAMES, JOINT_INDEX, NUM_BODY_JOINTS

NUM_POSES = 4000
FEET = [JOINT_INDEX[name] for name in ("left_ankle", "right_ankle", "left_foot", "right_foot")]
ARMS = [
    JOINT_INDEX[f"{side}_{part}"]
    for side in ("left", "right")
    for part in ("collar", "shoulder", "elbow", "wrist")
]
NOT_ARMS = [index for index in range(NUM_BODY_JOINTS) if index not in ARMS]
UPRIGHT = "standing walking running lunging reaching arms_raised kicking twisting side_bend jumping".split()


@pytest.fixture(scope="module")
def body(tmp_path_factory) -> BodyJoints:
    return BodyJoints.from_generated(tmp_path_factory.mktemp("unipose_cache"))


@pytest.fixture(scope="module")
def sample():
    return PoseSampler(seed=123).sample(NUM_POSES)


@pytest.fixture(scope="module")
def joints(sample, body) -> np.ndarray:
    return pose_to_joints(sample.poses, body=body)


def _where(sample, *categories) -> np.ndarray:
    return np.array([category in categories for category in sample.categories])


def _angle_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    cos = (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def _limits() -> tuple[np.ndarray, np.ndarray]:
    """Low and high limits `(21, 3)` of the body joints, from the table."""
    limits = [(limit.x, limit.y, limit.z) for limit in JOINT_LIMITS_DEG.values()]
    return np.array([[a[0] for a in joint] for joint in limits]), np.array(
        [[a[1] for a in joint] for joint in limits]
    )


def _root_matrices(poses: np.ndarray) -> np.ndarray:
    return axis_angle_to_matrix(torch.from_numpy(poses[:, 0]).double()).numpy()


def _pose(**angles) -> np.ndarray:
    """One pose (22, 3) from joint angles given as joint_name=(x, y, z) degrees, the rest zero."""
    table = np.zeros((NUM_BODY_JOINTS, 3))
    for name, value in angles.items():
        table[JOINT_INDEX[name]] = value
    return joint_angles_to_pose(table)


# ---------------------------------------------------------------------------------------------------------
# Output, reproducibility, categories
# ---------------------------------------------------------------------------------------------------------


def test_shapes_dtypes_and_finiteness(sample):
    assert sample.poses.shape == (NUM_POSES, NUM_BODY_JOINTS, 3)
    assert sample.poses.dtype == np.float32
    assert np.isfinite(sample.poses).all()
    # Axis-angle in canonical form: angles in [0, pi].
    assert np.linalg.norm(sample.poses, axis=-1).max() <= np.pi + 1e-5
    assert len(sample.categories) == NUM_POSES and set(sample.categories) <= set(POSE_CATEGORIES)
    empty = PoseSampler(seed=0).sample(0)
    assert empty.poses.shape == (0, NUM_BODY_JOINTS, 3) and empty.categories == []


def test_same_seed_same_poses_and_different_seeds_differ():
    first, again = PoseSampler(seed=7).sample(64), PoseSampler(seed=7).sample(64)
    np.testing.assert_array_equal(first.poses, again.poses)
    assert first.categories == again.categories
    np.testing.assert_array_equal(sample_poses(64, seed=7), first.poses)
    other = PoseSampler(seed=8).sample(64)
    assert np.abs(other.poses - first.poses).max() > 0.1
    # The stream continues: a second call gives new poses.
    sampler = PoseSampler(seed=7)
    sampler.sample(64)
    assert np.abs(sampler.sample(64).poses - first.poses).max() > 0.1


def test_every_category_appears_often(sample):
    counts = Counter(sample.categories)
    total_weight = sum(category.weight for category in CATEGORY_TABLE)
    for category in CATEGORY_TABLE:
        expected = NUM_POSES * category.weight / total_weight
        assert counts[category.name] > 0.6 * expected, (category.name, counts[category.name], expected)


def test_restricting_categories():
    restricted = PoseSampler(seed=0, categories=("sitting", "lying_back")).sample(200)
    assert set(restricted.categories) == {"sitting", "lying_back"}


def test_heading_is_uniform(sample):
    # The root's forward axis, for upright poses, points every way around the vertical.
    upright = _where(sample, *UPRIGHT)
    root = _root_matrices(sample.poses[upright])
    heading = np.degrees(np.arctan2(root[:, 0, 2], root[:, 2, 2]))
    counts, _ = np.histogram(heading, bins=8, range=(-180, 180))
    assert counts.min() > 0.6 * counts.mean()


# ---------------------------------------------------------------------------------------------------------
# Angle conventions and joint limits
# ---------------------------------------------------------------------------------------------------------


def test_joint_angles_round_trip():
    rng = np.random.default_rng(1)
    low, high = _limits()
    low, high = np.concatenate([[[-60.0] * 3], low]), np.concatenate([[[60.0] * 3], high])
    # Keep the middle Euler angle (the shoulders' y) off +-90 degrees, where the split is not unique.
    low, high = np.maximum(low, -85.0), np.minimum(high, 85.0)
    angles = low + rng.random((128, NUM_BODY_JOINTS, 3)) * (high - low)
    np.testing.assert_allclose(pose_to_joint_angles(joint_angles_to_pose(angles)), angles, atol=1e-6)


def test_limit_table_covers_every_body_joint():
    assert tuple(JOINT_LIMITS_DEG) == BODY_JOINT_NAMES[1:]
    for name, limit in JOINT_LIMITS_DEG.items():
        assert sorted(limit.order) == ["x", "y", "z"], name
        assert all(low < high for low, high in limit[1:]), name
        # Left and right share one table in mirrored coordinates.
        if name.startswith("left_"):
            assert JOINT_LIMITS_DEG["right_" + name[5:]] == limit


def test_category_ranges_lie_inside_the_limits():
    # Jitter may be clipped, but the centre of every range a table asks for must be reachable.
    for category in CATEGORY_TABLE:
        for key, ranges in category.joints.items():
            if key == "pelvis":
                continue
            names = [name for name in BODY_JOINT_NAMES if name == key or name.endswith("_" + key)]
            assert names, (category.name, key)
            for name in names:
                limit = JOINT_LIMITS_DEG[name]
                for axis, (low, high) in ranges.items():
                    lower, upper = limit["xyz".index(axis) + 1]
                    assert lower <= (low + high) / 2 <= upper, (category.name, name, axis)
    for style, parts in ARM_STYLES.items():
        for part, ranges in parts.items():
            for axis, (low, high) in ranges.items():
                lower, upper = JOINT_LIMITS_DEG["left_" + part]["xyz".index(axis) + 1]
                assert lower <= low <= high <= upper, (style, part, axis)


def test_poses_within_joint_limits(sample):
    angles = pose_to_joint_angles(sample.poses)[:, 1:]  # (N, 21, 3), the root is free
    low, high = _limits()
    middle_axis = np.array(["xyz".index(limit.order[1]) for limit in JOINT_LIMITS_DEG.values()])
    middle = angles[:, np.arange(len(middle_axis)), middle_axis][..., None]  # (N, 21, 1)
    # float32 poses: the outer angles lose precision as the middle one nears +-90 degrees (gimbal lock).
    tolerance = 1e-3 + 1e-4 / np.maximum(np.cos(np.radians(middle)), 1e-6)
    assert (angles >= low - tolerance).all() and (angles <= high + tolerance).all()


# ---------------------------------------------------------------------------------------------------------
# Signs of the conventions, checked by forward kinematics
# ---------------------------------------------------------------------------------------------------------


def test_documented_signs(body):
    rest = pose_to_joints(_pose(), body=body)[0]
    bent = pose_to_joints(
        _pose(
            left_knee=(90, 0, 0),
            right_hip=(-90, 0, 0),
            left_shoulder=(0, 0, -80),
            right_shoulder=(0, -90, 0),
            left_elbow=(0, -90, 0),
            spine1=(30, 0, 0),
        ),
        body=body,
    )[0]
    j = JOINT_INDEX
    # Knee flexion sends the shin backwards; hip flexion the thigh forwards (both sides, mirrored).
    assert bent[j["left_ankle"], 2] < bent[j["left_knee"], 2] - 0.3
    assert bent[j["right_knee"], 2] > rest[j["right_hip"], 2] + 0.3
    # Shoulder elevation -80 lowers the left arm to the side; y = -90 points the right arm forwards.
    assert bent[j["left_elbow"], 1] < bent[j["left_shoulder"], 1] - 0.25
    assert bent[j["left_elbow"], 0] > bent[j["left_shoulder"], 0]
    assert bent[j["right_elbow"], 2] > bent[j["right_shoulder"], 2] + 0.25
    # Elbow flexion brings the forearm forwards; spine flexion bends the trunk forwards.
    assert bent[j["left_wrist"], 2] > bent[j["left_elbow"], 2] + 0.15
    assert bent[j["neck"], 2] > rest[j["neck"], 2] + 0.1


# ---------------------------------------------------------------------------------------------------------
# Plausibility of the categories
# ---------------------------------------------------------------------------------------------------------


def test_upright_poses_stand_on_their_feet(sample, joints):
    upright = _where(sample, *UPRIGHT)
    heights = joints[upright, :, 1]
    assert np.isin(heights.argmin(axis=1), FEET).all()
    body_heights = heights[:, NOT_ARMS]
    assert (body_heights.argmax(axis=1) == NOT_ARMS.index(JOINT_INDEX["head"])).all()


def test_sitting_bends_hips_and_knees_near_right_angles(sample, joints):
    sitting = joints[_where(sample, "sitting")]
    for side in ("left", "right"):
        hip, knee, ankle = (sitting[:, JOINT_INDEX[f"{side}_{part}"]] for part in ("hip", "knee", "ankle"))
        trunk_down = sitting[:, JOINT_INDEX["pelvis"]] - sitting[:, JOINT_INDEX["spine3"]]
        hip_flexion = _angle_deg(knee - hip, trunk_down)
        knee_flexion = _angle_deg(knee - hip, ankle - knee)
        assert (np.abs(hip_flexion - 90) < 30).all(), hip_flexion
        assert (np.abs(knee_flexion - 90) < 30).all(), knee_flexion
        # Thighs roughly level, shins roughly upright.
        assert (np.abs(_angle_deg(knee - hip, np.array([0.0, -1.0, 0.0])) - 90) < 25).all()


def test_lying_poses_are_horizontal(sample, joints):
    lying = _where(sample, "lying_back", "lying_front", "lying_side")
    trunk = joints[lying, JOINT_INDEX["neck"]] - joints[lying, JOINT_INDEX["pelvis"]]
    elevation = np.degrees(np.arcsin(np.abs(trunk[:, 1]) / np.linalg.norm(trunk, axis=-1)))
    assert (elevation < 20).all(), elevation.max()
    # Face up on the back, face down on the front: the root's forward axis.
    for category, sign in (("lying_back", 1.0), ("lying_front", -1.0)):
        root = _root_matrices(sample.poses[_where(sample, category)])
        assert (sign * root[:, 1, 2] > 0.9).all(), category


def test_kneeling_puts_a_knee_on_the_floor(sample, joints):
    knees = [JOINT_INDEX["left_knee"], JOINT_INDEX["right_knee"]]
    for category in ("kneeling", "kneeling_one_knee"):
        chosen = joints[_where(sample, category)]
        floor = chosen[:, :, 1].min(axis=1)
        lowest_knee = chosen[:, knees, 1].min(axis=1)
        assert (lowest_knee - floor < 0.12).all(), category
        # And the pelvis is well below standing height.
        assert (chosen[:, 0, 1] - floor < 0.75).all(), category


def test_crouching_is_low(sample, joints):
    crouching, standing = joints[_where(sample, "crouching")], joints[_where(sample, "standing")]
    pelvis_height = lambda chosen: chosen[:, 0, 1] - chosen[:, :, 1].min(axis=1)  # noqa: E731
    assert pelvis_height(crouching).max() < 0.7 * pelvis_height(standing).min()


def test_mirrored_halves(sample):
    # Walking is written with the left leg forwards; mirroring gives the right leg forwards as often.
    walking = sample.poses[_where(sample, "walking")]
    angles = pose_to_joint_angles(walking)
    left_forward = angles[:, JOINT_INDEX["left_hip"], 0] < angles[:, JOINT_INDEX["right_hip"], 0]
    assert 0.3 < left_forward.mean() < 0.7


# ---------------------------------------------------------------------------------------------------------
# Errors and the command line
# ---------------------------------------------------------------------------------------------------------


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_poses"):
        PoseSampler().sample(-1)
    with pytest.raises(ValueError, match="num_poses"):
        PoseSampler().sample(2.5)
    with pytest.raises(ValueError, match="seed"):
        PoseSampler(seed=-3)
    with pytest.raises(ValueError, match="flying"):
        PoseSampler(categories=["flying"])
    with pytest.raises(TypeError, match="categories"):
        PoseSampler(categories="standing")
    with pytest.raises(ValueError, match=r"\(10, 3\)"):
        pose_to_joint_angles(np.zeros((10, 3)))
    with pytest.raises(ValueError, match="NaN"):
        joint_angles_to_pose(np.full((NUM_BODY_JOINTS, 3), np.nan))


def test_command_line_writes_poses(tmp_path):
    parser = argparse.ArgumentParser()
    sample_poses_command.add_arguments(parser)
    out = tmp_path / "poses.npz"
    args = parser.parse_args(["--num", "25", "--seed", "4", "--out", str(out)])
    assert "Wrote" in sample_poses_command.run(args)
    with np.load(out) as data:
        np.testing.assert_array_equal(data["poses"], sample_poses(25, seed=4))
        assert data["categories"].shape == (25,) and set(data["categories"]) <= set(POSE_CATEGORIES)
    assert [path.name for path in tmp_path.iterdir()] == ["poses.npz"]  # no temporary file left behind
    # An empty contact sheet is refused before anything is written.
    sheet = parser.parse_args(
        ["--num", "5", "--out", str(tmp_path / "other.npz"), "--contact-sheet", str(tmp_path / "s.png"), "--sheet-size", "0"]
    )
    with pytest.raises(ValueError, match=r"`--sheet-size` must be a positive integer, got 0"):
        sample_poses_command.run(sheet)
    assert not (tmp_path / "other.npz").exists()
    # So are files whose names say another format, and folders.
    (tmp_path / "folder.npz").mkdir()
    for argv, message in (
        (["--out", str(tmp_path / "p.txt")], "`--out` must be a .npz file, got '.*p.txt'"),
        (["--out", str(tmp_path / "folder.npz")], "`--out` must be a .npz file, got '.*folder.npz'"),
        (["--out", str(tmp_path / "o.npz"), "--contact-sheet", str(tmp_path / "s.jpg")], "`--contact-sheet`"),
    ):
        with pytest.raises(ValueError, match=message):
            sample_poses_command.run(parser.parse_args(["--num", "5", *argv]))
    assert sorted(path.name for path in tmp_path.iterdir()) == ["folder.npz", "poses.npz"]
    # No poses: no contact sheet, and the report says so.
    empty = parser.parse_args(["--num", "0", "--out", str(tmp_path / "none.npz"), "--contact-sheet", str(tmp_path / "n.png")])
    assert "Wrote no contact sheet" in sample_poses_command.run(empty) and not (tmp_path / "n.png").exists()


def test_contact_sheet_takes_every_category_in_turn():
    categories = ["walking"] * 5 + ["standing"] * 2 + ["lying_side"] * 1
    shown = sample_poses_command._sheet_indices(categories, 6)
    chosen = [categories[index] for index in shown]
    # Round-robin: every category before any repeats, grouped in table order.
    assert chosen == ["standing", "standing", "walking", "walking", "walking", "lying_side"]
    assert len(sample_poses_command._sheet_indices(categories, 100)) == len(categories)
