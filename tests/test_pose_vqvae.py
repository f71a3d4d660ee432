"""Tests of the pose tokenizer (configuration_pose_vqvae.py, modeling_pose_vqvae.py)."""

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from huggingface_hub.errors import StrictDataclassClassValidationError
from transformers import AutoConfig, AutoModel

from unipose.configuration_pose_vqvae import PoseVQVAEConfig
from unipose.modeling_pose_vqvae import PoseVQVAE, PoseVQVAEOutput, PoseVQVAEVectorQuantizer
from unipose.rotations import axis_angle_to_rotation_6d
from unipose.testing import near_rotation_matrices
# 22 joints and 80 tokens; hidden size 32, 64 codes of dimension 16.
from unipose.testing import tiny_pose_tokenizer_config as tiny_config


REPO_ROOT = Path(__file__).resolve().parents[1]


def random_poses_6d(batch_size: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    axis_angle = torch.randn(batch_size, 22, 3, generator=generator) * 0.5
    return axis_angle_to_rotation_6d(axis_angle)


def trained_tokenizer(seed: int = 0, **overrides) -> PoseVQVAE:
    """A tiny tokenizer whose codebook has been initialised by one training batch, in eval mode."""
    torch.manual_seed(seed)
    model = PoseVQVAE(tiny_config(**overrides)).train()
    model(random_poses_6d(16, seed=seed))
    return model.eval()


def state_snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in module.state_dict().items()}


def assert_same_state(before: dict[str, torch.Tensor], module: torch.nn.Module) -> None:
    after = module.state_dict()
    assert before.keys() == after.keys()
    for name, tensor in before.items():
        assert torch.equal(tensor, after[name]), f"{name} changed"


def quantizer_with_codebook(codebook, **overrides) -> PoseVQVAEVectorQuantizer:
    codebook = torch.tensor(codebook, dtype=torch.float32)
    config = tiny_config(codebook_size=codebook.shape[0], code_dim=codebook.shape[1], **overrides)
    quantizer = PoseVQVAEVectorQuantizer(config)
    quantizer.set_codebook(codebook)
    return quantizer


def record_codebook_installs(quantizer: PoseVQVAEVectorQuantizer, monkeypatch) -> list[torch.Tensor]:
    """Records every codebook that `quantizer` installs (first-batch initialisation or `set_codebook`)."""
    installed = []
    install = quantizer._install_codebook

    def recording_install(codebook):
        installed.append(codebook.clone())
        install(codebook)

    monkeypatch.setattr(quantizer, "_install_codebook", recording_install)
    return installed


# ----------------------------------------------------------------------------------------------------
# Configuration
# ----------------------------------------------------------------------------------------------------


def test_default_config_reproduces_the_released_resampling_lengths():
    config = PoseVQVAEConfig()
    sizes = (config.num_joints, config.num_tokens, config.codebook_size, config.code_dim, config.hidden_size)
    assert sizes == (22, 80, 2048, 256, 512)
    assert config.encoder_resample_lengths == (40, 80, 160)
    # The released encoder computes its first length from the joints; ours from the tokens: they agree.
    assert config.encoder_resample_lengths[0] == ((2 * config.num_joints) // 10) * 10
    assert config.decoder_resample_lengths == (65, 51, 36, 22)
    reference = np.linspace(config.num_joints, config.num_tokens, 4, endpoint=False).astype(int)[::-1]
    assert config.decoder_resample_lengths == tuple(int(length) for length in reference)


def test_intermediate_lengths_of_the_networks():
    model = PoseVQVAE(tiny_config()).eval()
    lengths = []
    blocks = [*model.encoder.resample_blocks, model.encoder.downsample, *model.decoder.resample_blocks]
    hooks = [
        block.register_forward_hook(lambda module, args, output: lengths.append(output.shape[-1]))
        for block in blocks
    ]
    model(random_poses_6d(2))
    for hook in hooks:
        hook.remove()
    assert lengths == [40, 80, 160, 80, 65, 51, 36, 22]


def test_residual_stacks_run_from_the_widest_dilation():
    model = PoseVQVAE(tiny_config(num_residual_blocks=3))
    for stack in (model.encoder.residual_stack, model.decoder.residual_stack):
        assert [block.conv1.dilation[0] for block in stack.blocks] == [9, 3, 1]
        assert [block.conv1.padding[0] for block in stack.blocks] == [9, 3, 1]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"num_tokens": 81}, "num_tokens"),
        ({"rotation_dim": 3}, "rotation_dim"),
        ({"hidden_size": 0}, "hidden_size"),
        ({"ema_decay": 1.0}, "ema_decay"),
        ({"num_decoder_resampling_layers": 0}, "num_decoder_resampling_layers"),
        ({"laplace_smoothing": 0.0}, "laplace_smoothing"),
        ({"dead_code_threshold": -1.0}, "dead_code_threshold"),
    ],
)
def test_config_rejects_inconsistent_fields(overrides, field):
    # `@strict` runs the validators and wraps their ValueError.
    with pytest.raises(StrictDataclassClassValidationError, match=field) as error:
        PoseVQVAEConfig(**overrides)
    assert isinstance(error.value.__cause__, ValueError)


