"""Convert the published UniPose checkpoints into a UniPose checkpoint of this project.

The published model is spread over several downloads, all of which the user supplies:

| source | what it holds | argument |
| --- | --- | --- |
| LLaVA-1.6-Mistral-7B | the language model, the CLIP tower, a base tokenizer | `--base` |
| the UniPose folder | `config.json`, the tokenizer with the pose tokens, `non_lora_trainables.bin` (projector, full embedding and output matrices), the LoRA adapter | `--unipose` |
| the pose tokenizer | a PyTorch Lightning checkpoint of the pose VQ-VAE | `--pose-tokenizer` |
| TokenHMR | a checkpoint whose `backbone.*` weights are the pose ViT | `--pose-vit` |

Every weight of every source is mapped by [`KEY_MAPPING`] (regex on `source:key` -> our name, or `None`
to drop it on purpose); a key that no rule matches stops the conversion, and the report lists what was
dropped. Three mappings are more than a rename and have their own functions: the LoRA deltas are merged
into the weights they adapt (the language model's, and the CLIP tower's when PEFT put LoRA there), the fused
`qkv` of the pose ViT is split into transformers' query/key/value, and the vocabulary is remapped (the released
`<pose_id_k>` rows become `<pose_k>`, `<pose_id_2048>` / `<pose_id_2049>` become `<p>` / `</p>`, other added
tokens such as `<im_start>` keep their names, and the last 80 rows, `<pose_query_0..79>`, become the separate
`pose_queries` parameter). Every size is read from the configs and the weights; every setting of the release's
config is carried, or refused, or listed in the report with the reason it does not change the outputs. Loading is
strict and every shape is checked. Pickled files are read with `weights_only=True`.

The converted model computes what the release computes, which `unipose verify` checks against outputs recorded with
the authors' program (`parity/README.md`):

    unipose convert --base llava-v1.6-mistral-7b --unipose unipose-release --pose-tokenizer vqvae.ckpt \\
        --pose-vit tokenhmr.ckpt --out unipose-hf [--dtype bfloat16] [--verify reference.safetensors]
"""

from __future__ import annotations

import copy
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file
from tokenizers import normalizers
from transformers import AutoTokenizer, MistralConfig, PreTrainedTokenizerFast
from transformers.utils import logging

from .assembly import processor_for_config, set_generation_special_tokens
from .configuration_unipose import UniPoseConfig
from .files import staged_directory
from .model_card import write_model_card
from .modeling_unipose import UniPoseForConditionalGeneration
from .tokenization import UNIPOSE_CHAT_TEMPLATE, add_unipose_tokens

logger = logging.get_logger(__name__)

PathLike = str | os.PathLike

# The released vocabulary: `<pose_id_0..2047>` are the codes, `<pose_id_2048>` / `<pose_id_2049>` the span
# markers, `<pose_query_0..79>` the query rows (the last rows of the embedding matrix).
RELEASE_CODE_TOKEN = "<pose_id_{}>"
RELEASE_QUERY_TOKEN = "<pose_query_{}>"
# The release writes every image of a prompt as `<im_start><image><im_end>`.
RELEASE_IMAGE_START, RELEASE_IMAGE_END = "<im_start>", "<im_end>"

