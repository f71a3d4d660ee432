"""Tiny random UniPose models for tests, benchmarks and quick experiments.

The tiny model keeps everything that defines UniPose's behaviour (22 joints, 80 tokens per pose, the pose
spans, both vision branches, the processor with a real fast tokenizer) and shrinks every width: it builds
in well under a second on a CPU and needs no download.

Example:

```python
>>> from unipose.testing import tiny_model_and_processor
>>> model, processor = tiny_model_and_processor(seed=0)
>>> inputs = processor(text=["Describe this pose. <pose>"], poses=[torch.zeros(22, 3)], return_tensors="pt")
>>> model(**inputs).logits.shape[-1] == model.config.text_config.vocab_size
True
```
"""

from __future__ import annotations

import torch
from transformers import AutoConfig

from .assembly import set_generation_special_tokens
from .configuration_pose_vqvae import PoseVQVAEConfig
from .configuration_unipose import UniPoseConfig
from .modeling_unipose import UniPoseForConditionalGeneration
from .pose_sampler import sample_poses
from .processing_text import get_unipose_token_ids
from .processing_unipose import UniPoseProcessor
from .rotations import axis_angle_to_matrix, to_rotation_6d
from .tokenization import build_tiny_tokenizer

# Every tiny transformer: 2 layers of 4 heads (the pose ViT is narrower: 24 wide, its MLP twice as wide).
_TINY_LAYERS = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4}
TINY_TEXT_CONFIG = {
    "model_type": "llama",
    **_TINY_LAYERS,
    "num_key_value_heads": 2,
    "max_position_embeddings": 2048,
    "tie_word_embeddings": False,
}
# CLIP at 42 px with 14 px patches: a 3x3 grid, so every image is 9 tokens (larger than the pose grid, as in
# the full model, so that resizing the pose features interpolates rather than picking the padded corners).
TINY_VISION_CONFIG = {
    "model_type": "clip_vision_model",
    **_TINY_LAYERS,
    "image_size": 42,
    "patch_size": 14,
    "projection_dim": 16,
}
# Pose ViT at 32x16 with 8 px patches (and the padding-2 patch embedding): a 4x2 grid, padded by one column
# on each side to 4x4 -- the tiny counterpart of 16x12 padded by two to 16x16.
TINY_POSE_VISION_CONFIG = {
    "model_type": "vitpose_backbone",
    "num_hidden_layers": _TINY_LAYERS["num_hidden_layers"],
    "num_attention_heads": _TINY_LAYERS["num_attention_heads"],
    "hidden_size": 24,
    "mlp_ratio": 2,
    "image_size": (32, 16),
    "patch_size": (8, 8),
    "layer_norm_eps": 1e-6,
    "out_indices": [-1],
}
TINY_POSE_TOKENIZER_CONFIG = {"hidden_size": 32, "codebook_size": 64, "code_dim": 16}
TINY_POSE_VISION_FEATURE_PADDING = 1


# A fixed non-orthogonal distortion `I + S` applied to exact rotations: (I + S)(I + S)^T - I = S + S^T + S S^T
# has largest entry 4.006e-3 (the first row stretched by 2e-3 and sheared towards the second), and
# det(I + S) - 1 = 1.0e-3. Real float32 SMPL fits and the UniPose release's demo poses are off by as much.
NEAR_ROTATION_DISTORTION = ((2e-3, 1.5e-3, 0.0), (0.0, -1e-3, 0.0), (0.0, 0.0, 0.0))


def near_rotation_matrices(axis_angle: torch.Tensor) -> torch.Tensor:
    """Rotation matrices as real data holds them: exact rotations distorted by `NEAR_ROTATION_DISTORTION`
    (max |R R^T - I| of about 4e-3), then stored in float32. Deterministic.

    Args:
        axis_angle (`torch.Tensor` of shape `(..., 3)`): the exact rotations.
    Returns:
        `torch.Tensor` of shape `(..., 3, 3)`, float32.
    """
    exact = axis_angle_to_matrix(axis_angle.double())
    distortion = torch.tensor(NEAR_ROTATION_DISTORTION, dtype=torch.float64)
    return ((torch.eye(3, dtype=torch.float64) + distortion) @ exact).float()


def tiny_pose_tokenizer_config(**overrides) -> PoseVQVAEConfig:
    """A small pose tokenizer config with the real 22 joints and 80 tokens per pose."""
    return PoseVQVAEConfig(**{**TINY_POSE_TOKENIZER_CONFIG, **overrides})


