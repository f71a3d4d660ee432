"""The AMASS loader on small .npz files written by the tests: frame subsampling, heading, frames, errors."""

import logging
import math

import numpy as np
import pytest
import torch

from unipose.body_model import BodyJoints
from unipose.data.amass import (
    build_amass_dataset,
    change_up_axis,
    find_amass_files,
    heading_angle,
    load_amass_poses,
    normalize_heading,
    read_amass_sequence,
    rotation_from_tait_bryan,
    subsample_frame_indices,
    tait_bryan_angles,
)
from unipose.rotations import axis_angle_to_matrix, elementary_rotation, matrix_to_axis_angle

F64 = torch.float64
# A person standing upright in AMASS's z-up world: the body's y (up) axis turned onto the world's z.
UPRIGHT_IN_AMASS = elementary_rotation(torch.tensor(math.pi / 2, dtype=F64), "x")


def _rotation(angle: float, axis: str) -> torch.Tensor:
    return elementary_rotation(torch.tensor(angle, dtype=F64), axis)


def _roots(headings, tilt: float = 0.3) -> torch.Tensor:
    """Root rotations Rz(heading) @ Ry(tilt) @ upright, one per heading: (T, 3, 3)."""
    return torch.stack([_rotation(h, "z") @ _rotation(tilt, "y") @ UPRIGHT_IN_AMASS for h in headings])


def _write_sequence(
    path, roots: torch.Tensor, fps: float | None, values_per_frame: int = 156, rate_key="mocap_framerate"
):
    generator = np.random.default_rng(len(roots))
    poses = generator.normal(scale=0.3, size=(len(roots), values_per_frame))
    poses[:, :3] = matrix_to_axis_angle(roots).numpy()
    arrays = {"poses": poses, "trans": np.zeros((len(roots), 3)), "betas": np.zeros(16)}
    if fps is not None:
        arrays[rate_key] = np.array(fps)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return poses


@pytest.fixture(scope="module")
def body_joints():
    return BodyJoints.from_generated()


@pytest.fixture
def amass_folder(tmp_path):
    """An SMPL-H sequence at 120 fps, an SMPL-X one at 60 fps, and a shape file without poses."""
    root = tmp_path / "AMASS"
    headings = np.linspace(-3.0, 3.0, 12)
    smplh = _write_sequence(root / "CMU" / "01" / "01_01_poses.npz", _roots(headings), fps=120.0)
    smplx = _write_sequence(
        root / "MOYO" / "02" / "yoga_stageii.npz", _roots(headings[:10], tilt=-0.2), fps=60.0,
        values_per_frame=165, rate_key="mocap_frame_rate",
    )  # fmt: skip
    np.savez(root / "CMU" / "01" / "shape.npz", betas=np.zeros(16), gender="neutral")
    return root, smplh, smplx


def test_subsample_frame_indices():
    assert subsample_frame_indices(12, 120.0, 30.0).tolist() == [0, 4, 8]
    assert subsample_frame_indices(10, 60.0, 30.0).tolist() == [0, 2, 4, 6, 8]
    # 59.94 fps to 30: the nearest frames, never repeated.
    indices = subsample_frame_indices(100, 59.94, 30.0)
    assert np.all(np.diff(indices) >= 1) and len(indices) == 50
    # A target at or above the capture rate, or none, keeps every frame.
    assert subsample_frame_indices(7, 30.0, 60.0).tolist() == list(range(7))
    assert subsample_frame_indices(7, 30.0, None).tolist() == list(range(7))
    with pytest.raises(ValueError, match="target_fps"):
        subsample_frame_indices(7, 30.0, -1.0)


def test_read_sequence_subsamples_and_keeps_body_joints(amass_folder):
    root, smplh, _ = amass_folder
    sequence = read_amass_sequence(root / "CMU" / "01" / "01_01_poses.npz", target_fps=30.0)
    assert sequence.frames.tolist() == [0, 4, 8]
    assert sequence.poses.shape == (3, 22, 3) and sequence.poses.dtype == np.float32
    # Body joints below the root are the file's values of the kept frames; hands are dropped.
    expected = smplh[[0, 4, 8], 3:66].reshape(3, 21, 3).astype(np.float32)
    np.testing.assert_array_equal(sequence.poses[:, 1:], expected)


