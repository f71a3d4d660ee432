"""Tests of the pose pictures (skeletons, pairs, contact sheets) and of the OBJ writer."""

import sys

import numpy as np
import pytest
import torch

from unipose import visualization
from unipose.body_model import BodyJoints, BodyModel, generated_body_model_path
from unipose.pose_sampler import joint_angles_to_pose, sample_poses
from unipose.rotations import axis_angle_to_matrix, matrix_to_axis_angle
from unipose.skeleton import JOINT_INDEX, NUM_BODY_JOINTS
from unipose.visualization import contact_sheet, render_pose, render_pose_pair, save_obj


pytest.importorskip("matplotlib")
PIL = pytest.importorskip("PIL.Image")


@pytest.fixture(scope="module")
def body_file(tmp_path_factory):
    return generated_body_model_path(tmp_path_factory.mktemp("unipose_cache"))


@pytest.fixture(scope="module")
def body(body_file) -> BodyJoints:
    return BodyJoints.from_body_model_file(body_file)


@pytest.fixture(scope="module")
def poses() -> np.ndarray:
    return sample_poses(6, seed=11)


def _color_mask(image, color: str, tolerance: int = 40) -> np.ndarray:
    rgb = np.array([int(color[i : i + 2], 16) for i in (1, 3, 5)])
    return np.abs(np.asarray(image).astype(int) - rgb).max(axis=-1) <= tolerance


def _turned(pose: np.ndarray, degrees: float) -> np.ndarray:
    """The pose turned about the vertical axis (its heading changed)."""
    pose = torch.from_numpy(np.array(pose, dtype=np.float64))
    turn = axis_angle_to_matrix(torch.tensor([0.0, np.radians(degrees), 0.0], dtype=torch.float64))
    pose[0] = matrix_to_axis_angle(turn @ axis_angle_to_matrix(pose[0]))
    return pose.numpy()


def test_render_pose_writes_a_png_of_the_requested_size(tmp_path, poses, body):
    path = tmp_path / "pose.png"
    image = render_pose(poses[0], path=path, title="a pose", body_model=body, size=(320, 240))
    assert image.size == (320, 240) and image.mode == "RGB"
    with PIL.open(path) as written:
        assert written.format == "PNG" and written.size == (320, 240)
        np.testing.assert_array_equal(np.asarray(written.convert("RGB")), np.asarray(image))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pose.png"]  # no temporary file left
    # Both sides of the body are drawn, in their colours.
    assert _color_mask(image, visualization.LEFT_COLOR).sum() > 50
    assert _color_mask(image, visualization.RIGHT_COLOR).sum() > 50


def test_left_limbs_appear_on_the_right_of_a_body_facing_the_camera(body):
    # Arms out sideways and legs apart, upright: the camera faces the body, so its left is on our right.
    angles = np.zeros((NUM_BODY_JOINTS, 3))
    for side in ("left", "right"):
        angles[JOINT_INDEX[f"{side}_hip"], 2] = 25.0
    image = render_pose(joint_angles_to_pose(angles), body_model=body)
    columns = np.arange(image.size[0])
    left_x = columns[_color_mask(image, visualization.LEFT_COLOR).any(axis=0)].mean()
    right_x = columns[_color_mask(image, visualization.RIGHT_COLOR).any(axis=0)].mean()
    assert left_x > right_x + 40


def test_heading_does_not_change_the_picture(poses, body):
    first = np.asarray(render_pose(poses[1], body_model=body)).astype(int)
    turned = np.asarray(render_pose(_turned(poses[1], 123.0), body_model=body)).astype(int)
    # Only anti-aliasing may differ.
    assert np.abs(first - turned).mean() < 0.5
    other = np.asarray(render_pose(poses[2], body_model=body)).astype(int)
    assert np.abs(first - other).mean() > 2.0


def test_pose_formats_give_the_same_picture(poses, body):
    from_axis_angle = np.asarray(render_pose(poses[3], body_model=body))
    matrices = axis_angle_to_matrix(torch.from_numpy(poses[3]))
    from_matrices = np.asarray(render_pose(matrices[None], body_model=body))
    assert np.abs(from_axis_angle.astype(int) - from_matrices.astype(int)).mean() < 0.5


def test_pair_uses_the_first_pose_camera(tmp_path, poses, body):
    path = tmp_path / "pair.png"
    titled = render_pose_pair(
        poses[0], poses[1], path=path, title="a long instruction " * 12, body_model=body
    )
    assert titled.size == (720, 400) and path.exists()
    image = render_pose_pair(poses[0], poses[0], body_model=body, size=(600, 300))
    # The same pose twice gives the same two panels; turned, B looks different from A.
    pixels = np.asarray(image).astype(int)
    left, right = pixels[:, :270], pixels[:, 330:]
    assert np.abs(left - right).mean() < 1.0
    turned = np.asarray(render_pose_pair(poses[0], _turned(poses[0], 90.0), body_model=body, size=(600, 300)))
    assert np.abs(turned[:, :270].astype(int) - turned[:, 330:].astype(int)).mean() > 1.0


