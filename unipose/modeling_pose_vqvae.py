# Copyright 2025 The UniPose contributors. Licensed under the Apache License, Version 2.0.
"""
The UniPose pose tokenizer: a VQ-VAE that turns a body pose (22 SMPL-H joint rotations in 6D) into 80
discrete codes and back.

Encoder and decoder are 1-D convolutions over the joint axis (the 6 rotation numbers of a joint are the
channels); the axis is stretched by nearest-neighbour resampling from 22 joints to 80 latent positions
and back. The quantizer keeps its codebook as buffers updated by exponential moving averages, so the only
trainable parameters are the convolutions.

This file is part of the remote code of a saved tokenizer: it imports only torch, numpy, transformers and
its sibling files.
"""

import contextlib
import itertools
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput, can_return_tuple, logging

from .configuration_pose_vqvae import PoseVQVAEConfig
from .rotations import matrix_to_axis_angle, rotation_6d_to_axis_angle, rotation_6d_to_matrix, to_rotation_6d


logger = logging.get_logger(__name__)

# Rows of latents compared with the whole codebook at once: bounds the (rows, codebook_size) distance
# matrix (64 MiB in float32 for 2048 codes) when a large batch is encoded.
QUANTIZE_CHUNK_ROWS = 8192


def _is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


# ----------------------------------------------------------------------------------------------------
# Outputs
# ----------------------------------------------------------------------------------------------------


@dataclass
class PoseVQVAEQuantizerOutput(ModelOutput):
    r"""
    quantized (`torch.FloatTensor` of shape `(batch_size, num_tokens, code_dim)`):
        Codebook vectors of the nearest codes, with straight-through gradients to the input latents.
    codes (`torch.LongTensor` of shape `(batch_size, num_tokens)`):
        Indices of the nearest codes.
    commitment_loss (`torch.FloatTensor` of shape `()`):
        `commitment_cost * mean ||latents - sg(quantized)||^2`, to be added to the training loss.
    perplexity (`torch.FloatTensor` of shape `()`):
        `exp` of the entropy of the batch's code histogram: the effective number of codes in use.
    codebook_usage (`torch.FloatTensor` of shape `()`):
        Fraction of the codebook used at least once in the batch.
    ema_codebook_usage (`torch.FloatTensor` of shape `()`):
        Fraction of codes whose moving-average cluster size is at least `dead_code_threshold` (codes that are
        alive over the recent batches, not just this one).
    """

    quantized: torch.FloatTensor | None = None
    codes: torch.LongTensor | None = None
    commitment_loss: torch.FloatTensor | None = None
    perplexity: torch.FloatTensor | None = None
    codebook_usage: torch.FloatTensor | None = None
    ema_codebook_usage: torch.FloatTensor | None = None


@dataclass
class PoseVQVAEOutput(ModelOutput):
    r"""
    reconstruction (`torch.FloatTensor` of shape `(batch_size, num_joints, 6)`):
        Decoded 6D joint rotations (not yet orthonormalised; see [`PoseVQVAE.decode_to_matrix`]).
    codes (`torch.LongTensor` of shape `(batch_size, num_tokens)`):
        Codebook indices of the pose tokens.
    latents (`torch.FloatTensor` of shape `(batch_size, num_tokens, code_dim)`):
        Encoder output before quantization.
    quantized_latents (`torch.FloatTensor` of shape `(batch_size, num_tokens, code_dim)`):
        Codebook vectors fed to the decoder (straight-through gradients to `latents`).
    commitment_loss (`torch.FloatTensor` of shape `()`):
        Weighted commitment loss; add it to the reconstruction losses.
    perplexity (`torch.FloatTensor` of shape `()`):
        Effective number of codes used in the batch.
    codebook_usage (`torch.FloatTensor` of shape `()`):
        Fraction of the codebook used in the batch.
    ema_codebook_usage (`torch.FloatTensor` of shape `()`):
        Fraction of the codebook alive according to the moving-average cluster sizes.
    """

    reconstruction: torch.FloatTensor | None = None
    codes: torch.LongTensor | None = None
    latents: torch.FloatTensor | None = None
    quantized_latents: torch.FloatTensor | None = None
    commitment_loss: torch.FloatTensor | None = None
    perplexity: torch.FloatTensor | None = None
    codebook_usage: torch.FloatTensor | None = None
    ema_codebook_usage: torch.FloatTensor | None = None