def test_heading_normalisation_turns_about_amass_vertical_z(amass_folder, body_joints):
    root, smplh, _ = amass_folder
    sequence = read_amass_sequence(root / "CMU" / "01" / "01_01_poses.npz")  # every frame
    normalized = axis_angle_to_matrix(torch.from_numpy(sequence.poses[:, 0]).double())
    # The file's roots are Rz(heading) @ Ry(0.3) @ upright: only the turn about z goes.
    expected = (_rotation(0.3, "y") @ UPRIGHT_IN_AMASS).expand_as(normalized)
    torch.testing.assert_close(normalized, expected, atol=1e-6, rtol=0)
    assert heading_angle(normalized, "z").abs().max() < 1e-6

    # Physically: every joint keeps its height (z) and its horizontal distance from the pelvis.
    original = torch.from_numpy(smplh[:, :66]).reshape(-1, 22, 3)
    before = body_joints(axis_angle_to_matrix(original.float()))
    after = body_joints(axis_angle_to_matrix(torch.from_numpy(sequence.poses)))
    torch.testing.assert_close(after[..., 2], before[..., 2], atol=1e-5, rtol=0)
    horizontal = lambda joints: (joints - joints[:, :1])[..., :2].norm(dim=-1)  # noqa: E731
    torch.testing.assert_close(horizontal(after), horizontal(before), atol=1e-5, rtol=0)
    # ... and the headings really differed before.
    assert float(heading_angle(axis_angle_to_matrix(original[:, 0]), "z").std()) > 1.0


def test_heading_of_a_constructed_pose():
    # Body left axis (x) pointing along world +y: a heading of +90 degrees about z.
    turned = _rotation(math.pi / 2, "z") @ UPRIGHT_IN_AMASS
    assert heading_angle(turned, "z").item() == pytest.approx(math.pi / 2)
    # In SMPL's y-up frame a turn about y by 0.7 rad is a heading of 0.7.
    assert heading_angle(_rotation(0.7, "y"), "y").item() == pytest.approx(0.7)
    # A pure tilt has no heading.
    assert heading_angle(_rotation(0.4, "y"), "z").item() == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="up_axis"):
        heading_angle(turned, "x")


def test_change_up_axis_commutes_with_heading_normalisation():
    torch.manual_seed(0)
    roots = torch.randn(64, 3, dtype=F64)
    a = change_up_axis(normalize_heading(roots, "z"), "z", "y")
    b = normalize_heading(change_up_axis(roots, "z", "y"), "y")
    torch.testing.assert_close(axis_angle_to_matrix(a), axis_angle_to_matrix(b), atol=1e-10, rtol=0)
    # Upright in AMASS is the identity in SMPL's y-up frame; and back.
    upright = matrix_to_axis_angle(UPRIGHT_IN_AMASS)[None]
    torch.testing.assert_close(
        change_up_axis(upright, "z", "y"), torch.zeros(1, 3, dtype=F64), atol=1e-12, rtol=0
    )
    round_trip = change_up_axis(change_up_axis(roots, "z", "y"), "y", "z")
    torch.testing.assert_close(
        axis_angle_to_matrix(round_trip), axis_angle_to_matrix(roots), atol=1e-10, rtol=0
    )


@pytest.mark.parametrize("up_axis", ["y", "z"])
def test_tait_bryan_round_trip(up_axis):
    torch.manual_seed(1)
    angles = (torch.rand(256, 3, dtype=F64) * 2 - 1) * torch.tensor([3.1, 1.5, 3.1], dtype=F64)
    torch.testing.assert_close(tait_bryan_angles(rotation_from_tait_bryan(angles, up_axis), up_axis), angles)
    # Yaw alone turns about the vertical axis.
    yaw_only = rotation_from_tait_bryan(torch.tensor([0.5, 0.0, 0.0], dtype=F64), up_axis)
    torch.testing.assert_close(yaw_only, _rotation(0.5, up_axis))


