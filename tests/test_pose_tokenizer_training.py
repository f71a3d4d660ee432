"""Stage-0 training of the pose tokenizer on the transformers Trainer: augmentation, loss, one step, exact
resume, the time limit, recipes and the command line."""

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch
from transformers import TrainerCallback
from transformers.trainer_utils import get_last_checkpoint

from unipose import cli
from unipose.body_model import BodyJoints
from unipose.checkpoints import STAGING_DIR, StagedCheckpointsMixin
from unipose.configuration_pose_vqvae import PoseVQVAEConfig
from unipose.data.amass import tait_bryan_angles
from unipose.modeling_pose_vqvae import PoseVQVAE
from unipose.rotations import axis_angle_to_matrix, matrix_to_axis_angle, matrix_to_rotation_6d
from unipose.training.pose_tokenizer import (
    BODY_PARTS,
    PoseDataArguments,
    PoseTokenizerModelArguments,
    PoseTokenizerTrainer,
    PoseTokenizerTrainingArguments,
    augment_poses,
    collate_poses,
    evaluate_tokenizer,
    parse_arguments,
    procedural_pose_dataset,
    step_generator,
    tokenizer_loss,
    train_pose_tokenizer,
)
from unipose.training.pose_vision import PoseVisionTrainer
from unipose.training.retrieval import RetrievalTrainer

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


def _args(output_dir, **overrides) -> PoseTokenizerTrainingArguments:
    values = dict(
        output_dir=str(output_dir), per_device_train_batch_size=16, max_steps=6, learning_rate=1e-3,
        vertex_loss_weight=0.0, logging_steps=2, eval_steps=4, save_steps=3, per_device_eval_batch_size=32,
        disable_tqdm=True, seed=3, use_cpu=True,
    )  # fmt: skip
    values.update(overrides)
    return PoseTokenizerTrainingArguments(**values)


def _trainer(args, datasets, body_joints, model_seed=0) -> PoseTokenizerTrainer:
    torch.manual_seed(model_seed)
    model = PoseVQVAE(PoseVQVAEConfig(**TINY_MODEL))
    return PoseTokenizerTrainer(model, args, *datasets, body_joints=body_joints, up_axis="y")


def _run(output_dir, callbacks=None, data=None, **overrides) -> dict:
    """Stage 0 end to end on 96 procedural poses with the tiny tokenizer."""
    data_args = PoseDataArguments(num_train_poses=96, num_validation_poses=24, up_axis="y", **(data or {}))
    return train_pose_tokenizer(
        data_args,
        PoseTokenizerModelArguments(**TINY_MODEL),
        _args(output_dir, **overrides),
        callbacks=callbacks,
    )


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
    poses = collate_poses(datasets[0].select(range(16)))["poses"]
    trainer.compute_loss(trainer.model.train(), {"poses": poses})  # step 0, first micro-batch

    clean = matrix_to_rotation_6d(axis_angle_to_matrix(poses))
    changed = (seen["poses_6d"] != clean).any(
        dim=-1
    )  # (B, 22): joints whose input differs from the clean pose
    augmented = trainer.augmented_batch(poses, step=0)
    parts = augmented.noisy_part
    assert (parts >= 0).all()
    for pose, part in enumerate(parts.tolist()):
        expected = torch.zeros(22, dtype=torch.bool)
        expected[list(BODY_PARTS[list(BODY_PARTS)[part]])] = True
        assert torch.equal(changed[pose], expected), (pose, part)
    # Several parts were drawn, and the target stays the clean pose (denoising).
    assert len(set(parts.tolist())) > 1
    assert torch.equal(augmented.targets, axis_angle_to_matrix(poses))
    # Another micro-batch of the same step (gradient accumulation) draws other noise.
    assert not torch.equal(trainer.augmented_batch(poses, step=0, micro_batch=1).inputs, augmented.inputs)


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
# Loss and training
# ----------------------------------------------------------------------------------------------------


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


