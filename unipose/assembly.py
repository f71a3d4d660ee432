"""Build a full UniPose model from pretrained parts.

A UniPose model is a causal language model, a CLIP vision tower, a pose ViT (transformers' VitPose
backbone), a trained pose tokenizer and a text tokenizer, joined by a new projector, new vocabulary rows and
new pose queries. [`build_unipose`] loads the parts (paths, Hub ids or objects), adds the UniPose tokens to
the tokenizer, grows the language model's embeddings, and returns a model and its processor ready for stage
1 of training.

Example (the paper's parts):

```python
>>> from unipose.assembly import build_unipose
>>> model, processor = build_unipose(
...     language_model="mistralai/Mistral-7B-Instruct-v0.2",
...     vision_tower="openai/clip-vit-large-patch14-336",
...     pose_vision_tower="path/to/vitpose-h-backbone",
...     pose_tokenizer="path/to/trained-pose-tokenizer",
...     tokenizer="mistralai/Mistral-7B-Instruct-v0.2",
...     dtype=torch.bfloat16,
... )
>>> model.save_pretrained("unipose-stage0"); processor.save_pretrained("unipose-stage0")
```
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    CLIPVisionModel,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    VitPoseBackbone,
)
from transformers.utils import logging

from .configuration_unipose import UniPoseConfig
from .modeling_pose_vqvae import PoseVQVAE
from .modeling_unipose import UniPoseForConditionalGeneration, UniPoseMultiModalProjector
from .processing_unipose import UniPoseProcessor
from .tokenization import add_unipose_tokens

logger = logging.get_logger(__name__)


def _load(part, loader, name: str, **kwargs):
    if isinstance(part, (PreTrainedModel, PreTrainedTokenizerBase)):
        return part
    if not isinstance(part, str) and not hasattr(part, "__fspath__"):
        raise TypeError(f"`{name}` must be a path, a Hub id or a loaded object, got {type(part).__name__}.")
    return loader.from_pretrained(part, **kwargs)


def build_unipose(
    language_model,
    vision_tower,
    pose_vision_tower,
    pose_tokenizer,
    tokenizer,
    image_processor=None,
    clip_size: int | None = None,
    dtype: torch.dtype | None = None,
) -> tuple[UniPoseForConditionalGeneration, UniPoseProcessor]:
    """Join pretrained parts into a [`UniPoseForConditionalGeneration`] and its [`UniPoseProcessor`].

    Args:
        language_model (`str` or `PreTrainedModel`): a causal LM (Mistral, Llama, Qwen2, ...).
        vision_tower (`str` or `PreTrainedModel`): a CLIP vision model (or a full CLIP model).
        pose_vision_tower (`str` or `PreTrainedModel`): a VitPose backbone (or a VitPose pose estimator).
        pose_tokenizer (`str` or `PoseVQVAE`): a trained pose tokenizer (stage 0).
        tokenizer (`str` or `PreTrainedTokenizerBase`): the language model's tokenizer; the UniPose tokens
            are added to it (in place when an object is given).
        image_processor (*optional*): the CLIP image processor; by default one for `clip_size`.
        clip_size (`int`, *optional*): CLIP input side; defaults to the vision tower's `image_size`.
        dtype (`torch.dtype`, *optional*): dtype of the loaded parts.
    Returns:
        `(model, processor)`: the new projector and pose queries are freshly initialised, the new vocabulary
        rows are the mean of the old ones (transformers' `mean_resizing`), and every pretrained weight is kept.
    """
    load_kwargs = {"dtype": dtype} if dtype is not None else {}
    language_model = _load(language_model, AutoModelForCausalLM, "language_model", **load_kwargs)
    # `CLIPVisionModel` also reads full CLIP checkpoints (it keeps the vision weights).
    vision_tower = _load(vision_tower, CLIPVisionModel, "vision_tower", **load_kwargs)
    if not isinstance(vision_tower, CLIPVisionModel):
        raise TypeError(f"`vision_tower` must be a CLIPVisionModel, got {type(vision_tower).__name__}.")
    pose_vision_tower = _load(pose_vision_tower, VitPoseBackbone, "pose_vision_tower", **load_kwargs)
    pose_vision_tower = getattr(pose_vision_tower, "backbone", pose_vision_tower)  # a full VitPose estimator
    if not isinstance(pose_vision_tower, VitPoseBackbone):
        raise TypeError(f"`pose_vision_tower` must be a VitPoseBackbone, got {type(pose_vision_tower).__name__}.")
    pose_tokenizer = _load(pose_tokenizer, PoseVQVAE, "pose_tokenizer")
    if not isinstance(pose_tokenizer, PoseVQVAE):
        raise TypeError(f"`pose_tokenizer` must be a PoseVQVAE, got {type(pose_tokenizer).__name__}.")
    if not bool(pose_tokenizer.quantizer.initialized):
        raise ValueError("`pose_tokenizer` has an untrained codebook: train it first (`unipose train-tokenizer`).")
    tokenizer = _load(tokenizer, AutoTokenizer, "tokenizer")

    # 1. Vocabulary: the UniPose tokens, and embeddings grown to hold them.
    token_ids = add_unipose_tokens(tokenizer, pose_tokenizer.config.codebook_size)
    language_model.resize_token_embeddings(len(tokenizer), mean_resizing=True)
    text_config = language_model.config
    if getattr(text_config, "sliding_window", None) is not None:
        logger.warning_once(
            f"The language model uses a sliding window of {text_config.sliding_window} tokens; UniPose uses full "
            "attention (its pose spans need a block mask), so the window is dropped."
        )
        text_config.sliding_window = None

    config = UniPoseConfig(
        text_config=text_config,
        vision_config=vision_tower.config,
        pose_vision_config=pose_vision_tower.config,
        pose_tokenizer_config=pose_tokenizer.config,
        **token_ids,
    )

    # 2. The model: built on the meta device (no memory), then given the pretrained parts and fresh new parts.
    with torch.device("meta"):
        model = UniPoseForConditionalGeneration(config)
    model.model.language_model = language_model.get_decoder()
    model.lm_head = language_model.get_output_embeddings()
    model.model.vision_tower = vision_tower
    model.model.pose_vision_tower = pose_vision_tower
    model.model.pose_tokenizer = pose_tokenizer.eval().requires_grad_(False)
    reference = language_model.get_input_embeddings().weight
    model.model.multi_modal_projector = UniPoseMultiModalProjector(config).to(reference.device, reference.dtype)
    queries = torch.empty(config.num_pose_tokens, config.text_config.hidden_size, dtype=reference.dtype)
    std = getattr(config.text_config, "initializer_range", 0.02)
    model.model.pose_queries = nn.Parameter(queries.normal_(0.0, std).to(reference.device))
    leftover = [name for name, tensor in model.state_dict().items() if tensor.is_meta]
    if leftover:
        raise RuntimeError(f"Parts of the assembled model were not filled: {leftover[:10]}")
    set_generation_special_tokens(model, tokenizer)

    # 3. The processor.
    processor = processor_for_config(config, tokenizer, image_processor=image_processor, clip_size=clip_size)
    return model.eval(), processor


def set_generation_special_tokens(model: UniPoseForConditionalGeneration, tokenizer) -> None:
    """Gives `model`'s generation config the BOS, EOS and padding ids of `tokenizer` (its EOS pads when it has no
    padding token)."""
    generation_config = model.generation_config
    generation_config.bos_token_id = tokenizer.bos_token_id
    generation_config.eos_token_id = tokenizer.eos_token_id
    pad_token_id = tokenizer.pad_token_id
    generation_config.pad_token_id = tokenizer.eos_token_id if pad_token_id is None else pad_token_id


def processor_for_config(
    config: UniPoseConfig, tokenizer, image_processor=None, clip_size: int | None = None, **kwargs
) -> UniPoseProcessor:
    """
    The [`UniPoseProcessor`] of a model with `config` and `tokenizer`: image processors at the input sizes of its
    vision towers, and its tokens per image and per pose and its joints.

    Args:
        config ([`UniPoseConfig`]): the model's configuration.
        tokenizer (`PreTrainedTokenizerBase`): a tokenizer holding the UniPose tokens of `config`.
        image_processor (*optional*): the CLIP image processor; by default one for `clip_size`.
        clip_size (`int`, *optional*): CLIP input side; defaults to the vision tower's `image_size`.
        kwargs: other arguments of [`UniPoseProcessor`] (`image_start_text`, `image_end_text`, ...).
    """
    default_clip, pose_image_processor = UniPoseProcessor.default_image_processors(
        clip_size=clip_size or config.vision_config.image_size, pose_size=tuple(config.pose_vision_config.image_size)
    )
    return UniPoseProcessor(
        image_processor or default_clip,
        pose_image_processor,
        tokenizer,
        image_seq_length=config.image_seq_length,
        num_pose_tokens=config.num_pose_tokens,
        num_joints=config.num_joints,
        **kwargs,
    )


__all__ = ["build_unipose", "processor_for_config", "set_generation_special_tokens"]
