"""Tests of the body model: the generated SMPL-H-format file, loading through smplx, joint kinematics."""

import argparse
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from unipose import body_model, generated_body
from unipose.body_model import (
    BodyJoints,
    BodyModel,
    build_generated_body_model,
    generated_body_model_path,
    pose_to_joints,
    resolve_body_model_path,
    write_generated_body_model,
)
from unipose.commands import body_model as body_model_command
from unipose.generated_body import NUM_VERTICES
from unipose.rotations import axis_angle_to_matrix, axis_angle_to_rotation_6d
from unipose.skeleton import JOINT_INDEX, NUM_BODY_JOINTS, SMPLH_MIRROR_INDEX, SMPLH_PARENTS

NUM_BETAS = 10


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("unipose_cache")


@pytest.fixture(scope="module")
def generated_path(cache_dir) -> Path:
    return generated_body_model_path(cache_dir)


@pytest.fixture(scope="module")
def arrays(generated_path) -> dict:
    with np.load(generated_path) as data:
        return {key: data[key] for key in data.files}


@pytest.fixture(scope="module")
def smplh(generated_path):
    """The classic smplx.SMPLH (axis-angle, its own parameters) on the generated file: the reference."""
    smplx = body_model._import_smplx()
    return smplx.SMPLH(model_path=str(generated_path), ext="npz", use_pca=False, num_betas=NUM_BETAS)


@pytest.fixture(scope="module")
def body_joints(generated_path) -> BodyJoints:
    return BodyJoints.from_body_model_file(generated_path, num_betas=NUM_BETAS)


def _smplh_forward(smplh, axis_angle, betas, transl):
    """smplx's own forward pass: axis-angle poses, flat hands."""
    batch = axis_angle.shape[0]
    return smplh(
        betas=betas,
        global_orient=axis_angle[:, 0],
        body_pose=axis_angle[:, 1:].reshape(batch, -1),
        left_hand_pose=torch.zeros(batch, 45),
        right_hand_pose=torch.zeros(batch, 45),
        transl=transl,
    )


def _random_axis_angle(batch, generator):
    # Directions uniform on the sphere, angles up to pi: covers large rotations as well as small ones.
    axis = torch.nn.functional.normalize(torch.randn(batch, NUM_BODY_JOINTS, 3, generator=generator), dim=-1)
    angle = torch.rand(batch, NUM_BODY_JOINTS, 1, generator=generator) * math.pi
    return axis * angle


# ----------------------------------------------------------------------------------------------------
# Joints-only forward kinematics against smplx
# ----------------------------------------------------------------------------------------------------


def test_joints_match_smplx_for_random_poses_betas_and_translations(smplh, body_joints):
    generator = torch.Generator().manual_seed(0)
    axis_angle = _random_axis_angle(32, generator)
    betas = torch.randn(32, NUM_BETAS, generator=generator) * 2
    transl = torch.randn(32, 3, generator=generator)
    with torch.no_grad():
        expected = _smplh_forward(smplh, axis_angle, betas, transl).joints[:, :NUM_BODY_JOINTS]
        joints = body_joints(axis_angle_to_matrix(axis_angle), betas=betas, transl=transl)
    torch.testing.assert_close(joints, expected, atol=1e-5, rtol=0)


def test_root_rotation_turns_the_body_about_the_pelvis_joint(smplh, body_joints):
    generator = torch.Generator().manual_seed(1)
    axis_angle = torch.zeros(1, NUM_BODY_JOINTS, 3)
    axis_angle[0, 0] = torch.tensor([0.0, math.pi / 2, 0.0])
    betas = torch.randn(1, NUM_BETAS, generator=generator)
    joints = body_joints(axis_angle_to_matrix(axis_angle), betas=betas)
    rest = body_joints.rest_joints(betas)
    torch.testing.assert_close(joints[:, 0], rest[:, 0])  # the pelvis stays where the shape puts it
    expected = _smplh_forward(smplh, axis_angle, betas, None).joints[:, :NUM_BODY_JOINTS]
    torch.testing.assert_close(joints, expected.detach(), atol=1e-5, rtol=0)