def test_config_token_count_follows_the_upsampling_plan():
    config = PoseVQVAEConfig(num_tokens=81, num_encoder_upsampling_layers=0)
    assert config.encoder_resample_lengths == (162,)
    model = PoseVQVAE(tiny_config(num_tokens=81, num_encoder_upsampling_layers=0))
    assert model(random_poses_6d(1)).codes.shape == (1, 81)


def test_config_round_trips_through_json(tmp_path):
    config = tiny_config(ema_decay=0.9, dead_code_threshold=0.5, num_residual_blocks=3)
    config.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == "unipose_pose_vqvae"
    assert saved["auto_map"]["AutoConfig"] == "configuration_pose_vqvae.PoseVQVAEConfig"
    loaded = PoseVQVAEConfig.from_pretrained(tmp_path)
    assert loaded.to_diff_dict() == config.to_diff_dict()


# ----------------------------------------------------------------------------------------------------
# Shapes, ranges and the tokenizer interface
# ----------------------------------------------------------------------------------------------------


def test_forward_shapes_and_ranges():
    model = trained_tokenizer()
    output = model(random_poses_6d(5, seed=1))
    assert isinstance(output, PoseVQVAEOutput)
    assert output.reconstruction.shape == (5, 22, 6)
    assert output.codes.shape == (5, 80) and output.codes.dtype == torch.long
    assert output.latents.shape == output.quantized_latents.shape == (5, 80, 16)
    assert 0 <= int(output.codes.min()) and int(output.codes.max()) < 64
    assert output.commitment_loss.ndim == 0 and output.commitment_loss >= 0
    assert 1.0 <= float(output.perplexity) <= 64.0
    assert 0.0 < float(output.codebook_usage) <= 1.0 and 0.0 <= float(output.ema_codebook_usage) <= 1.0
    # The quantized latents are codebook rows (up to the rounding of the straight-through sum), and the
    # reported codes are theirs.
    torch.testing.assert_close(output.quantized_latents, model.quantizer.codebook[output.codes])
    # As transformers' models: `return_dict=False` (or `config.return_dict = False`) gives the output's tuple.
    as_tuple = model.eval()(random_poses_6d(5, seed=1), return_dict=False)
    assert isinstance(as_tuple, tuple)
    for got, expected in zip(as_tuple, model(random_poses_6d(5, seed=1)).to_tuple(), strict=True):
        assert torch.equal(got, expected)