# ----------------------------------------------------------------------------------------------------
# Building blocks (all tensors are channels-first: (batch, channels, length))
# ----------------------------------------------------------------------------------------------------


class PoseVQVAEResidualBlock(nn.Module):
    """ReLU, dilated Conv(k3), ReLU, Conv(k1), added to the input. No normalisation."""

    def __init__(self, hidden_size: int, dilation: int):
        super().__init__()
        self.conv1 = nn.Conv1d(hidden_size, hidden_size, kernel_size=3, padding=dilation, dilation=dilation)
        self.conv2 = nn.Conv1d(hidden_size, hidden_size, kernel_size=1)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        residual = hidden_states
        hidden_states = self.conv1(F.relu(hidden_states))
        hidden_states = self.conv2(F.relu(hidden_states))
        return residual + hidden_states


class PoseVQVAEResidualStack(nn.Module):
    """Residual blocks with dilations `growth**(n-1), ..., growth, 1`: the widest context first."""

    def __init__(self, config: PoseVQVAEConfig):
        super().__init__()
        dilations = [config.residual_dilation_growth**depth for depth in range(config.num_residual_blocks)]
        self.blocks = nn.ModuleList(
            PoseVQVAEResidualBlock(config.hidden_size, dilation) for dilation in reversed(dilations)
        )

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            hidden_states = block(hidden_states)
        return hidden_states


class PoseVQVAEResampleBlock(nn.Module):
    """
    Nearest-neighbour resampling of the joint axis to a fixed length, then Conv(k3) and ReLU.

    Resampling to twice the input length is exactly a x2 nearest upsampling, so the encoder's upsampling
    stages are blocks of this kind too.
    """

    def __init__(self, hidden_size: int, length: int):
        super().__init__()
        self.length = length
        self.conv = nn.Conv1d(hidden_size, hidden_size, kernel_size=3, padding=1)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        hidden_states = F.interpolate(hidden_states, size=self.length, mode="nearest")
        return F.relu(self.conv(hidden_states))

    def extra_repr(self) -> str:
        return f"length={self.length}"


class PoseVQVAEEncoder(nn.Module):
    """
    `(batch, num_joints, 6)` -> `(batch, num_tokens, code_dim)`.

    Conv(6 -> H) ReLU; resampling stages to `config.encoder_resample_lengths` (40, 80, 160 by default), each
    followed by Conv ReLU; one stride-2 Conv (160 -> 80); a residual stack; Conv(H -> code_dim).
    """

    def __init__(self, config: PoseVQVAEConfig):
        super().__init__()
        hidden_size = config.hidden_size
        self.conv_in = nn.Conv1d(config.rotation_dim, hidden_size, kernel_size=3, padding=1)
        self.resample_blocks = nn.ModuleList(
            PoseVQVAEResampleBlock(hidden_size, length) for length in config.encoder_resample_lengths
        )
        # Kernel 4, stride 2, padding 1 halves an even length exactly: (2T + 2 - 4) // 2 + 1 = T.
        self.downsample = nn.Conv1d(hidden_size, hidden_size, kernel_size=4, stride=2, padding=1)
        self.residual_stack = PoseVQVAEResidualStack(config)
        self.conv_out = nn.Conv1d(hidden_size, config.code_dim, kernel_size=3, padding=1)

    def forward(self, poses_6d: torch.Tensor) -> torch.Tensor:
        hidden_states = F.relu(self.conv_in(poses_6d.transpose(1, 2)))  # (B, H, J)
        for block in self.resample_blocks:
            hidden_states = block(hidden_states)  # (B, H, 40) -> (B, H, 80) -> (B, H, 160)
        hidden_states = self.residual_stack(self.downsample(hidden_states))  # (B, H, T)
        return self.conv_out(hidden_states).transpose(1, 2)  # (B, T, code_dim)


