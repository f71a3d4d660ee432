# Copyright 2025 The UniPose contributors. Licensed under the Apache License, Version 2.0.
"""The pose ViT's pretraining: the flip augmentation, the regression model and the training run."""

import json

import numpy as np
import pytest
import torch
from transformers import AutoBackbone, TrainingArguments

from unipose.data.rendering import BodyRenderer, frontal_scene
from unipose.data.synthetic import build_synthetic_corpus
from unipose.pose_sampler import PoseSampler
from unipose.processing_unipose import UniPoseProcessor
from unipose.rotations import mirror_axis_angle
from unipose.training.pose_vision import (
    PoseImageCollator,
    PoseRegressionModel,
    PoseVisionArguments,
    load_backbone,
    parse_arguments,
    train_pose_vision,
)


TINY_TOWER = {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "mlp_ratio": 2,
              "image_size": [32, 24], "patch_size": 8}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("pose_vision") / "corpus"
    build_synthetic_corpus(path, num_images=20, image_size=48, kinds=["image_pose"], contact_sheet=False)
    return path


def _silhouette(image: np.ndarray) -> np.ndarray:
    return (image.astype(np.int16) < 235).any(-1)  # the frontal scene's background is white


def test_a_flipped_image_shows_the_mirrored_pose():
    """The flip augmentation's premise: mirroring the image left-right shows the pose mirrored across the
    body's x = 0 plane (the records' root orientation is relative to the camera's heading)."""
    renderer = BodyRenderer(image_size=96)
    poses = PoseSampler(seed=3).sample(8).poses
    scenes = [frontal_scene()] * len(poses)
    images = renderer.render(poses, scenes)
    mirrored = renderer.render(mirror_axis_angle(poses), scenes)

    def iou(a, b):
        return (a & b).sum() / (a | b).sum()

    flipped = [_silhouette(image[:, ::-1]) for image in images]
    same_pose = [iou(flip, _silhouette(image)) for flip, image in zip(flipped, images)]
    index = int(np.argmin(same_pose))  # the least symmetric pose
    assert iou(flipped[index], _silhouette(mirrored[index])) > 0.9
    assert same_pose[index] < 0.8


def test_collator_flips_images_and_mirrors_their_poses(corpus):
    from unipose.data.hub import load_corpus

    records = list(load_corpus(corpus, "image_pose", split="train").select(range(3)))
    _, image_processor = UniPoseProcessor.default_image_processors(pose_size=(32, 24))
    plain = PoseImageCollator(image_processor)(records)
    flipped = PoseImageCollator(image_processor, flip_probability=1.0)(records)
    assert plain["pose_pixel_values"].shape == (3, 3, 32, 24) and plain["poses"].shape == (3, 22, 3)
    torch.testing.assert_close(flipped["pose_pixel_values"], plain["pose_pixel_values"].flip(-1))
    torch.testing.assert_close(flipped["poses"], mirror_axis_angle(plain["poses"]))


def test_regression_model_starts_at_the_rest_pose_and_trains_the_backbone():
    torch.manual_seed(0)
    arguments = PoseVisionArguments(train_data=["unused"], **TINY_TOWER)
    model = PoseRegressionModel(AutoBackbone.from_config(arguments.backbone_config()), joint_loss_weight=2.0)
    pixels = torch.randn(2, 3, 32, 24)
    rest = model(pixels).rotations
    torch.testing.assert_close(rest, torch.eye(3).expand(2, 22, 3, 3))

    poses = 0.3 * torch.randn(2, 22, 3)
    model.head[-1].weight.data.normal_(0, 0.1)  # leave the rest pose, so that gradients reach the backbone
    output = model(pixels, poses)
    torch.testing.assert_close(output.loss, output.rotation_loss + 2.0 * output.joint_loss)
    assert output.rotation_loss > 0 and output.joint_loss > 0
    output.loss.backward()
    assert model.backbone.embeddings.patch_embeddings.projection.weight.grad.abs().sum() > 0


