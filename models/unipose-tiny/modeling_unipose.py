"""UniPose: a multimodal language model that reads and writes 3D human poses.

A pose is a span `<p>` + `num_pose_tokens` tokens + `</p>` in the sequence. A pose that is given (as codes,
or as `pose_values` that the frozen pose tokenizer encodes) enters through the code embeddings; a pose that
the model must write enters as learned query vectors, and the output at query `i` is the logit vector of
code `i`, so a whole pose is decoded in one forward pass.

The queries of a pose to be written attend to each other bidirectionally (all its codes come out of the
same step). The tokens of an input pose attend to each other bidirectionally or causally, as the config's
`input_pose_attention` says (the published weights were trained with causal input poses). The markers
`<p>` and `</p>` and all text are causal.
"""

import copy
import functools
import json
import numbers
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from transformers import AutoBackbone, AutoModel, GenerationMixin, PreTrainedModel
from transformers.cache_utils import Cache, DynamicCache, DynamicLayer, StaticCache
from transformers.generation import (
    BaseStreamer,
    GenerateDecoderOnlyOutput,
    GenerationConfig,
    GenerationMode,
    LogitsProcessorList,
    StoppingCriteriaList,
    StopStringCriteria,
)
from transformers.generation.logits_process import (
    EpsilonLogitsWarper,
    EtaLogitsWarper,
    MinPLogitsWarper,
    SynthIDTextWatermarkLogitsProcessor,
    TemperatureLogitsWarper,
    TopHLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
    TypicalLogitsWarper,
    UnbatchedClassifierFreeGuidanceLogitsProcessor,
)
from transformers.integrations import is_deepspeed_zero3_enabled, is_fsdp_managed_module
from transformers.masking_utils import create_causal_mask
from transformers.modeling_outputs import (
    BaseModelOutputWithPast,
    BaseModelOutputWithPooling,
    CausalLMOutputWithPast,
)
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.processing_utils import Unpack
from transformers.utils import TransformersKwargs, can_return_tuple, logging

from .configuration_unipose import UniPoseConfig
from .modeling_pose_vqvae import PoseVQVAE

logger = logging.get_logger(__name__)

# transformers 5.24 renamed the key-value cache from `past_key_values` to `cache`, in forward arguments and in
# outputs (the old name still works there, with a warning, until 5.40). UniPose speaks to transformers in the
# installed version's name and accepts both from its callers.
CACHE_NAME = "cache" if "cache" in CausalLMOutputWithPast.__dataclass_fields__ else "past_key_values"


# ----------------------------------------------------------------------------------------------------------------------
# Pose spans: pure functions of `input_ids`
# ----------------------------------------------------------------------------------------------------------------------


def pose_span_mask(input_ids: torch.LongTensor, config: UniPoseConfig) -> torch.BoolTensor:
    """Positions that belong to a pose span: codes, `<pose>` placeholders and `<pose_query>` placeholders.

    Args:
        input_ids (`torch.LongTensor` of shape `(batch, length)`)
    Returns:
        `torch.BoolTensor` of shape `(batch, length)`; the markers `<p>` and `</p>` are not part of the span.
        (Membership only: which of these positions attend bidirectionally is [`pose_bidirectional_mask`].)
    """
    codes = config.pose_code_token_ids
    is_code = (input_ids >= codes.start) & (input_ids < codes.stop)
    return is_code | (input_ids == config.pose_token_id) | (input_ids == config.pose_query_token_id)


def pose_bidirectional_mask(input_ids: torch.LongTensor, config: UniPoseConfig) -> torch.BoolTensor:
    """Positions that see the rest of their run bidirectionally: the `<pose_query>` placeholders and, when
    `config.input_pose_attention == "bidirectional"`, the tokens of input pose spans (codes and `<pose>`
    placeholders) too. Every other position is causal.

    Args:
        input_ids (`torch.LongTensor` of shape `(batch, length)`)
    Returns:
        `torch.BoolTensor` of shape `(batch, length)`, the input of [`pose_block_ids`].
    """
    if config.input_pose_attention == "causal":
        return input_ids == config.pose_query_token_id
    return pose_span_mask(input_ids, config)


def pose_block_ids(span_mask: torch.BoolTensor) -> torch.LongTensor:
    """Block ids for `create_causal_mask(..., block_sequence_ids=...)`.

    Every maximal run of span positions in a row is one block: its positions see each other bidirectionally
    (and, causally, everything before). All other positions are causal.

    Args:
        span_mask (`torch.BoolTensor` of shape `(batch, length)`): the positions that attend bidirectionally,
            as given by [`pose_bidirectional_mask`].
    Returns:
        `torch.LongTensor` of shape `(batch, length)`: `-1` outside spans, `k >= 0` for the k-th span of the row.

    Example: `[0, 1, 1, 0, 1]` -> `[-1, 0, 0, -1, 1]`.
    """
    previous = F.pad(span_mask[:, :-1], (1, 0), value=False)
    starts = span_mask & ~previous
    return torch.where(span_mask, starts.cumsum(-1) - 1, -1)


def pose_query_positions(input_ids: torch.LongTensor, query_token_id: int, num_pose_tokens: int) -> torch.LongTensor:
    """Index of every query placeholder within its span (`0 ... num_pose_tokens - 1`), `-1` elsewhere.

    Args:
        input_ids (`torch.LongTensor` of shape `(batch, length)`)
    Raises:
        `ValueError` if a run of query placeholders does not have exactly `num_pose_tokens` tokens.
    """
    is_query = input_ids == query_token_id
    positions = torch.arange(input_ids.shape[1], device=input_ids.device).expand_as(input_ids)
    starts = is_query & ~F.pad(is_query[:, :-1], (1, 0), value=False)
    # Position of each run's first token, carried along the run by a running maximum.
    index = positions - torch.where(starts, positions, 0).cummax(-1).values
    ends = is_query & ~F.pad(is_query[:, 1:], (0, 1), value=False)
    if ends.any() and bool((index[ends] != num_pose_tokens - 1).any()):
        lengths = (index[ends] + 1).tolist()
        raise ValueError(
            f"Every pose span to be generated must hold exactly {num_pose_tokens} `<pose_query>` tokens, got spans of "
            f"{lengths} in `input_ids`. Write a pose to generate as `<p>` + {num_pose_tokens} x `<pose_query>` + "
            "`</p>` (the processor does this for a single `<pose_query>` in the text)."
        )
    return torch.where(is_query, index, -1)


def pose_shift_labels(
    input_ids: torch.LongTensor, labels: torch.LongTensor, config: UniPoseConfig, ignore_index: int = -100
) -> torch.LongTensor:
    """Turn `labels` aligned with `input_ids` into the targets of each position's output (`shift_labels`).

    Text positions predict the next token. A query position predicts the code written at its own position
    in `labels` (no shift). The position just before a run of queries (`<p>`) predicts nothing: the queries
    are inputs, not tokens to be sampled.

    Args:
        input_ids (`torch.LongTensor` of shape `(batch, length)`)
        labels (`torch.LongTensor` of shape `(batch, length)`): `ignore_index` where nothing is learned; at
            query positions, the vocabulary id of the code (`pose_code_token_offset + code`).
    Returns:
        `torch.LongTensor` of shape `(batch, length)`.
    """
    is_query = input_ids == config.pose_query_token_id
    shift_labels = F.pad(labels[:, 1:], (0, 1), value=ignore_index)
    before_query = F.pad(is_query[:, 1:], (0, 1), value=False) & ~is_query
    shift_labels = torch.where(is_query, labels, shift_labels)
    return shift_labels.masked_fill(before_query, ignore_index)


def unipose_loss(
    logits: torch.Tensor,
    shift_labels: torch.LongTensor,
    query_mask: torch.BoolTensor,
    code_offset: int,
    codebook_size: int,
    num_items_in_batch: int | torch.Tensor | None = None,
    ignore_index: int = -100,
) -> torch.Tensor:
    """Cross-entropy of text positions over the vocabulary and of query positions over the pose codes only.

    Args:
        logits (`torch.Tensor` of shape `(batch, length, vocab)`)
        shift_labels (`torch.LongTensor` of shape `(batch, length)`): target of each position's output.
        query_mask (`torch.BoolTensor` of shape `(batch, length)`): positions fed with a pose query.
    Returns:
        The sum of the per-position losses divided by `num_items_in_batch` (or by the number of targets).
    """
    logits = logits.float()
    valid = shift_labels != ignore_index
    text = valid & ~query_mask
    query = valid & query_mask
    total = logits.new_zeros(())
    if text.any():
        total = total + F.cross_entropy(logits[text], shift_labels[text], reduction="sum")
    if query.any():
        codes = shift_labels[query] - code_offset
        if bool(((codes < 0) | (codes >= codebook_size)).any()):
            raise ValueError(
                f"The labels at pose-query positions must be pose-code token ids in [{code_offset}, "
                f"{code_offset + codebook_size}), got {sorted(set((codes + code_offset).tolist()))[:8]}."
            )
        code_logits = logits[query][:, code_offset : code_offset + codebook_size]
        total = total + F.cross_entropy(code_logits, codes, reduction="sum")
    denominator = valid.sum() if num_items_in_batch is None else num_items_in_batch
    return total / torch.as_tensor(denominator, device=total.device).clamp(min=1)


def create_pose_attention_mask(
    config: UniPoseConfig,
    text_config,
    input_ids: torch.LongTensor,
    inputs_embeds: torch.Tensor,
    attention_mask: torch.Tensor | None,
    past_key_values: Cache | None,
    position_ids: torch.LongTensor,
):
    """The attention mask of UniPose: causal text, bidirectional runs of pose queries, input pose spans as
    `config.input_pose_attention` says, padding masked.

    Built by transformers' `create_causal_mask` with one block per bidirectional run, so it takes the form the
    language model's attention implementation expects (`None` when plain causal attention suffices, a
    boolean `(batch, 1, length, past + length)` mask for sdpa, an additive float mask for eager).

    Args:
        input_ids (`torch.LongTensor` of shape `(batch, length)`): the tokens fed now (after the cache).
        inputs_embeds (`torch.Tensor` of shape `(batch, length, hidden)`): gives batch size, dtype and device.
        attention_mask (`torch.Tensor` of shape `(batch, past + length)`, *optional*): 1 for real tokens.
        position_ids (`torch.LongTensor` of shape `(batch, length)`)
    """
    bidirectional = pose_bidirectional_mask(input_ids, config)
    block_ids = None
    if bool(bidirectional.any()):
        block_ids = pose_block_ids(bidirectional)
        past_length = past_key_values.get_seq_length() if past_key_values is not None else 0
        # Bidirectional runs are always fed whole, so cached positions are never part of a current block.
        block_ids = F.pad(block_ids, (past_length, 0), value=-1)
    return create_causal_mask(
        config=text_config,
        inputs_embeds=inputs_embeds,
        attention_mask=attention_mask,
        position_ids=position_ids,
        block_sequence_ids=block_ids,
        **{CACHE_NAME: past_key_values},
    )