def test_encode_accepts_every_pose_format_and_decode_returns_rotations():
    model = trained_tokenizer()
    axis_angle = torch.randn(3, 22, 3) * 0.5
    codes = model.encode(axis_angle)
    assert codes.shape == (3, 80) and codes.dtype == torch.long
    assert torch.equal(model.encode(axis_angle.reshape(3, 66).numpy()), codes)
    assert torch.equal(model.encode(axis_angle_to_rotation_6d(axis_angle)), codes)
    assert model.encode(axis_angle[0]).shape == (1, 80)
    assert torch.equal(model.encode(axis_angle), model(axis_angle_to_rotation_6d(axis_angle)).codes)

    assert model.decode(codes).shape == (3, 22, 6)
    matrices = model.decode_to_matrix(codes)
    assert matrices.shape == (3, 22, 3, 3)
    identity = torch.eye(3).expand_as(matrices)
    torch.testing.assert_close(matrices @ matrices.transpose(-1, -2), identity, atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.linalg.det(matrices), torch.ones(3, 22), atol=1e-5, rtol=0)
    assert model.decode_to_axis_angle(codes).shape == (3, 22, 3)
    assert model.decode(codes[0]).shape == (1, 22, 6)
    assert torch.equal(model.decode(codes.numpy()), model.decode(codes))


def test_encode_reads_matrices_and_6d_as_given():
    """The encoder gets the raw first two rows of real (float32, ~4e-3 off) matrices, as the published model's
    does, and 6D unchanged: no Gram-Schmidt on the way in."""
    model = trained_tokenizer()
    axis_angle = torch.randn(3, 22, 3, generator=torch.Generator().manual_seed(1)) * 0.5
    matrices = near_rotation_matrices(axis_angle)
    raw_rows = matrices[..., :2, :].reshape(3, 22, 6)
    with torch.no_grad():
        expected = model.quantizer.quantize(model.encoder(raw_rows))
    assert torch.equal(model.encode(matrices), expected)
    assert torch.equal(model.encode(matrices.numpy()), expected)
    assert torch.equal(model.encode(raw_rows), expected)


def test_index_to_code_to_index_round_trip():
    torch.manual_seed(0)
    quantizer = PoseVQVAEVectorQuantizer(tiny_config())
    quantizer.set_codebook(torch.randn(64, 16))
    indices = torch.randint(64, (7, 80))
    assert torch.equal(quantizer.quantize(quantizer.embed_codes(indices)), indices)
    assert torch.equal(quantizer.quantize(quantizer.codebook), torch.arange(64))


def test_quantize_takes_the_nearest_code():
    torch.manual_seed(0)
    quantizer = PoseVQVAEVectorQuantizer(tiny_config())
    quantizer.set_codebook(torch.randn(64, 16))
    latents = torch.randn(3, 80, 16)
    brute_force = torch.cdist(latents.reshape(-1, 16), quantizer.codebook).argmin(dim=1).view(3, 80)
    assert torch.equal(quantizer.quantize(latents), brute_force)


# ----------------------------------------------------------------------------------------------------
# The moving-average codebook
# ----------------------------------------------------------------------------------------------------


def test_ema_arithmetic_on_a_hand_made_batch():
    decay, smoothing = 0.5, 0.1
    old = [[0, 0], [4, 0], [0, 4], [4, 4]]
    quantizer = quantizer_with_codebook(
        old, ema_decay=decay, laplace_smoothing=smoothing, dead_code_threshold=0.0
    ).train()
    latents = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [3.0, 0.0], [5.0, 1.0], [0.0, 3.0]]])
    output = quantizer(latents)

    # Nearest codes by hand: (1,0),(0,1) -> 0; (3,0),(5,1) -> 1; (0,3) -> 2; code 3 unused.
    assert output.codes.tolist() == [[0, 0, 1, 1, 2]]
    assert torch.equal(output.quantized, torch.tensor([[[0.0, 0], [0, 0], [4, 0], [4, 0], [0, 4]]]))
    counts = [2, 2, 1, 0]
    sums = [[1, 1], [8, 1], [0, 3], [0, 0]]
    # set_codebook starts every code at cluster size 1 with the code itself as its sum.
    expected_size = [decay * 1 + (1 - decay) * n for n in counts]  # [1.5, 1.5, 1.0, 0.5]
    expected_sum = [
        [decay * o + (1 - decay) * s for o, s in zip(old_row, sum_row)] for old_row, sum_row in zip(old, sums)
    ]
    total = sum(expected_size)  # 4.5
    smoothed = [(size + smoothing) / (total + 4 * smoothing) * total for size in expected_size]
    expected_codebook = [[value / size for value in row] for row, size in zip(expected_sum, smoothed)]

    torch.testing.assert_close(quantizer.cluster_size, torch.tensor(expected_size))
    torch.testing.assert_close(quantizer.embed_sum, torch.tensor(expected_sum))
    torch.testing.assert_close(quantizer.codebook, torch.tensor(expected_codebook))
    assert float(output.codebook_usage) == 0.75
    probabilities = [0.4, 0.4, 0.2]
    expected_perplexity = math.exp(-sum(p * math.log(p) for p in probabilities))
    assert float(output.perplexity) == pytest.approx(expected_perplexity, rel=1e-6)


