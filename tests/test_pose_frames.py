"""The world of a model's poses (`PoseVQVAEConfig.up_axis`). The corpora stand in SMPL's y-up world, the published
UniPose in AMASS's z-up world; training, evaluation and the demos turn the corpora's poses into the model's world
and its poses back. A model whose world is z reads and writes, through them, exactly what the same weights read and
write in y when given the turned poses."""

import copy

import numpy as np
import pytest
import torch
from datasets import Dataset

from unipose.body_model import pose_to_joints
from unipose.configuration_pose_vqvae import PoseVQVAEConfig
from unipose.configuration_unipose import UniPoseConfig
from unipose.data.amass import change_pose_up_axis
from unipose.evaluation.runner import generate_batch
from unipose.pose_sampler import sample_poses
from unipose.task_formats import SIMPLE_TEMPLATES
from unipose.testing import tiny_model_and_processor
from unipose.training.collator import UniPoseDataCollator
from unipose.training.tasks import CONVERSATION_FEATURES, build_example, text_only_conversations


@pytest.fixture(scope="module")
def twins():
    """The same tiny weights as a y-up model and as a z-up one, and their processor."""
    model_y, processor = tiny_model_and_processor()
    model_z = copy.deepcopy(model_y)
    model_z.config.pose_tokenizer_config.up_axis = "z"
    model_z.model.pose_tokenizer.config.up_axis = "z"
    assert model_z.config.pose_up_axis == "z" and model_y.config.pose_up_axis == "y"
    return model_y, model_z, processor


@pytest.fixture(scope="module")
def poses():
    return np.asarray(sample_poses(4, seed=3), dtype=np.float32)


def to_z(pose):
    return change_pose_up_axis(np.asarray(pose, dtype=np.float32), "y", "z")


def test_up_axis_is_validated_saved_and_read_through_the_unipose_config(tmp_path):
    assert PoseVQVAEConfig().up_axis == "y"
    with pytest.raises(Exception, match=r"`up_axis` must be 'y' \(SMPL's frame\) or 'z' \(AMASS's\), got 'x'"):
        PoseVQVAEConfig(up_axis="x")
    PoseVQVAEConfig(up_axis="z").save_pretrained(tmp_path)
    assert PoseVQVAEConfig.from_pretrained(tmp_path).up_axis == "z"
    assert UniPoseConfig(pose_tokenizer_config={"up_axis": "z"}).pose_up_axis == "z"


def test_a_pose_turned_into_amass_world_stands_along_z_with_the_same_body(poses):
    joints_y = pose_to_joints(torch.from_numpy(poses).double())
    joints_z = pose_to_joints(torch.from_numpy(to_z(poses)).double())
    # The world turns by +90 degrees about x: y goes to z, z to -y; the body itself does not change.
    turn = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]], dtype=torch.float64)
    pelvis_y, pelvis_z = joints_y[:, :1], joints_z[:, :1]
    torch.testing.assert_close(joints_z - pelvis_z, (joints_y - pelvis_y) @ turn.T, atol=1e-6, rtol=0)
    # A standing pose of the sampler (SMPL's rest frame) has its head above its pelvis along y, then along z.
    rest = np.zeros((1, 22, 3), dtype=np.float32)
    head = 15
    assert pose_to_joints(rest)[0, head, 1] > 0.3
    assert pose_to_joints(to_z(rest))[0, head, 2] - pose_to_joints(to_z(rest))[0, 0, 2] > 0.3
    np.testing.assert_allclose(change_pose_up_axis(to_z(poses), "z", "y"), poses, atol=1e-6)
    np.testing.assert_array_equal(to_z(poses)[:, 1:], poses[:, 1:])
    assert change_pose_up_axis(poses, "y", "y") is poses


