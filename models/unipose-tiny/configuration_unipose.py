"""UniPose model configuration."""

from transformers import AutoConfig
from transformers.configuration_utils import PreTrainedConfig, SubConfigSpec, strict
from transformers.utils import logging

from .configuration_pose_vqvae import PoseVQVAEConfig


logger = logging.get_logger(__name__)


# CLIP ViT-L/14 at 336 px, the vision tower of LLaVA-1.6.
_CLIP_VIT_L_336 = {
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "patch_size": 14,
    "image_size": 336,
    "projection_dim": 768,
}
# The ViT-H backbone of HMR 2.0 / TokenHMR (256x192 input, patch 16, padding 2 in the patch embedding).
_POSE_VIT_H = {
    "image_size": (256, 192),
    "patch_size": (16, 16),
    "hidden_size": 1280,
    "num_hidden_layers": 32,
    "num_attention_heads": 16,
    "mlp_ratio": 4,
    "layer_norm_eps": 1e-6,
    "out_indices": [-1],
}
# Mistral-7B (the LLM of LLaVA-1.6-Mistral), with the UniPose vocabulary appended to its 32,000 tokens:
# <image>, <pose>, <pose_query>, <p>, </p>, then the 2,048 pose codes.
_MISTRAL_7B = {"vocab_size": 32000 + 5 + 2048, "sliding_window": None, "max_position_embeddings": 32768}
# Values of `UniPoseConfig.input_pose_attention`.
INPUT_POSE_ATTENTION_MODES = ("bidirectional", "causal")
# The fields of the tokens UniPose adds to the vocabulary besides the pose codes.
SPECIAL_TOKEN_FIELDS = (
    "image_token_id",
    "pose_token_id",
    "pose_query_token_id",
    "pose_start_token_id",
    "pose_end_token_id",
)