def test_dead_code_reset_replaces_exactly_the_dead_codes_with_encoder_outputs():
    torch.manual_seed(0)
    decay, smoothing = 0.5, 1e-5
    codebook = [[0, 0], [4, 0], [100, 100], [-100, -100]]
    quantizer = quantizer_with_codebook(
        codebook, ema_decay=decay, laplace_smoothing=smoothing, dead_code_threshold=1.0
    ).train()
    vectors = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.0, -1.0], [4.0, 1.0], [5.0, 0.0], [3.0, 0.0]])
    output = quantizer(vectors.unsqueeze(0))
    assert output.codes.tolist() == [[0, 0, 0, 1, 1, 1]]

    # Codes 0 and 1: size 0.5 + 0.5 * 3 = 2 (alive). Codes 2 and 3: 0.5 < 1 (dead).
    sizes = [2.0, 2.0, 0.5, 0.5]
    total = sum(sizes)
    live_sums = [[0.5 * 0 + 0.5 * 1, 0.5 * 0 + 0.5 * 0], [0.5 * 4 + 0.5 * 12, 0.5 * 0 + 0.5 * 1]]
    for code, row in enumerate(live_sums):
        smoothed = (sizes[code] + smoothing) / (total + 4 * smoothing) * total
        torch.testing.assert_close(quantizer.codebook[code], torch.tensor(row) / smoothed)
        assert float(quantizer.cluster_size[code]) == sizes[code]

    reset = quantizer.codebook[2:]
    matches = [[torch.equal(row, vector) for vector in vectors] for row in reset]
    assert all(any(row_matches) for row_matches in matches), "a reset code is not an encoder output"
    assert not torch.equal(reset[0], reset[1]), "two dead codes got the same vector"
    assert quantizer.cluster_size[2:].tolist() == [1.0, 1.0]
    assert torch.equal(quantizer.embed_sum[2:], reset)
    assert float(output.ema_codebook_usage) == 1.0


def test_no_reset_without_a_threshold():
    quantizer = quantizer_with_codebook([[0, 0], [100, 100]], ema_decay=0.5, dead_code_threshold=0.0).train()
    quantizer(torch.zeros(1, 4, 2))
    # Code 1 decays towards zero (size 0.5, sum 50) and keeps its direction; it is not moved onto the batch.
    assert float(quantizer.cluster_size[1]) == 0.5
    torch.testing.assert_close(quantizer.embed_sum[1], torch.tensor([50.0, 50.0]))
    assert quantizer.codebook[1, 0] > 10


def test_codebook_is_initialised_once_from_the_first_training_batch(tmp_path, monkeypatch):
    torch.manual_seed(0)
    model = PoseVQVAE(tiny_config()).train()
    assert not bool(model.quantizer.initialized)
    installed = record_codebook_installs(model.quantizer, monkeypatch)
    poses = random_poses_6d(4)
    latents = model.encoder(poses).detach().reshape(-1, 16)
    model(poses)
    assert bool(model.quantizer.initialized)
    assert len(installed) == 1
    # Every initial code is one of the batch's encoder outputs (4 * 80 = 320 vectors >= 64 codes: no repeats).
    is_batch_row = (installed[0][:, None, :] == latents[None, :, :]).all(dim=-1)  # (64, 320)
    assert bool(is_batch_row.any(dim=1).all())
    assert len({tuple(row.tolist()) for row in installed[0]}) == 64

    model(random_poses_6d(4, seed=1))
    assert len(installed) == 1

    model.save_pretrained(tmp_path)
    loaded = PoseVQVAE.from_pretrained(tmp_path).train()
    assert bool(loaded.quantizer.initialized)
    torch.testing.assert_close(loaded.quantizer.codebook, model.quantizer.codebook, rtol=0, atol=0)
    installed_after_loading = record_codebook_installs(loaded.quantizer, monkeypatch)
    loaded(random_poses_6d(4, seed=2))
    assert installed_after_loading == []