def _check_input_types(input_ids, pixel_values, pose_pixel_values, pose_values) -> None:
    """Refuse inputs whose dtype or rank the model would misread: float token ids, raw uint8 pixels."""
    if not isinstance(input_ids, torch.Tensor) or input_ids.dtype == torch.bool or input_ids.is_floating_point():
        got = type(input_ids).__name__ if not isinstance(input_ids, torch.Tensor) else f"dtype {input_ids.dtype}"
        raise TypeError(f"`input_ids` must be an integer tensor of token ids (batch, length), got {got}.")
    if input_ids.dim() != 2:
        raise ValueError(f"`input_ids` must have shape (batch, length), got {tuple(input_ids.shape)}.")
    for name, value, rank in (("pixel_values", pixel_values, 4), ("pose_pixel_values", pose_pixel_values, 4),
                              ("pose_values", pose_values, 3)):
        if value is None:
            continue
        if not isinstance(value, torch.Tensor) or not value.is_floating_point():
            got = type(value).__name__ if not isinstance(value, torch.Tensor) else f"dtype {value.dtype}"
            raise TypeError(
                f"`{name}` must be a floating-point tensor as the processor returns it (normalised pixels, or 6D "
                f"rotations), got {got}; pass images and poses through the processor."
            )
        if value.dim() != rank:
            raise ValueError(f"`{name}` must have {rank} dimensions, got shape {tuple(value.shape)}.")


def _cache_argument(past_key_values: Cache | None, kwargs: dict) -> Cache | None:
    """The cache given as `past_key_values` or, in transformers 5.24's name, `cache` (removed from `kwargs`)."""
    cache = kwargs.pop("cache", None)
    if cache is not None and past_key_values is not None:
        raise ValueError("Pass the key-value cache once, as `past_key_values` or as `cache`, not both.")
    return past_key_values if cache is None else cache


# ----------------------------------------------------------------------------------------------------------------------
# Outputs
# ----------------------------------------------------------------------------------------------------------------------


@dataclass
class UniPoseModelOutputWithPast(BaseModelOutputWithPast):
    r"""
    image_hidden_states (`torch.FloatTensor` of shape `(num_images, image_seq_length, hidden_size)`, *optional*):
        Projected image features scattered into the `<image>` positions.
    """

    image_hidden_states: torch.FloatTensor | None = None


@dataclass
class UniPoseCausalLMOutputWithPast(CausalLMOutputWithPast):
    r"""
    loss (`torch.FloatTensor` of shape `()`, *optional*):
        Next-token cross-entropy of text positions plus the code cross-entropy of pose-query positions.
    logits (`torch.FloatTensor` of shape `(batch, length, vocab_size)`):
        At a text position, the scores of the next token; at a query position, the scores of that query's code.
    image_hidden_states (`torch.FloatTensor`, *optional*):
        The projected image features, as in [`UniPoseModelOutputWithPast`].
    """

    image_hidden_states: torch.FloatTensor | None = None


@dataclass
class UniPoseGenerateOutput(GenerateDecoderOnlyOutput):
    r"""
    [`~generation.GenerateDecoderOnlyOutput`] (`sequences` and the key-value cache; scores, logits, attentions
    and hidden states are not kept) with the poses. The cache is `None` when sequences of a batch finished before
    others: finished rows leave the decoding batch and its cache. At each pose it holds the states of the pose
    queries that wrote it, not of its codes, so `generate` does not continue from it (give it the whole
    conversation); a forward pass after text continues the sequence as it reads.

    sequences (`torch.LongTensor` of shape `(batch, prompt_length + new_length)`):
        The prompts followed by what was generated, padded on the right. A generated pose appears as `<p>`, its
        codes as `<pose_k>` tokens, and `</p>`.
    pose_codes (`list[torch.LongTensor]`):
        Per sample, the codes of the poses it generated, `(num_poses_i, num_pose_tokens)`, in order.
    poses (`list[torch.FloatTensor]`):
        Per sample, the decoded poses as SMPL axis-angle, `(num_poses_i, num_joints, 3)`.
    """

    pose_codes: list[torch.LongTensor] | None = None
    poses: list[torch.FloatTensor] | None = None


# ----------------------------------------------------------------------------------------------------------------------
# The pose ViT's feature map on the language model's image grid
# ----------------------------------------------------------------------------------------------------------------------


def pose_feature_grid(pose_vision_tower: nn.Module, image_size) -> tuple[int, int]:
    """Height and width of the pose ViT's patch grid for `image_size`, from its patch embedding convolution."""
    conv = pose_vision_tower.embeddings.patch_embeddings.projection
    return tuple(
        (size + 2 * pad - kernel) // stride + 1
        for size, pad, kernel, stride in zip(image_size, conv.padding, conv.kernel_size, conv.stride)
    )


def resize_pose_features(
    features: torch.Tensor, feature_grid: tuple[int, int], padding: int, image_grid_size: int
) -> torch.Tensor:
    """
    The pose ViT's patch features `(N, height * width, C)` on the `image_grid_size` square grid of the CLIP
    tokens, `(N, image_grid_size**2, C)`: `padding` zero columns on both sides (16x12 -> 16x16 for HMR 2.0's
    tower), then a bilinear resize (align_corners=True).
    """
    features = features.transpose(1, 2).reshape(features.shape[0], -1, *feature_grid)
    features = F.pad(features, (padding, padding))
    size = (image_grid_size, image_grid_size)
    features = F.interpolate(features, size=size, mode="bilinear", align_corners=True)
    return features.flatten(2).transpose(1, 2)


# ----------------------------------------------------------------------------------------------------------------------
# Modules
# ----------------------------------------------------------------------------------------------------------------------


class UniPoseMultiModalProjector(nn.Module):
    """Two-layer MLP (LLaVA's `mlp2x_gelu`) from the concatenated CLIP and pose-ViT features to the LM width."""

    def __init__(self, config: UniPoseConfig):
        super().__init__()
        in_features = config.vision_config.hidden_size + config.pose_vision_config.hidden_size
        out_features = config.text_config.hidden_size
        self.linear_1 = nn.Linear(in_features, out_features, bias=config.multimodal_projector_bias)
        self.act = nn.GELU() if config.projector_hidden_act == "gelu" else nn.SiLU()
        self.linear_2 = nn.Linear(out_features, out_features, bias=config.multimodal_projector_bias)

    def forward(self, image_features: torch.Tensor) -> torch.Tensor:
        # In the projector's dtype: training keeps a trained projector in float32 inside a 16-bit model.
        image_features = image_features.to(self.linear_1.weight.dtype)
        return self.linear_2(self.act(self.linear_1(image_features)))


def _check_language_model_attention(name: str | None) -> None:
    """Refuse an attention implementation for the language model that cannot take UniPose's block mask. A name
    that is no attention implementation at all is left to transformers' own check, which lists the valid ones."""
    if name is None or name in ("sdpa", "eager"):
        return
    if name in ALL_ATTENTION_FUNCTIONS.valid_keys() or "/" in name or "|" in name:  # a registered kernel or hub one
        raise ValueError(
            f"The language model cannot use `attn_implementation={name!r}`: UniPose's attention (pose spans that "
            "attend to each other inside causal text) needs 'sdpa' (the default) or 'eager'. Flash attention cannot "
            "take such a mask and flex attention is not supported. (The vision towers may use another "
            "implementation: pass a dict such as `{'text_config': 'sdpa', 'vision_config': ...}`.)"
        )


class UniPosePreTrainedModel(PreTrainedModel):
    config_class = UniPoseConfig
    config: UniPoseConfig
    base_model_prefix = "model"
    input_modalities = ("image", "text")
    supports_gradient_checkpointing = True
    _skip_keys_device_placement = ["past_key_values", "cache"]
    _no_split_modules = ["PoseVQVAE"]
    # The language model needs UniPose's block mask (pose spans inside causal text): sdpa and eager take it, flash
    # attention cannot, and flex attention is not supported (torch's CPU kernels fail on a padded batch with a
    # cache). The vision towers attend within each image and may use any implementation they support.
    _supports_sdpa = True
    _supports_flash_attn = False
    _supports_flex_attn = False
    _supports_attention_backend = False
    # The pose tokenizer stays in float32 when the model is loaded in bf16 / fp16: its nearest-code search and the
    # rotation conversions of its outputs lose too much in 16 bits.
    _keep_in_fp32_modules_strict = ("pose_tokenizer",)

    def _check_and_adjust_attn_implementation(self, attn_implementation, is_init_check=False, **kwargs):
        if not isinstance(attn_implementation, dict):  # one name for every part, the language model's included
            _check_language_model_attention(attn_implementation)
        return super()._check_and_adjust_attn_implementation(attn_implementation, is_init_check, **kwargs)

    def set_attn_implementation(self, attn_implementation, **kwargs):
        """[`~PreTrainedModel.set_attn_implementation`], refusing for the language model (by name, or in a dict
        under `text_config`) an implementation that cannot take UniPose's attention mask."""
        if isinstance(attn_implementation, dict):
            for_text = attn_implementation.get("text_config", attn_implementation.get(""))
            _check_language_model_attention(for_text.get("") if isinstance(for_text, dict) else for_text)
        return super().set_attn_implementation(attn_implementation, **kwargs)

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        """[`~PreTrainedModel.from_pretrained`], strict: a checkpoint with missing, unexpected or mis-shaped
        weights raises a `ValueError` that lists them instead of silently re-initialising them, and a local
        weight file cut short (an interrupted copy or download) raises one that names the file. With
        `output_loading_info=True` the caller reads the missing and unexpected weights: they are returned, as
        transformers returns them, instead of raised (e.g. to load a `UniPoseModel` checkpoint into the model with
        a head, whose `lm_head` is then new)."""
        folder = args[0] if args else kwargs.get("pretrained_model_name_or_path")
        if isinstance(folder, (str, os.PathLike)) and os.path.isdir(folder):
            _check_safetensors_files(os.path.join(folder, kwargs.get("subfolder") or ""))
        output_loading_info = kwargs.pop("output_loading_info", False)
        strict = not kwargs.pop("ignore_mismatched_sizes", False)
        # Let transformers collect every mismatch, then report them all by name.
        model, info = super().from_pretrained(*args, output_loading_info=True, ignore_mismatched_sizes=True, **kwargs)
        keys = ("missing_keys", "unexpected_keys", "mismatched_keys") if strict else ("missing_keys", "unexpected_keys")
        if output_loading_info:  # the caller reads the missing and unexpected keys, as transformers returns them
            keys = keys[2:]
        problems = {key: info[key] for key in keys if info.get(key)}
        if problems:
            details = "; ".join(f"{key}: {sorted(map(str, value))[:10]}" for key, value in problems.items())
            raise ValueError(f"The checkpoint does not match {cls.__name__}. {details}")
        return (model, info) if output_loading_info else model

    def resize_token_embeddings(self, new_num_tokens: int | None = None, *args, **kwargs) -> nn.Embedding:
        """[`~PreTrainedModel.resize_token_embeddings`], refusing a size that would drop UniPose's own tokens
        (`<image>` ... `</p>` and the pose codes, the last ids of the vocabulary)."""
        config = self.config
        needed = 1 + max(config.pose_code_token_ids[-1], *config.special_token_ids.values())
        if new_num_tokens is not None and new_num_tokens < needed:
            raise ValueError(
                f"`new_num_tokens`={new_num_tokens} would drop UniPose's tokens: the pose codes take ids up to "
                f"{needed - 1}, so the vocabulary needs at least {needed} rows."
            )
        return super().resize_token_embeddings(new_num_tokens, *args, **kwargs)

    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, UniPoseModel):
            std = getattr(self.config.text_config, "initializer_range", 0.02)
            nn.init.normal_(module.pose_queries, mean=0.0, std=std)