class PoseVQVAEDecoder(nn.Module):
    """
    `(batch, num_tokens, code_dim)` -> `(batch, num_joints, 6)`.

    Conv(code_dim -> H) ReLU; resampling stages to `config.decoder_resample_lengths` (65, 51, 36, 22 by
    default), each followed by Conv ReLU; a residual stack; Conv(H -> H); Conv(H -> 6).
    """

    def __init__(self, config: PoseVQVAEConfig):
        super().__init__()
        hidden_size = config.hidden_size
        self.conv_in = nn.Conv1d(config.code_dim, hidden_size, kernel_size=3, padding=1)
        self.resample_blocks = nn.ModuleList(
            PoseVQVAEResampleBlock(hidden_size, length) for length in config.decoder_resample_lengths
        )
        self.residual_stack = PoseVQVAEResidualStack(config)
        # No activation between the last two convolutions: that is the released tokenizer's architecture,
        # kept so that its weights convert one to one.
        self.conv_mid = nn.Conv1d(hidden_size, hidden_size, kernel_size=3, padding=1)
        self.conv_out = nn.Conv1d(hidden_size, config.rotation_dim, kernel_size=3, padding=1)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        hidden_states = F.relu(self.conv_in(latents.transpose(1, 2)))  # (B, H, T)
        for block in self.resample_blocks:
            hidden_states = block(hidden_states)  # (B, H, 65) -> ... -> (B, H, J)
        hidden_states = self.residual_stack(hidden_states)
        return self.conv_out(self.conv_mid(hidden_states)).transpose(1, 2)  # (B, J, 6)