# Each row: a regular expression on "source:key", then our name (with the expression's groups), or `-` for a key
# dropped on purpose; `#` starts a comment. The only place where the release's names appear.
_KEY_TABLE = r"""
# --- LLaVA-1.6-Mistral-7B, original layout
base:model\.layers\.(.+)                                        model.language_model.layers.\1
base:model\.norm\.(.+)                                          model.language_model.norm.\1
base:model\.embed_tokens\.weight                                -  # superseded by the UniPose embedding (trainables)
base:lm_head\.weight                                            -  # superseded by the UniPose output matrix (trainables)
base:model\.vision_tower\.vision_tower\.vision_model\.embeddings\.position_ids  -  # a buffer
base:model\.vision_tower\.vision_tower\.vision_model\.(.+)      model.vision_tower.\1
base:model\.mm_projector\..+                                    -  # LLaVA's 1024-wide projector; UniPose trains its own
base:model\.image_newline                                       -  # LLaVA-NeXT's any-resolution separator, unused by UniPose
# --- LLaVA-1.6-Mistral-7B, transformers layout (llava-hf)
base:(?:model\.)?language_model\.(?:model\.)?layers\.(.+)       model.language_model.layers.\1
base:(?:model\.)?language_model\.(?:model\.)?norm\.(.+)         model.language_model.norm.\1
base:(?:model\.)?language_model\.(?:model\.)?embed_tokens\.weight  -
base:(?:language_model\.)?lm_head\.weight                       -
base:(?:model\.)?vision_tower\.vision_model\.embeddings\.position_ids  -
base:(?:model\.)?vision_tower\.vision_model\.(.+)               model.vision_tower.\1
base:(?:model\.)?multi_modal_projector\..+                      -
base:(?:model\.)?image_newline                                  -
# --- UniPose non-LoRA trainables
trainables:base_model\.model\.model\.mm_projector\.0\.(weight|bias)  model.multi_modal_projector.linear_1.\1
trainables:base_model\.model\.model\.mm_projector\.2\.(weight|bias)  model.multi_modal_projector.linear_2.\1
trainables:base_model\.model\.model\.embed_tokens\.weight       model.language_model.embed_tokens.weight
trainables:base_model\.model\.lm_head\.weight                   lm_head.weight
# --- UniPose LoRA adapter (merged into the weight it adapts)
lora:base_model\.model\.model\.layers\.(.+)\.lora_[AB]\.weight  model.language_model.layers.\1.weight
# PEFT places LoRA on the CLIP tower's `q_proj` / `k_proj` / `v_proj` too when the targets are given by name.
lora:base_model\.model\.model\.vision_tower\.vision_tower\.vision_model\.(.+)\.lora_[AB]\.weight  model.vision_tower.\1.weight
# --- Pose VQ-VAE (Lightning `state_dict`)
vqvae:encoder\.encoder\.0\.(weight|bias)                        model.pose_tokenizer.encoder.conv_in.\1
vqvae:encoder\.encoder\.3\.(weight|bias)                        model.pose_tokenizer.encoder.resample_blocks.0.conv.\1
vqvae:encoder\.encoder\.6\.(weight|bias)                        model.pose_tokenizer.encoder.resample_blocks.1.conv.\1
vqvae:encoder\.encoder\.9\.(weight|bias)                        model.pose_tokenizer.encoder.resample_blocks.2.conv.\1
vqvae:encoder\.encoder\.11\.(weight|bias)                       model.pose_tokenizer.encoder.downsample.\1
vqvae:encoder\.encoder\.12\.model\.(\d+)\.conv([12])\.(weight|bias)  model.pose_tokenizer.encoder.residual_stack.blocks.\1.conv\2.\3
vqvae:encoder\.encoder\.13\.(weight|bias)                       model.pose_tokenizer.encoder.conv_out.\1
vqvae:quantizer\.codebook                                       model.pose_tokenizer.quantizer.codebook
vqvae:decoder\.decoder\.0\.(weight|bias)                        model.pose_tokenizer.decoder.conv_in.\1
vqvae:decoder\.decoder\.3\.(weight|bias)                        model.pose_tokenizer.decoder.resample_blocks.0.conv.\1
vqvae:decoder\.decoder\.6\.(weight|bias)                        model.pose_tokenizer.decoder.resample_blocks.1.conv.\1
vqvae:decoder\.decoder\.9\.(weight|bias)                        model.pose_tokenizer.decoder.resample_blocks.2.conv.\1
vqvae:decoder\.decoder\.12\.(weight|bias)                       model.pose_tokenizer.decoder.resample_blocks.3.conv.\1
vqvae:decoder\.decoder\.14\.model\.(\d+)\.conv([12])\.(weight|bias)  model.pose_tokenizer.decoder.residual_stack.blocks.\1.conv\2.\3
vqvae:decoder\.decoder\.15\.(weight|bias)                       model.pose_tokenizer.decoder.conv_mid.\1
vqvae:decoder\.decoder\.16\.(weight|bias)                       model.pose_tokenizer.decoder.conv_out.\1
vqvae:loss\..+                                                  -  # the training loss's own tensors (the release's loader skips them too)
# --- TokenHMR's ViT-H
vit:backbone\.patch_embed\.proj\.(weight|bias)                  model.pose_vision_tower.embeddings.patch_embeddings.projection.\1
vit:backbone\.pos_embed                                         model.pose_vision_tower.embeddings.position_embeddings
vit:backbone\.blocks\.(\d+)\.norm1\.(weight|bias)               model.pose_vision_tower.encoder.layer.\1.layernorm_before.\2
vit:backbone\.blocks\.(\d+)\.attn\.qkv\.(weight|bias)           model.pose_vision_tower.encoder.layer.\1.attention.attention.qkv.\2
vit:backbone\.blocks\.(\d+)\.attn\.proj\.(weight|bias)          model.pose_vision_tower.encoder.layer.\1.attention.output.dense.\2
vit:backbone\.blocks\.(\d+)\.norm2\.(weight|bias)               model.pose_vision_tower.encoder.layer.\1.layernorm_after.\2
vit:backbone\.blocks\.(\d+)\.mlp\.(fc[12])\.(weight|bias)       model.pose_vision_tower.encoder.layer.\1.mlp.\2.\3
vit:backbone\.last_norm\.(weight|bias)                          model.pose_vision_tower.layernorm.\1
vit:(?!backbone\.).+                                            -  # TokenHMR's SMPL head, discriminator, ...: not part of UniPose
"""


def _read_key_table(table: str) -> list[tuple[str, str | None]]:
    mapping = []
    for row in table.strip().splitlines():
        if not row.startswith("#"):
            pattern, name = row.split("#", 1)[0].split()
            mapping.append((pattern, None if name == "-" else name))
    return mapping


KEY_MAPPING: list[tuple[str, str | None]] = _read_key_table(_KEY_TABLE)
_COMPILED_MAPPING = [(re.compile(pattern), replacement) for pattern, replacement in KEY_MAPPING]


def map_key(key: str) -> tuple[bool, str | None]:
    """`(matched, new_name)` for a `source:key`; `new_name` is None for a key dropped on purpose."""
    for pattern, replacement in _COMPILED_MAPPING:
        if pattern.fullmatch(key):
            return True, None if replacement is None else pattern.sub(replacement, key)
    return False, None


@dataclass
class ConversionReport:
    """What a conversion did with every source weight."""

    mapped: dict[str, str] = field(default_factory=dict)  # source key -> our key
    dropped: list[str] = field(default_factory=list)
    merged_lora_modules: list[str] = field(default_factory=list)
    filled: dict[str, str] = field(default_factory=dict)  # our key -> how it was filled without a source
    settings: dict[str, str] = field(default_factory=dict)  # a setting of the release -> how it was handled

    def to_dict(self) -> dict:
        return {
            "num_mapped": len(self.mapped),
            "dropped": sorted(self.dropped),
            "merged_lora_modules": sorted(self.merged_lora_modules),
            "filled_without_source": self.filled,
            "release_settings": self.settings,
        }