def test_body_model_matches_body_joints_and_accepts_any_pose_format(generated_path, body_joints):
    model = BodyModel(generated_path, num_betas=NUM_BETAS)
    generator = torch.Generator().manual_seed(2)
    axis_angle = _random_axis_angle(4, generator)
    betas = torch.randn(4, NUM_BETAS, generator=generator)
    with torch.no_grad():
        output = model(axis_angle_to_rotation_6d(axis_angle), betas=betas)
        from_axis_angle = model(axis_angle.numpy().reshape(4, -1), betas=betas.numpy())
        expected = body_joints(axis_angle_to_matrix(axis_angle), betas=betas)
    assert output.vertices.shape == (4, NUM_VERTICES, 3)
    assert output.joints.shape == (4, NUM_BODY_JOINTS, 3)
    assert output.faces.dtype == torch.long and int(output.faces.max()) < NUM_VERTICES
    torch.testing.assert_close(output.joints, expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(from_axis_angle.vertices, output.vertices, atol=1e-5, rtol=0)
    assert model.is_generated
    torch.testing.assert_close(model.body_joints()(axis_angle_to_matrix(axis_angle), betas), expected)


def test_an_smplh_file_without_hand_pca_arrays_loads_and_poses_the_same(generated_path, arrays, tmp_path):
    # The extended SMPL+H model for AMASS has no `hands_components*` / `hands_mean*` arrays, which smplx reads even
    # without PCA (an AttributeError); the body model does not need them.
    import smplx

    without = tmp_path / "model.npz"
    np.savez(without, **{key: value for key, value in arrays.items() if not key.startswith("hands_")})
    with pytest.raises(AttributeError, match="hands_components"):
        smplx.SMPLHLayer(model_path=str(without), ext="npz", use_pca=False)
    poses = _random_axis_angle(3, torch.Generator().manual_seed(4))
    with torch.no_grad():
        expected = BodyModel(generated_path)(poses)
        got = BodyModel(without)(poses)
    torch.testing.assert_close(got.vertices, expected.vertices, rtol=0, atol=0)
    torch.testing.assert_close(got.joints, expected.joints, rtol=0, atol=0)


def test_joints_are_differentiable(body_joints):
    rotation_6d = axis_angle_to_rotation_6d(torch.full((2, NUM_BODY_JOINTS, 3), 0.3)).requires_grad_()
    from unipose.rotations import rotation_6d_to_matrix

    body_joints(rotation_6d_to_matrix(rotation_6d)).square().sum().backward()
    assert rotation_6d.grad is not None and bool(torch.isfinite(rotation_6d.grad).all())
    assert float(rotation_6d.grad.abs().sum()) > 0


def test_pose_to_joints_keeps_the_array_type_and_dtype(cache_dir, generated_path, body_joints, monkeypatch):
    monkeypatch.setenv(body_model.CACHE_ENV, str(cache_dir))  # the default body: the file generated above
    generator = torch.Generator().manual_seed(3)
    axis_angle = _random_axis_angle(3, generator)
    expected = body_joints(axis_angle_to_matrix(axis_angle))
    from_numpy = pose_to_joints(axis_angle.numpy())
    assert isinstance(from_numpy, np.ndarray) and from_numpy.dtype == np.float32
    np.testing.assert_allclose(from_numpy, expected.numpy(), atol=1e-6)
    from_list = pose_to_joints(axis_angle[0].reshape(-1).tolist())
    assert from_list.shape == (1, NUM_BODY_JOINTS, 3)
    from_double = pose_to_joints(axis_angle.double())
    assert isinstance(from_double, torch.Tensor) and from_double.dtype == torch.float64
    torch.testing.assert_close(from_double.float(), expected, atol=1e-5, rtol=0)


# ----------------------------------------------------------------------------------------------------
# The generated file
# ----------------------------------------------------------------------------------------------------


def test_generated_file_is_deterministic(tmp_path, arrays):
    first, second = build_generated_body_model(), build_generated_body_model()
    assert sorted(first) == sorted(second) == sorted(arrays)
    for key in first:
        np.testing.assert_array_equal(first[key], second[key], err_msg=key)
        np.testing.assert_array_equal(first[key], arrays[key], err_msg=key)
    path_a = write_generated_body_model(tmp_path / "a" / "SMPLH_NEUTRAL.npz")
    path_b = write_generated_body_model(tmp_path / "b.npz")
    assert path_a.read_bytes() == path_b.read_bytes()
    assert not list(tmp_path.rglob("*.tmp"))  # the atomic write leaves no temporary file behind


def test_a_file_that_is_not_a_generated_body_model_is_replaced_only_when_asked(tmp_path):
    # It may be the licensed SMPL-H file, which cannot be downloaded again here.
    licensed = tmp_path / "smplh" / "SMPLH_NEUTRAL.npz"
    licensed.parent.mkdir()
    np.savez(licensed, v_template=np.ones((NUM_VERTICES, 3)))
    before = licensed.read_bytes()
    for out in (str(licensed), str(licensed.parent) + "/"):
        args = argparse.Namespace(out=out, overwrite=False)
        with pytest.raises(FileExistsError, match="exists and is not a generated body model"):
            body_model_command.run(args)
        assert licensed.read_bytes() == before
    written = write_generated_body_model(tmp_path / "generated.npz")
    assert write_generated_body_model(written) == written  # a generated file is written again without asking
    body_model_command.run(argparse.Namespace(out=str(licensed), overwrite=True))
    assert licensed.read_bytes() == written.read_bytes()


def test_generated_file_has_the_smplh_layout(arrays):
    expected_shapes = {
        "v_template": (NUM_VERTICES, 3),
        "J": (52, 3),
        "J_regressor": (52, NUM_VERTICES),
        "weights": (NUM_VERTICES, 52),
        "kintree_table": (2, 52),
        "shapedirs": (NUM_VERTICES, 3, 16),
        "posedirs": (NUM_VERTICES, 3, 51 * 9),
        "hands_componentsl": (45, 45),
        "hands_componentsr": (45, 45),
        "hands_meanl": (45,),
        "hands_meanr": (45,),
    }
    for key, shape in expected_shapes.items():
        assert arrays[key].shape == shape, key
    assert arrays["f"].ndim == 2 and arrays["f"].shape[1] == 3
    assert tuple(arrays["kintree_table"][0]) == SMPLH_PARENTS
    assert not arrays["posedirs"].any()


def test_generated_file_loads_through_smplx(smplh):
    assert smplh.get_num_verts() == NUM_VERTICES
    assert int(smplh.faces_tensor.max()) < NUM_VERTICES
    assert tuple(smplh.parents.tolist()) == SMPLH_PARENTS
    with torch.no_grad():
        output = _smplh_forward(smplh, torch.zeros(2, NUM_BODY_JOINTS, 3), torch.zeros(2, NUM_BETAS), None)
    assert output.vertices.shape == (2, NUM_VERTICES, 3)
    assert bool(torch.isfinite(output.vertices).all())


def test_smplx_keypoint_vertices_are_in_range_and_where_they_belong(smplh, arrays):
    ids = smplh.vertex_joint_selector.extra_joints_idxs
    assert int(ids.min()) >= 0 and int(ids.max()) < NUM_VERTICES
    smplx = body_model._import_smplx()
    named = smplx.vertex_ids.vertex_ids["smplh"]
    vertices, joints = arrays["v_template"], arrays["J"]
    position = {name: vertices[index] for name, index in named.items()}
    head, neck = joints[JOINT_INDEX["head"]], joints[JOINT_INDEX["neck"]]
    assert position["nose"][2] > head[2] + 0.05 and position["nose"][1] > neck[1]
    assert position["leye"][0] > 0 > position["reye"][0]
    assert position["lear"][0] > 0.05 and position["rear"][0] < -0.05
    for side, short, toe in (("left", "l", "L"), ("right", "r", "R")):
        wrist = joints[JOINT_INDEX[f"{side}_wrist"]]
        for finger in ("thumb", "index", "middle", "ring", "pinky"):
            tip = position[f"{short}{finger}"]
            last_joint = joints[JOINT_INDEX[f"{side}_{finger}3"]]
            # A fingertip lies beyond the finger's last joint, seen from the wrist.
            assert np.linalg.norm(tip - wrist) > np.linalg.norm(last_joint - wrist), f"{short}{finger}"
        ankle = joints[JOINT_INDEX[f"{side}_ankle"]]
        assert position[f"{toe}Heel"][2] < ankle[2] < position[f"{toe}BigToe"][2]
        assert position[f"{toe}BigToe"][1] < ankle[1]
        assert np.sign(position[f"{toe}SmallToe"][0]) == np.sign(ankle[0])


def test_regressor_reproduces_the_rest_joints(arrays):
    regressor = arrays["J_regressor"]
    np.testing.assert_allclose(regressor @ arrays["v_template"], arrays["J"], atol=1e-6, rtol=0)
    np.testing.assert_allclose(regressor.sum(axis=1), 1.0, atol=1e-9)
    assert regressor.min() >= 0


def test_skinning_weights_are_normalised_and_sparse(arrays):
    weights = arrays["weights"]
    assert weights.min() >= 0
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-12)
    assert (weights > 0).sum(axis=1).max() <= 4