class PoseVQVAEVectorQuantizer(nn.Module):
    """
    Vector quantizer with an exponential-moving-average codebook and dead-code reset.

    - Nearest code in L2, commitment loss and straight-through gradients: van den Oord, Vinyals and
      Kavukcuoglu, "Neural Discrete Representation Learning", NeurIPS 2017 (arXiv:1711.00937).
    - Codebook learned from moving averages of cluster sizes and sums (with Laplace smoothing of the sizes)
      instead of a codebook loss: the appendix of the same paper, and Razavi, van den Oord and Vinyals,
      "Generating Diverse High-Fidelity Images with VQ-VAE-2", NeurIPS 2019 (arXiv:1906.00446).
    - Codebook initialised from the first training batch, and codes whose moving-average cluster size falls
      below `dead_code_threshold` moved to random encoder outputs of the current batch (each counting as one
      observation of its new vector), so that no code stays unused. (The authors' training code moves every dead code to the first
      encoder outputs of the batch, in order, and leaves its statistics as they are, so that it moves again at
      every step until it is used.)

    The state lives in buffers, saved with the weights: `codebook` (K, D), `cluster_size` (K,), `embed_sum`
    (K, D) and `initialized` (a boolean scalar that keeps a loaded codebook from being initialised again).
    Only `forward` in training mode changes them; `quantize` and `embed_codes` never do, and eval mode is
    deterministic.

    Under `torch.distributed`, the batch statistics are summed over all processes before the moving
    averages are updated (one all-reduce of K + K*D numbers per step, small next to the gradients), and the
    vectors drawn for initialisation and reset are taken from rank 0, so that every replica keeps the same
    codebook.
    """

    def __init__(self, config: PoseVQVAEConfig):
        super().__init__()
        self.codebook_size = config.codebook_size
        self.code_dim = config.code_dim
        self.ema_decay = config.ema_decay
        self.commitment_cost = config.commitment_cost
        self.dead_code_threshold = config.dead_code_threshold
        self.laplace_smoothing = config.laplace_smoothing
        self.register_buffer("codebook", torch.zeros(config.codebook_size, config.code_dim))
        self.register_buffer("cluster_size", torch.zeros(config.codebook_size))
        self.register_buffer("embed_sum", torch.zeros(config.codebook_size, config.code_dim))
        self.register_buffer("initialized", torch.tensor(False))

    def extra_repr(self) -> str:
        return f"codebook_size={self.codebook_size}, code_dim={self.code_dim}, ema_decay={self.ema_decay}"

    @torch.no_grad()
    def quantize(self, latents: torch.Tensor, dtype: torch.dtype | None = None) -> torch.LongTensor:
        """
        Indices of the nearest codes (L2), without side effects.

        Args:
            latents (`torch.Tensor` of shape `(..., code_dim)`):
                Encoder outputs.
            dtype (`torch.dtype`, *optional*):
                Compute every step in `dtype` (latents and codebook rounded to it), in the published UniPose's
                order: `||x||^2 - 2 x.c + ||c||^2`, then the first minimum. In 16 bits `||x||^2` swamps the
                differences between near codes, so this order decides many ties. By default, float32 (exact).

        Returns:
            `torch.LongTensor` of shape `(...)`.
        """
        flat = latents.reshape(-1, self.code_dim).to(dtype or torch.float32)
        # Not under autocast: its 16-bit distances would tie or swap near codes where they were not asked for.
        with torch.autocast(device_type=flat.device.type, enabled=False):
            codebook = self.codebook.to(flat.dtype).T  # (code_dim, K)
            codebook_sq_norms = torch.sum(codebook**2, dim=0, keepdim=True)  # (1, K)

            def distances(chunk: torch.Tensor) -> torch.Tensor:
                if dtype is None:  # ||x||^2 is the same for every code of a row: left out
                    return codebook_sq_norms - 2 * chunk @ codebook
                return torch.sum(chunk**2, dim=-1, keepdim=True) - 2 * (chunk @ codebook) + codebook_sq_norms

            codes = [distances(chunk).argmin(dim=-1) for chunk in flat.split(QUANTIZE_CHUNK_ROWS)]
        return torch.cat(codes).view(latents.shape[:-1])

    def embed_codes(self, codes: torch.LongTensor) -> torch.Tensor:
        """Codebook vectors of `codes`: `(...)` -> `(..., code_dim)`."""
        return F.embedding(codes, self.codebook)

    @torch.no_grad()
    def set_codebook(self, codebook: torch.Tensor) -> None:
        """
        Installs a trained codebook (e.g. converted from another checkpoint) and marks it initialised.

        The moving averages restart as if every code had been seen once, at its current value.

        Args:
            codebook (`torch.Tensor` of shape `(codebook_size, code_dim)`):
                The code vectors.
        """
        expected = (self.codebook_size, self.code_dim)
        if not isinstance(codebook, torch.Tensor) or not codebook.is_floating_point():
            got = codebook.dtype if isinstance(codebook, torch.Tensor) else type(codebook).__name__
            raise TypeError(f"`codebook` must be a floating-point torch.Tensor, got {got}.")
        if tuple(codebook.shape) != expected:
            raise ValueError(f"`codebook` must have shape {expected}, got {tuple(codebook.shape)}.")
        if not torch.isfinite(codebook).all():
            raise ValueError("`codebook` contains NaN or infinite values.")
        self._install_codebook(codebook)

    def _install_codebook(self, codebook: torch.Tensor) -> None:
        self.codebook.copy_(codebook)
        self.embed_sum.copy_(codebook)
        self.cluster_size.fill_(1.0)
        self.initialized.fill_(True)

    def _sample_vectors(self, vectors: torch.Tensor, num_samples: int) -> torch.Tensor:
        """`num_samples` rows of `vectors` (N, D) drawn at random, without repetition when N allows it."""
        num_vectors = vectors.shape[0]
        if num_vectors >= num_samples:
            indices = torch.randperm(num_vectors, device=vectors.device)[:num_samples]
        else:
            indices = torch.randint(num_vectors, (num_samples,), device=vectors.device)
        samples = vectors[indices].float()
        if _is_distributed():
            dist.broadcast(samples, src=0)
        return samples

    @torch.no_grad()
    def _update_codebook(self, vectors: torch.Tensor, codes: torch.LongTensor, counts: torch.Tensor) -> None:
        """
        One moving-average step from a batch, then the reset of dead codes.

        Args:
            vectors (`torch.Tensor` of shape `(N, code_dim)`): the batch's encoder outputs.
            codes (`torch.LongTensor` of shape `(N,)`): their nearest codes.
            counts (`torch.Tensor` of shape `(codebook_size,)`): how often each code was chosen (all-reduced).
        """
        sums = torch.zeros_like(self.embed_sum, dtype=torch.float32)
        sums.index_add_(0, codes, vectors.float())  # (K, D): sum of the vectors assigned to each code
        if _is_distributed():
            dist.all_reduce(sums)

        decay = self.ema_decay
        self.cluster_size.mul_(decay).add_(counts, alpha=1 - decay)
        self.embed_sum.mul_(decay).add_(sums, alpha=1 - decay)

        # Laplace smoothing: an unused code keeps a small positive size, so that the division stays finite.
        total = self.cluster_size.sum()
        smoothing = self.laplace_smoothing
        smoothed_size = (self.cluster_size + smoothing) / (total + self.codebook_size * smoothing) * total
        self.codebook.copy_(self.embed_sum / smoothed_size.unsqueeze(1))

        # Identical on every rank, since the sizes come from all-reduced counts.
        dead = self.cluster_size < self.dead_code_threshold
        num_dead = int(dead.sum())
        if num_dead > 0:
            replacements = self._sample_vectors(vectors, num_dead)
            # A reset code counts as one observation of its new vector.
            self.codebook[dead] = replacements.to(self.codebook.dtype)
            self.embed_sum[dead] = replacements.to(self.embed_sum.dtype)
            self.cluster_size[dead] = 1.0

    def forward(self, latents: torch.Tensor) -> PoseVQVAEQuantizerOutput:
        """
        Args:
            latents (`torch.Tensor` of shape `(batch_size, num_tokens, code_dim)`):
                Encoder outputs.
        """
        vectors = latents.detach().reshape(-1, self.code_dim)  # (N, D), N = batch_size * num_tokens
        if self.training and not self.initialized:
            with torch.no_grad():
                self._install_codebook(self._sample_vectors(vectors, self.codebook_size))

        codes = self.quantize(latents)  # (B, T)
        quantized = self.embed_codes(codes).to(latents.dtype)  # (B, T, D), before this step's update
        counts = torch.bincount(codes.flatten(), minlength=self.codebook_size).float()  # (K,)
        if self.training:
            if _is_distributed():
                dist.all_reduce(counts)
            self._update_codebook(vectors, codes.flatten(), counts)

        commitment_loss = self.commitment_cost * F.mse_loss(latents, quantized.detach())
        # Straight-through estimator: the decoder sees the codes, the encoder gets the decoder's gradient.
        quantized = latents + (quantized - latents).detach()

        probabilities = counts / counts.sum()
        perplexity = torch.exp(-torch.special.xlogy(probabilities, probabilities).sum())
        return PoseVQVAEQuantizerOutput(
            quantized=quantized,
            codes=codes,
            commitment_loss=commitment_loss,
            perplexity=perplexity,
            codebook_usage=(counts > 0).float().mean(),
            ema_codebook_usage=(self.cluster_size >= self.dead_code_threshold).float().mean(),
        )