# ----------------------------------------------------------------------------------------------------------------------
# Reading the sources
# ----------------------------------------------------------------------------------------------------------------------


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"{what} not found at {path}.")
    return path


def _load_pickle(path: Path) -> dict:
    """A PyTorch pickle, read with `weights_only=True` (no code from the file is ever run)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - re-raised with the file named
        raise ValueError(
            f"Could not read {path} with `torch.load(weights_only=True)`: {error}. The converter never unpickles "
            "arbitrary objects; re-save the file's tensors (e.g. `torch.save(ckpt['state_dict'], ...)`)."
        ) from error


def _load_weights(path: Path) -> dict[str, torch.Tensor]:
    """All tensors of a file or a folder of `.safetensors` / `.bin` shards."""
    files = [path] if path.is_file() else sorted(path.glob("*.safetensors")) or sorted(path.glob("*.bin"))
    files = [f for f in files if not f.name.startswith(("training_args", "optimizer"))]
    if not files:
        raise FileNotFoundError(f"No `.safetensors` or `.bin` weight files in {path}.")
    weights: dict[str, torch.Tensor] = {}
    for file in files:
        weights.update(load_file(file) if file.suffix == ".safetensors" else _load_pickle(file))
    return weights


def _state_dict(checkpoint: dict, path: Path) -> dict[str, torch.Tensor]:
    state = checkpoint.get("state_dict", checkpoint)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} holds no `state_dict` of tensors.")
    return state


def _base_tokenizer(base: Path, legacy: bool):
    """The base vocabulary as a fast tokenizer that splits text as the release's slow tokenizer does.

    transformers 4's slow, "legacy" Llama tokenizer hands every piece of text between two added tokens to
    sentencepiece on its own, which puts a word prefix `▁` in front of each piece even when it starts with a space
    (` in` -> `▁`, `▁in`). transformers 5's Llama tokenizer does not, and does not keep the setting when saved. The
    converted tokenizer therefore carries the legacy splitting in its own `tokenizer.json` (a `▁` prepended to, and
    every space replaced in, each piece: the normalizer of the Llama fast tokenizers of that time), under the
    generic fast-tokenizer class, which loads that file as it is.
    """
    tokenizer = AutoTokenizer.from_pretrained(base)
    if not legacy:
        return tokenizer
    backend = copy.deepcopy(tokenizer.backend_tokenizer)
    backend.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    backend.pre_tokenizer = None
    kept = {name: getattr(tokenizer, name) for name in ("bos_token", "eos_token", "unk_token", "pad_token")}
    return PreTrainedTokenizerFast(tokenizer_object=backend, model_max_length=tokenizer.model_max_length, **kept)


def read_sources(base: PathLike, unipose: PathLike, pose_tokenizer: PathLike, pose_vit: PathLike) -> dict:
    """Every source tensor, keyed `source:key`, plus the release's configuration and tokenizer."""
    base, unipose = Path(base), Path(unipose)
    pose_tokenizer, pose_vit = Path(pose_tokenizer), Path(pose_vit)
    _require(base, "The LLaVA-1.6-Mistral-7B folder (`--base`)")
    _require(unipose, "The UniPose release folder (`--unipose`)")
    weights: dict[str, torch.Tensor] = {}
    weights.update({f"base:{k}": v for k, v in _load_weights(base).items()})
    trainables = _load_pickle(_require(unipose / "non_lora_trainables.bin", "`non_lora_trainables.bin`"))
    weights.update({f"trainables:{k}": v for k, v in trainables.items()})
    adapter_file = next(
        (unipose / name for name in ("adapter_model.safetensors", "adapter_model.bin") if (unipose / name).exists()),
        None,
    )
    if adapter_file is None:
        raise FileNotFoundError(f"No LoRA adapter (`adapter_model.safetensors` or `.bin`) in {unipose}.")
    weights.update({f"lora:{k}": v for k, v in _load_weights(adapter_file).items()})
    adapter_config = json.loads(_require(unipose / "adapter_config.json", "`adapter_config.json`").read_text())
    vqvae = _state_dict(_load_pickle(_require(pose_tokenizer, "The pose VQ-VAE checkpoint")), pose_tokenizer)
    weights.update({f"vqvae:{k}": v for k, v in vqvae.items()})
    vit = _state_dict(_load_pickle(_require(pose_vit, "The TokenHMR checkpoint")), pose_vit)
    weights.update({f"vit:{k}": v for k, v in vit.items()})
    config = json.loads(_require(unipose / "config.json", "The UniPose `config.json`").read_text())
    # The release reads its tokenizer with transformers 4's slow `LlamaTokenizer` (`use_fast=False`), which is
    # "legacy" (a word prefix `▁` before the text after every added token) unless its config says otherwise;
    # transformers 5 defaults to the opposite, so the setting is made explicit.
    tokenizer_config_file = unipose / "tokenizer_config.json"
    tokenizer_config = json.loads(tokenizer_config_file.read_text()) if tokenizer_config_file.exists() else {}
    slow_llama = tokenizer_config.get("tokenizer_class", "").removesuffix("Fast") == "LlamaTokenizer"
    base_tokenizer = _base_tokenizer(base, legacy=slow_llama and tokenizer_config.get("legacy", True))
    return {
        "weights": weights,
        "adapter_config": adapter_config,
        "config": config,
        "release_tokenizer": AutoTokenizer.from_pretrained(unipose),
        "base_tokenizer": base_tokenizer,
    }


# ----------------------------------------------------------------------------------------------------------------------
# The conversion
# ----------------------------------------------------------------------------------------------------------------------


