# Copyright 2025 The UniPose contributors. Licensed under the Apache License, Version 2.0.
"""Configuration of the UniPose pose tokenizer (a VQ-VAE over the joint axis of an SMPL-H body pose)."""

from transformers.configuration_utils import PreTrainedConfig, strict


# Numbers per joint rotation in the 6D representation (the first two rows of the rotation matrix).
ROTATION_6D_DIM = 6
# The vertical axes a pose tokenizer's world may have: SMPL's frame, AMASS's.
POSE_UP_AXES = ("y", "z")
POSE_TOKENIZER_COMPUTE_DTYPES = ("float32", "bfloat16")


@strict
class PoseVQVAEConfig(PreTrainedConfig):
    r"""
    Configuration of [`PoseVQVAE`], the pose tokenizer of UniPose: it turns one body pose of `num_joints` 6D
    joint rotations into `num_tokens` discrete codes from a codebook of `codebook_size` entries, and back.
    The paper states 22 joints, 80 tokens and 2048 codes; the code dimension (256), the width (512) and the EMA
    decay (0.99) are not in the paper: they are the published weights' (the code dimension and width, read from
    the released checkpoint) and this project's choice (the decay).

    Both networks are 1-D convolutions over the joint axis, whose length is changed by nearest-neighbour
    resampling. The lengths are derived from `num_joints` and `num_tokens` (see
    [`~PoseVQVAEConfig.encoder_resample_lengths`] and [`~PoseVQVAEConfig.decoder_resample_lengths`]).

    Args:
        num_joints (`int`, *optional*, defaults to 22):
            Number of joints J of a pose: the SMPL-H root orientation and the 21 body joints.
        rotation_dim (`int`, *optional*, defaults to 6):
            Channels per joint: the 6D rotation representation (first two rows of the rotation matrix). Only
            6 is supported; the field records the input width in `config.json`.
        num_tokens (`int`, *optional*, defaults to 80):
            Number of codes T per pose.
        codebook_size (`int`, *optional*, defaults to 2048):
            Number of codebook entries K.
        code_dim (`int`, *optional*, defaults to 256):
            Dimension of a codebook entry (and of the encoder's output channels); the published weights' (not
            stated by the paper).
        hidden_size (`int`, *optional*, defaults to 512):
            Channels of every hidden convolution of the encoder and the decoder; the published weights' (not
            stated by the paper).
        num_encoder_upsampling_layers (`int`, *optional*, defaults to 2):
            Number of x2 nearest-upsampling stages of the encoder, after its first resampling of the joint
            axis and before its single stride-2 downsampling.
        num_decoder_resampling_layers (`int`, *optional*, defaults to 4):
            Number of resampling stages of the decoder, stepping the length from `num_tokens` to `num_joints`.
        num_residual_blocks (`int`, *optional*, defaults to 2):
            Blocks in the residual stack of the encoder and of the decoder.
        residual_dilation_growth (`int`, *optional*, defaults to 3):
            Block `i` of a residual stack is dilated by `residual_dilation_growth ** i`; the blocks run from
            the largest dilation to the smallest.
        ema_decay (`float`, *optional*, defaults to 0.99):
            Decay of the exponential moving averages of the codebook statistics (this project's choice: the
            paper does not state it).
        commitment_cost (`float`, *optional*, defaults to 1.0):
            Weight of the commitment loss `||z - sg(e)||^2` returned by the model (1.0 in the authors'
            release).
        dead_code_threshold (`float`, *optional*, defaults to 1.0):
            A code whose moving-average cluster size falls below this is reset to a random encoder output of
            the current training batch. 0 disables the reset.
        laplace_smoothing (`float`, *optional*, defaults to 1e-05):
            Additive (Laplace) smoothing of the cluster sizes, which keeps the codebook update finite for
            codes that receive no vector.
        up_axis (`str`, *optional*, defaults to `"y"`):
            The vertical axis of the world in which the tokenizer's poses stand, and so of every pose the model
            reads and writes: `"y"`, SMPL's own frame (the frame of this project's corpora), or `"z"`, AMASS's
            frame, in which PoseScript zeroes the heading and the published UniPose works. Only the root
            orientation depends on it. Written by the tokenizer's training from the frame it was trained in.
        compute_dtype (`str`, *optional*, defaults to `"float32"`):
            The precision in which `encode` and `decode` compute, whatever the weights' dtype: `"float32"`, or
            `"bfloat16"`, as the published UniPose runs its pose tokenizer (weights, poses and the code distances
            in bfloat16, decoded matrices rounded to it). A converted release uses `"bfloat16"`: its language
            model was trained on the codes that precision gives, and 16-bit distances often choose another code
            than float32's. Training (`forward`) is not affected.

    Example:

    ```python
    >>> from unipose.configuration_pose_vqvae import PoseVQVAEConfig
    >>> from unipose.modeling_pose_vqvae import PoseVQVAE

    >>> configuration = PoseVQVAEConfig()
    >>> configuration.encoder_resample_lengths, configuration.decoder_resample_lengths
    ((40, 80, 160), (65, 51, 36, 22))
    >>> model = PoseVQVAE(configuration)
    ```
    """

    model_type = "unipose_pose_vqvae"

    num_joints: int = 22
    rotation_dim: int = ROTATION_6D_DIM
    num_tokens: int = 80
    codebook_size: int = 2048
    code_dim: int = 256
    hidden_size: int = 512
    num_encoder_upsampling_layers: int = 2
    num_decoder_resampling_layers: int = 4
    num_residual_blocks: int = 2
    residual_dilation_growth: int = 3
    ema_decay: float = 0.99
    commitment_cost: float | int = 1.0
    dead_code_threshold: float | int = 1.0
    laplace_smoothing: float = 1e-5
    up_axis: str = "y"
    compute_dtype: str = "float32"

    @property
    def encoder_resample_lengths(self) -> tuple[int, ...]:
        """
        Lengths of the joint axis after each resampling stage of the encoder.

        The encoder ends with one stride-2 convolution, and every upsampling stage doubles the length, so the
        first stage must resample the `num_joints` positions to `L0 = 2 * num_tokens / 2**num_upsampling` for
        the encoder to emit exactly `num_tokens` vectors. For the paper's 22 joints and 80 tokens:
        `(40, 80, 160)`, then 80 after the stride-2 convolution. (The authors' release computes `L0` from the
        joints as `((2 * num_joints) // 10) * 10`, which is 40 too; deriving it from `num_tokens` keeps the
        token count a free choice.)
        """
        first_length = 2 * self.num_tokens // 2**self.num_encoder_upsampling_layers
        return tuple(first_length * 2**stage for stage in range(self.num_encoder_upsampling_layers + 1))

    @property
    def decoder_resample_lengths(self) -> tuple[int, ...]:
        """
        Lengths of the joint axis after each resampling stage of the decoder.

        With `n = num_decoder_resampling_layers`, the lengths are
        `num_joints + floor((num_tokens - num_joints) * k / n)` for `k = n - 1, ..., 0`: evenly spaced from
        `num_tokens` (excluded) down to `num_joints`, rounded down, as the authors'
        `linspace(num_joints, num_tokens, n, endpoint=False)` cast to integers and reversed.
        Integer arithmetic avoids floating-point rounding at exact integers. For 22 joints and 80 tokens:
        `(65, 51, 36, 22)`.
        """
        steps = self.num_decoder_resampling_layers
        span = self.num_tokens - self.num_joints
        return tuple(self.num_joints + (span * k) // steps for k in reversed(range(steps)))

    def validate_architecture(self):
        """Part of `@strict`-powered validation: positive sizes and a feasible resampling plan."""
        for name in ("num_joints", "num_tokens", "codebook_size", "code_dim", "hidden_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be a positive integer, got {getattr(self, name)}.")
        if self.rotation_dim != ROTATION_6D_DIM:
            raise ValueError(
                f"`rotation_dim` must be {ROTATION_6D_DIM} (the 6D rotation representation is the only one "
                f"supported), got {self.rotation_dim}."
            )
        for name, minimum in (
            ("num_encoder_upsampling_layers", 0),
            ("num_decoder_resampling_layers", 1),
            ("num_residual_blocks", 0),
            ("residual_dilation_growth", 1),
        ):
            if getattr(self, name) < minimum:
                raise ValueError(f"`{name}` must be at least {minimum}, got {getattr(self, name)}.")
        divisor = 2**self.num_encoder_upsampling_layers
        if (2 * self.num_tokens) % divisor != 0:
            raise ValueError(
                f"`num_tokens` ({self.num_tokens}) cannot be reached by the encoder: with "
                f"`num_encoder_upsampling_layers`={self.num_encoder_upsampling_layers} x2 upsamplings "
                f"followed by one stride-2 downsampling, 2 * num_tokens must be a multiple of {divisor}. "
                f"Choose num_tokens as a multiple of {max(divisor // 2, 1)} or use fewer upsampling layers."
            )
        if not 0.0 < self.ema_decay < 1.0:
            raise ValueError(f"`ema_decay` must lie strictly between 0 and 1, got {self.ema_decay}.")
        for name in ("commitment_cost", "dead_code_threshold"):
            if getattr(self, name) < 0:
                raise ValueError(f"`{name}` must be non-negative, got {getattr(self, name)}.")
        if self.laplace_smoothing <= 0:
            raise ValueError(f"`laplace_smoothing` must be positive, got {self.laplace_smoothing}.")
        if self.up_axis not in POSE_UP_AXES:
            raise ValueError(f"`up_axis` must be 'y' (SMPL's frame) or 'z' (AMASS's), got {self.up_axis!r}.")
        if self.compute_dtype not in POSE_TOKENIZER_COMPUTE_DTYPES:
            raise ValueError(
                f"`compute_dtype` must be one of {POSE_TOKENIZER_COMPUTE_DTYPES}, got {self.compute_dtype!r}."
            )


# A saved tokenizer records this file in its `auto_map`, so that `AutoConfig` can load it with
# `trust_remote_code=True` where `unipose` is not installed.
PoseVQVAEConfig.register_for_auto_class()


__all__ = ["POSE_TOKENIZER_COMPUTE_DTYPES", "POSE_UP_AXES", "PoseVQVAEConfig"]