# ----------------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------------


class PoseVQVAEPreTrainedModel(PreTrainedModel):
    config: PoseVQVAEConfig
    base_model_prefix = "pose_vqvae"
    main_input_name = "poses_6d"
    input_modalities = ("pose",)
    # No attention layers: whatever implementation a parent model asks for is fine.
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True

    @torch.no_grad()
    def _init_weights(self, module):
        if isinstance(module, nn.Conv1d):
            # PyTorch's own convolution initialisation: the library default N(0, 0.02) makes the signal of
            # this normalisation-free network vanish with depth.
            init.kaiming_uniform_(module.weight, a=math.sqrt(5))
            if module.bias is not None:
                fan_in = module.weight.shape[1] * module.weight.shape[2]
                bound = 1 / math.sqrt(fan_in)
                init.uniform_(module.bias, -bound, bound)
        elif isinstance(module, PoseVQVAEVectorQuantizer):
            # An empty, uninitialised codebook: the first training batch fills it.
            init.zeros_(module.codebook)
            init.zeros_(module.cluster_size)
            init.zeros_(module.embed_sum)
            init.zeros_(module.initialized)


class PoseVQVAE(PoseVQVAEPreTrainedModel):
    """
    The UniPose pose tokenizer: a pose of `num_joints` joint rotations <-> `num_tokens` codes.

    `forward` is the training path (6D poses in, reconstruction, codes and quantizer statistics out);
    `encode` and `decode` are the tokenizer interface and never change the codebook.

    Example:

    ```python
    >>> import torch
    >>> from unipose.configuration_pose_vqvae import PoseVQVAEConfig
    >>> from unipose.modeling_pose_vqvae import PoseVQVAE

    >>> tokenizer = PoseVQVAE(PoseVQVAEConfig(hidden_size=32, codebook_size=64, code_dim=16))
    >>> _ = tokenizer.train()(torch.randn(8, 22, 6))  # the first training batch initialises the codebook
    >>> codes = tokenizer.eval().encode(torch.zeros(22, 3))  # axis-angle, matrices or 6D
    >>> codes.shape, tokenizer.decode_to_axis_angle(codes).shape
    (torch.Size([1, 80]), torch.Size([1, 22, 3]))
    ```
    """

    def __init__(self, config: PoseVQVAEConfig):
        super().__init__(config)
        self.encoder = PoseVQVAEEncoder(config)
        self.quantizer = PoseVQVAEVectorQuantizer(config)
        self.decoder = PoseVQVAEDecoder(config)
        self.post_init()

    @can_return_tuple
    def forward(self, poses_6d: torch.Tensor) -> PoseVQVAEOutput:
        r"""
        Encodes, quantizes and decodes a batch of poses. In training mode this also updates the codebook.

        Args:
            poses_6d (`torch.FloatTensor` of shape `(batch_size, num_joints, 6)`):
                Joint rotations in the 6D representation (first two rows of each rotation matrix).
            return_dict (`bool`, *optional*):
                `False` for a tuple; by default `config.return_dict`.

        Returns:
            [`PoseVQVAEOutput`], or its tuple.
        """
        self._check_poses_6d(poses_6d)
        if not self.training:
            self._warn_if_uninitialized()
        latents = self.encoder(poses_6d.to(self.dtype))
        quantizer_output = self.quantizer(latents)
        reconstruction = self.decoder(quantizer_output.quantized)
        return PoseVQVAEOutput(
            reconstruction=reconstruction,
            codes=quantizer_output.codes,
            latents=latents,
            quantized_latents=quantizer_output.quantized,
            commitment_loss=quantizer_output.commitment_loss,
            perplexity=quantizer_output.perplexity,
            codebook_usage=quantizer_output.codebook_usage,
            ema_codebook_usage=quantizer_output.ema_codebook_usage,
        )

    @torch.no_grad()
    def encode(self, poses) -> torch.LongTensor:
        r"""
        Pose tokens of a batch of poses.

        Args:
            poses (`torch.Tensor`, `np.ndarray` or nested lists):
                Axis-angle `(num_joints * 3,)` or `(num_joints, 3)`, rotation matrices `(num_joints, 3, 3)` or
                6D `(num_joints, 6)`, each optionally with a leading batch axis; validated by
                `rotations.to_rotation_6d`, which gives the encoder matrices and 6D as they are (the raw
                first two rows, not re-orthonormalised).

        Returns:
            `torch.LongTensor` of shape `(batch_size, num_tokens)` with values in `[0, codebook_size)`.
        """
        poses_6d = to_rotation_6d(poses, num_joints=self.config.num_joints, name="poses")
        poses_6d = poses_6d.to(device=_execution_device(self.encoder), dtype=self.dtype)
        latents = _run_in(self.encoder, poses_6d, self._compute_dtype)
        with _offloaded_weights_loaded(self.quantizer):
            self._warn_if_uninitialized()
            return self.quantizer.quantize(latents, self._compute_dtype)

    def decode(self, codes) -> torch.Tensor:
        r"""
        6D joint rotations from pose tokens.

        Args:
            codes (`torch.LongTensor` of shape `(batch_size, num_tokens)` or `(num_tokens,)`):
                Codebook indices in `[0, codebook_size)` (an integer array or nested lists work too).

        Returns:
            `torch.FloatTensor` of shape `(batch_size, num_joints, 6)`: the first two rows of each joint's
            rotation, not yet orthonormalised.
        """
        codes = self._check_codes(codes).to(_execution_device(self.quantizer))
        with _offloaded_weights_loaded(self.quantizer):
            self._warn_if_uninitialized()
            latents = self.quantizer.embed_codes(codes).to(self.dtype)
        rotation_6d = _run_in(self.decoder, latents, self._compute_dtype)
        return rotation_6d if self._compute_dtype is None else rotation_6d.float()

    def decode_to_matrix(self, codes) -> torch.Tensor:
        r"""
        Rotation matrices from pose tokens (Gram-Schmidt on the decoded 6D rotations).

        Args:
            codes (`torch.LongTensor` of shape `(batch_size, num_tokens)` or `(num_tokens,)`):
                Codebook indices.

        Returns:
            `torch.FloatTensor` of shape `(batch_size, num_joints, 3, 3)`.
        """
        matrices = rotation_6d_to_matrix(self._float32_if_half(self.decode(codes)))
        if self._compute_dtype is not None:  # the published UniPose hands its matrices on in bfloat16
            matrices = matrices.to(self._compute_dtype).float()
        return matrices

    def decode_to_axis_angle(self, codes) -> torch.Tensor:
        r"""
        Axis-angle joint rotations (SMPL's pose parameters) from pose tokens.

        Args:
            codes (`torch.LongTensor` of shape `(batch_size, num_tokens)` or `(num_tokens,)`):
                Codebook indices.

        Returns:
            `torch.FloatTensor` of shape `(batch_size, num_joints, 3)`.
        """
        if self._compute_dtype is not None:  # from the matrices as rounded by `decode_to_matrix`
            return matrix_to_axis_angle(self.decode_to_matrix(codes))
        return rotation_6d_to_axis_angle(self._float32_if_half(self.decode(codes)))

    @property
    def _compute_dtype(self) -> torch.dtype | None:
        """The reduced precision `encode` and `decode` compute in (`config.compute_dtype`), `None` for float32."""
        return None if self.config.compute_dtype == "float32" else getattr(torch, self.config.compute_dtype)

    @staticmethod
    def _float32_if_half(rotation_6d: torch.Tensor) -> torch.Tensor:
        # Gram-Schmidt and the matrix logarithm lose too much in 16-bit floats.
        if rotation_6d.dtype in (torch.float16, torch.bfloat16):
            return rotation_6d.float()
        return rotation_6d

    def _warn_if_uninitialized(self) -> None:
        if not bool(self.quantizer.initialized):
            logger.warning_once(
                "The pose tokenizer's codebook has not been initialised: every pose maps to code 0. Train "
                "the tokenizer (its first training batch fills the codebook) or load trained weights."
            )

    def _check_poses_6d(self, poses_6d) -> None:
        expected = f"(batch_size, {self.config.num_joints}, {self.config.rotation_dim})"
        if not isinstance(poses_6d, torch.Tensor):
            raise TypeError(
                f"`poses_6d` must be a torch.Tensor of shape {expected}, got {type(poses_6d).__name__}; "
                "`encode` accepts the other pose formats."
            )
        if not poses_6d.is_floating_point():
            raise TypeError(f"`poses_6d` must be a floating-point tensor, got dtype {poses_6d.dtype}.")
        expected_pose_shape = (self.config.num_joints, self.config.rotation_dim)
        if poses_6d.ndim != 3 or tuple(poses_6d.shape[1:]) != expected_pose_shape:
            raise ValueError(f"`poses_6d` must have shape {expected}, got {tuple(poses_6d.shape)}.")
        if poses_6d.shape[0] == 0:
            raise ValueError("`poses_6d` must hold at least one pose, got an empty batch.")
        if not torch.isfinite(poses_6d).all():
            raise ValueError("`poses_6d` contains NaN or infinite values.")

    def _check_codes(self, codes) -> torch.LongTensor:
        """Validated codes as a `(batch_size, num_tokens)` long tensor on the model's device."""
        if isinstance(codes, (np.ndarray, list, tuple)):
            try:
                codes = torch.as_tensor(np.asarray(codes))
            except (TypeError, ValueError) as error:
                raise TypeError(
                    f"`codes` must be integer code indices, got {type(codes).__name__}: {error}"
                ) from error
        if not isinstance(codes, torch.Tensor):
            raise TypeError(
                f"`codes` must be a torch.LongTensor of code indices, got {type(codes).__name__}."
            )
        if codes.is_floating_point() or codes.is_complex() or codes.dtype == torch.bool:
            raise TypeError(f"`codes` must hold integer code indices (torch.long), got dtype {codes.dtype}.")
        num_tokens = self.config.num_tokens
        if codes.ndim == 1:
            codes = codes.unsqueeze(0)
        if codes.ndim != 2 or codes.shape[1] != num_tokens:
            raise ValueError(
                f"`codes` must have shape (batch_size, {num_tokens}) or ({num_tokens},): {num_tokens} codes "
                f"per pose, got shape {tuple(codes.shape)}."
            )
        if codes.numel() > 0:
            low, high = int(codes.min()), int(codes.max())
            if low < 0 or high >= self.config.codebook_size:
                raise ValueError(
                    f"`codes` must lie in [0, {self.config.codebook_size}), got values from {low} to {high}."
                )
        return codes.to(dtype=torch.long)


