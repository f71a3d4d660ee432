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
into the language model, the fused `qkv` of the pose ViT is split into transformers' query/key/value, and
the vocabulary is remapped (the released `<pose_id_k>` rows become `<pose_k>`, `<pose_id_2048>` /
`<pose_id_2049>` become `<p>` / `</p>`, and the last 80 rows, `<pose_query_0..79>`, become the separate
`pose_queries` parameter). Loading is strict and every shape is checked. Pickled files are read with
`weights_only=True`.

    unipose convert --base llava-v1.6-mistral-7b --unipose unipose-release --pose-tokenizer vqvae.ckpt \\
        --pose-vit tokenhmr.ckpt --out unipose-hf [--dtype bfloat16] [--verify]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import AutoTokenizer, MistralConfig
from transformers.utils import logging

from .configuration_unipose import UniPoseConfig
from .modeling_unipose import UniPoseForConditionalGeneration
from .processing_unipose import UniPoseProcessor
from .tokenization import UNIPOSE_CHAT_TEMPLATE, add_unipose_tokens


logger = logging.get_logger(__name__)

PathLike = str | os.PathLike

# The released vocabulary: `<pose_id_0..2047>` are the codes, `<pose_id_2048>` / `<pose_id_2049>` the span
# markers, `<pose_query_0..79>` the query rows (the last rows of the embedding matrix).
RELEASE_CODE_TOKEN = "<pose_id_{}>"
RELEASE_QUERY_TOKEN = "<pose_query_{}>"