# The release's LLM config (LLaVA's `llava_mistral`): the fields transformers' `MistralConfig` expresses are carried;
# every other field is listed here with what the converter does with it and why. A field in neither list is
# reported as unknown (and logged); values that the converted model could not reproduce stop the conversion.
CARRIED_TEXT_FIELDS = (
    "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
    "head_dim", "hidden_act", "max_position_embeddings", "initializer_range", "rms_norm_eps", "use_cache",
    "tie_word_embeddings", "bos_token_id", "eos_token_id", "pad_token_id", "attention_dropout",
)
NOT_CARRIED_TEXT_FIELDS = {
    "vocab_size": "replaced by the converted vocabulary's size",
    "rope_theta": "carried as `rope_parameters['rope_theta']`",
    "rope_scaling": "carried as `rope_parameters`",
    "sliding_window": (
        "not applied by the release: its UniPose attention mask is built without the window, so the converted "
        "model uses full attention (`sliding_window=None`) as the release computes"
    ),
    "mm_vision_select_layer": "carried as `vision_feature_layer`",
    "mm_hidden_size": "not read: the projector's weights must read CLIP's width + the pose ViT's, which is checked; "
    "the release's own loader sizes the projector from its weights too, as the saved value can be CLIP's width "
    "alone (LLaVA's `initialize_vision_modules` writes it after the training script sets the fused width)",
    "mm_vision_tower": "names the CLIP tower, whose sizes are read from its config or its weights",
    "mm_projector_type": "must be `mlp2x_gelu`, UniPose's projector",
    "mm_vision_select_feature": "must be `patch` (CLS dropped), as UniPose's image features",
    "mm_patch_merge_type": "LLaVA-NeXT's any-resolution merge, which UniPose's image path does not use",
    "image_aspect_ratio": "LLaVA-NeXT's any-resolution tiling, which UniPose's image path does not use",
    "image_grid_pinpoints": "LLaVA-NeXT's any-resolution tiling, which UniPose's image path does not use",
    "mm_use_im_start_end": "LLaVA's learned image markers; UniPose writes `<im_start>`/`<im_end>` as prompt text",
    "mm_use_im_patch_token": "unused by UniPose",
    "tune_mm_mlp_adapter": "a training switch",
    "freeze_mm_mlp_adapter": "a training switch",
    "unfreeze_mm_vision_tower": "a training switch",
    "mm_projector_lr": "a training setting",
    "mm_vision_tower_lr": "a training setting",
    "tokenizer_model_max_length": "the converted tokenizer's `model_max_length`; the release also cuts longer "
    "prompts, which the converted model leaves to the caller (`truncation=True`)",
    "tokenizer_padding_side": "the processor pads on the left, as the release's inference",
    "use_mm_proj": "always true for UniPose",
    "img_start_token_id": "ids of the release's vocabulary; the tokens themselves are carried",
    "img_end_token_id": "ids of the release's vocabulary; the tokens themselves are carried",
    "architectures": "LLaVA's class name", "model_type": "LLaVA's model type", "_name_or_path": "a path",
    "torch_dtype": "the dtype is chosen at conversion (`--dtype`)", "dtype": "the dtype is chosen at conversion",
    "transformers_version": "the writer's version", "_attn_implementation": "chosen at load time",
}


def _refuse(field: str, value, expected: str) -> None:
    raise ValueError(
        f"The release's config has `{field}`={value!r}; the converter {expected}. Converting it would give a "
        "model that does not compute what the release computes."
    )


def _text_config(release_config: dict, vocab_size: int, report: ConversionReport) -> MistralConfig:
    """The language model's config: every field that changes the computation is carried or refused."""
    if release_config.get("mm_projector_type", "mlp2x_gelu") != "mlp2x_gelu":
        _refuse("mm_projector_type", release_config["mm_projector_type"], "supports only `mlp2x_gelu`")
    if release_config.get("mm_vision_select_feature", "patch") != "patch":
        _refuse("mm_vision_select_feature", release_config["mm_vision_select_feature"], "supports only `patch`")
    if release_config.get("attention_bias") or release_config.get("mlp_bias"):
        _refuse("attention_bias / mlp_bias", True, "knows Mistral without biases")
    kept = {k: release_config[k] for k in CARRIED_TEXT_FIELDS if release_config.get(k) is not None}
    rope = {"rope_type": "default", "rope_theta": float(release_config.get("rope_theta", 10000.0))}
    scaling = release_config.get("rope_scaling")
    if scaling:
        rope.update({k: v for k, v in scaling.items() if k != "type"}, rope_type=scaling.get("rope_type", scaling.get("type")))
    for key, value in release_config.items():
        if key in CARRIED_TEXT_FIELDS or value is None:
            continue
        reason = NOT_CARRIED_TEXT_FIELDS.get(key)
        if reason is None:
            reason = "unknown to the converter; not part of UniPose's computation as far as the converter knows"
            logger.warning(f"The release's config field `{key}`={value!r} is not converted: {reason}.")
        report.settings[f"config.json:{key}"] = reason
    return MistralConfig(**kept, vocab_size=vocab_size, rope_parameters=rope, sliding_window=None)


def _count_layers(weights: dict, pattern: str) -> int:
    indices = {int(m.group(1)) for key in weights if (m := re.fullmatch(pattern, key))}
    if not indices or indices != set(range(len(indices))):
        raise ValueError(f"Cannot count the layers matching `{pattern}` in the weights: found indices {sorted(indices)}.")
    return len(indices)