def test_contact_sheet_grid_size_and_captions(tmp_path, poses, body):
    path = tmp_path / "sheet.png"
    captions = [f"pose {i} with a long caption that has to wrap over lines" for i in range(5)]
    sheet = contact_sheet(
        poses[:5], captions=captions, path=path, columns=3, cell_size=(120, 150), body_model=body
    )
    assert sheet.size == (3 * 120, 2 * 150)
    with PIL.open(path) as written:
        assert written.format == "PNG" and written.size == sheet.size
    # The empty sixth cell stays white.
    assert (np.asarray(sheet)[150:, 240:] == 255).all()
    assert contact_sheet(poses[:2], columns=8, cell_size=(100, 100), body_model=body).size == (200, 100)


def test_mesh_rendering(body_file):
    model = BodyModel(body_file)
    pose = sample_poses(1, seed=2)
    with_mesh = np.asarray(render_pose(pose, body_model=model, size=(200, 200))).astype(int)
    skeleton = np.asarray(render_pose(pose, body_model=model.body_joints(), size=(200, 200))).astype(int)

    # The mesh's faint blue-grey (blue a few levels above red, unlike the neutral greys of the floor and
    # shadow or the saturated limbs) covers many pixels that the skeleton alone leaves white.
    def mesh_pixels(pixels):
        tint = pixels[..., 2] - pixels[..., 0]
        return ((tint >= 3) & (tint <= 12) & (pixels.mean(-1) < 235)).sum()

    assert mesh_pixels(with_mesh) > 2000 and mesh_pixels(skeleton) < 200


def test_bad_input(poses, body):
    with pytest.raises(ValueError, match="pose"):
        render_pose(np.zeros((5, 3)), body_model=body)
    with pytest.raises(ValueError, match="one pose"):
        render_pose(poses[:2], body_model=body)
    with pytest.raises(ValueError, match="size"):
        render_pose(poses[0], size=(0, 100), body_model=body)
    with pytest.raises(ValueError, match="captions"):
        contact_sheet(poses[:3], captions=["only one"], body_model=body)
    with pytest.raises(ValueError, match="columns"):
        contact_sheet(poses[:3], columns=0, body_model=body)
    with pytest.raises(ValueError, match="captions"):
        render_pose_pair(poses[0], poses[1], captions=("A",), body_model=body)


def test_missing_matplotlib_names_the_extra(monkeypatch, poses, body):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r"unipose\[demo\]"):
        render_pose(poses[0], body_model=body)


def test_save_obj(tmp_path):
    vertices = torch.rand(7, 3)
    faces = np.array([[0, 1, 2], [2, 3, 4], [4, 5, 6]])
    path = save_obj(vertices, faces, tmp_path / "mesh.obj")
    lines = path.read_text().splitlines()
    vertex_lines = [line for line in lines if line.startswith("v ")]
    face_lines = [line for line in lines if line.startswith("f ")]
    assert len(vertex_lines) == 7 and len(face_lines) == 3
    np.testing.assert_allclose(
        np.array([line.split()[1:] for line in vertex_lines], float), vertices.numpy(), atol=1e-6
    )
    assert face_lines[1] == "f 3 4 5"  # 1-based
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mesh.obj"]


def test_save_obj_rejects_bad_meshes(tmp_path):
    with pytest.raises(ValueError, match="vertices"):
        save_obj(np.zeros((4, 2)), np.zeros((1, 3), int), tmp_path / "a.obj")
    with pytest.raises(ValueError, match="NaN"):
        save_obj(np.full((3, 3), np.nan), np.zeros((1, 3), int), tmp_path / "a.obj")
    with pytest.raises(ValueError, match="faces"):
        save_obj(np.zeros((3, 3)), np.array([[0, 1, 3]]), tmp_path / "a.obj")
    with pytest.raises(ValueError, match="faces"):
        save_obj(np.zeros((3, 3)), np.zeros((1, 3)), tmp_path / "a.obj")
    with pytest.raises(TypeError, match="vertices"):
        save_obj("not a mesh", np.zeros((1, 3), int), tmp_path / "a.obj")
    assert not list(tmp_path.iterdir())


def test_command_line_contact_sheet(tmp_path, monkeypatch, body_file):
    from unipose.cli import main

    monkeypatch.setenv("UNIPOSE_CACHE", str(body_file.parents[2]))  # the generated body, made once
    out, sheet = tmp_path / "poses.npz", tmp_path / "sheet.png"
    argv = ["sample-poses", "--num", "80", "--seed", "2", "--out", str(out), "--contact-sheet", str(sheet)]
    assert main(argv + ["--sheet-size", "20", "--sheet-columns", "10"]) == 0
    with PIL.open(sheet) as image:
        assert image.format == "PNG" and image.size == (10 * 200, 2 * 230)