def test_eval_mode_is_deterministic_and_never_mutates_buffers():
    model = trained_tokenizer()
    before = state_snapshot(model)
    poses = random_poses_6d(6, seed=3)
    first, second = model(poses), model(poses)
    for name in ("reconstruction", "codes", "latents", "perplexity", "codebook_usage"):
        assert torch.equal(first[name], second[name]), name
    assert_same_state(before, model)


def test_an_uninitialised_codebook_is_left_alone_outside_training():
    torch.manual_seed(0)
    model = PoseVQVAE(tiny_config()).eval()
    before = state_snapshot(model)
    model(random_poses_6d(2))
    model.decode(model.encode(torch.zeros(22, 3)))
    assert not bool(model.quantizer.initialized)
    assert_same_state(before, model)


def test_encode_and_decode_never_mutate_buffers_even_in_training_mode():
    model = trained_tokenizer().train()
    before = state_snapshot(model)
    codes = model.encode(torch.randn(4, 22, 3) * 0.5)
    model.decode(codes)
    assert_same_state(before, model)


# ----------------------------------------------------------------------------------------------------
# Saving and loading
# ----------------------------------------------------------------------------------------------------


def test_save_and_load_give_identical_encode_and_decode(tmp_path):
    model = trained_tokenizer()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    loaded = PoseVQVAE.from_pretrained(tmp_path)
    assert_same_state(state_snapshot(model), loaded)
    poses = torch.randn(5, 22, 3) * 0.5
    codes = model.encode(poses)
    assert torch.equal(loaded.encode(poses), codes)
    assert torch.equal(loaded.decode(codes), model.decode(codes))