def _attention_heads(width: int, what: str, given: int | None, report: ConversionReport) -> int:
    """Heads are not written in any released weight; towers of UniPose's kind use heads 64 wide (ViT-H's 80)."""
    if given is not None:
        return given
    heads = 16 if width == 1280 else width // 64
    if heads < 1 or width % heads:
        raise ValueError(f"The {what} is {width} wide; give its number of attention heads explicitly.")
    report.settings[f"{what}.num_attention_heads"] = (
        f"not in the release's files; {heads} assumed ({'ViT-H' if width == 1280 else 'heads 64 wide'})"
    )
    return heads


def _clip_config(weights: dict, release_config: dict, folders: list[Path], num_heads: int | None, report) -> dict:
    """CLIP's config: from the folder `mm_vision_tower` names when there is one, else read off the weights."""
    prefix = "base:model.vision_tower.vision_tower.vision_model."
    if f"{prefix}embeddings.patch_embedding.weight" not in weights:
        prefix = next(
            (p for p in ("base:model.vision_tower.vision_model.", "base:vision_tower.vision_model.")
             if f"{p}embeddings.patch_embedding.weight" in weights),
            None,
        )
        if prefix is None:
            raise ValueError("The base checkpoint (`--base`) holds no CLIP vision tower weights.")
    patch = weights[f"{prefix}embeddings.patch_embedding.weight"]
    positions = weights[f"{prefix}embeddings.position_embedding.weight"].shape[0]
    grid = round((positions - 1) ** 0.5)
    if grid * grid != positions - 1:
        raise ValueError(f"CLIP's position embedding has {positions} rows, not 1 + a square grid.")
    from_weights = {
        "hidden_size": patch.shape[0],
        "patch_size": patch.shape[-1],
        "image_size": grid * patch.shape[-1],
        "num_hidden_layers": _count_layers(weights, re.escape(prefix) + r"encoder\.layers\.(\d+)\..+"),
        "intermediate_size": weights[f"{prefix}encoder.layers.0.mlp.fc1.weight"].shape[0],
    }
    tower = release_config.get("mm_vision_tower") or ""
    config_file = next((f / tower / "config.json" for f in folders if tower and (f / tower / "config.json").is_file()), None)
    if config_file is not None:
        written = json.loads(config_file.read_text())
        written = written.get("vision_config", written)
        for key, value in from_weights.items():
            if key in written and written[key] != value:
                raise ValueError(f"{config_file} has {key}={written[key]}, but the CLIP weights say {value}.")
        heads = written["num_attention_heads"]
        extra = {k: written[k] for k in ("hidden_act", "layer_norm_eps") if k in written}
    else:
        heads = _attention_heads(from_weights["hidden_size"], "vision_config", num_heads, report)
        extra = {"hidden_act": "quick_gelu", "layer_norm_eps": 1e-5}  # every OpenAI CLIP tower
    return {**from_weights, **extra, "num_attention_heads": heads, "projection_dim": from_weights["hidden_size"]}