def test_mesh_is_closed_and_faces_outwards(arrays):
    faces = arrays["f"].astype(np.int64)
    edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    _, counts = np.unique(edges, axis=0, return_counts=True)
    assert (counts == 2).all()  # every edge shared by exactly two triangles: a closed surface
    triangles = arrays["v_template"][faces]
    signed_volume = np.einsum("ij,ij->i", triangles[:, 0], np.cross(triangles[:, 1], triangles[:, 2])).sum()
    signed_volume /= 6
    assert 0.04 < signed_volume < 0.12  # cubic metres: positive (outward faces), and an adult's volume


def test_rest_body_is_an_upright_symmetric_adult(arrays):
    vertices, joints = arrays["v_template"], arrays["J"]
    height = vertices[:, 1].max() - vertices[:, 1].min()
    assert abs(height - generated_body.STATURE) < 0.03
    np.testing.assert_allclose(joints[0], 0.0, atol=1e-12)  # the pelvis joint at the origin
    mirrored = joints[list(SMPLH_MIRROR_INDEX)] * np.array([-1.0, 1.0, 1.0])
    np.testing.assert_allclose(mirrored, joints, atol=1e-12)
    height_of = {name: joints[JOINT_INDEX[name], 1] for name in ("head", "neck", "spine3")}
    assert height_of["head"] > height_of["neck"] > height_of["spine3"] > 0
    assert joints[JOINT_INDEX["left_ankle"], 1] < joints[JOINT_INDEX["left_knee"], 1] < 0
    assert joints[JOINT_INDEX["left_wrist"], 0] > joints[JOINT_INDEX["left_elbow"], 0] > 0  # T-pose