def test_saved_tokenizer_loads_as_remote_code_without_unipose(tmp_path):
    model = trained_tokenizer()
    save_dir = tmp_path / "pose_tokenizer"
    model.save_pretrained(save_dir)
    config = json.loads((save_dir / "config.json").read_text())
    assert config["auto_map"] == {
        "AutoConfig": "configuration_pose_vqvae.PoseVQVAEConfig",
        "AutoModel": "modeling_pose_vqvae.PoseVQVAE",
    }
    poses = torch.randn(3, 22, 3) * 0.5
    codes = model.encode(poses)
    torch.save({"poses": poses, "codes": codes, "decoded": model.decode(codes)}, tmp_path / "expected.pt")

    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["unipose"] = None  # any import of the package now fails
        import torch
        from transformers import AutoModel
        model = AutoModel.from_pretrained({str(save_dir)!r}, trust_remote_code=True)
        assert not type(model).__module__.startswith("unipose"), type(model).__module__
        expected = torch.load({str(tmp_path / "expected.pt")!r})
        assert torch.equal(model.encode(expected["poses"]), expected["codes"])
        assert torch.equal(model.decode(expected["codes"]), expected["decoded"])
        print("remote code OK", type(model).__module__)
        """
    )
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"), HF_HUB_DISABLE_TELEMETRY="1")
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "remote code OK transformers_modules" in result.stdout


def test_import_registers_the_tokenizer_with_the_auto_classes(tmp_path):
    # Importing any part of `unipose` runs its `__init__`, which registers the classes in-process: no
    # remote code is needed then.
    model = trained_tokenizer()
    model.save_pretrained(tmp_path)
    assert type(AutoConfig.from_pretrained(tmp_path)) is PoseVQVAEConfig
    loaded = AutoModel.from_pretrained(tmp_path)
    assert type(loaded) is PoseVQVAE
    assert torch.equal(loaded.quantizer.codebook, model.quantizer.codebook)


# ----------------------------------------------------------------------------------------------------
# Training and freezing
# ----------------------------------------------------------------------------------------------------


def test_one_training_step_changes_every_trainable_parameter():
    torch.manual_seed(0)
    model = PoseVQVAE(tiny_config()).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    before = {name: parameter.detach().clone() for name, parameter in model.named_parameters()}
    poses = random_poses_6d(8)
    output = model(poses)
    loss = torch.nn.functional.mse_loss(output.reconstruction, poses) + output.commitment_loss
    loss.backward()
    optimizer.step()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, f"no gradient for {name}"
        assert not torch.equal(parameter, before[name]), f"{name} did not change"


def test_straight_through_gradient_reaches_the_encoder():
    model = trained_tokenizer(commitment_cost=0.0).train()
    # The quantizer passes the decoder's gradient to the latents unchanged.
    latents = torch.randn(2, 80, 16, requires_grad=True)
    upstream = torch.randn(2, 80, 16)
    model.quantizer(latents).quantized.backward(upstream)
    assert torch.equal(latents.grad, upstream)
    # With no commitment term, the encoder learns only through the straight-through path.
    output = model(random_poses_6d(4))
    output.reconstruction.square().sum().backward()
    assert model.encoder.conv_in.weight.grad.abs().sum() > 0


def test_frozen_tokenizer_stays_bit_identical_under_a_downstream_loss():
    tokenizer = trained_tokenizer().requires_grad_(False).eval()
    before = state_snapshot(tokenizer)
    downstream = torch.nn.Linear(6, 6)
    optimizer = torch.optim.AdamW(downstream.parameters(), lr=1e-2)
    poses = random_poses_6d(4)
    codes = tokenizer.encode(poses)
    loss = downstream(tokenizer(poses).reconstruction).square().mean()
    loss = loss + downstream(tokenizer.decode(codes)).mean()
    loss.backward()
    optimizer.step()
    assert all(parameter.grad is None for parameter in tokenizer.parameters())
    assert downstream.weight.grad is not None
    assert_same_state(before, tokenizer)


# ----------------------------------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("codes", "error", "message"),
    [
        (torch.full((2, 80), 64), ValueError, r"`codes` must lie in \[0, 64\), got values from 64 to 64"),
        (torch.full((2, 80), -1), ValueError, r"`codes` must lie in \[0, 64\)"),
        (torch.zeros(2, 79, dtype=torch.long), ValueError, r"must have shape \(batch_size, 80\).*\(2, 79\)"),
        (torch.zeros(2, 80, 1, dtype=torch.long), ValueError, "`codes` must have shape"),
        (torch.zeros(2, 80), TypeError, "`codes` must hold integer code indices.*float32"),
        (torch.zeros(2, 80, dtype=torch.bool), TypeError, "`codes` must hold integer code indices"),
        ("0 1 2", TypeError, "`codes` must be a torch.LongTensor"),
    ],
)
def test_decode_rejects_bad_codes(codes, error, message):
    model = trained_tokenizer()
    with pytest.raises(error, match=message):
        model.decode(codes)
    with pytest.raises(error, match=message):
        model.decode_to_axis_angle(codes)


@pytest.mark.parametrize(
    ("poses_6d", "error", "message"),
    [
        (torch.zeros(2, 21, 6), ValueError, r"`poses_6d` must have shape \(batch_size, 22, 6\), got \(2, 21"),
        (torch.zeros(22, 6), ValueError, "`poses_6d` must have shape"),
        (torch.zeros(2, 22, 6, dtype=torch.long), TypeError, "`poses_6d` must be a floating-point tensor"),
        (np.zeros((2, 22, 6), dtype=np.float32), TypeError, "`poses_6d` must be a torch.Tensor.*ndarray"),
        (torch.full((2, 22, 6), float("nan")), ValueError, "`poses_6d` contains NaN"),
        (torch.zeros(0, 22, 6), ValueError, "`poses_6d` must hold at least one pose"),
    ],
)
def test_forward_rejects_bad_poses(poses_6d, error, message):
    model = trained_tokenizer()
    before = state_snapshot(model)
    with pytest.raises(error, match=message):
        model.train()(poses_6d)
    assert_same_state(before, model)


@pytest.mark.parametrize(
    "poses",
    [
        torch.zeros(2, 21, 3),
        torch.zeros(65),
        torch.full((22, 3), float("inf")),
        2 * torch.eye(3).expand(22, 3, 3),  # not a rotation
    ],
)
def test_encode_rejects_bad_poses(poses):
    model = trained_tokenizer()
    with pytest.raises(ValueError, match="poses"):
        model.encode(poses)


def test_set_codebook_rejects_bad_codebooks():
    quantizer = PoseVQVAEVectorQuantizer(tiny_config())
    with pytest.raises(ValueError, match=r"`codebook` must have shape \(64, 16\), got \(64, 8\)"):
        quantizer.set_codebook(torch.zeros(64, 8))
    with pytest.raises(TypeError, match="`codebook` must be a floating-point torch.Tensor, got torch.int64"):
        quantizer.set_codebook(torch.zeros(64, 16, dtype=torch.long))
    with pytest.raises(ValueError, match="`codebook` contains NaN"):
        quantizer.set_codebook(torch.full((64, 16), float("nan")))
    assert not bool(quantizer.initialized)


# ----------------------------------------------------------------------------------------------------
# Distributed training
# ----------------------------------------------------------------------------------------------------

_DISTRIBUTED_WORKER = """
import sys
import torch
import torch.distributed as dist
from unipose.modeling_pose_vqvae import PoseVQVAEVectorQuantizer
from unipose.testing import tiny_pose_tokenizer_config