def test_evaluation_feeds_the_model_its_world_and_scores_in_the_records(twins, poses):
    model_y, model_z, processor = twins
    record = {"id": "0", "pose": poses[0], "texts": ["a pose"], "source": "test"}
    turned = {**record, "pose": to_z(poses[0])}
    assert generate_batch(model_z, processor, "pose-to-text", [record], [None], 12) == generate_batch(
        model_y, processor, "pose-to-text", [turned], [None], 12
    )
    written_z = generate_batch(model_z, processor, "text-to-pose", [record], ["a pose"], 0)[0]["pose"]
    written_y = generate_batch(model_y, processor, "text-to-pose", [record], ["a pose"], 0)[0]["pose"]
    # The same weights write the same pose in their own world; the z-up model's comes back turned to y.
    np.testing.assert_allclose(
        written_z, change_pose_up_axis(np.asarray(written_y, dtype=np.float32), "z", "y"), atol=1e-5
    )
    assert not np.allclose(written_z, written_y, atol=1e-2)


def _examples(poses, turn=False):
    pose = to_z if turn else np.asarray
    records = [
        ("pose_to_text", {"id": "a", "pose": pose(poses[0]), "texts": ["a pose"], "source": "t"}),
        ("pose_editing", {"id": "b", "pose_a": pose(poses[1]), "pose_b": pose(poses[2]), "texts": ["turn"], "source": "t"}),
        ("text_to_pose", {"id": "c", "pose": pose(poses[3]), "texts": ["a pose"], "source": "t"}),
    ]
    rows = [build_example(record, task, SIMPLE_TEMPLATES[task], record["texts"][0]) for task, record in records]
    return Dataset.from_list(rows, features=CONVERSATION_FEATURES)


def test_training_encodes_the_corpus_poses_in_the_models_world(twins, poses):
    model_y, model_z, processor = twins
    batch_z = UniPoseDataCollator.from_model(model_z, processor)(list(_examples(poses)))
    batch_y = UniPoseDataCollator.from_model(model_y, processor)(list(_examples(poses, turn=True)))
    assert batch_z.keys() == batch_y.keys()
    for key in batch_z:
        torch.testing.assert_close(batch_z[key], batch_y[key], rtol=0, atol=0)
    # The turn matters: without it, the target codes (labels) or the input poses would differ.
    plain = UniPoseDataCollator.from_model(model_y, processor)(list(_examples(poses)))
    assert not torch.equal(plain["pose_values"], batch_z["pose_values"])


def test_text_only_conversations_write_the_codes_of_the_models_world(twins, poses):
    model_y, model_z, _ = twins
    written_z = text_only_conversations(_examples(poses), model_z.model.pose_tokenizer)
    written_y = text_only_conversations(_examples(poses, turn=True), model_y.model.pose_tokenizer)
    assert written_z["messages"] == written_y["messages"]
    assert written_z["messages"] != text_only_conversations(_examples(poses), model_y.model.pose_tokenizer)["messages"]


@pytest.mark.parametrize("layout", ["6d", "matrix"])
def test_poses_in_every_layout_turn_as_their_axis_angle(poses, layout):
    from unipose.rotations import to_axis_angle, to_rotation_6d, to_rotation_matrix

    convert = {"6d": to_rotation_6d, "matrix": to_rotation_matrix}[layout]
    turned = change_pose_up_axis(convert(torch.from_numpy(poses)), "y", "z")
    assert turned.shape == convert(torch.from_numpy(poses)).shape
    torch.testing.assert_close(to_axis_angle(turned), torch.from_numpy(to_z(poses)), atol=1e-5, rtol=0)


def test_the_demo_runs_every_task_with_a_model_whose_poses_stand_along_z(twins, tmp_path):
    # The demo's and the web demo's input poses are 6D rotations.
    from unipose.demo import load_inputs, run_demo

    _, model_z, processor = twins
    model_z.save_pretrained(tmp_path / "model")
    processor.save_pretrained(tmp_path / "model")
    summary = run_demo(tmp_path / "model", tmp_path / "out", load_inputs(), max_new_tokens=8)
    assert (tmp_path / "out" / "report.md").is_file() and summary