def _check_safetensors_files(folder: str) -> None:
    """Raises a `ValueError` naming the file when a safetensors weight file of `folder` is shorter than its
    header says (the header is 8 bytes of length, then JSON with each tensor's byte range)."""
    index = os.path.join(folder, "model.safetensors.index.json")
    if os.path.isfile(index):
        with open(index, encoding="utf-8") as file:
            names = sorted(set(json.load(file).get("weight_map", {}).values()))
    else:
        names = ["model.safetensors"]
    for name in names:
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            continue  # transformers names a missing file
        size = os.path.getsize(path)
        with open(path, "rb") as file:
            prefix = file.read(8)
            header_length = int.from_bytes(prefix, "little") if len(prefix) == 8 else None
            expected = None
            if header_length is not None and 8 + header_length <= size:
                try:
                    header = json.loads(file.read(header_length))
                    ends = [entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"]
                    expected = 8 + header_length + max(ends, default=0)
                except (ValueError, KeyError, TypeError, IndexError):
                    pass
        if expected is None or size < expected:
            described = "no readable header" if expected is None else f"a header that describes {expected:,} bytes"
            raise ValueError(
                f"The weight file {path} is damaged or incomplete: it has {size:,} bytes and {described} "
                "(an interrupted download or copy?). Download or save the checkpoint again."
            )


class UniPoseModel(UniPosePreTrainedModel):
    """The UniPose backbone: vision towers, projector, frozen pose tokenizer, pose queries and language model.

    It returns hidden states, not logits, so that trainers that apply the head themselves (TRL's fused loss)
    see the multimodal merge, the queries and the pose-span mask.
    """

    # It loads from a checkpoint of [`UniPoseForConditionalGeneration`], whose head it has no use for.
    _keys_to_ignore_on_load_unexpected = [r"^lm_head\."]

    def __init__(self, config: UniPoseConfig):
        super().__init__(config)
        self.vision_tower = AutoModel.from_config(config.vision_config)
        self.pose_vision_tower = AutoBackbone.from_config(config.pose_vision_config)
        self.multi_modal_projector = UniPoseMultiModalProjector(config)
        _check_language_model_attention(config.text_config._attn_implementation)
        self.language_model = AutoModel.from_config(config.text_config)
        # The pose tokenizer is trained on its own (stage 0) and frozen here: it only turns `pose_values` into
        # codes and generated codes back into poses. It is built in float32 whatever the default dtype (as in
        # `_from_config(config, dtype=torch.bfloat16)`), as `_keep_in_fp32_modules_strict` keeps it at loading.
        self.pose_tokenizer = PoseVQVAE(config.pose_tokenizer_config).float()
        self.pose_tokenizer.requires_grad_(False)
        self.pose_queries = nn.Parameter(torch.zeros(config.num_pose_tokens, config.text_config.hidden_size))
        self.post_init()

    def train(self, mode: bool = True):
        super().train(mode)
        # Keep the frozen tokenizer in eval mode: in training mode its quantizer would update the codebook.
        self.pose_tokenizer.eval()
        return self

    def get_input_embeddings(self):
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value):
        self.language_model.set_input_embeddings(value)

    @can_return_tuple
    def get_image_features(
        self,
        pixel_values: torch.FloatTensor,
        pose_pixel_values: torch.FloatTensor,
        **kwargs: Unpack[TransformersKwargs],
    ) -> BaseModelOutputWithPooling:
        """Fuse CLIP and pose-ViT features of the same images into LM-width tokens.

        Args:
            pixel_values (`torch.FloatTensor` of shape `(num_images, 3, clip_size, clip_size)`)
            pose_pixel_values (`torch.FloatTensor` of shape `(num_images, 3, 256, 192)`)
            kwargs: `output_hidden_states`, `output_attentions` and `return_dict`, for the CLIP tower.
        Returns:
            [`BaseModelOutputWithPooling`]: the CLIP tower's output (its `hidden_states` and `attentions` when
            asked for), with `pooler_output` the image tokens `(num_images, grid**2, hidden_size)` that fill the
            `<image>` positions (`grid` = 24 for CLIP-L/14-336).
        """
        if pixel_values.shape[0] != pose_pixel_values.shape[0]:
            raise ValueError(
                f"`pixel_values` has {pixel_values.shape[0]} images but `pose_pixel_values` has "
                f"{pose_pixel_values.shape[0]}: both come from the same images."
            )
        output_hidden_states = kwargs.pop("output_hidden_states", None)
        if output_hidden_states is None:
            output_hidden_states = self.config.vision_config.output_hidden_states
        # Processors give float32 pixels; each tower reads them in its own dtype (bf16 / fp16 models).
        clip_outputs = self.vision_tower(
            pixel_values.to(self.vision_tower.dtype), output_hidden_states=True, return_dict=True, **kwargs
        )
        clip_features = clip_outputs.hidden_states[self.config.vision_feature_layer][:, 1:]  # drop CLS

        pose_pixel_values = pose_pixel_values.to(self.pose_vision_tower.dtype)
        pose_features = self.pose_vision_tower(pose_pixel_values).feature_maps[-1]  # (N, h*w, C)
        pose_features = resize_pose_features(
            pose_features,
            pose_feature_grid(self.pose_vision_tower, pose_pixel_values.shape[-2:]),
            self.config.pose_vision_feature_padding,
            self.config.image_grid_size,
        )

        fused = torch.cat([clip_features, pose_features.to(clip_features.dtype)], dim=-1)
        return BaseModelOutputWithPooling(
            last_hidden_state=clip_outputs.last_hidden_state,
            pooler_output=self.multi_modal_projector(fused),
            hidden_states=clip_outputs.hidden_states if output_hidden_states else None,
            attentions=clip_outputs.attentions,
        )

    @torch.no_grad()
    def encode_poses(self, pose_values: torch.Tensor) -> torch.LongTensor:
        """Pose codes of `pose_values` (any pose format) as vocabulary ids, `(num_poses, num_pose_tokens)`.

        Each pose is encoded on its own: batched convolutions may round differently with the batch size, and
        a code near a tie must not depend on which other poses share the batch (training encodes targets one
        by one too). Autocast is off here, so that a mixed-precision training step (`bf16=True`) encodes its
        input poses in the tokenizer's own dtype, as inference and the collator's targets do.
        """
        pose_values = pose_values.to(self.pose_tokenizer.dtype)  # float32 unless the whole model was cast
        with torch.autocast(device_type=pose_values.device.type, enabled=False):
            codes = [self.pose_tokenizer.encode(pose[None]) for pose in pose_values]
        return torch.cat(codes) + self.config.pose_code_token_offset

    def get_placeholder_mask(
        self, input_ids: torch.LongTensor, token_id: int, features: torch.Tensor, name: str
    ) -> torch.BoolTensor:
        """Positions of `token_id`, checked against the number of feature vectors that will fill them."""
        mask = input_ids == token_id
        num_tokens, num_features = int(mask.sum()), features.shape[0] * features.shape[1]
        if num_tokens != num_features:
            raise ValueError(
                f"`input_ids` holds {num_tokens} placeholder tokens (id {token_id}) but `{name}` gives "
                f"{features.shape[0]} items x {features.shape[1]} tokens = {num_features}. Build the inputs with "
                "the processor, which expands each placeholder to the right length."
            )
        return mask

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.FloatTensor | None = None,
        pose_pixel_values: torch.FloatTensor | None = None,
        pose_values: torch.FloatTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values: Cache | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        use_cache: bool | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> UniPoseModelOutputWithPast:
        r"""
        input_ids (`torch.LongTensor` of shape `(batch, length)`):
            Token ids; the pose spans (and so the attention pattern) are read from them, so they are required.
        pixel_values (`torch.FloatTensor` of shape `(num_images, 3, H, W)`, *optional*):
            CLIP inputs of the images, one per `<image>` run.
        pose_pixel_values (`torch.FloatTensor` of shape `(num_images, 3, 256, 192)`, *optional*):
            Pose-ViT inputs of the same images.
        pose_values (`torch.FloatTensor` of shape `(num_poses, num_joints, 6)`, *optional*):
            Input poses (any pose format), one per run of `<pose>` placeholders; encoded by the pose tokenizer.
        """
        if input_ids is None:
            raise ValueError(
                "UniPose needs `input_ids`: the pose spans and their attention pattern are read from them "
                "(`inputs_embeds` alone cannot say where a pose is)."
            )
        _check_input_types(input_ids, pixel_values, pose_pixel_values, pose_values)
        past_key_values = _cache_argument(past_key_values, kwargs)
        config = self.config
        past_length = past_key_values.get_seq_length() if past_key_values is not None else 0
        max_positions = config.context_length
        length = past_length + input_ids.shape[1]
        over = max_positions is not None and length > max_positions
        if over and attention_mask is not None and attention_mask.dim() == 2:
            # Positions follow the attention mask (step 4): padding, and the columns that generation masks out for
            # the other rows of a batch, take none. Read only past the cheap bound: it costs a sync per step.
            length = int(attention_mask[:, :length].sum(-1).max())
            over = length > max_positions
        if over:
            raise ValueError(
                f"The sequence is {length} tokens long (`input_ids` {input_ids.shape[1]} + cache {past_length}, "
                f"padding left out) but the language model handles at most {max_positions} "
                "(`text_config.max_position_embeddings`): shorten the prompt or `max_new_tokens`."
            )

        # 1. Input poses: their codes replace the `<pose>` placeholders, so that from here on a given pose
        #    looks exactly like one written with code tokens.
        if pose_values is not None:
            codes = self.encode_poses(pose_values)
            mask = self.get_placeholder_mask(input_ids, config.pose_token_id, codes, "pose_values")
            input_ids = input_ids.masked_scatter(mask, codes.to(input_ids.device, input_ids.dtype))
            if inputs_embeds is not None:  # the caller's embeddings, with the codes' at the placeholders
                code_embeds = self.get_input_embeddings()(codes.to(input_ids.device)).to(inputs_embeds.dtype)
                inputs_embeds = inputs_embeds.masked_scatter(mask.unsqueeze(-1), code_embeds)
        elif bool((input_ids == config.pose_token_id).any()):
            raise ValueError("`input_ids` holds `<pose>` placeholders but no `pose_values` were given.")

        if inputs_embeds is None:
            inputs_embeds = self.get_input_embeddings()(input_ids)

        # 2. Poses to generate: the i-th query placeholder of a span becomes the i-th learned query vector.
        is_query = input_ids == config.pose_query_token_id
        if bool(is_query.any()):
            query_index = pose_query_positions(input_ids, config.pose_query_token_id, config.num_pose_tokens)
            queries = self.pose_queries.to(inputs_embeds.device, inputs_embeds.dtype)[query_index.clamp(min=0)]
            inputs_embeds = torch.where(is_query.unsqueeze(-1), queries, inputs_embeds)

        # 3. Images: fused CLIP + pose-ViT features fill the `<image>` positions.
        image_features = None
        if pixel_values is not None or pose_pixel_values is not None:
            if pixel_values is None or pose_pixel_values is None:
                raise ValueError("Images need both `pixel_values` (CLIP) and `pose_pixel_values` (pose ViT).")
            image_features = self.get_image_features(pixel_values, pose_pixel_values, return_dict=True)
            image_features = image_features.pooler_output.to(inputs_embeds.device, inputs_embeds.dtype)
            mask = self.get_placeholder_mask(input_ids, config.image_token_id, image_features, "pixel_values")
            inputs_embeds = inputs_embeds.masked_scatter(mask.unsqueeze(-1), image_features)
        elif bool((input_ids == config.image_token_id).any()):
            raise ValueError("`input_ids` holds `<image>` placeholders but no `pixel_values` were given.")

        # 4. Positions follow the attention mask, so that left padding and generation's gaps do not shift them.
        if position_ids is None:
            if attention_mask is not None and attention_mask.dim() == 2:
                position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
                position_ids = position_ids[:, past_length : past_length + input_ids.shape[1]]
            else:
                position_ids = torch.arange(input_ids.shape[1], device=input_ids.device) + past_length
                position_ids = position_ids.unsqueeze(0).expand_as(input_ids)

        # 5. Causal text, bidirectional pose queries, input poses as `config.input_pose_attention` says. Without
        #    a bidirectional run (every text step of generation) the language model builds its own causal mask
        #    from the 2D one, the same mask, once.
        causal_mask = attention_mask
        if bool(pose_bidirectional_mask(input_ids, config).any()):
            causal_mask = create_pose_attention_mask(
                config, self.language_model.config, input_ids, inputs_embeds, attention_mask, past_key_values,
                position_ids,
            )
        outputs = self.language_model(
            inputs_embeds=inputs_embeds,
            attention_mask=causal_mask,
            position_ids=position_ids,
            use_cache=use_cache,
            **{CACHE_NAME: past_key_values},
            **kwargs,
        )
        return UniPoseModelOutputWithPast(
            last_hidden_state=outputs.last_hidden_state,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            image_hidden_states=image_features,
            **{CACHE_NAME: getattr(outputs, CACHE_NAME)},
        )