def test_vertex_area_weights_add_each_triangles_normalised_area_to_its_corners():
    from unipose.training.pose_tokenizer import vertex_area_weights

    # Triangles of area 0.5, 0.5 and 2: normalised to 0, 0 and 1 (min-max over the mesh).
    vertices = torch.tensor([[0.0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [3, 0, 0], [1, 2, 0]])
    faces = torch.tensor([[0, 1, 2], [0, 2, 3], [1, 4, 5]])
    torch.testing.assert_close(vertex_area_weights(vertices, faces), torch.tensor([0.0, 1, 0, 0, 1, 1]))


def test_the_mse_loss_is_the_authors_squared_errors(body_joints):
    from unipose.body_model import BodyModel
    from unipose.rotations import rotation_6d_to_matrix
    from unipose.training.pose_tokenizer import vertex_area_weights

    body_model = BodyModel("generated")
    targets = axis_angle_to_matrix(torch.randn(4, 22, 3) * 0.4)
    reconstruction = matrix_to_rotation_6d(targets) + 0.05 * torch.randn(4, 22, 6)
    rest = body_model(torch.eye(3).expand(1, 22, 3, 3))
    weights = vertex_area_weights(rest.vertices[0], rest.faces)
    assert weights.shape == (6890,) and bool((weights > 0).any())
    args = _args("unused", reconstruction_loss="mse", vertex_loss_weight=100.0)
    losses = tokenizer_loss(reconstruction, targets, torch.tensor(0.5), args, body_joints, body_model, weights)
    predicted = rotation_6d_to_matrix(reconstruction)
    expected = {
        "rotation_loss": ((predicted - targets) ** 2).mean(),  # on the rotation matrices, not the 6D numbers
        "joint_loss": ((body_joints(predicted) - body_joints(targets)) ** 2).mean(),
        "vertex_loss": (weights[:, None] * (body_model(predicted).vertices - body_model(targets).vertices) ** 2).mean(),
    }
    for name, value in expected.items():
        torch.testing.assert_close(losses[name], value)
    total = 20 * expected["rotation_loss"] + 100 * expected["joint_loss"] + 100 * expected["vertex_loss"] + 0.5
    torch.testing.assert_close(losses["loss"], total)
    with pytest.raises(ValueError, match="vertex_weights"):
        tokenizer_loss(reconstruction, targets, torch.tensor(0.5), args, body_joints, body_model)
    with pytest.raises(ValueError, match="reconstruction_loss"):
        _args("unused", reconstruction_loss="l2")


def test_one_training_step_with_the_authors_loss(tmp_path, datasets, body_joints):
    from unipose.body_model import BodyModel

    args = _args(tmp_path, max_steps=1, logging_steps=1, reconstruction_loss="mse", vertex_loss_weight=100.0)
    torch.manual_seed(0)
    trainer = PoseTokenizerTrainer(
        PoseVQVAE(PoseVQVAEConfig(**TINY_MODEL)), args, *datasets, body_joints=body_joints,
        body_model=BodyModel("generated"), up_axis="y",
    )  # fmt: skip
    assert trainer.vertex_weights.shape == (6890,)
    trainer.train()
    (logged,) = [entry for entry in trainer.state.log_history if "vertex_loss" in entry]
    assert math.isfinite(logged["loss"]) and logged["vertex_loss"] > 0


def test_one_training_step_changes_every_trainable_parameter(tmp_path, datasets, body_joints):
    trainer = _trainer(_args(tmp_path, max_steps=1, logging_steps=1), datasets, body_joints)
    before = {name: p.detach().clone() for name, p in trainer.model.named_parameters()}
    trainer.train()
    unchanged = [name for name, p in trainer.model.named_parameters() if torch.equal(p, before[name])]
    assert unchanged == []
    assert bool(trainer.model.quantizer.initialized)
    (logged,) = [entry for entry in trainer.state.log_history if "rotation_loss" in entry]
    assert (
        math.isfinite(logged["loss"]) and 0 < logged["codebook_usage"] <= 1 and logged["noise_scale"] == 0.01
    )


def test_evaluate_scores_the_whole_validation_set_and_logs_it(tmp_path, datasets, body_joints):
    trainer = _trainer(_args(tmp_path), datasets, body_joints)
    poses = torch.as_tensor(datasets[1]["pose"], dtype=torch.float32)
    expected = evaluate_tokenizer(trainer.model, poses, body_joints)
    trainer.model.train()

    metrics = trainer.evaluate(metric_key_prefix="val")
    assert metrics.pop("epoch", 0) == 0  # added by `Trainer.log`, as for any evaluation
    assert metrics == {f"val_{name}": value for name, value in expected.items()}
    assert trainer.model.training  # back in the mode it was in
    assert trainer.state.log_history[-1]["val_mpjpe"] == expected["mpjpe"]

    trainer.eval_dataset = None
    with pytest.raises(ValueError, match=r"PoseTokenizerTrainer.evaluate` needs records to score"):
        trainer.evaluate()


class _Killed(Exception):
    pass


class _KillAtFirstSave(TrainerCallback):
    def on_save(self, args, state, control, **kwargs):
        raise _Killed(state.global_step)


def test_resume_equals_uninterrupted_run(tmp_path):
    uninterrupted = _run(tmp_path / "a")
    assert uninterrupted["global_step"] == 6 and uninterrupted["completed"] == 1.0

    with pytest.raises(_Killed):
        _run(tmp_path / "b", callbacks=[_KillAtFirstSave()])
    assert Path(get_last_checkpoint(tmp_path / "b")).name == "checkpoint-3"
    assert not (tmp_path / "b" / "model.safetensors").exists()

    # A new process: another global random state, restored from the checkpoint (the codebook resets draw from
    # it).
    torch.manual_seed(1234)
    resumed = _run(tmp_path / "b", resume_from_checkpoint="latest")
    assert resumed["global_step"] == 6

    expected = PoseVQVAE.from_pretrained(tmp_path / "a").state_dict()
    actual = PoseVQVAE.from_pretrained(tmp_path / "b").state_dict()
    assert expected.keys() == actual.keys()
    different = [name for name in expected if not torch.equal(expected[name], actual[name])]
    assert different == []
    assert resumed["eval_mpjpe"] == uninterrupted["eval_mpjpe"]
    # The final folder holds the metrics and the Trainer's state; save_total_limit=2 keeps two checkpoints.
    assert (
        json.loads((tmp_path / "b" / "eval_results.json").read_text())["eval_mpjpe"] == resumed["eval_mpjpe"]
    )
    assert sorted(path.name for path in (tmp_path / "b").glob("checkpoint-*")) == [
        "checkpoint-3",
        "checkpoint-6",
    ]


def test_resume_refuses_a_different_run(tmp_path):
    _run(tmp_path, max_steps=3)
    with pytest.raises(ValueError, match="train_batch_size: checkpoint 16 vs now 8"):
        _run(tmp_path, max_steps=3, per_device_train_batch_size=8, resume_from_checkpoint="latest")
    with pytest.raises(FileNotFoundError, match="trainer_state.json"):
        _run(tmp_path, resume_from_checkpoint=str(tmp_path / "nope"))


def test_resume_refuses_other_data_or_augmentation(tmp_path):
    _run(tmp_path, max_steps=3, max_train_minutes=1e-9)  # stopped after its first step
    with pytest.raises(ValueError, match="the run differs in data: "):
        _run(tmp_path, max_steps=3, data={"train_seed": 7}, resume_from_checkpoint="latest")
    with pytest.raises(ValueError, match="the run differs in augmentation: "):
        _run(tmp_path, max_steps=3, joint_noise_probability=0.0, resume_from_checkpoint="latest")


def test_a_finished_run_run_again_is_left_as_it_ended(tmp_path):
    # `Trainer` resumed at the last step would take one step more, and again at every rerun.
    first = _run(tmp_path, max_steps=3, resume_from_checkpoint="latest")
    weights = PoseVQVAE.from_pretrained(tmp_path).state_dict()
    again = _run(tmp_path, max_steps=3, resume_from_checkpoint="latest")
    assert again["global_step"] == first["global_step"] == 3 and again["eval_mpjpe"] == first["eval_mpjpe"]
    assert sorted(path.name for path in tmp_path.glob("checkpoint-*")) == ["checkpoint-3"]
    rerun = PoseVQVAE.from_pretrained(tmp_path).state_dict()
    assert [name for name in weights if not torch.equal(weights[name], rerun[name])] == []


def test_a_new_run_is_refused_where_another_run_left_its_checkpoints(tmp_path):
    # Its checkpoint rotation would delete them, and a later `latest` would resume them as the new run's.
    _run(tmp_path, max_steps=3)
    with pytest.raises(ValueError, match=r"holds checkpoints of an earlier run \(checkpoint-3\): continue it with"):
        _run(tmp_path, max_steps=3, learning_rate=5e-2)
    assert sorted(path.name for path in tmp_path.glob("checkpoint-*")) == ["checkpoint-3"]


def test_the_time_limit_stops_with_a_checkpoint_to_resume_from(tmp_path):
    run = tmp_path / "stage0"
    results = _run(run, max_train_minutes=1e-9, max_steps=2, resume_from_checkpoint="latest")
    assert results["global_step"] == 1 and results["completed"] == 0.0
    assert Path(get_last_checkpoint(run)).name == "checkpoint-1"
    assert PoseVQVAE.from_pretrained(run).config.codebook_size == TINY_MODEL["codebook_size"]
    # The bundled model's build does not take the early save for a finished stage 0: its rerun resumes it.
    spec = importlib.util.spec_from_file_location("build_unipose_tiny", RECIPES.parent / "build_unipose_tiny.py")
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    assert not build.step_done(tmp_path, "stage0")
    assert _run(run, max_steps=2, resume_from_checkpoint="latest")["global_step"] == 2
    assert build.step_done(tmp_path, "stage0")


def test_a_checkpoint_interrupted_while_saving_is_never_resumed_from(tmp_path, kill_while_saving):
    disarm = kill_while_saving(PoseTokenizerTrainer, step=2)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, max_steps=3, save_steps=1, eval_steps=3)
    assert get_last_checkpoint(tmp_path) == str(tmp_path / "checkpoint-1")  # not the half-written checkpoint-2
    disarm()
    assert _run(tmp_path, max_steps=3, save_steps=1, eval_steps=3, resume_from_checkpoint="latest")["global_step"] == 3
    assert not (tmp_path / STAGING_DIR).exists()
    # The retrieval models' and the pose ViT's trainers write their checkpoints the same way.
    assert all(issubclass(cls, StagedCheckpointsMixin) for cls in (RetrievalTrainer, PoseVisionTrainer))