def _pose_vision_config(weights: dict, num_heads: int | None, report: ConversionReport) -> dict:
    """The pose ViT's config (transformers' VitPose backbone), read off TokenHMR's weights."""
    patch = weights["vit:backbone.patch_embed.proj.weight"]
    width, patch_size = patch.shape[0], tuple(patch.shape[-2:])
    positions = weights["vit:backbone.pos_embed"].shape[1] - 1
    # TokenHMR's input is 256 x 192; with padding 2 a 16-pixel patch grid is 16 x 12.
    height, image_width = 256, 192
    grid = ((height + 4 - patch_size[0]) // patch_size[0] + 1) * ((image_width + 4 - patch_size[1]) // patch_size[1] + 1)
    if grid != positions:
        raise ValueError(
            f"The pose ViT's position embedding covers {positions} patches, not the {grid} of a 256x192 input "
            f"with {patch_size} patches: a TokenHMR checkpoint of another input size is not supported."
        )
    return {
        "image_size": (height, image_width),
        "patch_size": patch_size,
        "hidden_size": width,
        "num_hidden_layers": _count_layers(weights, r"vit:backbone\.blocks\.(\d+)\..+"),
        "num_attention_heads": _attention_heads(width, "pose_vision_config", num_heads, report),
        "mlp_ratio": weights["vit:backbone.blocks.0.mlp.fc1.weight"].shape[0] // width,
        "layer_norm_eps": 1e-6,
        "out_indices": [-1],
    }


def _merge_lora(
    weights: dict, mapped: dict, adapter_config: dict, report: ConversionReport, dtype: torch.dtype | None = None
) -> None:
    """Add each LoRA delta `scaling * B @ A` to the weight it adapts (`scaling = alpha / r`, or
    `alpha / sqrt(r)` with rsLoRA; per-module ranks and alphas from `rank_pattern` / `alpha_pattern`). The sum is
    taken in float32 and rounded once, to `dtype` (the conversion's) or else to the base weight's: a float32
    conversion of a bfloat16 base keeps the delta exact, as the release run in float32 does."""
    for option, refused in (("use_dora", True), ("fan_in_fan_out", True)):
        if adapter_config.get(option) == refused:
            raise ValueError(f"The LoRA adapter has `{option}`={refused}, which the converter does not merge.")
    if adapter_config.get("bias", "none") != "none":
        raise ValueError(f"The LoRA adapter trains biases (`bias`={adapter_config['bias']!r}); not supported.")
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    unknown = []
    for key, tensor in weights.items():
        if key.startswith("lora:"):
            matched, target = map_key(key)
            if not matched or target is None:
                unknown.append(key)
                continue
            side = "A" if ".lora_A." in key else "B"
            pairs.setdefault(target, {})[side] = tensor
            report.mapped[key] = target
    if unknown:
        raise ValueError(f"{len(unknown)} entries of the LoRA adapter match no rule, e.g. {sorted(unknown)[:5]}.")

    def pattern_value(patterns: dict, module: str, default):
        for pattern, value in (patterns or {}).items():
            if re.match(rf"(.*\.)?{pattern}$", module):
                return value
        return default

    for target, pair in pairs.items():
        if set(pair) != {"A", "B"}:
            raise ValueError(f"The LoRA adapter of `{target}` lacks its lora_{({'A', 'B'} - set(pair)).pop()} matrix.")
        if target not in mapped:
            raise ValueError(f"The LoRA adapter targets `{target}`, which the base model does not have.")
        module = target.removesuffix(".weight")
        rank = pattern_value(adapter_config.get("rank_pattern"), module, adapter_config["r"])
        alpha = pattern_value(adapter_config.get("alpha_pattern"), module, adapter_config["lora_alpha"])
        if pair["A"].shape[0] != rank:
            raise ValueError(f"The LoRA A matrix of `{target}` has rank {pair['A'].shape[0]}, the adapter config {rank}.")
        scaling = alpha / rank**0.5 if adapter_config.get("use_rslora") else alpha / rank
        base = mapped[target]
        delta = (pair["B"].float() @ pair["A"].float()) * scaling
        if delta.shape != base.shape:
            raise ValueError(f"LoRA delta of `{target}` has shape {tuple(delta.shape)}, the weight {tuple(base.shape)}.")
        mapped[target] = (base.float() + delta).to(dtype or base.dtype)
        report.merged_lora_modules.append(target)


def _split_qkv(mapped: dict) -> None:
    """TokenHMR's fused `qkv` (3C, C) -> transformers' query, key, value (C, C) each."""
    for key in [k for k in mapped if ".attention.attention.qkv." in k]:
        query, key_, value = mapped.pop(key).chunk(3, dim=0)
        for name, tensor in (("query", query), ("key", key_), ("value", value)):
            mapped[key.replace(".qkv.", f".{name}.")] = tensor


def release_extra_tokens(release_tokenizer, base_vocab_size: int, codebook_size: int) -> list:
    """Tokens the release added beyond its base vocabulary other than the pose codes, markers and queries (such as
    `<im_start>` / `<im_end>`), as `AddedToken`s: the converted tokenizer must split prompts as the release's."""
    pose_tokens = {RELEASE_CODE_TOKEN.format(k) for k in range(codebook_size + 2)}
    pose_tokens |= {RELEASE_QUERY_TOKEN.format(i) for i in range(1000)}
    decoder = release_tokenizer.added_tokens_decoder
    return [decoder[i] for i in sorted(decoder) if i >= base_vocab_size and str(decoder[i]) not in pose_tokens]


def _remap_vocabulary(
    mapped: dict, config: UniPoseConfig, release_tokenizer, tokenizer, base_vocab_size: int, report: ConversionReport
) -> None:
    """Rows of the released embedding / output matrices -> our vocabulary, and the query rows -> `pose_queries`."""
    release_ids = release_tokenizer.get_vocab()

    def release_id(token: str) -> int:
        if token not in release_ids:
            raise ValueError(f"The released tokenizer has no `{token}`; is `--unipose` the UniPose release folder?")
        return release_ids[token]

    codebook_size, num_queries = config.pose_codebook_size, config.num_pose_tokens
    code_ids = enumerate(config.pose_code_token_ids)
    sources = {token_id: release_id(RELEASE_CODE_TOKEN.format(k)) for k, token_id in code_ids}
    sources[config.pose_start_token_id] = release_id(RELEASE_CODE_TOKEN.format(codebook_size))
    sources[config.pose_end_token_id] = release_id(RELEASE_CODE_TOKEN.format(codebook_size + 1))
    for token in release_extra_tokens(release_tokenizer, base_vocab_size, codebook_size):
        sources[tokenizer.convert_tokens_to_ids(str(token))] = release_id(str(token))
    query_rows = [release_id(RELEASE_QUERY_TOKEN.format(i)) for i in range(num_queries)]
    # The query rows of the released embedding become the separate `pose_queries`; those of the output
    # matrix were never used as targets and are dropped.
    mapped["model.pose_queries"] = mapped["model.language_model.embed_tokens.weight"][query_rows].clone()
    vocab_size = config.text_config.vocab_size
    for name in ("model.language_model.embed_tokens.weight", "lm_head.weight"):
        released = mapped.pop(name)
        if released.shape[0] != len(release_tokenizer):
            raise ValueError(
                f"`{name}` of the release has {released.shape[0]} rows but its tokenizer {len(release_tokenizer)} tokens."
            )
        ours = released.new_empty((vocab_size, released.shape[1]))
        ours[:base_vocab_size] = released[:base_vocab_size]
        for our_id, their_id in sources.items():
            ours[our_id] = released[their_id]
        # `<image>`, `<pose>` and `<pose_query>` have no released row: their embedding is always replaced (by
        # image features, codes, queries) and text never writes them; the mean row keeps them harmless.
        for token_id in (config.image_token_id, config.pose_token_id, config.pose_query_token_id):
            ours[token_id] = released[:base_vocab_size].mean(0)
            report.filled[f"{name}[{token_id}]"] = "mean of the base vocabulary rows"
        mapped[name] = ours
    report.dropped.append(f"lm_head rows of {RELEASE_QUERY_TOKEN.format('0..79')} (never a target)")


def _rename(weights: dict, report: ConversionReport) -> dict[str, torch.Tensor]:
    """Apply [`KEY_MAPPING`] to every non-LoRA source tensor; refuse unknown and colliding keys."""
    mapped, unknown = {}, []
    for key, tensor in weights.items():
        if key.startswith("lora:"):
            continue  # merged by `_merge_lora`
        matched, target = map_key(key)
        if not matched:
            unknown.append(key)
        elif target is None:
            report.dropped.append(key)
        elif target in mapped:
            raise ValueError(f"`{key}` and another source key both map to `{target}`: mixed checkpoint layouts?")
        else:
            mapped[target] = tensor
            report.mapped[key] = target
    if unknown:
        raise ValueError(
            f"{len(unknown)} source weights match no rule of the conversion table, e.g. {sorted(unknown)[:10]}. "
            "They are neither converted nor knowingly dropped; the sources may not be the published UniPose files."
        )
    return mapped


# The world of the published model's poses: AMASS's, z up. PoseScript zeroes the heading about z, the release's
# tokenizer was trained with its orientation perturbed about z, and the release's demo poses stand upright
# along z (their root orientations turn SMPL's y axis onto z).
RELEASE_POSE_UP_AXIS = "z"
# The precision in which the published UniPose runs its pose tokenizer, at inference and in training (the whole
# VQ-VAE cast to bfloat16): its language model learned the codes of bfloat16 arithmetic.
RELEASE_POSE_TOKENIZER_DTYPE = "bfloat16"
# The published program's answers: greedy, up to 512 new tokens (its `generate` calls, in inference and evaluation).
RELEASE_MAX_NEW_TOKENS = 512


def _pose_tokenizer_config(mapped: dict) -> dict:
    """Sizes of the released pose tokenizer, read from its weights, the world frame of its poses and its precision."""
    codebook = mapped["model.pose_tokenizer.quantizer.codebook"]
    hidden_size = mapped["model.pose_tokenizer.encoder.conv_in.weight"].shape[0]
    return {
        "codebook_size": codebook.shape[0],
        "code_dim": codebook.shape[1],
        "hidden_size": hidden_size,
        "up_axis": RELEASE_POSE_UP_AXIS,
        "compute_dtype": RELEASE_POSE_TOKENIZER_DTYPE,
    }


def _load_strict(model: UniPoseForConditionalGeneration, mapped: dict) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(mapped))
    unexpected = sorted(set(mapped) - set(expected))
    mismatched = [
        f"{key}: converted {tuple(mapped[key].shape)}, model {tuple(expected[key].shape)}"
        for key in sorted(set(expected) & set(mapped))
        if tuple(mapped[key].shape) != tuple(expected[key].shape)
    ]
    if missing or unexpected or mismatched:
        raise ValueError(
            "The converted weights do not fit the UniPose model: "
            f"missing {missing[:10]}, unexpected {unexpected[:10]}, mis-shaped {mismatched[:10]}."
        )
    model.load_state_dict(mapped, strict=True, assign=True)