class UniPoseForConditionalGeneration(UniPosePreTrainedModel, GenerationMixin):
    """UniPose with its language-model head, its loss and a `generate` that writes a whole pose in one step.

    Example:

    ```python
    >>> from unipose.testing import tiny_model_and_processor
    >>> model, processor = tiny_model_and_processor()
    >>> inputs = processor(text=["Describe the pose: <pose>"], poses=[torch.zeros(22, 3)], return_tensors="pt")
    >>> out = model.generate(**inputs, max_new_tokens=20, return_dict_in_generate=True)
    >>> out.sequences.shape[0], len(out.poses)
    (1, 1)
    ```
    """

    _tied_weights_keys = {"lm_head.weight": "model.language_model.embed_tokens.weight"}
    # Tensor parallelism: the head is sharded like the embedding it may be tied to, and gathers its logits.
    _tp_plan = {"lm_head": "colwise_gather_output"}

    def __init__(self, config: UniPoseConfig):
        super().__init__(config)
        self.model = UniPoseModel(config)
        self.lm_head = nn.Linear(config.text_config.hidden_size, config.text_config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self):
        return self.model.get_input_embeddings()

    def set_input_embeddings(self, value):
        self.model.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module:
        return self.lm_head

    def set_output_embeddings(self, new_embeddings):
        self.lm_head = new_embeddings

    def get_image_features(
        self,
        pixel_values: torch.FloatTensor,
        pose_pixel_values: torch.FloatTensor,
        **kwargs: Unpack[TransformersKwargs],
    ) -> BaseModelOutputWithPooling:
        return self.model.get_image_features(pixel_values, pose_pixel_values, **kwargs)

    @property
    def pose_tokenizer(self) -> PoseVQVAE:
        return self.model.pose_tokenizer

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.FloatTensor | None = None,
        pose_pixel_values: torch.FloatTensor | None = None,
        pose_values: torch.FloatTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values: Cache | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        labels: torch.LongTensor | None = None,
        shift_labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        num_items_in_batch: int | torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> UniPoseCausalLMOutputWithPast:
        r"""
        labels (`torch.LongTensor` of shape `(batch, length)`, *optional*):
            Aligned with `input_ids`: the token each position should hold (`-100` to ignore). At pose-query
            positions, the vocabulary id of the target code. Shifted internally by [`pose_shift_labels`].
        shift_labels (`torch.LongTensor` of shape `(batch, length)`, *optional*):
            The target of each position's output, already shifted (TRL's form). Takes precedence over `labels`.
        """
        outputs = self.model(
            input_ids=input_ids,
            pixel_values=pixel_values,
            pose_pixel_values=pose_pixel_values,
            pose_values=pose_values,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=past_key_values,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            return_dict=True,  # `config.return_dict` is this model's too: the tuple is made once, by this method
            **kwargs,
        )
        hidden_states = outputs.last_hidden_state
        slice_indices = slice(-logits_to_keep, None) if isinstance(logits_to_keep, int) else logits_to_keep
        logits = self.lm_head(hidden_states[:, slice_indices])

        loss = None
        if labels is not None or shift_labels is not None:
            if logits.shape[1] != input_ids.shape[1]:
                raise ValueError("A loss needs the logits of every position: leave `logits_to_keep` at 0.")
            if shift_labels is None:
                if labels.shape != input_ids.shape:
                    raise ValueError(
                        f"`labels` must be aligned with `input_ids` {tuple(input_ids.shape)}, got {tuple(labels.shape)}."
                    )
                shift_labels = pose_shift_labels(input_ids, labels, self.config)
            loss = unipose_loss(
                logits,
                shift_labels,
                input_ids == self.config.pose_query_token_id,
                self.config.pose_code_token_offset,
                self.config.pose_codebook_size,
                num_items_in_batch=num_items_in_batch,
            )
        return UniPoseCausalLMOutputWithPast(
            loss=loss,
            logits=logits,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            image_hidden_states=outputs.image_hidden_states,
            **{CACHE_NAME: getattr(outputs, CACHE_NAME)},
        )

    # ------------------------------------------------------------------------------------------------------------------
    # Generation
    # ------------------------------------------------------------------------------------------------------------------

    def generate(
        self,
        inputs: torch.Tensor | None = None,
        generation_config: GenerationConfig | None = None,
        stopping_criteria: StoppingCriteriaList | None = None,
        synced_gpus: bool | None = None,
        assistant_model: PreTrainedModel | None = None,
        streamer: BaseStreamer | None = None,
        custom_generate=None,
        tokenizer=None,
        **kwargs,
    ):
        r"""
        Generates text token by token and every pose in one step: when a sequence emits `<p>` (or its prompt
        ends with `<p>`), one forward pass over `<p>` and the `num_pose_tokens` queries gives all the codes of
        the pose (restricted to the code tokens), `</p>` follows and text decoding goes on. Each sequence of a
        batch decodes on its own and gets exactly what it would get alone: some may write a pose while others
        write text.

        Takes the arguments of [`~GenerationMixin.generate`]: text sampling follows `do_sample`, `temperature`,
        `top_k`, `top_p` and the other logits processors; `pose_do_sample`, `pose_temperature` (> 0),
        `pose_top_k` (an int >= 0, 0 keeps every code) and `pose_top_p` (in (0, 1]) set the sampling of the codes
        (by default as for text). With `return_dict_in_generate=True` it returns a [`UniPoseGenerateOutput`] with
        the decoded poses.

        The contracts of `GenerationMixin.generate`, as UniPose keeps them:

        - Stopping criteria (`max_length` / `max_new_tokens`, `max_time`, `eos_token_id` (an id or a list),
          `stop_strings` with the tokenizer passed as `tokenizer=`, and the user's `stopping_criteria`) are
          evaluated for each sequence on its own tokens, after every token it writes and after every pose.
          A stopped sequence writes nothing more; the output is padded on the right with `pad_token_id`.
        - Length rule: a pose that is begun is always finished. Text is written while a sequence is below the
          length limit; if its last text token is `<p>`, the pose and `</p>` follow. So a sequence holds at
          most `max_new_tokens + num_pose_tokens + 1` new tokens (`max_new_tokens=1` with `<p>` chosen gives
          `<p>`, the codes and `</p>`). The same holds when any other criterion fires on `<p>`. Under
          `forced_eos_token_id`, `<p>` is written only where the pose and `</p>` end before the last position,
          so that the sequence ends with the EOS at `max_length`, as in stock `generate`.
        - Logits processors (text) are called once per step, or once per group of sequences of the same length
          when a pose has made their lengths differ: each reads its sequence's own tokens. The sampling
          warpers (`top_h`, `min_p`, `typical_p`, `epsilon_cutoff`, `eta_cutoff`) also apply to the codes.
        - Context: a sequence stops, with a warning, when its next token would not fit in the language model's
          `max_position_embeddings`, and writes `<p>` only where the pose's queries fit after it. RoPE scaling
          in `text_config` lifts that bound ([`UniPoseConfig.context_length`]).
        - Streaming (batch size 1): the streamer receives the prompt `(1, prompt_length)` first, then each
          text token as a `(1,)` tensor, as stock `generate` sends them, and each pose as one unit, a
          `(1, num_pose_tokens + 2)` tensor `[<p>, codes as <pose_k> tokens, </p>]` once its codes are known
          (without `<p>` when the prompt ended with it: that `<p>` came with the prompt). `streamer.end()` is
          called when generation ends, also when it fails.
        - `synced_gpus` (default: on under DeepSpeed ZeRO-3 or FSDP with several processes): a process whose
          sequences are all finished keeps running forward passes (and decodes its poses in one call) until
          every process of the group is done, so that sharded weights can be gathered. Without an initialised
          process group it has no peers to wait for.
        - Several samples per prompt (`do_sample=True, num_return_sequences=n`): the output holds the n
          sequences of the first prompt, then those of the second, and so on, each prompt repeated with its own
          images and poses.
        - Refused with a `ValueError`, whether set as arguments, in a `GenerationConfig` or in
          `model.generation_config`: beam search (`num_beams > 1`), assisted and contrastive decoding
          (`assistant_model`, `prompt_lookup_num_tokens`, `penalty_alpha`), prompts padded on the right (pad on
          the left: `padding_side='left'`), processors that count on one token per call (`guidance_scale`,
          SynthID watermarking), `prefill_chunk_size`, and token healing of prompts with images or poses.
        - Memory grows with the tokens written, not with `max_new_tokens`.

        Example:

        ```python
        >>> from unipose.testing import tiny_model_and_processor
        >>> model, processor = tiny_model_and_processor()
        >>> inputs = processor(text=["A person kneeling. <p>"], return_tensors="pt")
        >>> out = model.generate(**inputs, max_new_tokens=1, return_dict_in_generate=True)
        >>> out.sequences.shape[1] - inputs["input_ids"].shape[1], out.poses[0].shape  # the whole pose, and `</p>`
        (81, torch.Size([1, 22, 3]))
        ```
        """
        if custom_generate is not None:  # the caller's own decoding loop keeps its own contracts
            return super().generate(
                inputs,
                generation_config=generation_config,
                stopping_criteria=stopping_criteria,
                synced_gpus=synced_gpus,
                assistant_model=assistant_model,
                streamer=streamer,
                custom_generate=custom_generate,
                tokenizer=tokenizer,
                **kwargs,
            )
        try:
            if assistant_model is not None:
                raise ValueError(
                    "UniPose generation does not support assisted decoding: got an `assistant_model`. Call "
                    "`generate` without `assistant_model` (a pose is already written in one step)."
                )
            _check_no_prompt_learning(self)
            inputs, generation_config, kwargs = self._heal_tokens(inputs, generation_config, tokenizer, kwargs)
            generation_config, stopping_criteria, kwargs = self._take_stop_strings(
                generation_config, stopping_criteria, tokenizer, kwargs
            )
            # `generate` hands a callable only its own extra arguments: the streamer and `synced_gpus` travel bound.
            decode = functools.partial(_unipose_decode, streamer=streamer, synced_gpus=synced_gpus)
            return super().generate(
                inputs,
                generation_config=generation_config,
                stopping_criteria=stopping_criteria,
                custom_generate=decode,
                **kwargs,
            )
        finally:
            if streamer is not None:
                streamer.end()

    def _expand_inputs_for_generation(self, expand_size=1, is_encoder_decoder=False, input_ids=None, **model_kwargs):
        """Repeat each prompt `expand_size` times (`num_return_sequences`) with its own images and poses.

        `GenerationMixin` repeats every tensor row by row, which fits inputs with one row per prompt. The images
        and poses are listed per item instead, in the order of their placeholders, and a prompt may hold any
        number of them: each prompt's block of items is repeated with it, so that the expanded inputs are what the
        processor gives for the list of prompts written out `expand_size` times.
        """
        items = {}
        if expand_size > 1 and input_ids is not None:
            config = self.config
            tokens_per_item = {
                "pixel_values": (config.image_token_id, config.image_seq_length),
                "pose_pixel_values": (config.image_token_id, config.image_seq_length),
                "pose_values": (config.pose_token_id, config.num_pose_tokens),
            }
            items_per_prompt = {}  # by placeholder token: the items of each prompt
            for name, (token_id, num_tokens) in tokens_per_item.items():
                values = model_kwargs.get(name)
                if values is None:
                    continue
                if token_id not in items_per_prompt:
                    items_per_prompt[token_id] = ((input_ids == token_id).sum(-1) // num_tokens).tolist()
                counts = items_per_prompt[token_id]
                if sum(counts) != values.shape[0]:
                    continue  # left as it is: `forward` names what does not match
                blocks = values.split(counts)
                items[name] = torch.cat([block for block in blocks for _ in range(expand_size)])
                del model_kwargs[name]
        input_ids, model_kwargs = super()._expand_inputs_for_generation(
            expand_size, is_encoder_decoder, input_ids, **model_kwargs
        )
        return input_ids, {**model_kwargs, **items}

    def _heal_tokens(self, inputs, generation_config, tokenizer, kwargs):
        """Token healing (`token_healing=True`), done here with [`~GenerationMixin.heal_tokens`] as `generate` does
        it: `generate` does not keep the `tokenizer` it needs for a `custom_generate` callable. It decodes the
        prompts to text and tokenizes them again, which would drop image tokens and pose spans: prompts with
        them are refused.

        Returns:
            `(inputs, generation_config, kwargs)` to pass on to `GenerationMixin.generate`, healing switched off.
        """
        input_ids = inputs if inputs is not None else kwargs.get("input_ids")
        if not self._generation_option("token_healing", generation_config, kwargs) or input_ids is None:
            return inputs, generation_config, kwargs
        config = self.config
        markers = torch.tensor([config.image_token_id, config.pose_start_token_id, config.pose_end_token_id])
        if bool((torch.isin(input_ids, markers.to(input_ids.device)) | pose_span_mask(input_ids, config)).any()):
            raise ValueError(
                "Token healing (`token_healing=True`) decodes the prompts to text and tokenizes them again, which "
                "drops their image tokens and pose spans (`<p>` included): use it with text prompts only."
            )
        healed = self.heal_tokens(input_ids, tokenizer)
        generation_config, kwargs = self._switch_off("token_healing", False, generation_config, kwargs)
        if inputs is not None:
            return healed, generation_config, kwargs
        return None, generation_config, {**kwargs, "input_ids": healed}

    def _take_stop_strings(self, generation_config, stopping_criteria, tokenizer, kwargs):
        """Turn the stop strings in effect into a `StopStringCriteria` in `stopping_criteria`.

        `generate` builds that criterion from the `tokenizer` argument, which it does not keep for a
        `custom_generate` callable: the stop strings would then be refused for want of a tokenizer. So they are
        taken here (from the arguments, the `generation_config` given, or `model.generation_config`, in this
        order of precedence, as `generate` reads them) and switched off in what `generate` sees.

        Returns:
            `(generation_config, stopping_criteria, kwargs)` to pass on to `GenerationMixin.generate`.
        """
        stop_strings = self._generation_option("stop_strings", generation_config, kwargs)
        if stop_strings is None:
            return generation_config, stopping_criteria, kwargs
        if tokenizer is None:
            raise ValueError(
                f"`stop_strings={stop_strings!r}` needs the model's tokenizer to find the strings in the tokens: pass "
                "it as `generate(..., tokenizer=processor.tokenizer)`."
            )
        stopping_criteria = StoppingCriteriaList(stopping_criteria or [])
        stopping_criteria.append(StopStringCriteria(tokenizer=tokenizer, stop_strings=stop_strings))
        generation_config, kwargs = self._switch_off("stop_strings", None, generation_config, kwargs)
        return generation_config, stopping_criteria, kwargs

    def _generation_option(self, name: str, generation_config, kwargs):
        """The value of the generation option `name` as `generate` reads it: the argument, else the
        `generation_config` given, else `model.generation_config`."""
        if name in kwargs:
            return kwargs[name]
        given = None if generation_config is None else getattr(generation_config, name)
        return getattr(self.generation_config, name) if given is None else given

    @staticmethod
    def _switch_off(name: str, off, generation_config, kwargs):
        """`(generation_config, kwargs)` with the option `name` set to `off` in both (the config copied), so that
        `generate` does not apply it: it fills unset fields from `model.generation_config`, and only an argument
        overrides that."""
        if generation_config is not None:
            generation_config = copy.deepcopy(generation_config)
            setattr(generation_config, name, off)
        return generation_config, {**kwargs, name: off}


def _sample_or_argmax(scores: torch.Tensor, do_sample: bool) -> torch.LongTensor:
    """`scores` `(n, vocab)` -> `(n,)`."""
    if do_sample:
        return torch.multinomial(scores.softmax(-1), num_samples=1).squeeze(-1)
    return scores.argmax(-1)


# The settings that select a generation mode other than greedy decoding or sampling, with their neutral values.
_MODE_SETTINGS = {
    "num_beams": 1,
    "num_beam_groups": 1,
    "penalty_alpha": None,
    "prompt_lookup_num_tokens": None,
    "assistant_early_exit": None,
    "use_mtp": False,
    "constraints": None,
    "force_words_ids": None,
    "dola_layers": None,
}


# Generation-config flags for outputs recorded at every decoding step, which UniPose's loop does not have.
_PER_STEP_OUTPUTS = ("output_scores", "output_logits", "output_attentions", "output_hidden_states")


def _check_decoding_mode(generation_config: GenerationConfig) -> None:
    """Refuse every mode but greedy decoding or sampling (of one or several sequences per prompt), however it was configured
    (`generation_config` is the one `generate` resolved from the arguments and the configs)."""
    per_step = [name for name in _PER_STEP_OUTPUTS if getattr(generation_config, name, False)]
    if per_step:
        raise ValueError(
            f"UniPose generation does not return per-step outputs ({', '.join(f'`{name}=True`' for name in per_step)}): "
            "a pose step writes a whole pose (81 tokens) in one pass, so the rows of a batch do not advance one "
            "token per step. Score the generated sequences with one forward pass instead: "
            "`model(input_ids=out.sequences, ...).logits` (with `output_attentions` / `output_hidden_states` there)."
        )
    if getattr(generation_config, "prefill_chunk_size", None) is not None:
        raise ValueError(
            f"UniPose generation prefills each prompt in one forward pass, got `prefill_chunk_size="
            f"{generation_config.prefill_chunk_size}`: a chunk boundary would cut through a pose span or an "
            "image's tokens. Leave `prefill_chunk_size` unset."
        )
    mode = generation_config.get_generation_mode()
    if mode in (GenerationMode.GREEDY_SEARCH, GenerationMode.SAMPLE):
        return
    asked = mode.value.replace("_", " ")
    settings = ", ".join(
        f"`{name}={getattr(generation_config, name)!r}`"
        for name, neutral in _MODE_SETTINGS.items()
        if getattr(generation_config, name, neutral) not in (neutral, None)
    ) or "its settings"
    raise ValueError(
        f"UniPose generation decodes greedily or by sampling, but the generation config asks for {asked} with "
        f"{settings}. Leave these at their defaults (`num_beams=1`, no `penalty_alpha` or "
        "`prompt_lookup_num_tokens`) in the `generate` arguments, "
        "in the `generation_config` you pass and in `model.generation_config`."
    )


# Logits processors that keep a state of the tokens fed so far, one token per call: a pose step feeds 81 tokens at
# once, and in a batch the rows of different lengths are processed in separate calls.
_STATEFUL_PROCESSORS = {
    UnbatchedClassifierFreeGuidanceLogitsProcessor: "`guidance_scale` (classifier-free guidance)",
    SynthIDTextWatermarkLogitsProcessor: "SynthID watermarking (`watermarking_config`)",
}


def _check_stateless_processors(logits_processor: LogitsProcessorList) -> None:
    """Refuse the logits processors that count on being called once per token, which UniPose's loop cannot honour."""
    for processor in logits_processor:
        for kind, option in _STATEFUL_PROCESSORS.items():
            if isinstance(processor, kind):
                raise ValueError(
                    f"UniPose generation does not run {option}: its `{kind.__name__}` keeps its own record of the "
                    "tokens fed, one per step, while a pose step writes 81 tokens at once and the rows of a batch "
                    "then have different lengths. Generate without it."
                )


def _check_no_prompt_learning(model: nn.Module) -> None:
    """Refuse PEFT's prompt-learning adapters (prefix, prompt and p-tuning): they reach the model through the
    `prepare_inputs_for_generation` that PEFT puts on the instance, which the pose decoding loop never calls, so
    `generate` would silently answer as the base model. (LoRA and other adapters live in the layers and work.)"""
    patched = vars(model).get("prepare_inputs_for_generation")
    peft_config = getattr(getattr(patched, "__self__", None), "active_peft_config", None)
    if getattr(peft_config, "is_prompt_learning", False):
        raise ValueError(
            f"UniPose generation does not run prompt-learning adapters (got a {type(peft_config).__name__}): their "
            "virtual tokens enter through `prepare_inputs_for_generation`, which its one-step pose decoding does "
            "not call. Train a LoRA adapter instead (`peft.LoraConfig`), which works in `generate`."
        )


def _hooks_hold_rows(model: nn.Module, batch_size: int) -> bool:
    """Whether a forward pre-hook of `model` is bound to one value per row of the batch, as PEFT's are in a
    mixed-adapter batch (`adapter_names`, aLoRA's `alora_offsets`): the rows must then keep their places."""
    return any(
        isinstance(value, (list, tuple, torch.Tensor)) and len(value) == batch_size
        for module in model.modules()
        for hook in module._forward_pre_hooks.values()
        for value in getattr(hook, "keywords", {}).values()
    )


def _check_fresh_cache(cache: Cache | None) -> None:
    """Refuse a cache that generation cannot start from: one that already holds positions, or one of fixed size."""
    if cache is None:
        return
    if isinstance(cache, StaticCache):
        raise ValueError(
            f"UniPose generation needs a cache that grows (a `DynamicCache`), got a {type(cache).__name__} (e.g. "
            "from `cache_implementation='static'`): a pose step adds `num_pose_tokens + 1` positions at once, and "
            "in a batch the queries of one row's pose take columns of every row, so a cache sized from "
            "`max_new_tokens` runs out. Leave `cache_implementation` unset."
        )
    if cache.get_seq_length() > 0:
        raise ValueError(
            f"UniPose generation starts from the whole prompt, but the cache given holds {cache.get_seq_length()} "
            "positions already. A cache returned by `generate` holds, at each pose it wrote, the states of the "
            "pose queries, not of the codes now in the sequence, so continuing from it would not read what the "
            "sequence says: pass the whole conversation as `input_ids` (with its images and poses) and no cache."
        )


def _check_left_padded(attention_mask: torch.Tensor | None) -> None:
    """Refuse prompts padded anywhere but on the left: each row's next token follows the row's last position.

    Args:
        attention_mask (`torch.Tensor` of shape `(batch, length)`, *optional*): 1 for real tokens.
    """
    if attention_mask is None or attention_mask.dim() != 2:
        return
    real = attention_mask.bool()
    padding_after_text = real[:, :-1] & ~real[:, 1:]
    if bool(padding_after_text.any()):
        rows = padding_after_text.any(-1).nonzero().flatten().tolist()
        raise ValueError(
            f"`attention_mask` has padding after the text in rows {rows}: a batch must be padded on the left, since "
            "each prompt is continued from its last position. Tokenize with `padding_side='left'` (the UniPose "
            "processor's default)."
        )


def _check_pose_sampling(pose_do_sample, pose_temperature, pose_top_k, pose_top_p) -> None:
    """Validate the pose sampling options under their own names (`None`: as for text)."""
    if pose_do_sample is not None and not isinstance(pose_do_sample, bool):
        raise TypeError(f"`pose_do_sample` must be True or False, got {pose_do_sample!r}.")
    for name, value in (("pose_temperature", pose_temperature), ("pose_top_p", pose_top_p)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Real)):
            raise TypeError(f"`{name}` must be a number, got {value!r} ({type(value).__name__}).")
    if pose_temperature is not None and not pose_temperature > 0:  # `not >` also refuses nan
        raise ValueError(
            f"`pose_temperature` must be > 0 (1.0 samples the codes as predicted, lower is sharper), got "
            f"{pose_temperature}. For the most likely codes, pass `pose_do_sample=False`."
        )
    if pose_top_p is not None and not 0 < pose_top_p <= 1:
        raise ValueError(f"`pose_top_p` must be in (0, 1] (1.0 keeps every code), got {pose_top_p}.")
    if pose_top_k is not None:
        if isinstance(pose_top_k, bool) or not isinstance(pose_top_k, numbers.Integral):
            raise TypeError(
                f"`pose_top_k` must be an int >= 0 (0 keeps every code), got {pose_top_k!r} "
                f"({type(pose_top_k).__name__})."
            )
        if pose_top_k < 0:
            raise ValueError(f"`pose_top_k` must be >= 0 (0 keeps every code), got {pose_top_k}.")