def test_the_head_reads_the_features_unipose_receives():
    from unipose.testing import tiny_model_and_processor

    model, _ = tiny_model_and_processor()
    config = model.config
    regression = PoseRegressionModel(
        model.model.pose_vision_tower,
        feature_grid=config.image_grid_size,
        feature_padding=config.pose_vision_feature_padding,
    )
    seen = {}
    regression.norm.register_forward_hook(lambda module, args, output: seen.update(head=args[0]))
    model.model.multi_modal_projector.register_forward_hook(lambda module, args, output: seen.update(unipose=args[0]))
    height, width = config.pose_vision_config.image_size
    pose_pixel_values = torch.randn(2, 3, height, width)
    clip_size = config.vision_config.image_size
    with torch.no_grad():
        regression(pose_pixel_values)
        model.model.get_image_features(torch.randn(2, 3, clip_size, clip_size), pose_pixel_values)
    pose_width = config.pose_vision_config.hidden_size
    assert seen["head"].shape == (2, config.image_grid_size**2, pose_width)
    torch.testing.assert_close(seen["head"], seen["unipose"][..., -pose_width:])


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"train_data": []}, "`train_data` is empty"),
        ({"hidden_size": 18, "num_attention_heads": 4}, "multiple of `num_attention_heads`"),
        ({"image_size": [30, 24]}, "multiples of `patch_size`"),
        ({"flip_probability": 1.5}, "`flip_probability` must be in"),
        ({"num_hidden_layers": 0}, "`num_hidden_layers` must be a positive integer"),
        ({"feature_grid": 0}, "`feature_grid` must be a positive integer or unset"),
        ({"feature_padding": -1}, "`feature_padding` must be a non-negative integer"),
    ],
)
def test_bad_arguments_are_named(overrides, message):
    with pytest.raises(ValueError, match=message):
        PoseVisionArguments(**{"train_data": ["corpus"], **overrides})


def test_training_saves_a_backbone_and_its_scores_and_resumes(corpus, tmp_path):
    output_dir = tmp_path / "run"

    def run(max_steps):
        tower = [f"--{name}={value}" for name, value in TINY_TOWER.items() if name != "image_size"]
        return parse_arguments([
            f"--output_dir={output_dir}", f"--train_data={corpus}", "--image_size", "32", "24", *tower,
            f"--max_steps={max_steps}", "--per_device_train_batch_size=4", "--save_steps=2", "--use_cpu=true",
            "--report_to=none", "--learning_rate=1e-3", "--resume_from_checkpoint=latest", "--disable_tqdm=true",
            "--logging_steps=1",
        ])

    args, training_args = run(2)
    assert isinstance(training_args, TrainingArguments) and args.image_size == [32, 24]
    first = train_pose_vision(args, training_args)
    assert first["steps"] == 2
    # Another batch size would not continue the same run: refused, naming the difference.
    args, training_args = run(4)
    training_args.per_device_train_batch_size = 2
    with pytest.raises(ValueError, match="train_batch_size: checkpoint 4 vs now 2"):
        train_pose_vision(args, training_args)
    resumed = train_pose_vision(*run(4))
    assert resumed["steps"] == 4  # two more steps from checkpoint-2, not four from scratch
    assert set(resumed) >= {"MPJPE", "PA-MPJPE", "baseline/MPJPE", "baseline/PA-MPJPE"}
    assert json.loads((output_dir / "eval_results.json").read_text()) == resumed
    history = json.loads((output_dir / "checkpoint-4" / "trainer_state.json").read_text())["log_history"]
    logged = [entry for entry in history if "loss" in entry]
    assert [entry["step"] for entry in logged] == [1, 2, 3, 4]
    for entry in logged:  # the parts of each step's loss, logged beside it
        assert entry["loss"] == pytest.approx(entry["rotation_loss"] + entry["joint_loss"], rel=1e-3)

    backbone = load_backbone(output_dir / "backbone")
    assert list(backbone.config.image_size) == [32, 24] and backbone.config.hidden_size == 16
    assert (output_dir / "backbone" / "preprocessor_config.json").is_file()
    assert not list(output_dir.glob(".*tmp*"))