def convert_release(
    base: PathLike,
    unipose: PathLike,
    pose_tokenizer: PathLike,
    pose_vit: PathLike,
    output_dir: PathLike,
    dtype: torch.dtype | None = None,
    overwrite: bool = False,
    config_overrides: dict | None = None,
    vision_num_heads: int | None = None,
    pose_vit_num_heads: int | None = None,
) -> ConversionReport:
    """Convert the published UniPose files into a checkpoint folder (weights, config, processor, model card).

    Every size is read from the release's configs and weights: the language model from its `config.json`
    (checked against the weights), CLIP from the folder its `mm_vision_tower` names when there is one and otherwise
    from its weights, the pose ViT, the projector and the pose tokenizer from their weights. The converted model
    computes what the release computes: its input pose spans are causal (`input_pose_attention="causal"`), and its
    processor writes each image as the release's prompts do, `<im_start>` + image + `<im_end>`.

    Args:
        base, unipose, pose_tokenizer, pose_vit: the downloaded sources (see the module docstring).
        output_dir: the folder to write; written to a temporary folder first and renamed when complete.
        dtype (`torch.dtype`, *optional*): dtype of the saved weights (the pose tokenizer stays float32).
        overwrite (`bool`): replace an existing `output_dir`.
        config_overrides (`dict`, *optional*): `UniPoseConfig` fields to set explicitly; the weights' shapes are
            checked either way.
        vision_num_heads, pose_vit_num_heads (`int`, *optional*): attention heads of the two image towers, which no
            released file records; by default those of the published towers' kind (heads 64 wide, ViT-H's 16).
    Returns:
        A [`ConversionReport`] (also saved as `conversion_report.json`).
    """
    output_dir = Path(output_dir)
    _check_output_dir(output_dir, overwrite)
    sources = read_sources(base, unipose, pose_tokenizer, pose_vit)
    weights, release_config = sources["weights"], sources["config"]
    report = ConversionReport()
    overrides = dict(config_overrides or {})
    vision_config = overrides.pop("vision_config", None) or _clip_config(
        weights, release_config, [Path(base), Path(unipose)], vision_num_heads, report
    )
    pose_vision_config = overrides.pop("pose_vision_config", None) or _pose_vision_config(
        weights, pose_vit_num_heads, report
    )
    mapped = _rename(weights, report)
    _merge_lora(weights, mapped, sources["adapter_config"], report, dtype)
    _split_qkv(mapped)

    # Our vocabulary: the base tokenizer, the release's other added tokens, then the UniPose tokens.
    tokenizer = sources["base_tokenizer"]
    base_vocab_size = len(tokenizer)
    pose_tokenizer_config = _pose_tokenizer_config(mapped)
    extra_tokens = release_extra_tokens(sources["release_tokenizer"], base_vocab_size, pose_tokenizer_config["codebook_size"])
    tokenizer.add_tokens(extra_tokens)
    token_ids = add_unipose_tokens(tokenizer, pose_tokenizer_config["codebook_size"])
    tokenizer.chat_template = UNIPOSE_CHAT_TEMPLATE
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.unk_token  # as the release (LLaVA) pads Mistral's tokenizer
    tokenizer.padding_side = "left"

    projector = mapped["model.multi_modal_projector.linear_1.weight"]
    fused_width = vision_config["hidden_size"] + pose_vision_config["hidden_size"]  # the towers' output widths
    if projector.shape[1] != fused_width:
        raise ValueError(
            f"The projector reads {projector.shape[1]} features, but CLIP ({vision_config['hidden_size']}) and the "
            f"pose ViT ({pose_vision_config['hidden_size']}) give {fused_width}."
        )
    if release_config.get("tokenizer_model_max_length"):
        tokenizer.model_max_length = release_config["tokenizer_model_max_length"]
    settings = {
        "text_config": _text_config(release_config, vocab_size=len(tokenizer), report=report),
        "vision_config": vision_config,
        "pose_vision_config": pose_vision_config,
        "pose_tokenizer_config": pose_tokenizer_config,
        "vision_feature_layer": release_config.get("mm_vision_select_layer", -2),
        "multimodal_projector_bias": "model.multi_modal_projector.linear_1.bias" in mapped,
        # The release attends to input poses causally: only the 80 queries of a pose to write see each other.
        "input_pose_attention": "causal",
        **token_ids,
    }
    config = UniPoseConfig(**{**settings, **overrides})
    _check_text_sizes(mapped, config.text_config)
    _remap_vocabulary(mapped, config, sources["release_tokenizer"], tokenizer, base_vocab_size, report)
    codebook = mapped["model.pose_tokenizer.quantizer.codebook"]
    mapped["model.pose_tokenizer.quantizer.cluster_size"] = torch.ones(codebook.shape[0])
    mapped["model.pose_tokenizer.quantizer.embed_sum"] = codebook.clone()
    mapped["model.pose_tokenizer.quantizer.initialized"] = torch.tensor(True)
    report.filled["model.pose_tokenizer.quantizer.{cluster_size,embed_sum,initialized}"] = (
        "moving averages restarted from the codebook (they only matter for further tokenizer training)"
    )

    with torch.device("meta"):
        model = UniPoseForConditionalGeneration(config)
    _load_strict(model, mapped)
    if dtype is not None:
        model.to(dtype)
        model.model.pose_tokenizer.float()  # rotations lose too much in 16-bit floats
    set_generation_special_tokens(model, tokenizer)
    model.generation_config.max_new_tokens = RELEASE_MAX_NEW_TOKENS
    model.generation_config.do_sample = False
    processor = processor_for_config(
        config, tokenizer, image_start_text=RELEASE_IMAGE_START, image_end_text=RELEASE_IMAGE_END
    )

    # A previous conversion stays whole until the new one is in place.
    with staged_directory(output_dir) as staging:
        model.save_pretrained(staging)
        processor.save_pretrained(staging)
        (staging / "conversion_report.json").write_text(json.dumps(report.to_dict(), indent=2) + "\n")
        write_model_card(staging, model.config, source="converted", conversion_report=report.to_dict())
    logger.info(f"Converted {len(report.mapped)} weights ({len(report.dropped)} dropped on purpose) into {output_dir}.")
    return report