def _pose_warpers(
    generation_config: GenerationConfig,
    do_sample: bool,
    temperature,
    top_k,
    top_p,
    codebook_size: int,
    device: torch.device,
) -> LogitsProcessorList:
    """transformers' sampling warpers for the codes of a pose, in the order `generate` applies them to text:
    `temperature`, `top_k` and `top_p` left at `None` are the text ones, and the other warpers of the generation
    config (`top_h`, `min_p`, `typical_p`, `epsilon_cutoff`, `eta_cutoff`) apply to the codes as to text."""
    warpers = LogitsProcessorList()
    if not do_sample:
        return warpers
    config = generation_config
    temperature = config.temperature if temperature is None else temperature
    top_k = config.top_k if top_k is None else top_k
    top_p = config.top_p if top_p is None else top_p
    if temperature is not None and temperature != 1.0:
        warpers.append(TemperatureLogitsWarper(temperature))
    if config.top_h is not None:
        warpers.append(TopHLogitsWarper(top_h=config.top_h))
    if top_k is not None and top_k != 0:
        warpers.append(TopKLogitsWarper(min(top_k, codebook_size)))
    if top_p is not None and top_p < 1.0:
        warpers.append(TopPLogitsWarper(top_p))
    if config.min_p is not None:
        warpers.append(MinPLogitsWarper(min_p=config.min_p))
    if config.typical_p is not None and config.typical_p < 1.0:
        warpers.append(TypicalLogitsWarper(mass=config.typical_p))
    if config.epsilon_cutoff is not None and 0.0 < config.epsilon_cutoff < 1.0:
        warpers.append(EpsilonLogitsWarper(epsilon=config.epsilon_cutoff))
    if config.eta_cutoff is not None and 0.0 < config.eta_cutoff < 1.0:
        warpers.append(EtaLogitsWarper(epsilon=config.eta_cutoff, device=device))
    return warpers