def tiny_unipose_config(token_ids: dict | None = None, base_vocab_size: int = 256, **overrides) -> UniPoseConfig:
    """A tiny `UniPoseConfig`.

    Args:
        token_ids (`dict`, *optional*):
            The special token ids (`image_token_id`, ..., `pose_code_token_offset`), as returned by
            `unipose.tokenization.add_unipose_tokens`. By default they follow `base_vocab_size`.
        base_vocab_size (`int`, *optional*, defaults to 256):
            Size of the text vocabulary before the UniPose tokens, used when `token_ids` is not given.
        overrides:
            Any `UniPoseConfig` field; sub-config dicts are merged into the tiny defaults.
    """
    pose_tokenizer = tiny_pose_tokenizer_config(**overrides.pop("pose_tokenizer_config", {}))
    if token_ids is None:
        token_ids = {
            "image_token_id": base_vocab_size,
            "pose_token_id": base_vocab_size + 1,
            "pose_query_token_id": base_vocab_size + 2,
            "pose_start_token_id": base_vocab_size + 3,
            "pose_end_token_id": base_vocab_size + 4,
            "pose_code_token_offset": base_vocab_size + 5,
        }
    token_ids = {key: overrides.pop(key, value) for key, value in token_ids.items()}
    # The vocabulary ends with the codes (or with the last special token, if a test moved it past them).
    vocab_size = max(max(token_ids.values()) + 1, token_ids["pose_code_token_offset"] + pose_tokenizer.codebook_size)
    text_config = {**TINY_TEXT_CONFIG, "vocab_size": vocab_size, **overrides.pop("text_config", {})}
    vision_config = {**TINY_VISION_CONFIG, **overrides.pop("vision_config", {})}
    pose_vision_config = {**TINY_POSE_VISION_CONFIG, **overrides.pop("pose_vision_config", {})}
    overrides.setdefault("pose_vision_feature_padding", TINY_POSE_VISION_FEATURE_PADDING)
    return UniPoseConfig(
        text_config=_build_config(text_config),
        vision_config=_build_config(vision_config),
        pose_vision_config=_build_config(pose_vision_config),
        pose_tokenizer_config=pose_tokenizer,
        **token_ids,
        **overrides,
    )


def _build_config(fields: dict):
    fields = dict(fields)
    return AutoConfig.for_model(fields.pop("model_type"), **fields)


def tiny_model(config: UniPoseConfig | None = None, seed: int = 0, attn_implementation: str = "sdpa"):
    """A tiny random `UniPoseForConditionalGeneration` in eval mode whose pose tokenizer's codebook is drawn from
    its encoder's outputs on procedural poses, so that different poses get different codes."""
    config = tiny_unipose_config() if config is None else config
    torch.manual_seed(seed)
    model = UniPoseForConditionalGeneration._from_config(config, attn_implementation=attn_implementation)
    # A codebook drawn from the encoder's own outputs on procedural poses (as the first training batch would
    # initialise it), so that different poses get different codes.
    tokenizer = model.model.pose_tokenizer
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        latents = tokenizer.encoder(to_rotation_6d(sample_poses(64, seed=seed))).flatten(0, 1)
    chosen = torch.randperm(latents.shape[0], generator=generator)[: config.pose_codebook_size]
    tokenizer.quantizer.set_codebook(latents[chosen])
    return model.eval()


def tiny_processor(codebook_size: int = TINY_POSE_TOKENIZER_CONFIG["codebook_size"]):
    """The processor of the tiny model: a BPE tokenizer trained in memory and image processors at tiny sizes."""
    tokenizer = build_tiny_tokenizer(codebook_size=codebook_size)
    image_processor, pose_image_processor = UniPoseProcessor.default_image_processors(
        clip_size=TINY_VISION_CONFIG["image_size"], pose_size=tuple(TINY_POSE_VISION_CONFIG["image_size"])
    )
    grid = TINY_VISION_CONFIG["image_size"] // TINY_VISION_CONFIG["patch_size"]
    return UniPoseProcessor(image_processor, pose_image_processor, tokenizer, image_seq_length=grid * grid)


def tiny_model_and_processor(seed: int = 0, attn_implementation: str = "sdpa", **overrides):
    """A tiny random UniPose model and its processor, matched (token ids, image sizes, tokens per image).

    Widths are small (32), there are 2 layers, 64 pose codes and tiny images, but poses keep their real 22
    joints and 80 tokens. The model is in eval mode; its generation config knows the tokenizer's special
    tokens.

    Args:
        seed (`int`, *optional*, defaults to 0): seed of the random weights.
        attn_implementation (`str`, *optional*, defaults to `"sdpa"`): `"sdpa"` or `"eager"`.
        overrides: `UniPoseConfig` fields (see [`tiny_unipose_config`]).
    Returns:
        `tuple[UniPoseForConditionalGeneration, UniPoseProcessor]`
    """
    codebook_size = overrides.get("pose_tokenizer_config", {}).get(
        "codebook_size", TINY_POSE_TOKENIZER_CONFIG["codebook_size"]
    )
    processor = tiny_processor(codebook_size)
    tokenizer = processor.tokenizer
    token_ids, _ = get_unipose_token_ids(tokenizer)
    config = tiny_unipose_config(token_ids=token_ids, **overrides)
    model = tiny_model(config, seed=seed, attn_implementation=attn_implementation)
    set_generation_special_tokens(model, tokenizer)
    return model, processor