def _check_output_dir(output_dir: Path, overwrite: bool) -> None:
    """Refuses to replace anything but an empty folder or an earlier conversion (`--overwrite` never deletes a
    folder the converter did not write)."""
    if not output_dir.exists():
        return
    if not output_dir.is_dir():
        raise FileExistsError(f"`--out` {str(output_dir)!r} is a file, not a folder; choose another path.")
    if not any(output_dir.iterdir()):
        output_dir.rmdir()
        return
    if not overwrite:
        raise FileExistsError(f"{output_dir} exists; pass `overwrite=True` (`--overwrite`) to replace it.")
    if not (output_dir / "conversion_report.json").is_file() or not (output_dir / "config.json").is_file():
        raise FileExistsError(
            f"`--overwrite` replaces only an earlier conversion, and {str(output_dir)!r} is not one (it has no "
            "conversion_report.json and config.json); remove it yourself or choose another `--out`."
        )


def _check_text_sizes(mapped: dict, text_config) -> None:
    """The language model's sizes in its config against its weights (a wrong config is refused, not loaded)."""
    layer = "model.language_model.layers.0."
    expected = {
        "num_hidden_layers": _count_layers(mapped, r"model\.language_model\.layers\.(\d+)\..+"),
        "hidden_size": mapped["model.language_model.norm.weight"].shape[0],
        "intermediate_size": mapped[f"{layer}mlp.gate_proj.weight"].shape[0],
        "num_key_value_heads": mapped[f"{layer}self_attn.k_proj.weight"].shape[0] // text_config.head_dim,
        "num_attention_heads": mapped[f"{layer}self_attn.q_proj.weight"].shape[0] // text_config.head_dim,
    }
    wrong = {k: (getattr(text_config, k), v) for k, v in expected.items() if getattr(text_config, k) != v}
    if wrong:
        raise ValueError(f"The release's config.json disagrees with its weights (config, weights): {wrong}.")


# ----------------------------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------------------------


__all__ = ["KEY_MAPPING", "ConversionReport", "convert_release", "map_key"]