def _resolve_synced_gpus(model: nn.Module, synced_gpus: bool | None) -> bool:
    """Whether this process steps in lockstep with its peers. Unset, as `generate` decides (under DeepSpeed
    ZeRO-3 or FSDP with several processes); never without an initialised process group (no peers to wait for)."""
    grouped = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
    if synced_gpus is None:
        return grouped and (is_deepspeed_zero3_enabled() or is_fsdp_managed_module(model))
    return bool(synced_gpus) and grouped


def _peers_unfinished(this_peer_finished: bool, synced_gpus: bool, device: torch.device) -> bool:
    """Whether decoding goes on: this process has unfinished rows or, under `synced_gpus`, any process has."""
    if not synced_gpus:
        return not this_peer_finished
    unfinished = torch.tensor(0.0 if this_peer_finished else 1.0, device=device)
    dist.all_reduce(unfinished, op=dist.ReduceOp.SUM)
    return unfinished.item() > 0


class _GrowingCacheLayer(DynamicLayer):
    """A [`DynamicLayer`] whose keys and values are views of buffers that double when full, so that a step writes
    its entries in place instead of copying the whole layer with `torch.cat`: in a batch, that copy grows with
    rows x length and costs as much as the step's attention. Whatever replaces `keys` and `values` (selecting
    rows, reordering, cropping) is honoured: a tensor that is not a view of the buffers is copied into new ones
    at the next update."""

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        super().lazy_initialization(key_states, value_states)
        self.key_buffer = self.value_buffer = None

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        length, new = self.get_seq_length(), key_states.shape[-2]
        if length and (self.keys._base is not self.key_buffer or self.values._base is not self.value_buffer):
            self.key_buffer = self.value_buffer = None  # replaced from outside: start new buffers from it
        if self.key_buffer is None or length + new > self.key_buffer.shape[-2]:
            capacity = 2 * (length + new)
            key_buffer = key_states.new_empty((*key_states.shape[:-2], capacity, key_states.shape[-1]))
            value_buffer = value_states.new_empty((*value_states.shape[:-2], capacity, value_states.shape[-1]))
            if length:
                key_buffer[..., :length, :] = self.keys
                value_buffer[..., :length, :] = self.values
            self.key_buffer, self.value_buffer = key_buffer, value_buffer
        self.key_buffer[..., length : length + new, :] = key_states
        self.value_buffer[..., length : length + new, :] = value_states
        self.keys = self.key_buffer[..., : length + new, :]
        self.values = self.value_buffer[..., : length + new, :]
        return self.keys, self.values