def test_output_in_smpl_frame(amass_folder):
    root, _, _ = amass_folder
    poses, _, _ = load_amass_poses(root / "CMU", output_up_axis="y")
    roots = axis_angle_to_matrix(torch.from_numpy(poses[:, 0]).double())
    # Ry(0.3) in AMASS (a tilt about the world's y) is a tilt about -z once y is up.
    torch.testing.assert_close(roots, _rotation(-0.3, "z").expand_as(roots), atol=1e-6, rtol=0)


def test_dataset_columns_and_skipped_files(amass_folder, caplog):
    root, _, _ = amass_folder
    with caplog.at_level(logging.WARNING):
        dataset = build_amass_dataset(root, target_fps=30.0)
    assert "Skipped 1 of 3" in caplog.text and "shape.npz" in caplog.text
    assert dataset.column_names == ["pose", "sequence", "frame"]
    assert len(dataset) == 3 + 5  # 12 frames at 120 -> 30 fps, 10 frames at 60 -> 30 fps
    assert np.asarray(dataset[0]["pose"]).shape == (22, 3)
    moyo = [row["frame"] for row in dataset if "MOYO" in row["sequence"]]
    assert moyo == [0, 2, 4, 6, 8]


def test_linked_sub_datasets_are_found_once(tmp_path, amass_folder):
    root, _, _ = amass_folder
    linked = tmp_path / "linked_root"
    linked.mkdir()
    (linked / "all").symlink_to(root, target_is_directory=True)  # AMASS/<dataset> -> another disk
    (linked / "again").symlink_to(root, target_is_directory=True)  # the same folder twice
    (linked / "all" / "loop").symlink_to(linked, target_is_directory=True)  # a link back up the tree
    try:
        found = find_amass_files(linked)
    finally:
        (linked / "all" / "loop").unlink()
    assert sorted(path.name for path in found) == sorted(path.name for path in find_amass_files(root))


def test_missing_paths_and_empty_folders(tmp_path, amass_folder):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        find_amass_files(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "sub" / "notes.txt").write_text("no sequences")
    with pytest.raises(FileNotFoundError, match=r"No \.npz file under .*empty"):
        build_amass_dataset(empty)
    shapes_only = tmp_path / "shapes"
    shapes_only.mkdir()
    np.savez(shapes_only / "shape.npz", betas=np.zeros(16))
    with pytest.raises(FileNotFoundError, match="None of the 1 .npz files"):
        build_amass_dataset(shapes_only)
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        read_amass_sequence(tmp_path / "missing.npz")
    with pytest.raises(ValueError, match="notes.txt"):
        find_amass_files(empty / "sub" / "notes.txt")


def test_bad_files(tmp_path):
    no_rate = tmp_path / "no_rate.npz"
    _write_sequence(no_rate, _roots([0.0, 0.1]), fps=None)
    assert read_amass_sequence(no_rate).poses.shape == (2, 22, 3)
    with pytest.raises(ValueError, match="capture rate"):
        read_amass_sequence(no_rate, target_fps=30.0)
    narrow = tmp_path / "narrow.npz"
    np.savez(narrow, poses=np.zeros((4, 60)), mocap_framerate=np.array(30.0))
    with pytest.raises(ValueError, match=r"\(4, 60\)"):
        read_amass_sequence(narrow)
    broken = tmp_path / "nan.npz"
    poses = np.zeros((3, 156))
    poses[1, 7] = np.nan
    np.savez(broken, poses=poses, mocap_framerate=np.array(30.0))
    with pytest.raises(ValueError, match="NaN"):
        read_amass_sequence(broken)
    with pytest.raises(ValueError, match="output_up_axis"):
        load_amass_poses(no_rate, output_up_axis="x")


def test_training_split_holds_out_whole_sequences(amass_folder):
    from unipose.training.pose_tokenizer import PoseDataArguments, build_pose_datasets

    root, _, _ = amass_folder
    data_args = PoseDataArguments(
        dataset="amass", train_data_paths=[str(root)], validation_fraction=0.4, target_fps=None
    )
    train, validation = build_pose_datasets(data_args)
    assert len(train) + len(validation) == 12 + 10
    assert len(set(validation["sequence"])) == 1
    assert not set(train["sequence"]) & set(validation["sequence"])