def test_shape_directions_change_stature_and_limb_length(smplh, body_joints):
    betas = torch.zeros(3, NUM_BETAS)
    betas[:, 0] = torch.tensor([-1.0, 0.0, 1.0])
    with torch.no_grad():
        vertices = _smplh_forward(smplh, torch.zeros(3, NUM_BODY_JOINTS, 3), betas, None).vertices
    heights = vertices[..., 1].amax(dim=1) - vertices[..., 1].amin(dim=1)
    assert heights[0] < heights[1] < heights[2]
    assert 0.03 < float(heights[2] - heights[1]) < 0.15

    limb = torch.zeros(2, NUM_BETAS)
    limb[1, 1] = 2.0
    rest = body_joints.rest_joints(limb, batch_size=2)
    leg = (rest[:, JOINT_INDEX["left_ankle"]] - rest[:, JOINT_INDEX["left_hip"]]).norm(dim=-1)
    trunk = (rest[:, JOINT_INDEX["neck"]] - rest[:, JOINT_INDEX["pelvis"]]).norm(dim=-1)
    assert float(leg[1] - leg[0]) > 0.02
    torch.testing.assert_close(trunk[1], trunk[0], atol=1e-4, rtol=0)


# ----------------------------------------------------------------------------------------------------
# Finding the file
# ----------------------------------------------------------------------------------------------------


