# Copyright 2025 The UniPose contributors. Licensed under the Apache License, Version 2.0.
"""
Pretraining of a pose ViT: SMPL body regression from images, as HMR 2.0 / TokenHMR train theirs.

UniPose's pose ViT comes pretrained: it is the backbone of HMR 2.0 / TokenHMR, which learnt to regress SMPL
parameters from person crops before UniPose freezes it. A tower of another size has no such weights, and
trained from random inside UniPose (through the language model's pose-code loss alone) it does not learn to
read the body. This module gives it the same pretraining on the image-pose records of a corpus:

- [`PoseRegressionModel`]: a transformers `VitPoseBackbone` and a head that takes the feature map as UniPose
  will (`feature_grid`, `feature_padding`: padded and resized to the language model's image grid), narrows
  each feature, then reads the 22 body rotations (6D; the root first, relative to the camera's heading, as
  the records store it) from all of them in their places with an MLP. (A head that pools the patches first,
  with one learned query, learns far more slowly from a random backbone: it must find the body before it can
  read it.) The loss is the mean squared error of the rotation matrices plus `joint_loss_weight` times the
  mean joint error (metres) of the posed body.
- [`PoseImageCollator`]: decodes the records' images through UniPose's pose-ViT preprocessing and, if asked,
  flips some of them left-right with the pose mirrored. Leave it off for the synthetic corpus, whose renders
  colour the left limbs blue and the right ones red: a flip would teach the tower to ignore the cue.
- [`train_pose_vision`]: trains with the transformers `Trainer` (checkpoints, resumption), scores MPJPE and
  PA-MPJPE on an evaluation split beside the mean-pose baseline, and writes the backbone alone to
  `output_dir/backbone` ([`load_backbone`] or `VitPoseBackbone.from_pretrained` loads it;
  `unipose.assembly.build_unipose` takes it as the pose vision tower).

```bash
python train/train_pose_vision.py --output_dir runs/pose_vision --train_data synthetic \
    --eval_data synthetic --max_steps 2000 --use_cpu
```
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import ImageOps
from torch import nn
from transformers import AutoBackbone, AutoConfig, Trainer, TrainingArguments, VitPoseBackboneConfig
from transformers.utils import ModelOutput, logging

from ..arguments import ScriptArgumentParser
from ..body_model import BodyJoints
from ..checkpoints import RunSignature, StagedCheckpointsMixin, check_resumable, resolve_trainer_checkpoint
from ..checks import check_positive_int
from ..data.corpus import load_split
from ..files import staged_directory, write_json_atomically
from ..metrics import pose_errors
from ..modeling_unipose import pose_feature_grid, resize_pose_features
from ..processing_unipose import UniPoseProcessor
from ..rotations import (
    matrix_to_rotation_6d,
    mean_pose,
    mirror_axis_angle,
    rotation_6d_to_matrix,
    to_rotation_matrix,
)
from ..skeleton import NUM_BODY_JOINTS

logger = logging.get_logger(__name__)

BACKBONE_DIR = "backbone"
RESULTS_NAME = "eval_results.json"


@dataclass
class PoseVisionArguments:
    """
    The data, the tower and the loss of a pose-ViT pretraining run (the optimisation is in `TrainingArguments`).

    Args:
        train_data (`list[str]`):
            Corpora with `image_pose` records (a synthetic corpus folder, or saved `image_pose` datasets); their
            `train` splits are concatenated.
        eval_data (`list[str]`, *optional*):
            Corpora to score on after training (their `eval_split`); `train_data` when unset.
        eval_split (`str`, *optional*, defaults to `"validation"`):
            The split scored after training.
        backbone_name_or_path (`str`, *optional*):
            A saved `VitPoseBackbone` to start from; a random one of the sizes below when unset.
        hidden_size, num_hidden_layers, num_attention_heads, mlp_ratio (`int`):
            Sizes of a new backbone.
        image_size (`list[int]`, *optional*, defaults to `[128, 96]`):
            Input `(height, width)` of a new backbone; the images are preprocessed to it.
        patch_size (`int`, *optional*, defaults to 8):
            Patch side of a new backbone.
        joint_loss_weight (`float`, *optional*, defaults to 1.0):
            Weight of the mean joint error (metres) beside the rotation-matrix error.
        feature_grid (`int`, *optional*):
            Side of the grid UniPose resizes the feature map to (its `image_grid_size`); the head reads that
            grid, so that the pose is learnt where UniPose will look for it. The whole map when unset.
        feature_padding (`int`, *optional*, defaults to 0):
            Zero columns UniPose adds on each side of the feature map before resizing it
            (`pose_vision_feature_padding`).
        flip_probability (`float`, *optional*, defaults to 0.0):
            Chance that a training image is flipped left-right (its pose mirrored); only for images whose
            left and right sides look alike (not the synthetic corpus, see the module docstring).
    """

    train_data: list[str] = field(metadata={"help": "Corpora with image_pose records to train on."})
    eval_data: list[str] | None = field(default=None, metadata={"help": "Corpora to score on (train_data if unset)."})
    eval_split: str = field(default="validation", metadata={"help": "Split scored after training."})
    backbone_name_or_path: str | None = field(default=None, metadata={"help": "A saved VitPoseBackbone to start from."})
    hidden_size: int = field(default=128, metadata={"help": "Width of a new backbone."})
    num_hidden_layers: int = field(default=4, metadata={"help": "Layers of a new backbone."})
    num_attention_heads: int = field(default=4, metadata={"help": "Attention heads of a new backbone."})
    mlp_ratio: int = field(default=2, metadata={"help": "MLP width / hidden width of a new backbone."})
    image_size: list[int] = field(default_factory=lambda: [128, 96], metadata={"help": "Input height width."})
    patch_size: int = field(default=8, metadata={"help": "Patch side of a new backbone."})
    feature_grid: int | None = field(default=None, metadata={"help": "UniPose's image grid side (the head reads it)."})
    feature_padding: int = field(default=0, metadata={"help": "UniPose's zero columns per side of the feature map."})
    joint_loss_weight: float = field(default=1.0, metadata={"help": "Weight of the joint-error loss."})
    flip_probability: float = field(default=0.0, metadata={"help": "Chance of a left-right flip."})

    def __post_init__(self):
        if isinstance(self.train_data, str):
            self.train_data = [self.train_data]
        if not self.train_data:
            raise ValueError("`train_data` is empty: give at least one corpus with image_pose records.")
        if isinstance(self.eval_data, str):
            self.eval_data = [self.eval_data]
        for name in ("hidden_size", "num_hidden_layers", "num_attention_heads", "mlp_ratio", "patch_size"):
            check_positive_int(getattr(self, name), name)
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"`hidden_size` ({self.hidden_size}) must be a multiple of `num_attention_heads` "
                f"({self.num_attention_heads})."
            )
        if len(self.image_size) != 2 or any(side % self.patch_size for side in self.image_size):
            raise ValueError(
                f"`image_size` must be [height, width], both multiples of `patch_size` ({self.patch_size}), "
                f"got {self.image_size}."
            )
        if self.feature_grid is not None and (not isinstance(self.feature_grid, int) or self.feature_grid < 1):
            raise ValueError(f"`feature_grid` must be a positive integer or unset, got {self.feature_grid!r}.")
        if not isinstance(self.feature_padding, int) or self.feature_padding < 0:
            raise ValueError(f"`feature_padding` must be a non-negative integer, got {self.feature_padding!r}.")
        if not 0.0 <= self.flip_probability <= 1.0:
            raise ValueError(f"`flip_probability` must be in [0, 1], got {self.flip_probability}.")
        if self.joint_loss_weight < 0:
            raise ValueError(f"`joint_loss_weight` must be >= 0, got {self.joint_loss_weight}.")

    def backbone_config(self) -> VitPoseBackboneConfig:
        """The configuration of a new backbone of these sizes (patch embedding padded by 2, as HMR 2.0's)."""
        return VitPoseBackboneConfig(
            hidden_size=self.hidden_size,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            mlp_ratio=self.mlp_ratio,
            image_size=tuple(self.image_size),
            patch_size=(self.patch_size, self.patch_size),
            layer_norm_eps=1e-6,
            out_indices=[-1],
        )


def load_backbone(path: str | os.PathLike) -> nn.Module:
    """A saved transformers backbone. (`AutoBackbone.from_pretrained` asks the Hub whether `path` is a repository
    before reading a local folder, which fails offline and for absolute paths.)"""
    config = AutoConfig.from_pretrained(path)
    return AutoBackbone._model_mapping[type(config)].from_pretrained(path)


@dataclass
class PoseRegressionOutput(ModelOutput):
    """
    Args:
        loss (`torch.FloatTensor`, *optional*): the training loss, when `poses` are given.
        rotations (`torch.FloatTensor` of shape `(batch, 22, 3, 3)`): the predicted body rotations.
        rotation_loss, joint_loss (`torch.FloatTensor`, *optional*): the two parts of `loss`.
    """

    loss: torch.FloatTensor | None = None
    rotations: torch.FloatTensor | None = None
    rotation_loss: torch.FloatTensor | None = None
    joint_loss: torch.FloatTensor | None = None


class PoseRegressionModel(nn.Module):
    """
    A pose ViT with an SMPL body-regression head.

    Args:
        backbone (`VitPoseBackbone`): the tower to train; its last feature map is read.
        body (`BodyJoints`, *optional*): forward kinematics for the joint loss; the generated stand-in body by
            default.
        joint_loss_weight (`float`, *optional*, defaults to 1.0): weight of the joint loss.
        feature_grid (`int`, *optional*): read the feature map resized to this square grid, as UniPose does;
            the map as it is when unset.
        feature_padding (`int`, *optional*, defaults to 0): zero columns added on each side before resizing.
        patch_channels (`int`, *optional*, defaults to 16): width each patch feature is narrowed to.
        head_size (`int`, *optional*, defaults to 512): hidden width of the head's MLP.
    """

    def __init__(
        self,
        backbone: nn.Module,
        body: BodyJoints | None = None,
        joint_loss_weight: float = 1.0,
        feature_grid: int | None = None,
        feature_padding: int = 0,
        patch_channels: int = 16,
        head_size: int = 512,
    ):
        super().__init__()
        self.backbone = backbone
        self.grid = pose_feature_grid(backbone, backbone.config.image_size)
        self.feature_grid, self.feature_padding = feature_grid, feature_padding
        read = (feature_grid, feature_grid) if feature_grid else self.grid
        self.norm = nn.LayerNorm(backbone.config.hidden_size)
        self.narrow = nn.Linear(backbone.config.hidden_size, patch_channels)
        self.head = nn.Sequential(
            nn.Linear(patch_channels * read[0] * read[1], head_size), nn.GELU(), nn.Linear(head_size, NUM_BODY_JOINTS * 6)
        )
        # Start from the rest pose: zero weights, and the identity's 6D as the bias.
        nn.init.zeros_(self.head[-1].weight)
        with torch.no_grad():
            self.head[-1].bias.copy_(matrix_to_rotation_6d(torch.eye(3)).repeat(NUM_BODY_JOINTS))
        self.body = BodyJoints.from_generated() if body is None else body
        self.body.requires_grad_(False)
        self.joint_loss_weight = joint_loss_weight

    def forward(self, pose_pixel_values: torch.Tensor, poses: torch.Tensor | None = None) -> PoseRegressionOutput:
        """
        Args:
            pose_pixel_values (`torch.FloatTensor` of shape `(batch, 3, height, width)`): preprocessed images.
            poses (`torch.FloatTensor` of shape `(batch, 22, 3)`, *optional*): the true axis-angle poses.
        """
        features = self.backbone(pose_pixel_values).feature_maps[-1]  # (batch, patches, width)
        if self.feature_grid:  # as `UniPoseModel.get_image_features` resizes it
            features = resize_pose_features(features, self.grid, self.feature_padding, self.feature_grid)
        features = self.narrow(self.norm(features)).flatten(1)
        rotation_6d = self.head(features).view(-1, NUM_BODY_JOINTS, 6)
        rotations = rotation_6d_to_matrix(rotation_6d)
        if poses is None:
            return PoseRegressionOutput(rotations=rotations)
        target = to_rotation_matrix(poses, num_joints=NUM_BODY_JOINTS, name="poses").to(rotations.dtype)
        rotation_loss = (rotations - target).square().mean()
        joint_loss = (self.body(rotations) - self.body(target)).norm(dim=-1).mean()
        loss = rotation_loss + self.joint_loss_weight * joint_loss
        return PoseRegressionOutput(
            loss=loss, rotations=rotations, rotation_loss=rotation_loss.detach(), joint_loss=joint_loss.detach()
        )


class PoseImageCollator:
    """
    Batches `image_pose` records as `pose_pixel_values` and `poses`, flipping images left-right at random (the
    pose mirrored with them: the records' root orientation is relative to the camera, whose right is the
    body's x axis).

    Args:
        image_processor: UniPose's pose-ViT image processor.
        flip_probability (`float`, *optional*, defaults to 0.0): chance of a flip per image.
    """

    def __init__(self, image_processor, flip_probability: float = 0.0):
        self.image_processor = image_processor
        self.flip_probability = flip_probability

    def __call__(self, records: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        images, poses = [], []
        for record in records:
            image = record["image"].convert("RGB")
            pose = torch.as_tensor(record["pose"], dtype=torch.float32)
            if self.flip_probability and torch.rand(()) < self.flip_probability:
                image, pose = ImageOps.mirror(image), mirror_axis_angle(pose)
            images.append(image)
            poses.append(pose)
        pixel_values = self.image_processor(images, return_tensors="pt")["pixel_values"]
        return {"pose_pixel_values": pixel_values, "poses": torch.stack(poses)}


class PoseVisionTrainer(StagedCheckpointsMixin, Trainer):
    """The transformers `Trainer`, logging the two parts of the loss (averaged since the last log) beside it."""

    PARTS = ("rotation_loss", "joint_loss")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._part_sums, self._part_count = dict.fromkeys(self.PARTS, 0.0), 0

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = model(**inputs)
        if model.training:  # summed as tensors: read (one device sync) only when logged
            for name in self.PARTS:
                self._part_sums[name] = self._part_sums[name] + getattr(outputs, name)
            self._part_count += 1
        return (outputs.loss, outputs) if return_outputs else outputs.loss

    def log(self, logs: dict[str, float], *args, **kwargs) -> None:
        if "loss" in logs and self._part_count:
            logs.update({name: round(float(total) / self._part_count, 5) for name, total in self._part_sums.items()})
            self._part_sums, self._part_count = dict.fromkeys(self.PARTS, 0.0), 0
        super().log(logs, *args, **kwargs)


@torch.no_grad()
def evaluate_pose_regression(model: PoseRegressionModel, dataset, image_processor, batch_size: int = 64) -> dict:
    """MPJPE and PA-MPJPE (mm, generated body) of `model` on `dataset`'s image-pose records."""
    collate = PoseImageCollator(image_processor)
    model.eval()
    device = next(model.parameters()).device
    predictions, targets = [], []
    for start in range(0, len(dataset), batch_size):
        batch = collate([dataset[index] for index in range(start, min(start + batch_size, len(dataset)))])
        predictions.append(model(batch["pose_pixel_values"].to(device)).rotations.cpu())
        targets.append(batch["poses"])
    return pose_errors(torch.cat(predictions), torch.cat(targets))


def train_pose_vision(args: PoseVisionArguments, training_args: TrainingArguments) -> dict[str, Any]:
    """
    Train a pose ViT with [`PoseRegressionModel`] and save the backbone to `output_dir/backbone`.

    Returns:
        `dict`: the scores on the evaluation split (`MPJPE`, `PA-MPJPE`, in mm) and those of the mean training
        pose (`baseline/MPJPE`, `baseline/PA-MPJPE`), also written to `output_dir/eval_results.json`.
    """
    training_args.remove_unused_columns = False  # the collator reads the raw `image` and `pose` columns
    train_dataset = load_split(args.train_data, "image_pose", "train")
    eval_dataset = load_split(args.eval_data or args.train_data, "image_pose", args.eval_split)
    if args.backbone_name_or_path:
        backbone = load_backbone(args.backbone_name_or_path)
    else:
        torch.manual_seed(training_args.seed)
        backbone = AutoBackbone.from_config(args.backbone_config())
    height, width = backbone.config.image_size
    _, image_processor = UniPoseProcessor.default_image_processors(pose_size=(height, width))
    model = PoseRegressionModel(
        backbone,
        joint_loss_weight=args.joint_loss_weight,
        feature_grid=args.feature_grid,
        feature_padding=args.feature_padding,
    )
    logger.info(
        f"Pose ViT pretraining: {sum(p.numel() for p in backbone.parameters()):,} backbone parameters, "
        f"{len(train_dataset):,} training images, input {height}x{width}."
    )

    # What fixes the batches: only the run that wrote a checkpoint continues from it (a longer `max_steps` may
    # extend it).
    signature = RunSignature(
        seed=training_args.seed,
        data_seed=training_args.data_seed,
        train_batch_size=training_args.per_device_train_batch_size * training_args.gradient_accumulation_steps,
        num_train_images=len(train_dataset),
        flip_probability=args.flip_probability,
    )
    trainer = PoseVisionTrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        data_collator=PoseImageCollator(image_processor, args.flip_probability),
        callbacks=[signature],
    )
    checkpoint = resolve_trainer_checkpoint(training_args.resume_from_checkpoint, training_args.output_dir)
    if checkpoint is not None:
        check_resumable(checkpoint, signature)
    trainer.train(resume_from_checkpoint=checkpoint)

    scores = evaluate_pose_regression(model, eval_dataset, image_processor)
    results = {name: round(value, 2) for name, value in scores.items()}
    baseline = mean_pose(train_dataset.with_format("numpy")[:]["pose"])
    target = eval_dataset.with_format("numpy")[:]["pose"]
    baseline_errors = pose_errors(baseline[None].repeat(len(target), axis=0), target)
    results.update({f"baseline/{name}": round(value, 2) for name, value in baseline_errors.items()})
    results.update({"eval_split": args.eval_split, "num_eval_images": len(eval_dataset), "steps": trainer.state.global_step})
    logger.info(f"Pose ViT on {len(eval_dataset)} {args.eval_split} images: {results}")

    output_dir = Path(training_args.output_dir)
    with staged_directory(output_dir / BACKBONE_DIR) as staging:
        backbone.save_pretrained(staging)
        image_processor.save_pretrained(staging)
    write_json_atomically(output_dir / RESULTS_NAME, results)
    return results


def parse_arguments(argv: list[str] | None = None) -> tuple[PoseVisionArguments, TrainingArguments]:
    """`PoseVisionArguments` and `TrainingArguments` from `--config FILE` (YAML) and the command line (which
    wins); a single YAML or JSON path stands for `--config PATH`."""
    return ScriptArgumentParser((PoseVisionArguments, TrainingArguments)).parse(argv)


__all__ = [
    "PoseImageCollator",
    "PoseRegressionModel",
    "PoseRegressionOutput",
    "PoseVisionArguments",
    "evaluate_pose_regression",
    "load_backbone",
    "parse_arguments",
    "train_pose_vision",
]
