"""
Stage 0 of UniPose: training the pose tokenizer ([`PoseVQVAE`]) with the transformers
[`~transformers.Trainer`].

Run it with `python train/train_pose_tokenizer.py --config train/recipes/stage0_cpu.yaml [--field value ...]`
or `unipose train-tokenizer` with the same options. A recipe is a YAML mapping whose keys are the fields of
[`PoseDataArguments`], [`PoseTokenizerModelArguments`] (the tokenizer's size: the fields of
[`PoseVQVAEConfig`]) and [`PoseTokenizerTrainingArguments`] (transformers' `TrainingArguments` with the loss
and augmentation settings); unknown keys are refused, and options on the command line override the recipe.

Objective, for a batch of poses with 6D rotations `p`, body-model vertices `v` and joints `j` (hats: the
decoded pose, turned into rotation matrices by Gram-Schmidt and posed by the body model):

    L = rotation_loss_weight * mean|p^ - p| + vertex_loss_weight * mean|v^ - v|
        + joint_loss_weight * mean|j^ - j| + commitment_loss

with L1 (mean absolute difference) in every term by default (`reconstruction_loss="l1"`): on the 6D numbers,
and on coordinates in metres for the vertices and joints. `reconstruction_loss="mse"` is the loss of the
authors' training code, which trained the published weights: mean squared differences of the rotation
matrices and of the joints, and of the vertices weighted by [`vertex_area_weights`]. The paper's weights are
(20, 100, 100). The codebook follows exponential moving averages, so there is no codebook ("embedding") loss
term; the commitment loss comes from the model.

Augmentation changes what the model sees, and is reproducible from `(seed, step)`:

- orientation perturbation: the root rotation is composed, on the world side, with a random rotation of
  up to `max_heading_perturbation` degrees about the vertical axis and up to `max_tilt_perturbation`
  degrees about each horizontal axis. The target is the perturbed pose: the tokenizer must reproduce the
  orientation it is given.
- joint noise: the joints of one random body part ([`BODY_PARTS`]) are each turned by a small random
  rotation (axis-angle drawn from N(0, s^2) per component, in radians), with `s` growing every
  `joint_noise_interval` steps. The target is the clean pose: the tokenizer learns to denoise. (The paper
  describes this noise; the authors' training code adds it to a copy of the batch, so the published weights
  were trained without it: `joint_noise_probability=0` trains as they were.)

Training resumes exactly (`resume_from_checkpoint`): the Trainer's checkpoints keep the model (its codebook
statistics too), the optimizer, the schedule and the random state, the batch order is a function of the seed
and the epoch, and the augmentation a function of `(seed, step)`, so a run killed and resumed ends with the
very weights of an uninterrupted run. A checkpoint of a different run (batch size, steps, data or seeds) is
refused.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import datasets
import numpy as np
import torch
import torch.nn.functional as F
from transformers import PreTrainedConfig, TrainerCallback, TrainingArguments
from transformers.utils import logging

from ..arguments import ScriptArgumentParser
from ..body_model import BodyJoints, BodyModel
from ..checkpoints import TRAINER_STATE_NAME, RunSignature, check_resumable, resolve_trainer_checkpoint
from ..configuration_pose_vqvae import PoseVQVAEConfig
from ..data.amass import (
    AMASS_UP_AXIS,
    SMPL_UP_AXIS,
    build_amass_dataset,
    change_up_axis,
    normalize_heading,
    rotation_from_tait_bryan,
)
from ..files import staged_files, write_json_atomically
from ..metrics import mpjpe, pa_mpjpe
from ..modeling_pose_vqvae import PoseVQVAE
from ..pose_sampler import PoseSampler
from ..rotations import axis_angle_to_matrix, matrix_to_rotation_6d, rotation_6d_to_matrix
from ..skeleton import JOINT_INDEX, NUM_BODY_JOINTS
from .scoring import WholeSetScoringTrainer

logger = logging.get_logger(__name__)

EVAL_RESULTS_NAME = "eval_results.json"
TRAINING_ARGS_NAME = "training_args.json"

# Groups of joints that the joint-noise augmentation perturbs together. The root (pelvis) belongs to no
# part: its rotation is the global orientation, which has an augmentation of its own.
BODY_PARTS: dict[str, tuple[int, ...]] = {
    name: tuple(JOINT_INDEX[joint] for joint in joints)
    for name, joints in {
        "left_arm": ("left_collar", "left_shoulder", "left_elbow", "left_wrist"),
        "right_arm": ("right_collar", "right_shoulder", "right_elbow", "right_wrist"),
        "left_leg": ("left_hip", "left_knee", "left_ankle", "left_foot"),
        "right_leg": ("right_hip", "right_knee", "right_ankle", "right_foot"),
        "torso": ("spine1", "spine2", "spine3", "neck", "head"),
    }.items()
}
BODY_PART_NAMES = tuple(BODY_PARTS)

# Streams of the per-step random generators, so that augmentations never share numbers with other draws.
_AUGMENTATION_STREAM = 1


# ----------------------------------------------------------------------------------------------------
# Arguments
# ----------------------------------------------------------------------------------------------------


@dataclass
class PoseDataArguments:
    """Where the training and validation poses come from."""

    dataset: Literal["procedural", "amass"] = field(
        default="procedural",
        metadata={
            "help": "`procedural`: poses generated by `unipose.pose_sampler` (offline); `amass`: folders of "
            "AMASS (or MOYO, in the AMASS format) SMPL-H .npz sequences given in `train_data_paths`."
        },
    )
    train_data_paths: list[str] = field(
        default_factory=list,
        metadata={"help": "AMASS folders (searched recursively) or .npz files to train on."},
    )
    validation_data_paths: list[str] = field(
        default_factory=list,
        metadata={
            "help": "AMASS folders or .npz files held out for validation. When empty, `validation_fraction` "
            "of the training sequences (whole sequences, chosen by `train_seed`) are held out instead."
        },
    )
    validation_fraction: float = field(
        default=0.05,
        metadata={"help": "Share of AMASS sequences held out when `validation_data_paths` is empty."},
    )
    target_fps: float | None = field(
        default=30.0,
        metadata={"help": "Subsample AMASS sequences to this frame rate; null keeps every frame."},
    )
    heading_normalization: bool = field(
        default=True,
        metadata={
            "help": "Zero each pose's heading (its turn about the vertical axis), AMASS and procedural alike."
        },
    )
    up_axis: Literal["y", "z"] = field(
        default=AMASS_UP_AXIS,
        metadata={
            "help": "Vertical axis of the world frame the tokenizer is trained in; the orientation "
            "perturbation turns about it. `z`: AMASS's frame (PoseScript's, the released models'); `y`: "
            "SMPL's rest frame, the procedural sampler's and the corpora's. Each source is converted into this "
            "frame, and the saved tokenizer records it (`PoseVQVAEConfig.up_axis`): UniPose's training, "
            "evaluation and demos turn the corpora's poses into it."
        },
    )
    num_train_poses: int = field(default=100_000, metadata={"help": "Procedural training poses."})
    num_validation_poses: int = field(default=2_000, metadata={"help": "Procedural validation poses."})
    train_seed: int = field(
        default=0,
        metadata={
            "help": "Seed of the procedural training poses, and of the AMASS sequences held out for "
            "validation (the batch order follows `data_seed`, or `seed`, as in any Trainer run)."
        },
    )
    validation_seed: int = field(
        default=1,
        metadata={"help": "Seed of the procedural validation poses (must differ from `train_seed`)."},
    )

    def __post_init__(self):
        if self.dataset == "amass" and not self.train_data_paths:
            raise ValueError(
                "`dataset` is 'amass' but `train_data_paths` is empty: list AMASS folders or .npz files."
            )
        if not 0.0 < self.validation_fraction < 1.0:
            raise ValueError(f"`validation_fraction` must lie in (0, 1), got {self.validation_fraction}.")
        if self.target_fps is not None and not self.target_fps > 0:
            raise ValueError(f"`target_fps` must be positive or null, got {self.target_fps}.")
        for name in ("num_train_poses", "num_validation_poses"):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be a positive integer, got {getattr(self, name)}.")
        if self.dataset == "procedural" and self.train_seed == self.validation_seed:
            raise ValueError(
                f"`train_seed` and `validation_seed` are both {self.train_seed}: the validation poses would "
                "be the training poses. Choose two different seeds."
            )


def _model_arguments_class():
    """[`PoseTokenizerModelArguments`]: `model_name_or_path` and one optional field per [`PoseVQVAEConfig`]
    size setting, built from the configuration itself so that the two never disagree."""
    base = {f.name for f in dataclasses.fields(PreTrainedConfig)}
    fields = [
        (
            "model_name_or_path",
            str | None,
            field(
                default=None,
                metadata={
                    "help": "Start from this saved tokenizer instead of a new one built from the "
                    "fields below."
                },
            ),
        )
    ]
    for config_field in dataclasses.fields(PoseVQVAEConfig):
        # The world frame is the data's (`PoseDataArguments.up_axis`), written into the configuration by the run.
        if config_field.name in base or config_field.name == "up_axis":
            continue
        kind = float if "float" in str(config_field.type) else int
        help_text = (
            f"`PoseVQVAEConfig.{config_field.name}` (its default: {config_field.default}); null keeps the "
            "default, or the saved tokenizer's value."
        )
        fields.append((config_field.name, kind | None, field(default=None, metadata={"help": help_text})))
    namespace = {
        "config_overrides": lambda self: {
            name: value
            for name, value in dataclasses.asdict(self).items()
            if name != "model_name_or_path" and value is not None
        }
    }
    cls = dataclasses.make_dataclass("PoseTokenizerModelArguments", fields, namespace=namespace)
    cls.__module__ = __name__
    cls.__doc__ = (
        "The tokenizer to train: a saved one (`model_name_or_path`) or a new [`PoseVQVAEConfig`] whose "
        "fields the recipe sets (those left null keep the configuration's defaults). `config_overrides()` "
        "returns the set ones."
    )
    return cls


PoseTokenizerModelArguments = _model_arguments_class()


# The training arguments that set the augmentation of the training poses (and so the run's random draws).
AUGMENTATION_ARGUMENTS = (
    "joint_noise_probability", "joint_noise_scale", "joint_noise_increment", "joint_noise_interval",
    "joint_noise_max_scale", "orientation_perturbation_probability", "max_heading_perturbation",
    "max_tilt_perturbation",
)  # fmt: skip

@dataclass
class PoseTokenizerTrainingArguments(TrainingArguments):
    """
    transformers' [`~transformers.TrainingArguments`] with stage 0's loss weights, body model and
    augmentation, and defaults of the paper's recipe (batch 256, AdamW at 2e-4 with a cosine schedule, 240
    epochs; validation and a checkpoint every 1,000 steps).
    """

    per_device_train_batch_size: int = field(
        default=256, metadata={"help": "Poses per training step and device."}
    )
    per_device_eval_batch_size: int = field(
        default=1024, metadata={"help": "Poses per validation forward pass."}
    )
    num_train_epochs: float = field(default=240.0, metadata={"help": "Passes over the training poses."})
    learning_rate: float = field(default=2e-4, metadata={"help": "Peak AdamW learning rate."})
    max_grad_norm: float = field(default=0.0, metadata={"help": "Clip the gradient norm; 0: no clipping."})
    lr_scheduler_type: str = field(
        default="cosine", metadata={"help": "Learning-rate decay after the warm-up."}
    )
    logging_steps: float = field(
        default=50, metadata={"help": "Log the mean training losses every this many steps."}
    )
    eval_strategy: str = field(
        default="steps", metadata={"help": "`steps`: validate every `eval_steps`; `no`."}
    )
    eval_steps: float = field(
        default=1000, metadata={"help": "Validate every this many steps (and at the end)."}
    )
    save_steps: float = field(default=1000, metadata={"help": "Write a checkpoint every this many steps."})
    save_total_limit: int | None = field(
        default=2, metadata={"help": "Keep only the newest this many checkpoints; null keeps all."}
    )
    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Kept False: the collator reads the `pose` column itself."}
    )
    num_threads: int | None = field(
        default=None,
        metadata={
            "help": "CPU threads for torch (`torch.set_num_threads`); null keeps torch's default. On a "
            "shared CPU, 1 is far faster than a thread team that waits for its slowest member."
        },
    )
    max_train_minutes: float | None = field(
        default=None,
        metadata={
            "help": "Stop early (with a checkpoint and the final save) once training has run this long; the "
            "learning-rate schedule still follows `max_steps`. The run can be resumed to `max_steps` later."
        },
    )
    reconstruction_loss: Literal["l1", "mse"] = field(
        default="l1",
        metadata={
            "help": "`l1`: mean absolute differences of the 6D rotations, vertices and joints; `mse`: the authors' "
            "training code (the published weights): mean squared differences of the rotation matrices and "
            "joints, and of the vertices weighted by the area of their triangles."
        },
    )
    rotation_loss_weight: float = field(default=20.0, metadata={"help": "lambda_1: the rotation term."})
    vertex_loss_weight: float = field(
        default=100.0,
        metadata={"help": "lambda_2: the body-model vertex term (m); 0 skips the mesh entirely."},
    )
    joint_loss_weight: float = field(
        default=100.0, metadata={"help": "lambda_3: the term of the 22 body joints (m)."}
    )
    body_model_path: str = field(
        default="generated",
        metadata={
            "help": "SMPL-H body model file (SMPLH_NEUTRAL.npz) for the vertex and joint losses and the "
            "validation joints, or `generated` for the project's offline body model."
        },
    )
    joint_noise_probability: float = field(
        default=1.0, metadata={"help": "Chance that a pose gets joint noise on one random body part."}
    )
    joint_noise_scale: float = field(
        default=0.01, metadata={"help": "Initial standard deviation (radians) of the joint-noise rotations."}
    )
    joint_noise_increment: float = field(
        default=0.01,
        metadata={
            "help": "Added to the joint-noise scale every `joint_noise_interval` steps (this project's "
            "choice: the paper says the noise grows, not by how much)."
        },
    )
    joint_noise_interval: int = field(
        default=5000, metadata={"help": "Steps between joint-noise increments."}
    )
    joint_noise_max_scale: float = field(
        default=0.1, metadata={"help": "Upper bound of the joint-noise scale (this project's choice)."}
    )
    orientation_perturbation_probability: float = field(
        default=1.0, metadata={"help": "Chance that a pose's global orientation is perturbed."}
    )
    max_heading_perturbation: float = field(
        default=45.0, metadata={"help": "Largest perturbation (degrees) about the vertical axis."}
    )
    max_tilt_perturbation: float = field(
        default=20.0, metadata={"help": "Largest perturbation (degrees) about each horizontal axis."}
    )

    def __post_init__(self):
        super().__post_init__()
        if self.reconstruction_loss not in ("l1", "mse"):
            raise ValueError(f"`reconstruction_loss` must be 'l1' or 'mse', got {self.reconstruction_loss!r}.")
        non_negative = (
            "rotation_loss_weight", "vertex_loss_weight", "joint_loss_weight", "joint_noise_scale",
            "joint_noise_increment", "joint_noise_max_scale", "max_heading_perturbation",
            "max_tilt_perturbation",
        )  # fmt: skip
        for name in non_negative:
            if not getattr(self, name) >= 0:
                raise ValueError(f"`{name}` must be non-negative, got {getattr(self, name)}.")
        for name in ("joint_noise_probability", "orientation_perturbation_probability"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"`{name}` must lie in [0, 1], got {getattr(self, name)}.")
        if self.max_tilt_perturbation >= 90:
            raise ValueError(
                f"`max_tilt_perturbation` must be below 90 degrees (pitch beyond it is not a tilt), got "
                f"{self.max_tilt_perturbation}."
            )
        if self.joint_noise_interval < 1:
            raise ValueError(
                f"`joint_noise_interval` must be a positive integer, got {self.joint_noise_interval}."
            )
        if self.num_threads is not None and self.num_threads < 1:
            raise ValueError(f"`num_threads` must be a positive integer or null, got {self.num_threads}.")
        if self.max_train_minutes is not None and not self.max_train_minutes > 0:
            raise ValueError(f"`max_train_minutes` must be positive or null, got {self.max_train_minutes}.")

    def noise_scale(self, step: int) -> float:
        """Standard deviation (radians) of the joint noise at `step`; grows every `joint_noise_interval`."""
        grown = self.joint_noise_scale + self.joint_noise_increment * (step // self.joint_noise_interval)
        return min(grown, self.joint_noise_max_scale)


# ----------------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------------


def procedural_pose_dataset(
    num_poses: int, seed: int, heading_normalization: bool = False, up_axis: str = SMPL_UP_AXIS
):
    """
    A `datasets.Dataset` of procedural poses (columns `pose` `(22, 3)` float32 axis-angle and `category`).

    Args:
        num_poses (`int`): poses to draw.
        seed (`int`): seed of `unipose.pose_sampler.PoseSampler`; the same seed gives the same poses.
        heading_normalization (`bool`, *optional*, defaults to `False`):
            Zero each pose's heading (the sampler draws it uniformly), as the AMASS loader does.
        up_axis (`str`, *optional*, defaults to `"y"`):
            Vertical axis of the returned poses' world frame; the sampler's is `"y"`.
    """
    sample = PoseSampler(seed=seed).sample(num_poses)
    poses = torch.from_numpy(np.asarray(sample.poses, dtype=np.float64))
    if heading_normalization:
        poses[:, 0] = normalize_heading(poses[:, 0], SMPL_UP_AXIS)
    poses[:, 0] = change_up_axis(poses[:, 0], SMPL_UP_AXIS, up_axis)
    features = datasets.Features(
        {
            "pose": datasets.Array2D(shape=(NUM_BODY_JOINTS, 3), dtype="float32"),
            "category": datasets.Value("string"),
        }
    )
    return datasets.Dataset.from_dict(
        {"pose": poses.numpy().astype(np.float32), "category": list(sample.categories)}, features=features
    )


def build_pose_datasets(data_args: PoseDataArguments):
    """
    The training and validation `datasets.Dataset`s of `data_args` (both with a `pose` column).

    AMASS sequences held out for validation are whole files, so that near-identical neighbouring frames
    never straddle the split.
    """
    if data_args.dataset == "procedural":
        options = {"heading_normalization": data_args.heading_normalization, "up_axis": data_args.up_axis}
        return (
            procedural_pose_dataset(data_args.num_train_poses, data_args.train_seed, **options),
            procedural_pose_dataset(data_args.num_validation_poses, data_args.validation_seed, **options),
        )
    amass_options = {
        "target_fps": data_args.target_fps,
        "heading_normalization": data_args.heading_normalization,
        "output_up_axis": data_args.up_axis,
    }
    train = build_amass_dataset(data_args.train_data_paths, **amass_options)
    if data_args.validation_data_paths:
        return train, build_amass_dataset(data_args.validation_data_paths, **amass_options)
    sequences = np.asarray(sorted(set(train["sequence"])))
    if len(sequences) < 2:
        raise ValueError(
            f"Holding out `validation_fraction` of the sequences needs at least 2 sequences, found "
            f"{len(sequences)} under {data_args.train_data_paths}; give `validation_data_paths` instead."
        )
    num_held_out = max(1, round(data_args.validation_fraction * len(sequences)))
    held_out = set(np.random.default_rng(data_args.train_seed).permutation(sequences)[:num_held_out].tolist())
    is_held_out = np.asarray([sequence in held_out for sequence in train["sequence"]])
    return train.select(np.flatnonzero(~is_held_out)), train.select(np.flatnonzero(is_held_out))


def step_generator(
    seed: int, step: int, stream: int, device: torch.device | str = "cpu", micro_batch: int = 0
) -> torch.Generator:
    """A torch generator seeded from `(seed, step, stream, micro_batch)` alone."""
    entropy = [seed, step, stream, micro_batch]
    state = int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0] >> 1)
    return torch.Generator(device=device).manual_seed(state)


# ----------------------------------------------------------------------------------------------------
# Augmentation
# ----------------------------------------------------------------------------------------------------


@dataclass
class AugmentedPoses:
    """
    inputs (`torch.Tensor` of shape `(batch, 22, 3, 3)`): what the model sees (both augmentations).
    targets (`torch.Tensor` of shape `(batch, 22, 3, 3)`): what it must reconstruct (the orientation
        perturbation only).
    noisy_part (`torch.LongTensor` of shape `(batch,)`): index into [`BODY_PART_NAMES`] of the part given
        joint noise, or -1 for none.
    orientation_perturbation (`torch.Tensor` of shape `(batch, 3, 3)`): rotation composed onto the root.
    """

    inputs: torch.Tensor
    targets: torch.Tensor
    noisy_part: torch.Tensor
    orientation_perturbation: torch.Tensor


def random_orientation_perturbation(
    batch_size: int,
    max_heading_degrees: float,
    max_tilt_degrees: float,
    up_axis: str,
    generator: torch.Generator,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """
    Random rotations `R_up(yaw) @ R_j(pitch) @ R_i(roll)` (see `unipose.data.amass.tait_bryan_angles`), with
    yaw uniform in `[-max_heading, max_heading]` and pitch and roll uniform in `[-max_tilt, max_tilt]`
    degrees.

    Returns:
        `torch.Tensor` of shape `(batch_size, 3, 3)`.
    """
    limits = torch.tensor([max_heading_degrees, max_tilt_degrees, max_tilt_degrees], dtype=dtype)
    unit = torch.rand(batch_size, 3, generator=generator, device=generator.device, dtype=dtype) * 2 - 1
    angles = unit * torch.deg2rad(limits).to(unit.device)  # (B, 3) yaw, pitch, roll
    return rotation_from_tait_bryan(angles, up_axis)


def augment_poses(
    rotations: torch.Tensor,
    noise_scale: float,
    args: PoseTokenizerTrainingArguments,
    up_axis: str,
    generator: torch.Generator,
) -> AugmentedPoses:
    """
    Applies the orientation perturbation and the joint noise to a batch of poses.

    Args:
        rotations (`torch.Tensor` of shape `(batch, 22, 3, 3)`):
            Clean joint rotations (root first).
        noise_scale (`float`):
            Standard deviation (radians) of each axis-angle component of the joint noise.
        args ([`PoseTokenizerTrainingArguments`]):
            Probabilities and bounds of the augmentations.
        up_axis (`str`):
            The vertical axis of the poses' world frame.
        generator (`torch.Generator`):
            Source of all randomness, so that the result depends on its seed alone.

    Returns:
        [`AugmentedPoses`]: the model input, the reconstruction target (the perturbed orientation and clean
        joints) and what was drawn.
    """
    batch, dtype, device = rotations.shape[0], rotations.dtype, rotations.device

    def uniform(*shape):
        return torch.rand(*shape, generator=generator, device=generator.device, dtype=dtype).to(device)

    # Orientation: world-side composition on the root, kept in the target.
    perturbation = random_orientation_perturbation(
        batch, args.max_heading_perturbation, args.max_tilt_perturbation, up_axis, generator, dtype
    ).to(device)
    perturbed = uniform(batch) < args.orientation_perturbation_probability
    identity = torch.eye(3, dtype=dtype, device=device).expand(batch, 3, 3)
    perturbation = torch.where(perturbed[:, None, None], perturbation, identity)
    targets = rotations.clone()
    targets[:, 0] = perturbation @ rotations[:, 0]

    # Joint noise: one body part per pose, only in the input.
    part = torch.randint(len(BODY_PARTS), (batch,), generator=generator, device=generator.device).to(device)
    noisy = uniform(batch) < args.joint_noise_probability
    part_mask = torch.zeros(len(BODY_PARTS), NUM_BODY_JOINTS, dtype=torch.bool, device=device)
    for index, joints in enumerate(BODY_PARTS.values()):
        part_mask[index, list(joints)] = True
    joint_mask = part_mask[part] & noisy[:, None]  # (B, 22)
    axis_angle = torch.randn(
        batch, NUM_BODY_JOINTS, 3, generator=generator, device=generator.device, dtype=dtype
    )
    noise = axis_angle_to_matrix(axis_angle.to(device) * noise_scale)  # (B, 22, 3, 3)
    inputs = torch.where(joint_mask[..., None, None], noise @ targets, targets)
    return AugmentedPoses(
        inputs=inputs,
        targets=targets,
        noisy_part=torch.where(noisy, part, torch.full_like(part, -1)),
        orientation_perturbation=perturbation,
    )


# ----------------------------------------------------------------------------------------------------
# Loss and validation
# ----------------------------------------------------------------------------------------------------


def vertex_area_weights(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """
    The vertex weights of the `mse` reconstruction loss, as the authors' training code computes them on the rest
    mesh: each triangle's area, min-max normalised over the mesh, added to each of its three vertices.

    Args:
        vertices (`torch.Tensor` of shape `(num_vertices, 3)`): the mesh at rest.
        faces (`torch.LongTensor` of shape `(num_faces, 3)`): its triangles.

    Returns:
        `torch.Tensor` of shape `(num_vertices,)`.
    """
    corners = vertices[faces]  # (num_faces, 3, 3)
    areas = 0.5 * torch.linalg.vector_norm(
        torch.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0], dim=-1), dim=-1
    )
    normalised = (areas - areas.min()) / (areas.max() - areas.min())
    weights = vertices.new_zeros(len(vertices))
    return weights.index_add_(0, faces.reshape(-1), normalised.repeat_interleave(faces.shape[1]))


def tokenizer_loss(
    reconstruction_6d: torch.Tensor,
    target_rotations: torch.Tensor,
    commitment_loss: torch.Tensor,
    args: PoseTokenizerTrainingArguments,
    body_joints: torch.nn.Module,
    body_model: torch.nn.Module | None = None,
    vertex_weights: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """
    The stage-0 objective (see the module docstring) and its parts.

    Args:
        reconstruction_6d (`torch.Tensor` of shape `(batch, 22, 6)`):
            Decoded poses.
        target_rotations (`torch.Tensor` of shape `(batch, 22, 3, 3)`):
            Reconstruction targets.
        commitment_loss (`torch.Tensor` of shape `()`):
            The quantizer's weighted commitment loss.
        args ([`PoseTokenizerTrainingArguments`]):
            The loss weights.
        body_joints (`torch.nn.Module`):
            Joints-only forward kinematics, `(batch, 22, 3, 3)` rotations -> `(batch, 22, 3)` joints.
        body_model (`torch.nn.Module`, *optional*):
            Full body model for the vertex term, called on `(batch, 22, 3, 3)` rotations and returning an
            output with `vertices` `(batch, V, 3)`. Required when `args.vertex_loss_weight > 0`.
        vertex_weights (`torch.Tensor` of shape `(V,)`, *optional*):
            The vertex weights of the `mse` loss ([`vertex_area_weights`]); required for it with vertices.

    Returns:
        `dict` of scalar tensors: `loss` (the total, differentiable) and `rotation_loss`, `joint_loss`,
        `vertex_loss` (absent when its weight is 0) and `commitment_loss`.
    """
    predicted_rotations = rotation_6d_to_matrix(reconstruction_6d)
    squared = args.reconstruction_loss == "mse"
    if squared:
        rotation_loss = F.mse_loss(predicted_rotations, target_rotations)
    else:
        rotation_loss = F.l1_loss(reconstruction_6d, matrix_to_rotation_6d(target_rotations))
    difference = F.mse_loss if squared else F.l1_loss
    losses = {
        "rotation_loss": rotation_loss,
        "joint_loss": difference(body_joints(predicted_rotations), body_joints(target_rotations)),
        "commitment_loss": commitment_loss,
    }
    total = (
        args.rotation_loss_weight * losses["rotation_loss"] + args.joint_loss_weight * losses["joint_loss"]
    )
    if args.vertex_loss_weight > 0:
        if body_model is None:
            raise ValueError("`vertex_loss_weight` > 0 needs a `body_model` to pose the mesh.")
        with torch.no_grad():
            target_vertices = body_model(target_rotations).vertices
        predicted_vertices = body_model(predicted_rotations).vertices
        if squared:
            if vertex_weights is None:
                raise ValueError("The `mse` reconstruction loss needs the `vertex_weights` of the mesh.")
            per_vertex = (predicted_vertices - target_vertices).square() * vertex_weights[:, None]
            losses["vertex_loss"] = per_vertex.mean()
        else:
            losses["vertex_loss"] = F.l1_loss(predicted_vertices, target_vertices)
        total = total + args.vertex_loss_weight * losses["vertex_loss"]
    losses["loss"] = total + commitment_loss
    return losses


@torch.no_grad()
def evaluate_tokenizer(
    model: PoseVQVAE, poses: torch.Tensor, body_joints: torch.nn.Module, batch_size: int = 1024
) -> dict[str, float]:
    """
    Validation metrics of a tokenizer on clean poses (no augmentation, eval mode, codebook untouched).

    Args:
        model ([`PoseVQVAE`]): the tokenizer.
        poses (`torch.Tensor` of shape `(num_poses, 22, 3)`): axis-angle validation poses.
        body_joints (`torch.nn.Module`): joints-only forward kinematics (rotations -> joints in metres).
        batch_size (`int`, *optional*, defaults to 1024): poses per forward pass.

    Returns:
        `dict` with `mpjpe` and `pa_mpjpe` (mm; root-aligned, and after Procrustes alignment),
        `rotation_l1` (mean |6D difference|), `codebook_usage` (share of the codebook used by the
        validation poses) and `perplexity` (of the codes' histogram over all validation poses).
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    totals = {"mpjpe": 0.0, "pa_mpjpe": 0.0, "rotation_l1": 0.0}
    counts = torch.zeros(model.config.codebook_size, dtype=torch.float64)
    for batch in poses.split(batch_size):
        rotations = axis_angle_to_matrix(batch.to(device=device, dtype=torch.float32))
        output = model(matrix_to_rotation_6d(rotations))
        predicted_joints = body_joints(rotation_6d_to_matrix(output.reconstruction))
        target_joints = body_joints(rotations)
        totals["mpjpe"] += float(mpjpe(predicted_joints, target_joints, reduce=False).sum())
        totals["pa_mpjpe"] += float(pa_mpjpe(predicted_joints, target_joints, reduce=False).sum())
        totals["rotation_l1"] += float(
            (output.reconstruction - matrix_to_rotation_6d(rotations)).abs().mean(dim=(1, 2)).sum()
        )
        counts += torch.bincount(output.codes.flatten().cpu(), minlength=model.config.codebook_size).double()
    model.train(was_training)
    metrics = {name: total / len(poses) for name, total in totals.items()}
    probabilities = counts / counts.sum()
    metrics["codebook_usage"] = float((counts > 0).double().mean())
    metrics["perplexity"] = float(torch.exp(-torch.special.xlogy(probabilities, probabilities).sum()))
    return metrics


# ----------------------------------------------------------------------------------------------------
# Trainer
# ----------------------------------------------------------------------------------------------------


def collate_poses(rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """The batch of a list of pose records: `{"poses": (batch, 22, 3)}` float32 axis-angle."""
    return {
        "poses": torch.stack([torch.as_tensor(np.asarray(row["pose"]), dtype=torch.float32) for row in rows])
    }


class TimeLimit(TrainerCallback):
    """Ends training (with a checkpoint) once it has run `minutes`; the schedule still follows `max_steps`."""

    def __init__(self, minutes: float | None):
        self.minutes, self.start, self.stopped_early = minutes, None, False

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = time.monotonic()

    def on_step_end(self, args, state, control, **kwargs):
        if self.minutes is None or time.monotonic() - self.start <= 60 * self.minutes:
            return
        if state.global_step < state.max_steps:
            logger.warning(
                f"Stopping at step {state.global_step} of {state.max_steps}: `max_train_minutes` "
                f"({self.minutes}) is spent. Resume with `resume_from_checkpoint: latest`."
            )
            control.should_training_stop, control.should_save, self.stopped_early = True, True, True


class PoseTokenizerTrainer(WholeSetScoringTrainer):
    """
    The transformers [`~transformers.Trainer`] for stage 0: `compute_loss` augments each batch (reproducibly
    from `(seed, step)`) and returns the stage-0 objective; `evaluate` scores the clean validation poses
    (MPJPE, PA-MPJPE, codebook use) instead of a loss; each training log carries the loss terms and codebook
    statistics averaged since the last log, and the joint-noise scale.

    Args:
        model ([`PoseVQVAE`]): the tokenizer to train.
        args ([`PoseTokenizerTrainingArguments`]): optimisation, loss, augmentation and saving.
        train_dataset (`datasets.Dataset`): training poses (column `pose`, `(22, 3)` axis-angle).
        eval_dataset (`datasets.Dataset`, *optional*): validation poses (same column).
        body_joints (`torch.nn.Module`): joints-only forward kinematics for the joint loss and the metrics.
        body_model (`torch.nn.Module`, *optional*): full body model, for the vertex loss.
        up_axis (`str`, *optional*, defaults to `"z"`): vertical axis of the poses' world frame.
        **kwargs: the other arguments of `Trainer` (callbacks, ...).

    Example:

    ```python
    >>> trainer = PoseTokenizerTrainer(model, args, train_set, eval_set, body_joints=body_joints)  # doctest:
    +SKIP
    >>> trainer.train()  # doctest: +SKIP
    ```
    """

    LOGGED = ("rotation_loss", "joint_loss", "vertex_loss", "commitment_loss", "perplexity", "codebook_usage")

    def __init__(
        self,
        model: PoseVQVAE,
        args: PoseTokenizerTrainingArguments,
        train_dataset=None,
        eval_dataset=None,
        body_joints: torch.nn.Module | None = None,
        body_model: torch.nn.Module | None = None,
        up_axis: str = AMASS_UP_AXIS,
        **kwargs,
    ):
        if body_joints is None:
            raise ValueError(
                "`body_joints` is required: the joint loss and the validation metrics pose the body."
            )
        if args.vertex_loss_weight > 0 and body_model is None:
            raise ValueError("`vertex_loss_weight` > 0 needs a `body_model` to pose the mesh.")
        kwargs.setdefault("data_collator", collate_poses)
        super().__init__(
            model=model, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset, **kwargs
        )
        self.body_joints = body_joints.to(self.args.device)
        self.body_model = None if body_model is None else body_model.to(self.args.device)
        self.vertex_weights = None
        if self.body_model is not None and args.reconstruction_loss == "mse":
            with torch.no_grad():
                rest = self.body_model(torch.eye(3, device=self.args.device).expand(1, 22, 3, 3))
            self.vertex_weights = vertex_area_weights(rest.vertices[0], rest.faces)
        self.up_axis = up_axis
        self._sums, self._count = {}, 0
        self._step_and_micro_batch = (-1, 0)

    def augmented_batch(self, poses: torch.Tensor, step: int, micro_batch: int = 0) -> AugmentedPoses:
        """The augmented `poses` of training step `step` (a function of `(seed, step, micro_batch)` only)."""
        rotations = axis_angle_to_matrix(poses.float())
        generator = step_generator(self.args.seed, step, _AUGMENTATION_STREAM, micro_batch=micro_batch)
        return augment_poses(rotations, self.args.noise_scale(step), self.args, self.up_axis, generator)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        step = self.state.global_step
        previous_step, micro_batch = self._step_and_micro_batch
        micro_batch = micro_batch + 1 if step == previous_step else 0
        self._step_and_micro_batch = (step, micro_batch)
        augmented = self.augmented_batch(inputs["poses"], step, micro_batch)
        output = model(matrix_to_rotation_6d(augmented.inputs))
        losses = tokenizer_loss(
            output.reconstruction,
            augmented.targets,
            output.commitment_loss,
            self.args,
            self.body_joints,
            self.body_model,
            self.vertex_weights,
        )
        if model.training:  # summed as tensors: read (one device sync) only when logged
            parts = {**losses, "perplexity": output.perplexity, "codebook_usage": output.codebook_usage}
            for name in self.LOGGED:
                if name in parts:
                    self._sums[name] = self._sums.get(name, 0.0) + parts[name].detach()
            self._count += 1
        return (losses["loss"], output) if return_outputs else losses["loss"]

    def log(self, logs: dict[str, float], *args, **kwargs) -> None:
        if "loss" in logs and self._count:
            logs.update({name: round(float(total) / self._count, 6) for name, total in self._sums.items()})
            logs["noise_scale"] = self.args.noise_scale(max(self.state.global_step - 1, 0))
            self._sums, self._count = {}, 0
        super().log(logs, *args, **kwargs)

    def score(self, model: PoseVQVAE, dataset) -> dict[str, float]:
        """[`evaluate_tokenizer`] on the poses of `dataset` (a `pose` column)."""
        poses = torch.as_tensor(np.asarray(dataset.with_format("numpy")["pose"]), dtype=torch.float32)
        return evaluate_tokenizer(model, poses, self.body_joints, self.args.per_device_eval_batch_size)


# ----------------------------------------------------------------------------------------------------
# Entry points
# ----------------------------------------------------------------------------------------------------


def build_body_models(args: PoseTokenizerTrainingArguments) -> tuple[torch.nn.Module, torch.nn.Module | None]:
    """The joints-only kinematics and (for the vertex loss) the full body model of `args.body_model_path`."""
    if args.vertex_loss_weight > 0:
        body_model = BodyModel(args.body_model_path)
        return body_model.body_joints(), body_model
    return BodyJoints.from_body_model_file(args.body_model_path), None


def build_model(model_args: PoseTokenizerModelArguments, seed: int = 42) -> PoseVQVAE:
    """A new tokenizer of the configured size (weights from `seed`), or the saved one of
    `model_name_or_path`."""
    torch.manual_seed(seed)
    overrides = model_args.config_overrides()
    if model_args.model_name_or_path is not None:
        return PoseVQVAE.from_pretrained(model_args.model_name_or_path, **overrides)
    return PoseVQVAE(PoseVQVAEConfig(**overrides))


def save_pose_tokenizer(trainer: PoseTokenizerTrainer, output_dir: str | os.PathLike, results: dict) -> None:
    """Saves the trained tokenizer (`save_pretrained`), its final metrics, the trainer state and the
    arguments into `output_dir`, every file replaced whole."""
    with staged_files(output_dir) as staging:
        trainer.model.save_pretrained(staging)
        trainer.state.save_to_json(str(staging / TRAINER_STATE_NAME))
        write_json_atomically(staging / EVAL_RESULTS_NAME, results)
        (staging / TRAINING_ARGS_NAME).write_text(trainer.args.to_json_string(), encoding="utf-8")


def train_pose_tokenizer(
    data_args: PoseDataArguments,
    model_args: PoseTokenizerModelArguments,
    training_args: PoseTokenizerTrainingArguments,
    callbacks: list[TrainerCallback] | None = None,
) -> dict[str, float]:
    """
    Stage 0 end to end: data, model, body models, training (or resuming), validation, final save.

    Returns:
        `dict`: the final validation metrics (prefixed `eval_`), `global_step`, `train_runtime` (s) and
        `completed` (0 when `max_train_minutes` ended the run early), also written to
        `output_dir/eval_results.json`.
    """
    if training_args.num_threads is not None:
        torch.set_num_threads(training_args.num_threads)
    train_dataset, eval_dataset = build_pose_datasets(data_args)
    logger.info(
        f"{len(train_dataset)} training and {len(eval_dataset)} validation poses ({data_args.dataset})."
    )
    model = build_model(model_args, training_args.seed)
    model.config.up_axis = data_args.up_axis
    body_joints, body_model = build_body_models(training_args)
    signature = RunSignature(
        seed=training_args.seed,
        data_seed=training_args.data_seed,
        train_batch_size=training_args.per_device_train_batch_size
        * training_args.gradient_accumulation_steps,
        num_train_poses=len(train_dataset),
        max_steps=training_args.max_steps,
        num_train_epochs=training_args.num_train_epochs,
        # The poses and their augmentation: what the data settings and the noise draws give.
        data=dataclasses.asdict(data_args),
        augmentation={name: getattr(training_args, name) for name in AUGMENTATION_ARGUMENTS},
    )
    time_limit = TimeLimit(training_args.max_train_minutes)
    trainer = PoseTokenizerTrainer(
        model,
        training_args,
        train_dataset,
        eval_dataset,
        body_joints=body_joints,
        body_model=body_model,
        up_axis=data_args.up_axis,
        callbacks=[signature, time_limit, *(callbacks or [])],
    )
    checkpoint = resolve_trainer_checkpoint(training_args.resume_from_checkpoint, training_args.output_dir)
    if checkpoint is not None:
        check_resumable(checkpoint, signature)
    start = time.monotonic()
    trainer.train(resume_from_checkpoint=checkpoint)
    last_eval = next((entry for entry in reversed(trainer.state.log_history) if "eval_mpjpe" in entry), None)
    if last_eval is None or last_eval["step"] != trainer.state.global_step:
        last_eval = trainer.evaluate()
    results = {
        **{name: value for name, value in last_eval.items() if name.startswith("eval_")},
        "global_step": trainer.state.global_step,
        "train_runtime": time.monotonic() - start,
        "completed": float(not time_limit.stopped_early),
    }
    save_pose_tokenizer(trainer, training_args.output_dir, results)
    return results


def parse_arguments(
    argv: list[str] | None = None, prog: str | None = None
) -> tuple[PoseDataArguments, PoseTokenizerModelArguments, PoseTokenizerTrainingArguments]:
    """The three argument dataclasses from `--config recipe.yaml` and the command line (which wins); a single
    YAML path stands for `--config PATH`. Unknown keys, in the recipe or on the command line, are errors."""
    classes = (PoseDataArguments, PoseTokenizerModelArguments, PoseTokenizerTrainingArguments)
    return ScriptArgumentParser(classes, prog=prog).parse(argv)


__all__ = [
    "BODY_PARTS",
    "AugmentedPoses",
    "PoseDataArguments",
    "PoseTokenizerModelArguments",
    "PoseTokenizerTrainer",
    "PoseTokenizerTrainingArguments",
    "augment_poses",
    "build_model",
    "build_pose_datasets",
    "evaluate_tokenizer",
    "parse_arguments",
    "procedural_pose_dataset",
    "random_orientation_perturbation",
    "tokenizer_loss",
    "train_pose_tokenizer",
    "vertex_area_weights",
]