@strict
class UniPoseConfig(PreTrainedConfig):
    r"""
    Configuration of a [`UniPoseForConditionalGeneration`]: a causal language model (`text_config`) that reads
    images through a CLIP vision tower (`vision_config`) and a pose ViT (`pose_vision_config`, transformers'
    VitPose backbone), and reads and writes SMPL poses as discrete codes of a pose VQ-VAE
    (`pose_tokenizer_config`). The defaults describe the model of the UniPose paper (LLaVA-1.6-Mistral-7B,
    CLIP ViT-L/14-336, the ViT-H of TokenHMR, a tokenizer of 2,048 codes and 80 tokens per pose).

    A pose inside a sequence is always `<p>` followed by `num_pose_tokens` tokens and `</p>`. The tokens of a
    span are pose codes (`<pose_0>` ... contiguous from `pose_code_token_offset`), the placeholder of an input
    pose given as `pose_values` (`pose_token_id`), or the placeholder of a pose to be generated
    (`pose_query_token_id`, replaced by the learned query vectors). The tokens of a span to be generated
    (the run of `<pose_query>` tokens) attend to each other bidirectionally; whether the tokens of an input
    span (codes or `<pose>` placeholders) do as well is `input_pose_attention`. The markers `<p>` and `</p>`
    and all text are causal.

    Args:
        text_config (`dict` or `PreTrainedConfig`, *optional*):
            Config of the language model (any causal LM known to `AutoConfig`; Mistral-7B by default).
        vision_config (`dict` or `CLIPVisionConfig`, *optional*):
            Config of the CLIP vision tower.
        pose_vision_config (`dict` or `VitPoseBackboneConfig`, *optional*):
            Config of the pose ViT.
        pose_tokenizer_config (`dict` or `PoseVQVAEConfig`, *optional*):
            Config of the pose tokenizer (its `num_tokens` and `codebook_size` set the pose span length and
            the number of code tokens).
        image_token_id (`int`), pose_token_id (`int`), pose_query_token_id (`int`), pose_start_token_id (`int`),
        pose_end_token_id (`int`):
            Vocabulary ids of `<image>`, `<pose>`, `<pose_query>`, `<p>` and `</p>`.
        pose_code_token_offset (`int`):
            Vocabulary id of `<pose_0>`; code `k` is token `pose_code_token_offset + k`.
        vision_feature_layer (`int`, *optional*, defaults to -2):
            CLIP layer whose patch features are used (CLS dropped).
        pose_vision_feature_padding (`int`, *optional*, defaults to 2):
            Columns of zeros added on each side of the pose ViT's feature map (16x12 -> 16x16) before it is
            resized to CLIP's grid.
        projector_hidden_act (`str`, *optional*, defaults to `"gelu"`):
            Activation of the two-layer projector.
        multimodal_projector_bias (`bool`, *optional*, defaults to `True`):
            Whether the projector's linear layers have biases.
        input_pose_attention (`str`, *optional*, defaults to `"bidirectional"`):
            Attention inside the span of an input pose (pose codes or `<pose>` placeholders):
            `"bidirectional"` (every token of the span sees the whole span) or `"causal"` (like text).
            Spans of `<pose_query>` tokens are bidirectional either way, since all the codes of a pose are
            written in one step. The published UniPose weights were trained with `"causal"`; a model trained
            by this project records the setting it was trained with. The default is what every checkpoint
            saved before this field existed was trained with, so that their configs, which lack it, keep
            their behaviour.

    Example:

    ```python
    >>> from unipose import UniPoseConfig, UniPoseForConditionalGeneration
    >>> config = UniPoseConfig()  # the paper's sizes
    >>> config.num_pose_tokens, config.pose_codebook_size, config.image_seq_length
    (80, 2048, 576)
    ```"""

    model_type = "unipose"
    sub_configs_defaults = {
        "text_config": SubConfigSpec(config_class=AutoConfig, model_type="mistral", init_kwargs=_MISTRAL_7B),
        "vision_config": SubConfigSpec(
            config_class=AutoConfig, model_type="clip_vision_model", init_kwargs=_CLIP_VIT_L_336
        ),
        "pose_vision_config": SubConfigSpec(
            config_class=AutoConfig, model_type="vitpose_backbone", init_kwargs=_POSE_VIT_H
        ),
        "pose_tokenizer_config": SubConfigSpec(config_class=PoseVQVAEConfig),
    }

    text_config: dict | PreTrainedConfig | None = None
    vision_config: dict | PreTrainedConfig | None = None
    pose_vision_config: dict | PreTrainedConfig | None = None
    pose_tokenizer_config: dict | PreTrainedConfig | None = None
    image_token_id: int = 32000
    pose_token_id: int = 32001
    pose_query_token_id: int = 32002
    pose_start_token_id: int = 32003
    pose_end_token_id: int = 32004
    pose_code_token_offset: int = 32005
    vision_feature_layer: int = -2
    pose_vision_feature_padding: int = 2
    projector_hidden_act: str = "gelu"
    multimodal_projector_bias: bool = True
    input_pose_attention: str = "bidirectional"
    tie_word_embeddings: bool = False

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        # Every Auto class resolves to the same files of a saved checkpoint (`trust_remote_code=True`); the
        # model classes all give the generating model.
        if getattr(self, "auto_map", None) is None:
            self.auto_map = {
                "AutoConfig": "configuration_unipose.UniPoseConfig",
                "AutoModel": "modeling_unipose.UniPoseForConditionalGeneration",
                "AutoModelForCausalLM": "modeling_unipose.UniPoseForConditionalGeneration",
                "AutoModelForImageTextToText": "modeling_unipose.UniPoseForConditionalGeneration",
                "AutoProcessor": "processing_unipose.UniPoseProcessor",
            }
        self.check_fields()

    @property
    def num_pose_tokens(self) -> int:
        """Tokens per pose span (80 in the paper), from the pose tokenizer."""
        return self.pose_tokenizer_config.num_tokens

    @property
    def pose_codebook_size(self) -> int:
        """Number of pose-code tokens (2,048 in the paper), from the pose tokenizer."""
        return self.pose_tokenizer_config.codebook_size

    @property
    def context_length(self) -> int | None:
        """The longest sequence the language model takes: its `max_position_embeddings`, or `None` (no bound) when
        its RoPE parameters stretch the positions beyond the trained context (a `rope_type` other than
        `"default"`, or an `original_max_position_embeddings`): the configuration then sets the length."""
        text_config = self.text_config
        rope = getattr(text_config, "rope_parameters", None) or {}
        if rope.get("rope_type", "default") != "default" or "original_max_position_embeddings" in rope:
            return None
        return getattr(text_config, "max_position_embeddings", None)

    @property
    def pose_code_token_ids(self) -> range:
        """Vocabulary ids of the pose codes: code `k` is the token `pose_code_token_offset + k`."""
        return range(self.pose_code_token_offset, self.pose_code_token_offset + self.pose_codebook_size)

    @property
    def special_token_ids(self) -> dict[str, int]:
        """Vocabulary ids of the tokens UniPose adds besides the codes (`<image>`, `<pose>`, `<pose_query>`, `<p>`,
        `</p>`), by field name."""
        return {name: getattr(self, name) for name in SPECIAL_TOKEN_FIELDS}

    @property
    def num_joints(self) -> int:
        return self.pose_tokenizer_config.num_joints

    @property
    def pose_up_axis(self) -> str:
        """Vertical axis of the world of the poses the model reads and writes (`"y"`: SMPL's, `"z"`: AMASS's, as
        in the published UniPose), from the pose tokenizer."""
        return self.pose_tokenizer_config.up_axis

    @property
    def image_grid_size(self) -> int:
        """Side of CLIP's patch grid (24 for ViT-L/14 at 336 px); every image becomes `image_grid_size**2` tokens."""
        return self.vision_config.image_size // self.vision_config.patch_size

    @property
    def image_seq_length(self) -> int:
        return self.image_grid_size**2

    def validate_architecture(self):
        super().validate_architecture()
        self.check_fields()

    def check_fields(self):
        """Cross-field checks; each `ValueError` names the field to change. Run at construction (so that a bad
        config raises a plain `ValueError`) and by `validate()`."""
        vocab_size = self.text_config.vocab_size
        code_ids = self.pose_code_token_ids
        special = self.special_token_ids
        for name, token_id in special.items():
            if not 0 <= token_id < vocab_size:
                raise ValueError(f"`{name}`={token_id} is outside the vocabulary of `text_config` (size {vocab_size}).")
            if token_id in code_ids:
                raise ValueError(
                    f"`{name}`={token_id} falls inside the pose-code range [{code_ids.start}, {code_ids.stop}) "
                    "set by `pose_code_token_offset` and the tokenizer's `codebook_size`."
                )
        if len(set(special.values())) != len(special):
            raise ValueError(f"The special token ids must be distinct, got {special}.")
        if code_ids.start < 0 or code_ids.stop > vocab_size:
            raise ValueError(
                f"The pose codes need ids [{code_ids.start}, {code_ids.stop}) (`pose_code_token_offset`="
                f"{self.pose_code_token_offset}, codebook_size={self.pose_codebook_size}), but `text_config` has "
                f"only {vocab_size} tokens: raise `text_config.vocab_size`."
            )
        if getattr(self.text_config, "sliding_window", None) is not None:
            raise ValueError(
                f"`text_config.sliding_window`={self.text_config.sliding_window}: the pose-span attention mask is "
                "built for full attention; set `text_config.sliding_window=None`."
            )
        if self.pose_vision_feature_padding < 0:
            raise ValueError(f"`pose_vision_feature_padding` must be >= 0, got {self.pose_vision_feature_padding}.")
        if self.input_pose_attention not in INPUT_POSE_ATTENTION_MODES:
            raise ValueError(
                f"`input_pose_attention` must be one of {INPUT_POSE_ATTENTION_MODES}, got "
                f"{self.input_pose_attention!r}."
            )


UniPoseConfig.register_for_auto_class()

__all__ = ["UniPoseConfig", "PoseVQVAEConfig"]