# (regex on "source:key", replacement or None to drop). The only place where the release's names appear.
KEY_MAPPING: list[tuple[str, str | None]] = [
    # --- LLaVA-1.6-Mistral-7B, original layout -----------------------------------------------------------
    (r"base:model\.layers\.(.+)", r"model.language_model.layers.\1"),
    (r"base:model\.norm\.(.+)", r"model.language_model.norm.\1"),
    (r"base:model\.embed_tokens\.weight", None),  # superseded by the UniPose embedding (trainables)
    (r"base:lm_head\.weight", None),  # superseded by the UniPose output matrix (trainables)
    (r"base:model\.vision_tower\.vision_tower\.vision_model\.embeddings\.position_ids", None),  # a buffer
    (r"base:model\.vision_tower\.vision_tower\.vision_model\.(.+)", r"model.vision_tower.\1"),
    (r"base:model\.mm_projector\..+", None),  # LLaVA's 1024-wide projector; UniPose trains its own
    (r"base:model\.image_newline", None),  # LLaVA-NeXT's any-resolution separator, unused by UniPose
    # --- LLaVA-1.6-Mistral-7B, transformers layout (llava-hf) ---------------------------------------------
    (r"base:(?:model\.)?language_model\.(?:model\.)?layers\.(.+)", r"model.language_model.layers.\1"),
    (r"base:(?:model\.)?language_model\.(?:model\.)?norm\.(.+)", r"model.language_model.norm.\1"),
    (r"base:(?:model\.)?language_model\.(?:model\.)?embed_tokens\.weight", None),
    (r"base:(?:language_model\.)?lm_head\.weight", None),
    (r"base:(?:model\.)?vision_tower\.vision_model\.embeddings\.position_ids", None),
    (r"base:(?:model\.)?vision_tower\.vision_model\.(.+)", r"model.vision_tower.\1"),
    (r"base:(?:model\.)?multi_modal_projector\..+", None),
    (r"base:(?:model\.)?image_newline", None),
    # --- UniPose non-LoRA trainables ---------------------------------------------------------------------
    (r"trainables:base_model\.model\.model\.mm_projector\.0\.(weight|bias)", r"model.multi_modal_projector.linear_1.\1"),
    (r"trainables:base_model\.model\.model\.mm_projector\.2\.(weight|bias)", r"model.multi_modal_projector.linear_2.\1"),
    (r"trainables:base_model\.model\.model\.embed_tokens\.weight", r"model.language_model.embed_tokens.weight"),
    (r"trainables:base_model\.model\.lm_head\.weight", r"lm_head.weight"),
    # --- UniPose LoRA adapter (merged into the weight it adapts) -------------------------------------------
    (r"lora:base_model\.model\.model\.layers\.(.+)\.lora_[AB]\.weight", r"model.language_model.layers.\1.weight"),
    # --- Pose VQ-VAE (Lightning `state_dict`) --------------------------------------------------------------
    (r"vqvae:encoder\.encoder\.0\.(weight|bias)", r"model.pose_tokenizer.encoder.conv_in.\1"),
    (r"vqvae:encoder\.encoder\.3\.(weight|bias)", r"model.pose_tokenizer.encoder.resample_blocks.0.conv.\1"),
    (r"vqvae:encoder\.encoder\.6\.(weight|bias)", r"model.pose_tokenizer.encoder.resample_blocks.1.conv.\1"),
    (r"vqvae:encoder\.encoder\.9\.(weight|bias)", r"model.pose_tokenizer.encoder.resample_blocks.2.conv.\1"),
    (r"vqvae:encoder\.encoder\.11\.(weight|bias)", r"model.pose_tokenizer.encoder.downsample.\1"),
    (
        r"vqvae:encoder\.encoder\.12\.model\.(\d+)\.conv([12])\.(weight|bias)",
        r"model.pose_tokenizer.encoder.residual_stack.blocks.\1.conv\2.\3",
    ),
    (r"vqvae:encoder\.encoder\.13\.(weight|bias)", r"model.pose_tokenizer.encoder.conv_out.\1"),
    (r"vqvae:quantizer\.codebook", r"model.pose_tokenizer.quantizer.codebook"),
    (r"vqvae:decoder\.decoder\.0\.(weight|bias)", r"model.pose_tokenizer.decoder.conv_in.\1"),
    (r"vqvae:decoder\.decoder\.3\.(weight|bias)", r"model.pose_tokenizer.decoder.resample_blocks.0.conv.\1"),
    (r"vqvae:decoder\.decoder\.6\.(weight|bias)", r"model.pose_tokenizer.decoder.resample_blocks.1.conv.\1"),
    (r"vqvae:decoder\.decoder\.9\.(weight|bias)", r"model.pose_tokenizer.decoder.resample_blocks.2.conv.\1"),
    (r"vqvae:decoder\.decoder\.12\.(weight|bias)", r"model.pose_tokenizer.decoder.resample_blocks.3.conv.\1"),
    (
        r"vqvae:decoder\.decoder\.14\.model\.(\d+)\.conv([12])\.(weight|bias)",
        r"model.pose_tokenizer.decoder.residual_stack.blocks.\1.conv\2.\3",
    ),
    (r"vqvae:decoder\.decoder\.15\.(weight|bias)", r"model.pose_tokenizer.decoder.conv_mid.\1"),
    (r"vqvae:decoder\.decoder\.16\.(weight|bias)", r"model.pose_tokenizer.decoder.conv_out.\1"),
    # --- TokenHMR's ViT-H ----------------------------------------------------------------------------------
    (r"vit:backbone\.patch_embed\.proj\.(weight|bias)", r"model.pose_vision_tower.embeddings.patch_embeddings.projection.\1"),
    (r"vit:backbone\.pos_embed", r"model.pose_vision_tower.embeddings.position_embeddings"),
    (r"vit:backbone\.blocks\.(\d+)\.norm1\.(weight|bias)", r"model.pose_vision_tower.encoder.layer.\1.layernorm_before.\2"),
    (r"vit:backbone\.blocks\.(\d+)\.attn\.qkv\.(weight|bias)", r"model.pose_vision_tower.encoder.layer.\1.attention.attention.qkv.\2"),
    (r"vit:backbone\.blocks\.(\d+)\.attn\.proj\.(weight|bias)", r"model.pose_vision_tower.encoder.layer.\1.attention.output.dense.\2"),
    (r"vit:backbone\.blocks\.(\d+)\.norm2\.(weight|bias)", r"model.pose_vision_tower.encoder.layer.\1.layernorm_after.\2"),
    (r"vit:backbone\.blocks\.(\d+)\.mlp\.(fc[12])\.(weight|bias)", r"model.pose_vision_tower.encoder.layer.\1.mlp.\2.\3"),
    (r"vit:backbone\.last_norm\.(weight|bias)", r"model.pose_vision_tower.layernorm.\1"),
    (r"vit:(?!backbone\.).+", None),  # TokenHMR's SMPL head, discriminator, ...: not part of UniPose
]
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

    def to_dict(self) -> dict:
        return {
            "num_mapped": len(self.mapped),
            "dropped": sorted(self.dropped),
            "merged_lora_modules": len(self.merged_lora_modules),
            "filled_without_source": self.filled,
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
    from safetensors.torch import load_file

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
    return {
        "weights": weights,
        "adapter_config": adapter_config,
        "config": config,
        "release_tokenizer": AutoTokenizer.from_pretrained(unipose),
        "base_tokenizer": AutoTokenizer.from_pretrained(base),
    }


# ----------------------------------------------------------------------------------------------------------------------
# The conversion
# ----------------------------------------------------------------------------------------------------------------------


def _text_config(release_config: dict, vocab_size: int) -> MistralConfig:
    fields = set(MistralConfig().to_dict())
    kept = {k: v for k, v in release_config.items() if k in fields and not k.startswith(("_", "architectures"))}
    kept.pop("model_type", None)
    kept.pop("torch_dtype", None)
    kept.pop("dtype", None)
    return MistralConfig(**{**kept, "vocab_size": vocab_size, "sliding_window": None})


def _merge_lora(weights: dict, mapped: dict, adapter_config: dict, report: ConversionReport) -> None:
    """Add each LoRA delta `scaling * B @ A` to the weight it adapts (`scaling = alpha / r`, or
    `alpha / sqrt(r)` with rsLoRA)."""
    rank, alpha = adapter_config["r"], adapter_config["lora_alpha"]
    scaling = alpha / rank**0.5 if adapter_config.get("use_rslora") else alpha / rank
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in weights.items():
        if key.startswith("lora:"):
            matched, target = map_key(key)
            side = "A" if ".lora_A." in key else "B"
            pairs.setdefault(target, {})[side] = tensor
            report.mapped[key] = target
    for target, pair in pairs.items():
        if set(pair) != {"A", "B"}:
            raise ValueError(f"The LoRA adapter of `{target}` lacks its lora_{({'A', 'B'} - set(pair)).pop()} matrix.")
        if target not in mapped:
            raise ValueError(f"The LoRA adapter targets `{target}`, which the base model does not have.")
        base = mapped[target]
        delta = (pair["B"].float() @ pair["A"].float()) * scaling
        if delta.shape != base.shape:
            raise ValueError(f"LoRA delta of `{target}` has shape {tuple(delta.shape)}, the weight {tuple(base.shape)}.")
        mapped[target] = (base.float() + delta).to(base.dtype)
        report.merged_lora_modules.append(target)


def _split_qkv(mapped: dict) -> None:
    """TokenHMR's fused `qkv` (3C, C) -> transformers' query, key, value (C, C) each."""
    for key in [k for k in mapped if ".attention.attention.qkv." in k]:
        query, key_, value = mapped.pop(key).chunk(3, dim=0)
        for name, tensor in (("query", query), ("key", key_), ("value", value)):
            mapped[key.replace(".qkv.", f".{name}.")] = tensor


def _remap_vocabulary(
    mapped: dict, config: UniPoseConfig, release_tokenizer, base_vocab_size: int, report: ConversionReport
) -> None:
    """Rows of the released embedding / output matrices -> our vocabulary, and the query rows -> `pose_queries`."""
    release_ids = release_tokenizer.get_vocab()

    def release_id(token: str) -> int:
        if token not in release_ids:
            raise ValueError(f"The released tokenizer has no `{token}`; is `--unipose` the UniPose release folder?")
        return release_ids[token]

    codebook_size, num_queries = config.pose_codebook_size, config.num_pose_tokens
    sources = {config.pose_code_token_offset + k: release_id(RELEASE_CODE_TOKEN.format(k)) for k in range(codebook_size)}
    sources[config.pose_start_token_id] = release_id(RELEASE_CODE_TOKEN.format(codebook_size))
    sources[config.pose_end_token_id] = release_id(RELEASE_CODE_TOKEN.format(codebook_size + 1))
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


def _pose_tokenizer_config(mapped: dict) -> dict:
    """Sizes of the released pose tokenizer, read from its weights."""
    codebook = mapped["model.pose_tokenizer.quantizer.codebook"]
    hidden_size = mapped["model.pose_tokenizer.encoder.conv_in.weight"].shape[0]
    return {"codebook_size": codebook.shape[0], "code_dim": codebook.shape[1], "hidden_size": hidden_size}


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
) -> ConversionReport:
    """Convert the published UniPose files into a checkpoint folder (weights, config, processor, model card).

    Args:
        base, unipose, pose_tokenizer, pose_vit: the downloaded sources (see the module docstring).
        output_dir: the folder to write; written to a temporary folder first and renamed when complete.
        dtype (`torch.dtype`, *optional*): dtype of the saved weights (the pose tokenizer stays float32).
        overwrite (`bool`): replace an existing `output_dir`.
        config_overrides (`dict`, *optional*): `UniPoseConfig` fields to use instead of the paper's defaults
            (e.g. `vision_config` for a differently sized CLIP); the weights' shapes are checked either way.
    Returns:
        A [`ConversionReport`] (also saved as `conversion_report.json`).
    """
    output_dir = Path(output_dir)
    if output_dir.exists() and not overwrite:
        raise FileExistsError(f"{output_dir} exists; pass `overwrite=True` (`--overwrite`) to replace it.")
    sources = read_sources(base, unipose, pose_tokenizer, pose_vit)
    report = ConversionReport()
    mapped = _rename(sources["weights"], report)
    _merge_lora(sources["weights"], mapped, sources["adapter_config"], report)
    _split_qkv(mapped)

    # Our vocabulary: the base tokenizer plus the UniPose tokens, in our order and names.
    tokenizer = sources["base_tokenizer"]
    base_vocab_size = len(tokenizer)
    pose_tokenizer_config = _pose_tokenizer_config(mapped)
    token_ids = add_unipose_tokens(tokenizer, pose_tokenizer_config["codebook_size"])
    tokenizer.chat_template = UNIPOSE_CHAT_TEMPLATE
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.unk_token  # as the release (LLaVA) pads Mistral's tokenizer
    tokenizer.padding_side = "left"
    config = UniPoseConfig(
        text_config=_text_config(sources["config"], vocab_size=len(tokenizer)),
        pose_tokenizer_config=pose_tokenizer_config,
        **token_ids,
        **(config_overrides or {}),
    )
    _remap_vocabulary(mapped, config, sources["release_tokenizer"], base_vocab_size, report)
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
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    image_processor, pose_image_processor = UniPoseProcessor.default_image_processors(
        clip_size=config.vision_config.image_size, pose_size=tuple(config.pose_vision_config.image_size)
    )
    processor = UniPoseProcessor(
        image_processor,
        pose_image_processor,
        tokenizer,
        image_seq_length=config.image_seq_length,
        num_pose_tokens=config.num_pose_tokens,
        num_joints=config.num_joints,
    )

    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.", dir=output_dir.parent))
    try:
        model.save_pretrained(staging)
        processor.save_pretrained(staging)
        (staging / "conversion_report.json").write_text(json.dumps(report.to_dict(), indent=2) + "\n")
        from .model_card import write_model_card

        write_model_card(staging, model.config, source="converted", conversion_report=report.to_dict())
        if output_dir.exists():
            shutil.rmtree(output_dir)
        os.replace(staging, output_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    logger.info(f"Converted {len(report.mapped)} weights ({len(report.dropped)} dropped on purpose) into {output_dir}.")
    return report


# ----------------------------------------------------------------------------------------------------------------------
# Verification against the original code
# ----------------------------------------------------------------------------------------------------------------------

VERIFY_PROMPT = "[INST] Describe a person standing with both arms raised above the head. [/INST]"


@torch.no_grad()
def verify_conversion(base: PathLike, unipose: PathLike, output_dir: PathLike, prompt: str = VERIFY_PROMPT) -> dict:
    """Compare the logits of the original model (through the release's own code, which must be installed:
    its `llava` package) and of the converted one on the same text prompt.

    Text tokens keep their ids, so the logits of the base vocabulary are compared directly, and the logits of
    `<pose_k>` against those of the released `<pose_id_k>`.
    """
    try:
        from llava.model.builder import load_pretrained_model
    except ImportError as error:
        raise ImportError(
            "`--verify` runs the original UniPose code: install the release's code (its `llava` package) in this "
            "environment, or convert without `--verify`."
        ) from error
    release_tokenizer, original, _, _ = load_pretrained_model(
        model_path=str(unipose), model_base=str(base), model_name="unipose-lora", device_map="cpu"
    )
    converted = UniPoseForConditionalGeneration.from_pretrained(output_dir).float().eval()
    processor = UniPoseProcessor.from_pretrained(output_dir)
    their_ids = release_tokenizer(prompt, return_tensors="pt").input_ids
    our_ids = processor.tokenizer(prompt, return_tensors="pt").input_ids
    if not torch.equal(their_ids, our_ids):
        raise ValueError("The two tokenizers split the verification prompt differently; choose another prompt.")
    theirs = original(input_ids=their_ids).logits.float()
    ours = converted(input_ids=our_ids).logits.float()
    config = converted.config
    base_vocab = config.image_token_id
    release_vocab = release_tokenizer.get_vocab()
    their_codes = [release_vocab[RELEASE_CODE_TOKEN.format(k)] for k in range(config.pose_codebook_size)]
    offset = config.pose_code_token_offset
    text_diff = (theirs[..., :base_vocab] - ours[..., :base_vocab]).abs().max().item()
    code_diff = (theirs[..., their_codes] - ours[..., offset : offset + config.pose_codebook_size]).abs().max().item()
    return {"prompt": prompt, "max_abs_diff_text_logits": text_diff, "max_abs_diff_code_logits": code_diff}


# ----------------------------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--base", required=True, help="LLaVA-1.6-Mistral-7B folder (weights and tokenizer).")
    parser.add_argument("--unipose", required=True, help="UniPose release folder (config, tokenizer, trainables, LoRA).")
    parser.add_argument("--pose-tokenizer", required=True, help="Pose VQ-VAE checkpoint (Lightning .ckpt).")
    parser.add_argument("--pose-vit", required=True, help="TokenHMR checkpoint holding the pose ViT.")
    parser.add_argument("--out", required=True, help="Output folder of the converted checkpoint.")
    parser.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default=None)
    parser.add_argument("--overwrite", action="store_true", help="Replace an existing output folder.")
    parser.add_argument("--verify", action="store_true", help="Compare logits with the original code afterwards.")


def run(args: argparse.Namespace) -> str:
    dtype = getattr(torch, args.dtype) if args.dtype else None
    report = convert_release(
        args.base, args.unipose, args.pose_tokenizer, args.pose_vit, args.out, dtype=dtype, overwrite=args.overwrite
    )
    result = {"conversion": report.to_dict()}
    if args.verify:
        result["verification"] = verify_conversion(args.base, args.unipose, args.out)
    return json.dumps(result, indent=2)


__all__ = ["KEY_MAPPING", "ConversionReport", "convert_release", "map_key", "verify_conversion"]