def _drop_unattended_positions(cache: DynamicCache, attention_mask: torch.Tensor) -> torch.Tensor | None:
    """Removes from `cache` and `attention_mask` `(batch, cache length)` the positions that no row attends to,
    and returns the mask (`None` once nothing is masked). A masked key weighs nothing in attention and positions
    are counted on the mask, so what every row computes stays the same, over a shorter cache. Caches with
    layers other than plain dynamic ones (sliding windows, quantized) are left as they are."""
    kept = attention_mask.bool().any(dim=0)
    if bool(kept.all()) or any(type(layer) not in (DynamicLayer, _GrowingCacheLayer) for layer in cache.layers):
        return attention_mask
    index = kept.nonzero().squeeze(-1)
    for layer in cache.layers:
        if layer.get_seq_length() > 0:
            layer.keys, layer.values = layer.keys.index_select(-2, index), layer.values.index_select(-2, index)
    attention_mask = attention_mask[:, index]
    return None if bool(attention_mask.all()) else attention_mask


def _with_growing_layers(cache: Cache | None) -> Cache | None:
    """`cache` with its empty plain [`DynamicLayer`]s (those `generate` creates) made [`_GrowingCacheLayer`]s."""
    if not isinstance(cache, DynamicCache) or cache.get_seq_length() > 0:
        return cache
    cache.layers = [
        _GrowingCacheLayer() if type(layer) is DynamicLayer and not layer.is_initialized else layer
        for layer in cache.layers
    ]
    if cache.layer_class_to_replicate is DynamicLayer:
        cache.layer_class_to_replicate = _GrowingCacheLayer
    return cache


class _GrowingSequences:
    """The prompts and the tokens each row has written after them, in a buffer that doubles when full, so that
    memory follows what is written, not the length limit.

    `tokens` (`torch.LongTensor` of shape `(batch, capacity)`): row `i` holds `lengths[i]` tokens, then `pad`.
    `lengths` stays on the host, where the decoding loop reads it at every step.
    """

    def __init__(self, prompts: torch.LongTensor, pad_token_id: int, room: int):
        batch_size, prompt_length = prompts.shape
        self.pad_token_id = pad_token_id
        self.tokens = prompts.new_full((batch_size, prompt_length + room), pad_token_id)
        self.tokens[:, :prompt_length] = prompts
        self.lengths = [prompt_length] * batch_size

    def append(self, rows: list[int], new: torch.LongTensor) -> None:
        """Write `new` `(len(rows), width)` after the tokens of each row of `rows` (in increasing order)."""
        width, device = new.shape[1], new.device
        starts = [self.lengths[row] for row in rows]
        capacity = self.tokens.shape[1]
        if max(starts) + width > capacity:
            grown = self.tokens.new_full((len(self.lengths), max(max(starts) + width, 2 * capacity)), self.pad_token_id)
            grown[:, :capacity] = self.tokens
            self.tokens = grown
        if len(set(starts)) == 1:  # all at the same place: a slice of the columns
            index = slice(None) if len(rows) == len(self.lengths) else torch.tensor(rows, device=device)
            self.tokens[index, starts[0] : starts[0] + width] = new
        else:
            positions = torch.tensor(starts, device=device)[:, None] + torch.arange(width, device=device)
            self.tokens[torch.tensor(rows, device=device)[:, None], positions] = new
        for row in rows:
            self.lengths[row] += width

    def by_length(self, rows: list[int]):
        """Yield `(group, ids)` for each length among the rows of `rows`: `group` the rows of that length, `ids`
        `(batch, length)` the first `length` tokens of every row (a view). A row of `group` is there exactly as
        it is, as it would be alone; the other rows only keep every row at its index in the batch (a logits
        processor or a stopping criterion may hold per-row state, such as the prompt padding that the
        repetition penalty skips), and what is computed for them is to be dropped."""
        groups = {}
        for row in rows:
            groups.setdefault(self.lengths[row], []).append(row)
        for length, group in groups.items():
            yield group, self.tokens[:, :length]

    def output(self) -> torch.LongTensor:
        """`(batch, longest)`: every row padded on the right."""
        return self.tokens[:, : max(self.lengths)]