rank, init_file, data_file, out_file = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
dist.init_process_group("gloo", init_method="file://" + init_file, rank=rank, world_size=2)
data = torch.load(data_file)
torch.manual_seed(100 + rank)  # different random draws on each rank
config = tiny_pose_tokenizer_config(codebook_size=8, code_dim=4, ema_decay=0.5, dead_code_threshold=0.0)
averaged = PoseVQVAEVectorQuantizer(config).train()
averaged.set_codebook(data["codebook"])
averaged(data["batches"][rank])
reset_config = tiny_pose_tokenizer_config(codebook_size=8, code_dim=4, dead_code_threshold=2.0)
fresh = PoseVQVAEVectorQuantizer(reset_config).train()  # initialised, then reset, from rank 0's draws
fresh(data["batches"][rank])
torch.save({"averaged": averaged.state_dict(), "fresh": fresh.state_dict()}, out_file)
dist.destroy_process_group()
"""


@pytest.mark.slow  # two worker processes that each import torch and transformers
def test_distributed_statistics_are_all_reduced_and_replicas_agree(tmp_path):
    torch.manual_seed(0)
    codebook = torch.randn(8, 4)
    batches = torch.randn(2, 3, 5, 4)  # one (3, 5, 4) batch of latents per rank
    torch.save({"codebook": codebook, "batches": batches}, tmp_path / "data.pt")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    files = [str(tmp_path / name) for name in ("init", "data.pt")]
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", _DISTRIBUTED_WORKER, str(rank), *files, str(tmp_path / f"out{rank}.pt")],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in range(2)
    ]
    for worker in workers:
        _, stderr = worker.communicate(timeout=300)
        assert worker.returncode == 0, stderr[-3000:]
    results = [torch.load(tmp_path / f"out{rank}.pt") for rank in range(2)]

    # One process that sees both halves computes the same moving averages as the two replicas.
    config = tiny_config(codebook_size=8, code_dim=4, ema_decay=0.5, dead_code_threshold=0.0)
    single = PoseVQVAEVectorQuantizer(config).train()
    single.set_codebook(codebook)
    single(batches.reshape(1, -1, 4))
    for result in results:
        for name, tensor in single.state_dict().items():
            torch.testing.assert_close(result["averaged"][name], tensor)
    # Initialisation and resets draw different vectors on each rank; rank 0's are broadcast.
    for name, tensor in results[0]["fresh"].items():
        assert torch.equal(results[1]["fresh"][name], tensor), name