def _run_in(module: nn.Module, inputs: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    """`module(inputs)`; with a `dtype`, computed in it as the module cast with `.to(dtype)` computes it (the
    published UniPose's way), through autocast rather than copies of the weights, so that weights that hooks gather
    or load (DeepSpeed ZeRO-3, FSDP, offloading) stay theirs. (The encoder and decoder are convolutions, ReLUs,
    resampling and sums, which autocast runs in `dtype`; `tests/test_release_parity.py` checks the codes to the
    bit.)"""
    if dtype is None:
        return module(inputs)
    with torch.autocast(device_type=inputs.device.type, dtype=dtype):
        return module(inputs.to(dtype))


def _execution_device(module: nn.Module) -> torch.device:
    """Where `module` computes: its weights' device, or, when accelerate placed it (`device_map`, possibly
    offloading its weights to the CPU or disk), the execution device of its hook."""
    device = getattr(getattr(module, "_hf_hook", None), "execution_device", None)
    if device is not None:
        return torch.device(device)
    for tensor in itertools.chain(module.parameters(), module.buffers()):
        return tensor.device
    return torch.device("cpu")


@contextlib.contextmanager
def _offloaded_weights_loaded(module: nn.Module):
    """Loads the weights of `module` that accelerate offloaded, for a call other than `module.forward` (whose
    hook would load them), and offloads them again afterwards. Without a hook, nothing to do."""
    hook = getattr(module, "_hf_hook", None)
    if hook is None:
        yield
        return
    hook.pre_forward(module)
    try:
        yield
    finally:
        hook.post_forward(module, None)


# A saved tokenizer records this file in its `auto_map`, so that `AutoModel` can load it with
# `trust_remote_code=True` where `unipose` is not installed.
PoseVQVAE.register_for_auto_class("AutoModel")


__all__ = ["PoseVQVAE", "PoseVQVAEPreTrainedModel", "PoseVQVAEVectorQuantizer"]