# ----------------------------------------------------------------------------------------------------
# Recipes and command line
# ----------------------------------------------------------------------------------------------------


def test_recipe_with_an_unknown_or_mistyped_key_is_refused(tmp_path, capsys):
    recipe = tmp_path / "recipe.yaml"
    for text, name in (("learning_rat: 0.001\n", "learning_rat"), ("codebook_sise: 64\n", "codebook_sise")):
        recipe.write_text("output_dir: run\n" + text)
        with pytest.raises(ValueError, match=f"Unknown arguments from config file: \\['--{name}'"):
            parse_arguments(["--config", str(recipe)])
    recipe.write_text("output_dir: run\nlearning_rate: fast\n")
    with pytest.raises(SystemExit) as raised:
        parse_arguments(["--config", str(recipe)])
    assert raised.value.code == 2 and "invalid float value: 'fast'" in capsys.readouterr().err
    # YAML reads 1e-3 as a string; it is still a number.
    recipe.write_text("output_dir: run\nlearning_rate: 1e-3\n")
    assert parse_arguments(["--config", str(recipe)])[2].learning_rate == 1e-3
    with pytest.raises(ValueError, match="train_seed"):
        PoseDataArguments(train_seed=1, validation_seed=1)


def test_command_line_overrides_the_recipe(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("output_dir: run\nlearning_rate: 0.001\ncodebook_size: 64\ncode_dim: 8\n")
    data_args, model_args, training_args = parse_arguments(
        ["--config", str(recipe), "--learning_rate", "5e-4", "--codebook_size", "128",
         "--train_data_paths", "a", "b", "--disable_tqdm", "true"]
    )  # fmt: skip
    assert training_args.learning_rate == 5e-4 and training_args.disable_tqdm
    assert model_args.config_overrides() == {"codebook_size": 128, "code_dim": 8}
    assert data_args.train_data_paths == ["a", "b"]


@pytest.mark.parametrize("name", ["stage0_paper.yaml", "stage0_cpu.yaml"])
def test_recipes_parse(name):
    _, model_args, training_args = parse_arguments([str(RECIPES / name)])
    PoseVQVAEConfig(**model_args.config_overrides())  # the tokenizer's fields make a valid config
    assert training_args.max_grad_norm == 0.0 and training_args.lr_scheduler_type == "cosine"


def test_cli_trains_and_saves_a_loadable_tokenizer(tmp_path):
    out = tmp_path / "run"
    threads = torch.get_num_threads()  # the recipe asks for one thread
    try:
        code = cli.main(
            ["train-tokenizer", "--config", str(RECIPES / "stage0_cpu.yaml"), "--output_dir", str(out),
             "--num_train_poses", "64", "--num_validation_poses", "16", "--per_device_train_batch_size", "16",
             "--max_steps", "2", "--eval_steps", "2", "--save_steps", "2", "--disable_tqdm", "true",
             "--up_axis", "z", *[f"--{key}={value}" for key, value in TINY_MODEL.items()]]
        )  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    assert code == 0
    tokenizer = PoseVQVAE.from_pretrained(out)
    assert tokenizer.config.codebook_size == TINY_MODEL["codebook_size"]
    assert tokenizer.config.up_axis == "z"  # the world it was trained in, which UniPose turns the corpora into
    assert tokenizer.encode(torch.zeros(22, 3)).shape == (1, tokenizer.config.num_tokens)
    assert (out / "eval_results.json").is_file() and get_last_checkpoint(out) is not None


def test_cli_reports_a_bad_recipe_value_in_one_line(tmp_path, capsys):
    code = cli.main(["train-tokenizer", "--output_dir", str(tmp_path), "--max_tilt_perturbation", "95"])
    assert code == 1
    err = capsys.readouterr().err
    assert "max_tilt_perturbation" in err and "Traceback" not in err
