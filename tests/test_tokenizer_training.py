"""Stage-0 training of the pose tokenizer: augmentation, data order, loss, one step, exact resume, recipes."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from unipose import cli
from unipose.body_model import BodyJoints
from unipose.checkpoints import StepBatchSampler
from unipose.configuration_pose_vqvae import PoseVQVAEConfig
from unipose.data.amass import tait_bryan_angles
from unipose.modeling_pose_vqvae import PoseVQVAE
from unipose.rotations import axis_angle_to_matrix, matrix_to_axis_angle, matrix_to_rotation_6d
from unipose.tokenizer_training import (
    BODY_PARTS,
    PoseTokenizerTrainer,
    TokenizerTrainingArguments,
    arguments_from_dict,
    augment_poses,
    list_checkpoints,
    load_recipe,
    parse_arguments,
    procedural_pose_dataset,
    step_generator,
    tokenizer_loss,
)

RECIPES = Path(__file__).resolve().parents[1] / "train" / "recipes"
# A dead-code threshold near the mean cluster size (16 * 80 / 32 = 40 vectors per code) resets codes at
# every step, so that the random state drawn by the resets is part of what resume must restore.
TINY_MODEL = {"hidden_size": 16, "code_dim": 8, "codebook_size": 32, "dead_code_threshold": 30.0}


@pytest.fixture(scope="module")
def body_joints():
    return BodyJoints.from_generated()


@pytest.fixture(scope="module")
def datasets():
    return procedural_pose_dataset(96, seed=0, up_axis="y"), procedural_pose_dataset(24, seed=1, up_axis="y")


def _args(output_dir, **overrides) -> TokenizerTrainingArguments:
    values = dict(
        output_dir=str(output_dir), batch_size=16, max_steps=6, learning_rate=1e-3, vertex_loss_weight=0.0,
        logging_steps=2, eval_steps=4, save_steps=3, eval_batch_size=32, disable_tqdm=True, seed=3,
    )  # fmt: skip
    values.update(overrides)
    return TokenizerTrainingArguments(**values)


def _trainer(args, datasets, body_joints, model_seed=0) -> PoseTokenizerTrainer:
    torch.manual_seed(model_seed)
    model = PoseVQVAE(PoseVQVAEConfig(**TINY_MODEL))
    return PoseTokenizerTrainer(model, args, *datasets, body_joints=body_joints, data_seed=0, up_axis="y")


def _rotation_angle(matrix: torch.Tensor) -> torch.Tensor:
    return matrix_to_axis_angle(matrix).norm(dim=-1)


# ----------------------------------------------------------------------------------------------------
# Augmentation
# ----------------------------------------------------------------------------------------------------


def test_joint_noise_reaches_the_model_input_on_the_chosen_part_only(tmp_path, datasets, body_joints):
    args = _args(
        tmp_path,
        orientation_perturbation_probability=0.0,
        joint_noise_probability=1.0,
        joint_noise_scale=0.05,
    )
    trainer = _trainer(args, datasets, body_joints)
    seen = {}
    trainer.model.register_forward_pre_hook(
        lambda module, inputs: seen.setdefault("poses_6d", inputs[0].clone())
    )
    trainer.training_step(0)

    clean = matrix_to_rotation_6d(axis_angle_to_matrix(trainer.batch(0).float()))
    changed = (seen["poses_6d"] != clean).any(
        dim=-1
    )  # (B, 22): joints whose input differs from the clean pose
    parts = trainer.augmented_batch(0).noisy_part
    assert (parts >= 0).all()
    for pose, part in enumerate(parts.tolist()):
        expected = torch.zeros(22, dtype=torch.bool)
        expected[list(BODY_PARTS[list(BODY_PARTS)[part]])] = True
        assert torch.equal(changed[pose], expected), (pose, part)
    # Several parts were drawn, and the target stays the clean pose (denoising).
    assert len(set(parts.tolist())) > 1
    assert torch.equal(trainer.augmented_batch(0).targets, axis_angle_to_matrix(trainer.batch(0).float()))


def test_noise_scale_grows_every_interval():
    args = _args("unused", joint_noise_scale=0.01, joint_noise_increment=0.01, joint_noise_interval=100,
                 joint_noise_max_scale=0.035)  # fmt: skip
    assert [args.noise_scale(step) for step in (0, 99)] == [0.01, 0.01]
    assert args.noise_scale(100) == pytest.approx(0.02)
    assert args.noise_scale(250) == pytest.approx(0.03)
    assert args.noise_scale(10_000) == pytest.approx(0.035)  # capped

    # The noise actually drawn follows the schedule: mean angle ~ scale * sqrt(8/pi) per noisy joint.
    rotations = torch.eye(3).expand(512, 22, 3, 3)
    no_orientation = _args("unused", orientation_perturbation_probability=0.0)
    angles = []
    for step in (0, 250):
        augmented = augment_poses(
            rotations, args.noise_scale(step), no_orientation, "y", step_generator(0, step, 1)
        )
        noisy = augmented.inputs[(augmented.inputs != rotations).flatten(2).any(-1)]
        angles.append(_rotation_angle(noisy).mean().item() / math.sqrt(8 / math.pi))
    assert angles[0] == pytest.approx(0.01, rel=0.1)
    assert angles[1] == pytest.approx(0.03, rel=0.1)


@pytest.mark.parametrize("up_axis", ["y", "z"])
def test_orientation_perturbation_stays_within_bounds(up_axis):
    torch.manual_seed(0)
    rotations = axis_angle_to_matrix(torch.randn(4096, 22, 3) * 0.5)
    args = _args(
        "unused", joint_noise_probability=0.0, max_heading_perturbation=45.0, max_tilt_perturbation=20.0
    )
    augmented = augment_poses(rotations, 0.1, args, up_axis, step_generator(0, 0, 1))

    # The root is composed on the world side; the other joints are untouched; input = target here.
    perturbation = augmented.inputs[:, 0] @ rotations[:, 0].transpose(-1, -2)
    torch.testing.assert_close(perturbation, augmented.orientation_perturbation, atol=1e-5, rtol=0)
    assert torch.equal(augmented.inputs[:, 1:], rotations[:, 1:])
    assert torch.equal(augmented.inputs, augmented.targets)

    yaw, pitch, roll = torch.rad2deg(tait_bryan_angles(perturbation.double(), up_axis)).unbind(-1)
    assert yaw.abs().max() <= 45.0 + 1e-3 and yaw.abs().max() > 44.0
    for tilt in (pitch, roll):
        assert tilt.abs().max() <= 20.0 + 1e-3 and tilt.abs().max() > 19.0
    # About the vertical axis only for yaw: the perturbation moves the up axis by at most the tilts.
    up = torch.zeros(3, dtype=torch.float64)
    up["xyz".index(up_axis)] = 1
    tilt_of_up = torch.rad2deg(torch.acos((perturbation.double() @ up)[:, "xyz".index(up_axis)].clamp(-1, 1)))
    assert tilt_of_up.max() <= math.degrees(math.acos(math.cos(math.radians(20)) ** 2)) + 1e-3


def test_augmentation_is_reproducible_from_seed_and_step():
    rotations = axis_angle_to_matrix(torch.randn(64, 22, 3) * 0.3)
    args = _args("unused")
    first = augment_poses(rotations, 0.05, args, "z", step_generator(7, 11, 1))
    again = augment_poses(rotations, 0.05, args, "z", step_generator(7, 11, 1))
    other = augment_poses(rotations, 0.05, args, "z", step_generator(7, 12, 1))
    assert torch.equal(first.inputs, again.inputs)
    assert not torch.equal(first.inputs, other.inputs)


# ----------------------------------------------------------------------------------------------------
# Data order, loss, training
# ----------------------------------------------------------------------------------------------------


def test_batch_order_depends_on_seed_and_step_only():
    sampler = StepBatchSampler(num_samples=50, batch_size=8, seed=5)
    epoch = np.concatenate([sampler(step) for step in range(sampler.steps_per_epoch)])
    assert len(set(epoch.tolist())) == len(epoch) == 48  # no repeat within an epoch
    fresh = StepBatchSampler(num_samples=50, batch_size=8, seed=5)
    assert np.array_equal(fresh(13), sampler(13)) and np.array_equal(fresh(2), sampler(2))
    assert not np.array_equal(sampler(0), sampler(sampler.steps_per_epoch))  # a new permutation each epoch
    with pytest.raises(ValueError, match="batch_size"):
        StepBatchSampler(num_samples=4, batch_size=8, seed=0)


def test_loss_is_zero_for_a_perfect_reconstruction_and_has_every_term(body_joints):
    from unipose.body_model import BodyModel

    body_model = BodyModel("generated")
    targets = axis_angle_to_matrix(torch.randn(4, 22, 3) * 0.4)
    args = _args("unused", vertex_loss_weight=100.0)
    perfect = tokenizer_loss(
        matrix_to_rotation_6d(targets), targets, torch.tensor(0.0), args, body_joints, body_model
    )
    assert set(perfect) == {"loss", "rotation_loss", "joint_loss", "vertex_loss", "commitment_loss"}
    # float32 round-off of Gram-Schmidt and forward kinematics only (the total carries the weights).
    assert (
        all(float(perfect[name]) < 1e-6 for name in perfect if name != "loss")
        and float(perfect["loss"]) < 1e-5
    )
    noisy = (matrix_to_rotation_6d(targets) + 0.05 * torch.randn(4, 22, 6)).requires_grad_()
    losses = tokenizer_loss(noisy, targets, torch.tensor(0.0), args, body_joints, body_model)
    for name in ("rotation_loss", "joint_loss", "vertex_loss"):
        assert float(losses[name].detach()) > 0
    expected = 20 * losses["rotation_loss"] + 100 * losses["joint_loss"] + 100 * losses["vertex_loss"]
    torch.testing.assert_close(losses["loss"], expected)
    losses["loss"].backward()
    assert noisy.grad.abs().sum() > 0


def test_one_training_step_changes_every_trainable_parameter(tmp_path, datasets, body_joints):
    trainer = _trainer(_args(tmp_path, weight_decay=0.0), datasets, body_joints)
    before = {name: p.detach().clone() for name, p in trainer.model.named_parameters()}
    metrics = trainer.training_step(0)
    assert math.isfinite(metrics["loss"]) and 0 < metrics["codebook_usage"] <= 1
    unchanged = [name for name, p in trainer.model.named_parameters() if torch.equal(p, before[name])]
    assert unchanged == []
    assert bool(trainer.model.quantizer.initialized)


class _Killed(Exception):
    pass


class _KilledAtFirstCheckpoint(PoseTokenizerTrainer):
    def save_checkpoint(self):
        path = super().save_checkpoint()
        raise _Killed(path)


def test_resume_equals_uninterrupted_run(tmp_path, datasets, body_joints):
    uninterrupted = _trainer(_args(tmp_path / "a"), datasets, body_joints)
    uninterrupted.train()

    torch.manual_seed(0)
    model = PoseVQVAE(PoseVQVAEConfig(**TINY_MODEL))
    killed = _KilledAtFirstCheckpoint(
        model, _args(tmp_path / "b"), *datasets, body_joints=body_joints, up_axis="y"
    )
    with pytest.raises(_Killed):
        killed.train()
    assert [path.name for path in list_checkpoints(tmp_path / "b")] == ["checkpoint-3"]

    # A new process: other initial weights and another global random state, all restored from the checkpoint.
    torch.manual_seed(1234)
    resumed = _trainer(
        _args(tmp_path / "b", resume_from_checkpoint="latest"), datasets, body_joints, model_seed=99
    )
    results = resumed.train()
    assert results["global_step"] == 6

    expected, actual = uninterrupted.model.state_dict(), resumed.model.state_dict()
    assert expected.keys() == actual.keys()
    different = [name for name in expected if not torch.equal(expected[name], actual[name])]
    assert different == []
    # The final model was saved with save_pretrained and loads back identically.
    reloaded = PoseVQVAE.from_pretrained(tmp_path / "b")
    assert all(torch.equal(value, reloaded.state_dict()[name]) for name, value in actual.items())
    # save_total_limit=2 keeps the newest two checkpoints.
    assert [path.name for path in list_checkpoints(tmp_path / "b")] == ["checkpoint-3", "checkpoint-6"]


def test_resume_refuses_a_different_run(tmp_path, datasets, body_joints):
    _trainer(_args(tmp_path, max_steps=3), datasets, body_joints).train()
    other = _trainer(
        _args(tmp_path, max_steps=3, batch_size=8, resume_from_checkpoint="latest"), datasets, body_joints
    )
    with pytest.raises(ValueError, match="batch_size"):
        other.train()
    with pytest.raises(FileNotFoundError, match="training_state.pt"):
        _trainer(
            _args(tmp_path, resume_from_checkpoint=str(tmp_path / "nope")), datasets, body_joints
        ).train()


# ----------------------------------------------------------------------------------------------------
# Recipes and command line
# ----------------------------------------------------------------------------------------------------


def test_recipe_with_an_unknown_key_is_refused(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("output_dir: run\nlearning_rat: 0.001\n")
    with pytest.raises(ValueError, match=r"Unknown key\(s\) \['learning_rat'\].*recipe.yaml"):
        parse_arguments(["--config", str(recipe)])
    recipe.write_text("output_dir: run\nmodel:\n  codebook_sise: 64\n")
    with pytest.raises(ValueError, match="codebook_sise"):
        parse_arguments(["--config", str(recipe)])
    with pytest.raises(ValueError, match="output_dir"):
        arguments_from_dict({})
    with pytest.raises(TypeError, match="`learning_rate` in the recipe must be float, got 'fast'"):
        arguments_from_dict({"output_dir": "run", "learning_rate": "fast"})
    # YAML reads 1e-3 as a string; it is still a number.
    assert arguments_from_dict({"output_dir": "run", "learning_rate": "1e-3"})[1].learning_rate == 1e-3


def test_command_line_overrides_the_recipe(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        "output_dir: run\nlearning_rate: 0.001\nmax_grad_norm: 1.0\n"
        "model:\n  codebook_size: 64\n  code_dim: 8\n"
    )
    data_args, training_args, model = parse_arguments(
        ["--config", str(recipe), "--learning_rate", "5e-4", "--max_grad_norm", "null", "--disable_tqdm",
         "--model", "codebook_size=128", "--train_data_paths", "a", "b"]
    )  # fmt: skip
    assert (
        training_args.learning_rate == 5e-4
        and training_args.max_grad_norm is None
        and training_args.disable_tqdm
    )
    assert model == {"codebook_size": 128, "code_dim": 8}
    assert data_args.train_data_paths == ["a", "b"]


@pytest.mark.parametrize("name", ["stage0_paper.yaml", "stage0_cpu.yaml"])
def test_recipes_parse(name):
    data_args, training_args, model = arguments_from_dict(load_recipe(RECIPES / name))
    PoseVQVAEConfig(**model)  # the model section is a valid tokenizer config


def test_cli_trains_and_saves_a_loadable_tokenizer(tmp_path):
    out = tmp_path / "run"
    code = cli.main(
        ["train-tokenizer", "--config", str(RECIPES / "stage0_cpu.yaml"), "--output_dir", str(out),
         "--num_train_poses", "64", "--num_validation_poses", "16", "--batch_size", "16", "--max_steps", "2",
         "--eval_steps", "2", "--save_steps", "2", "--disable_tqdm", "--max_train_minutes", "null",
         "--num_threads", "null",  # keep the test process's thread count
         *[f"--model={key}={value}" for key, value in TINY_MODEL.items()]]
    )  # fmt: skip
    assert code == 0
    tokenizer = PoseVQVAE.from_pretrained(out)
    assert tokenizer.config.codebook_size == TINY_MODEL["codebook_size"]
    assert tokenizer.encode(torch.zeros(22, 3)).shape == (1, tokenizer.config.num_tokens)
    assert (out / "eval_results.json").is_file() and list_checkpoints(out)