def test_missing_file_error_says_where_to_get_smplh(monkeypatch, tmp_path):
    monkeypatch.delenv(body_model.SMPLH_PATH_ENV, raising=False)
    with pytest.raises(FileNotFoundError) as error:
        resolve_body_model_path()
    message = str(error.value)
    for needle in (
        "mano.is.tue.mpg.de", "Extended SMPL+H model", "UNIPOSE_SMPLH_PATH", "`path`", "generated",
    ):
        assert needle in message
    missing = tmp_path / "nowhere" / "SMPLH_NEUTRAL.npz"
    with pytest.raises(FileNotFoundError, match="nowhere"):
        BodyModel(missing)
    monkeypatch.setenv(body_model.SMPLH_PATH_ENV, str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"UNIPOSE_SMPLH_PATH"):
        BodyJoints.from_body_model_file()


def test_resolution_order_and_folder_layouts(monkeypatch, tmp_path, generated_path):
    smplx_layout = tmp_path / "smplx_layout"
    archive_layout = tmp_path / "archive_layout" / "neutral"
    for folder, name in ((smplx_layout, "SMPLH_NEUTRAL.npz"), (archive_layout, "model.npz")):
        folder.mkdir(parents=True)
        (folder / name).write_bytes(generated_path.read_bytes())
    monkeypatch.setenv(body_model.SMPLH_PATH_ENV, str(smplx_layout))
    assert resolve_body_model_path() == smplx_layout / "SMPLH_NEUTRAL.npz"
    # An explicit path wins over the environment variable.
    assert resolve_body_model_path(archive_layout.parent) == archive_layout / "model.npz"
    pickled = tmp_path / "SMPLH_NEUTRAL.pkl"
    pickled.write_bytes(b"")
    with pytest.raises(ValueError, match="npz"):
        resolve_body_model_path(pickled)


def test_smplx_compat_restores_only_missing_numpy_aliases():
    before = np.bool
    body_model._smplx_compat()
    assert np.float is float and np.int is int and np.object is object
    assert np.bool is before  # present in NumPy 2 again: left alone


# ----------------------------------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------------------------------


def test_bad_shapes_raise_value_errors_naming_the_argument(generated_path, body_joints):
    with pytest.raises(ValueError, match="`rotmats`"):
        body_joints(torch.eye(3).expand(2, 21, 3, 3))
    with pytest.raises(TypeError, match="`rotmats`"):
        body_joints(np.zeros((2, 22, 3, 3)))
    identity = torch.eye(3).expand(2, NUM_BODY_JOINTS, 3, 3)
    with pytest.raises(ValueError, match="`betas`"):
        body_joints(identity, betas=torch.zeros(2, NUM_BETAS + 1))
    with pytest.raises(ValueError, match="`betas`"):
        body_joints(identity, betas=torch.zeros(3, NUM_BETAS))
    with pytest.raises(ValueError, match="`transl`"):
        body_joints(identity, transl=torch.zeros(2, 2))
    with pytest.raises(ValueError, match="`transl`"):
        body_joints(identity, transl=torch.full((2, 3), float("nan")))
    with pytest.raises(ValueError, match="`num_betas`"):
        BodyJoints.from_body_model_file(generated_path, num_betas=17)
    with pytest.raises(ValueError, match="`num_betas`"):
        BodyModel(generated_path, num_betas=11)
    with pytest.raises(ValueError, match="`poses`"):
        pose_to_joints(np.zeros((21, 3)), body=body_joints)


# ----------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------


def test_cli_writes_the_generated_file(tmp_path, generated_path, capsys):
    from unipose.cli import main

    out = tmp_path / "out" / "body.npz"
    assert main(["body-model", "--out", str(out)]) == 0
    assert out.read_bytes() == generated_path.read_bytes()
    assert str(out) in capsys.readouterr().out
    folder = tmp_path / "folder"
    folder.mkdir()
    parser = argparse.ArgumentParser()
    body_model_command.add_arguments(parser)
    assert body_model_command.run(parser.parse_args(["--out", str(folder)])).endswith(".npz")
    assert (folder / "SMPLH_NEUTRAL.npz").is_file()
    # A folder that does not exist yet, written as one (`--out models/`), gets the file inside it.
    written = body_model_command.run(parser.parse_args(["--out", f"{tmp_path / 'new'}/"]))
    assert written == str(tmp_path / "new" / "SMPLH_NEUTRAL.npz") and (tmp_path / "new").is_dir()