def _unipose_decode(
    model: UniPoseForConditionalGeneration,
    input_ids: torch.LongTensor,
    logits_processor: LogitsProcessorList,
    stopping_criteria: StoppingCriteriaList,
    generation_config: GenerationConfig,
    synced_gpus: bool | None = None,
    streamer: BaseStreamer | None = None,
    pose_do_sample: bool | None = None,
    pose_temperature: float | None = None,
    pose_top_k: int | None = None,
    pose_top_p: float | None = None,
    **model_kwargs,
):
    """The decoding loop behind [`UniPoseForConditionalGeneration.generate`], called by `GenerationMixin.generate`
    once it has prepared the cache, the logits processors, the stopping criteria and the generation config. (It
    does not pass `streamer` and `synced_gpus` to a callable: [`UniPoseForConditionalGeneration.generate`] binds
    them.) The contracts it keeps are listed in that method's docstring.

    The state of each row (its pending token, whether it is finished) is kept on the host as Python lists: the
    loop branches on it at every step, and a handful of reads per step costs less than many small tensor ops.
    """
    config = model.config
    device = input_ids.device
    batch_size = input_ids.shape[0]
    batch = range(batch_size)
    num_tokens, codebook_size = config.num_pose_tokens, config.pose_codebook_size
    code_offset = config.pose_code_token_offset
    start_id, end_id = config.pose_start_token_id, config.pose_end_token_id

    # 0. Refuse what this loop cannot honour, before anything is streamed.
    _check_decoding_mode(generation_config)
    _check_stateless_processors(logits_processor)
    _check_pose_sampling(pose_do_sample, pose_temperature, pose_top_k, pose_top_p)
    attention_mask = model_kwargs.pop("attention_mask", None)
    _check_left_padded(attention_mask)
    if streamer is not None and batch_size != 1:
        raise ValueError(
            f"A `streamer` receives one sequence, got {batch_size} (prompts times `num_return_sequences`): stream "
            "one sequence at a time, or generate without a streamer."
        )
    if bool(pose_span_mask(input_ids[:, -1:], config).any()):
        raise ValueError("A prompt cannot end inside a pose span: close every `<p>` with its tokens and `</p>`.")
    pad_token_id = generation_config.pad_token_id
    if pad_token_id is None:
        pad_token_id = generation_config.eos_token_id
        pad_token_id = pad_token_id[0] if isinstance(pad_token_id, (list, tuple)) else pad_token_id
    if pad_token_id is None:
        raise ValueError("Generation needs a `pad_token_id` (or an `eos_token_id`) in the generation config.")
    pose_do_sample = generation_config.do_sample if pose_do_sample is None else pose_do_sample
    pose_warpers = _pose_warpers(
        generation_config, pose_do_sample, pose_temperature, pose_top_k, pose_top_p, codebook_size, device
    )
    synced_gpus = _resolve_synced_gpus(model, synced_gpus)

    # Text never writes what only a pose step may write.
    text_forbidden = torch.zeros(config.text_config.vocab_size, dtype=torch.bool, device=device)
    text_forbidden[config.pose_code_token_ids.start : config.pose_code_token_ids.stop] = True
    for token_id in (config.pose_query_token_id, config.pose_token_id, config.image_token_id, end_id):
        text_forbidden[token_id] = True

    cache = model_kwargs.pop(CACHE_NAME, None)
    _check_fresh_cache(cache)
    cache = _with_growing_layers(cache)
    if model_kwargs.get("inputs_embeds") is not None:
        raise ValueError(
            "UniPose generation reads the prompt from `input_ids` (the pose spans, and the ids it writes after "
            "them): pass `input_ids` without `inputs_embeds`."
        )
    input_ids = input_ids.long()  # the codes and tokens it writes are int64, as stock `generate` returns them
    for key in ("use_cache", "logits_to_keep", "position_ids", "cache_position", "inputs_embeds"):
        model_kwargs.pop(key, None)
    multimodal_inputs = {key: value for key, value in model_kwargs.items() if value is not None}

    sequences = _GrowingSequences(input_ids, pad_token_id, room=2 * (num_tokens + 2))
    pose_codes = [[] for _ in batch]
    pending = input_ids[:, -1].tolist()  # the token each row feeds next; `<p>`: a pose to write
    finished = [False] * batch_size
    stop_after_pose = [False] * batch_size  # a criterion fired on `<p>`: stop once the pose is written
    # The rows in the model's batch (and in the cache), in order: finished rows leave it (step 2), unless a hook
    # holds a value per row.
    active, slot = list(batch), {row: row for row in batch}
    dropped_rows = False
    keep_rows = _hooks_hold_rows(model, batch_size)
    # Positions each row has fed (`config.context_length` bounds them): a row stops when its next token would
    # not fit, and opens a pose only if `<p>` and its queries fit.
    max_positions = config.context_length or float("inf")
    fed = [input_ids.shape[1]] * batch_size if attention_mask is None else attention_mask.sum(-1).tolist()
    # Under a forced EOS, a row opens a pose only where `<p>`, the codes and `</p>` end before the last position,
    # which `ForcedEOSTokenLogitsProcessor` keeps for the EOS: up to this length.
    forced_eos = generation_config.forced_eos_token_id is not None and generation_config.max_length is not None
    last_pose_start = generation_config.max_length - (num_tokens + 2) - 1 if forced_eos else float("inf")

    def at_context_end(row: int) -> bool:
        """Whether the pending token of `row` cannot be fed: the language model has no position left for it."""
        if fed[row] + 1 <= max_positions:
            return False
        logger.warning_once(
            f"A sequence reached the language model's {max_positions} positions (`max_position_embeddings`) and "
            "stopped there, before `max_new_tokens` or another stopping criterion."
        )
        return True

    def stopped(rows: list[int]) -> set[int]:
        """The rows of `rows` that the stopping criteria stop, each judged on its own tokens."""
        rows_stopped = set()
        for group, ids in sequences.by_length(rows):
            done = torch.as_tensor(stopping_criteria(ids, None)).reshape(-1).expand(batch_size).tolist()
            rows_stopped.update(row for row in group if done[row])
        return rows_stopped

    def with_queries(step_ids: torch.LongTensor, step_mask: torch.Tensor, in_pose: list[int]):
        """Append to the step the queries of a pose for each row of `in_pose`, masked-out padding for the other
        active rows: `(len(active), k)` -> `(len(active), k + num_pose_tokens)`, ids and mask."""
        posing = torch.zeros((len(active), 1), dtype=torch.bool, device=device)
        posing[[slot[row] for row in in_pose]] = True
        queries = torch.where(posing, config.pose_query_token_id, pad_token_id).expand(-1, num_tokens)
        query_mask = posing.to(step_mask.dtype).expand(-1, num_tokens)
        return torch.cat([step_ids, queries], dim=-1), torch.cat([step_mask, query_mask], dim=-1)

    def write_poses(query_logits: torch.Tensor, rows: list[int], opened_in_prompt: bool) -> None:
        """Sample, record and stream the pose of each row of `rows` from the outputs of its queries
        `(len(rows), num_pose_tokens, vocab)`, over the code tokens only; then stop the rows that a criterion
        stops now or stopped on their `<p>`."""
        code_scores = query_logits[..., config.pose_code_token_ids.start : config.pose_code_token_ids.stop].float()
        code_scores = pose_warpers(None, code_scores.reshape(-1, codebook_size))
        codes = _sample_or_argmax(code_scores, pose_do_sample).view(-1, num_tokens)
        span = torch.cat([codes + code_offset, codes.new_full((codes.shape[0], 1), end_id)], dim=-1)
        sequences.append(rows, span)
        if streamer is not None:  # the pose as one unit, with its `<p>` unless the prompt streamed it
            opening = span.new_full((1, 0 if opened_in_prompt else 1), start_id)
            streamer.put(torch.cat([opening, span], dim=-1).cpu())
        rows_stopped = stopped(rows)
        for row, row_codes in zip(rows, codes):
            pose_codes[row].append(row_codes)
            pending[row] = end_id
            finished[row] = row in rows_stopped or stop_after_pose[row] or at_context_end(row)
            stop_after_pose[row] = False

    def write_text(text_logits: torch.Tensor, rows: list[int]) -> None:
        """Sample, record and stream the next token of each row of `rows` from its `text_logits`
        `(len(rows), vocab)`."""
        scores = text_logits.float().masked_fill(text_forbidden, float("-inf"))
        no_room_for_pose = [
            index
            for index, row in enumerate(rows)
            if fed[row] + 1 + num_tokens > max_positions or sequences.lengths[row] > last_pose_start
        ]
        if no_room_for_pose:  # near the end of the context (or of `max_length` under a forced EOS) only
            scores[no_room_for_pose, start_id] = float("-inf")
        if len(logits_processor):  # the processors see the whole batch and read each row's own history
            index = torch.tensor(rows, device=device)
            batch_scores = scores.new_zeros((batch_size, scores.shape[-1])).index_copy_(0, index, scores)
            groups = list(sequences.by_length(rows))
            processed = logits_processor(groups[0][1], batch_scores.clone() if len(groups) > 1 else batch_scores)
            for group, ids in groups[1:]:
                group_index = torch.tensor(group, device=device)
                processed[group_index] = logits_processor(ids, batch_scores.clone())[group_index]
            scores = processed[index]
        tokens = _sample_or_argmax(scores, generation_config.do_sample)  # (len(rows),)
        sequences.append(rows, tokens[:, None])
        opened = set()
        for row, token in zip(rows, tokens.tolist()):
            pending[row] = token
            if token == start_id:
                opened.add(row)
        if streamer is not None and not opened:  # a `<p>` waits to be streamed with its pose
            streamer.put(tokens.cpu())
        for row in stopped(rows):
            if row in opened:
                stop_after_pose[row] = True
            else:
                finished[row] = True
        for row in rows:
            finished[row] = finished[row] or at_context_end(row)

    def forward(ids: torch.LongTensor, mask, in_pose: list[int], opened_in_prompt: bool = False, **inputs) -> None:
        """One forward pass over `ids` `(len(active), width)` (whose last `1 + num_pose_tokens` positions are
        a token and the queries when `in_pose` has rows, else whose last position is a token), then steps 4
        and 5: the pose of each row of `in_pose`, and the next token of every other running row.

        The head is applied once, to the outputs that are read (the queries of the rows writing a pose, the
        last token of the rows writing text), not to the masked-out padding of the others."""
        nonlocal cache
        outputs = model.model(
            input_ids=ids, attention_mask=mask, past_key_values=cache, use_cache=True, return_dict=True, **inputs
        )
        cache = getattr(outputs, CACHE_NAME)
        hidden = outputs.last_hidden_state[:, -(1 + num_tokens) if in_pose else -1 :]
        posed = set(in_pose)
        in_text = [row for row in active if not finished[row] and row not in posed]
        text_slots, pose_slots = [slot[row] for row in in_text], [slot[row] for row in in_pose]
        if keep_rows:  # the head too sees one row per row of the batch (a hook's values are per row)
            head = model.lm_head(hidden)
            logits = torch.cat([head[text_slots, 0], head[pose_slots, 1:].flatten(0, 1)])
        else:
            queries = hidden[pose_slots, 1:]  # (len(in_pose), num_pose_tokens, hidden)
            logits = model.lm_head(torch.cat([hidden[text_slots, 0], queries.flatten(0, 1)]))
        del outputs, hidden
        if in_pose:  # 4. Poses, each streamed as one unit before the stopping criteria are asked.
            write_poses(logits[len(in_text) :].view(len(in_pose), num_tokens, -1), in_pose, opened_in_prompt)
        if in_text:  # 5. Text.
            write_text(logits[: len(in_text)], in_text)

    # 1. Prefill: the prompts, each one that ends with `<p>` followed by the queries of its pose (masked-out
    #    padding for the others), so that a pose asked for right away comes out of the same forward pass.
    if streamer is not None:
        streamer.put(input_ids.cpu())
    in_pose = [row for row in batch if pending[row] == start_id]
    for row in in_pose:
        fed[row] += num_tokens
    prefill_ids = input_ids
    if in_pose:
        prompt_mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        prefill_ids, prefill_mask = with_queries(input_ids, prompt_mask, in_pose)
        # Without padding anywhere the mask stays implicit (`None`), as `generate` leaves it.
        attention_mask = None if attention_mask is None and len(in_pose) == batch_size else prefill_mask
    forward(prefill_ids, attention_mask, in_pose, opened_in_prompt=True, **multimodal_inputs)
    cache_length = prefill_ids.shape[1]

    while _peers_unfinished(all(finished), synced_gpus, device):
        # 2. Finished rows leave the batch and the cache, so that they cost nothing more. (Unless none would be
        #    left: under `synced_gpus` a process whose rows are all finished steps on with them, feeding
        #    masked-out padding, until its peers are done.)
        #    The positions that no running row attends to any more (the queries of a pose written beside them,
        #    the padding of a longer prompt) leave the cache with them.
        running = [index for index, row in enumerate(active) if not finished[row]]
        if running and len(running) < len(active) and isinstance(cache, DynamicCache) and not keep_rows:
            cache.batch_select_indices(torch.tensor(running, device=device))
            active = [active[index] for index in running]
            slot, dropped_rows = {row: index for index, row in enumerate(active)}, True
            if attention_mask is not None:
                attention_mask = _drop_unattended_positions(cache, attention_mask[running])
                cache_length = cache.get_seq_length()

        # 3. One step. Every running row feeds its pending token; a row whose token is `<p>` feeds the queries of
        #    its pose after it, the others masked-out padding, so every row gets exactly what it would get alone.
        in_pose = [row for row in active if pending[row] == start_id and not finished[row]]
        for row in active:
            fed[row] += 0 if finished[row] else 1 + num_tokens * (row in in_pose)
        step_ids = [[pad_token_id if finished[row] else pending[row]] for row in active]
        step_ids = torch.tensor(step_ids, device=device)
        step_mask = torch.tensor([[int(not finished[row])] for row in active], device=device)
        if in_pose:
            step_ids, step_mask = with_queries(step_ids, step_mask, in_pose)
        # Without padding so far the mask stays implicit (`None`), as `generate` leaves it.
        if attention_mask is not None or not bool(step_mask.all()):
            if attention_mask is None:
                attention_mask = torch.ones((len(active), cache_length), dtype=torch.long, device=device)
            attention_mask = torch.cat([attention_mask, step_mask.to(attention_mask.dtype)], dim=-1)
        cache_length += step_ids.shape[1]
        forward(step_ids, attention_mask, in_pose)

    # 6. Outputs: right-padded sequences, and the poses each sequence wrote.
    output_ids = sequences.output()
    if not generation_config.return_dict_in_generate:
        return output_ids
    pose_codes = [torch.stack(codes) if codes else input_ids.new_zeros((0, num_tokens)) for codes in pose_codes]
    poses = _decode_poses(model, pose_codes, synced_gpus)
    cache = None if dropped_rows else cache  # rows left out of it would no longer match the sequences
    return UniPoseGenerateOutput(sequences=output_ids, pose_codes=pose_codes, poses=poses, **{CACHE_NAME: cache})


def _decode_poses(
    model: UniPoseForConditionalGeneration, pose_codes: list[torch.LongTensor], synced_gpus: bool
) -> list[torch.Tensor]:
    """Per sample, codes `(n_i, num_pose_tokens)` -> SMPL axis-angle `(n_i, num_joints, 3)` through the frozen
    tokenizer. Under `synced_gpus` each process calls the tokenizer exactly once (on a dummy pose if it has none),
    since its weights may be sharded across the processes."""
    if not synced_gpus:
        return [_decode_to_axis_angle(model, codes) for codes in pose_codes]
    codes = torch.cat(pose_codes)
    dummy = codes.new_zeros((1, model.config.num_pose_tokens))
    poses = model.pose_tokenizer.decode_to_axis_angle(codes if len(codes) else dummy)[: len(codes)]
    return list(poses.split([len(row_codes) for row_codes in pose_codes]))


def _decode_to_axis_angle(model: UniPoseForConditionalGeneration, codes: torch.LongTensor) -> torch.Tensor:
    """Codes `(n, num_pose_tokens)` -> SMPL axis-angle `(n, num_joints, 3)` through the frozen tokenizer."""
    if codes.shape[0] == 0:
        return torch.zeros((0, model.config.num_joints, 3), device=codes.device)
    return model.pose_tokenizer.decode_to_axis_angle(codes)


# `save_pretrained` copies this file and its relative imports next to the weights (`trust_remote_code=True`).
UniPoseForConditionalGeneration.register_for_auto_class("AutoModelForImageTextToText")

__all__ = [
    "UniPosePreTrainedModel",
    "UniPoseModel",
    "UniPoseForConditionalGeneration",
    "pose_bidirectional_mask",
    "pose_block_ids",
    "pose_query_positions",
    "pose_shift_labels",
    "pose_span_mask",
    "unipose_loss",
]
