"""Conversion of checkpoints in the published UniPose layout (built here at tiny sizes) into ours.

The references below are written from the description of the release (the published layout; docs/architecture.md), independently of our
modules: a ViT with a fused `qkv` and the cls position added to every patch, a VQ-VAE as an indexed
`nn.Sequential`, and the language model with its LoRA applied by PEFT instead of merged.
"""

import json
import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from tokenizers import Tokenizer, models, pre_tokenizers
from torch import nn
from transformers import MistralConfig, MistralForCausalLM, PreTrainedTokenizerFast

from unipose.conversion import KEY_MAPPING, convert_release, map_key
from unipose.modeling_unipose import UniPoseForConditionalGeneration


H, LAYERS, HEADS = 32, 2, 4  # language model
CLIP_W, CLIP_PATCH, CLIP_SIZE = 16, 14, 42
VIT_W, VIT_HEADS, VIT_LAYERS, VIT_PATCH, VIT_SIZE = 24, 4, 2, 8, (32, 16)
K, D, VQ_H, T, J = 64, 16, 32, 80, 22
WORDS = [
    "the",
    "person",
    "raises",
    "both",
    "arms",
    "above",
    "head",
    "standing",
    "with",
    "describe",
    "a",
    "[INST]",
    "[/INST]",
    ".",
]


def base_tokenizer():
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{w: i + 3 for i, w in enumerate(WORDS)}}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", bos_token="<s>", eos_token="</s>"
    )


def mistral_config(vocab_size):
    return MistralConfig(
        vocab_size=vocab_size,
        hidden_size=H,
        intermediate_size=64,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        num_key_value_heads=2,
        max_position_embeddings=512,
        sliding_window=None,
    )


def clip_state(generator):
    grid = (CLIP_SIZE // CLIP_PATCH) ** 2
    state = {
        "embeddings.class_embedding": torch.randn(CLIP_W, generator=generator),
        "embeddings.patch_embedding.weight": torch.randn(
            CLIP_W, 3, CLIP_PATCH, CLIP_PATCH, generator=generator
        )
        * 0.02,
        "embeddings.position_embedding.weight": torch.randn(grid + 1, CLIP_W, generator=generator) * 0.02,
        "embeddings.position_ids": torch.arange(grid + 1)[None],
        "pre_layrnorm.weight": torch.ones(CLIP_W),
        "pre_layrnorm.bias": torch.zeros(CLIP_W),
        "post_layernorm.weight": torch.ones(CLIP_W),
        "post_layernorm.bias": torch.zeros(CLIP_W),
    }
    for i in range(2):
        p = f"encoder.layers.{i}."
        for name in ("k_proj", "v_proj", "q_proj", "out_proj"):
            state[p + f"self_attn.{name}.weight"] = torch.randn(CLIP_W, CLIP_W, generator=generator) * 0.05
            state[p + f"self_attn.{name}.bias"] = torch.zeros(CLIP_W)
        for name in ("layer_norm1", "layer_norm2"):
            state[p + f"{name}.weight"], state[p + f"{name}.bias"] = torch.ones(CLIP_W), torch.zeros(CLIP_W)
        state[p + "mlp.fc1.weight"] = torch.randn(32, CLIP_W, generator=generator) * 0.05
        state[p + "mlp.fc1.bias"] = torch.zeros(32)
        state[p + "mlp.fc2.weight"] = torch.randn(CLIP_W, 32, generator=generator) * 0.05
        state[p + "mlp.fc2.bias"] = torch.zeros(CLIP_W)
    return state


class ReleaseResBlock(nn.Module):
    def __init__(self, width, dilation):
        super().__init__()
        self.conv1 = nn.Conv1d(width, width, 3, padding=dilation, dilation=dilation)
        self.conv2 = nn.Conv1d(width, width, 1)

    def forward(self, x):
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class ReleaseResnet(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.model = nn.Sequential(ReleaseResBlock(width, 3), ReleaseResBlock(width, 1))  # reversed dilations

    def forward(self, x):
        return self.model(x)


class Resample(nn.Module):
    def __init__(self, size):
        super().__init__()
        self.size = size

    def forward(self, x):
        return F.interpolate(x, size=self.size, mode="nearest")


def resampling_stages(channels: int, sizes) -> list[nn.Module]:
    """The release's resampling stages: a convolution to `VQ_H` channels, a ReLU and a resize to each size."""
    layers = []
    for size in sizes:
        layers += [nn.Conv1d(channels, VQ_H, 3, padding=1), nn.ReLU(), Resample(size)]
        channels = VQ_H
    return layers


class ReleaseVQVAE(nn.Module):
    """The release's pose VQ-VAE, indexed as in its checkpoint."""

    def __init__(self):
        super().__init__()
        self.encoder = nn.Module()
        self.encoder.encoder = nn.Sequential(
            *resampling_stages(6, (40, 80, 160)),
            nn.Conv1d(VQ_H, VQ_H, 3, padding=1),
            nn.ReLU(),
            nn.Conv1d(VQ_H, VQ_H, 4, stride=2, padding=1),
            ReleaseResnet(VQ_H),
            nn.Conv1d(VQ_H, D, 3, padding=1),
        )
        self.quantizer = nn.Module()
        self.quantizer.register_buffer("codebook", torch.randn(K, D))
        self.decoder = nn.Module()
        self.decoder.decoder = nn.Sequential(
            *resampling_stages(D, (65, 51, 36, 22)),
            nn.Conv1d(VQ_H, VQ_H, 3, padding=1),
            nn.ReLU(),
            ReleaseResnet(VQ_H),
            nn.Conv1d(VQ_H, VQ_H, 3, padding=1),
            nn.Conv1d(VQ_H, 6, 3, padding=1),
        )

    def encode(self, poses_6d):  # (B, 22, 6) -> codes (B, 80)
        latents = self.encoder.encoder(poses_6d.transpose(1, 2)).transpose(1, 2)
        return torch.cdist(latents, self.quantizer.codebook[None].expand(len(latents), -1, -1)).argmin(-1)

    def decode(self, codes):
        return self.decoder.decoder(self.quantizer.codebook[codes].transpose(1, 2)).transpose(1, 2)


def release_vit_state(generator):
    grid = (VIT_SIZE[0] // VIT_PATCH) * (VIT_SIZE[1] // VIT_PATCH)
    state = {
        "backbone.patch_embed.proj.weight": torch.randn(VIT_W, 3, VIT_PATCH, VIT_PATCH, generator=generator)
        * 0.05,
        "backbone.patch_embed.proj.bias": torch.randn(VIT_W, generator=generator) * 0.05,
        "backbone.pos_embed": torch.randn(1, grid + 1, VIT_W, generator=generator) * 0.1,
        "backbone.last_norm.weight": 1 + 0.1 * torch.randn(VIT_W, generator=generator),
        "backbone.last_norm.bias": 0.1 * torch.randn(VIT_W, generator=generator),
        "smpl_head.decpose.weight": torch.randn(6, VIT_W, generator=generator),  # not part of UniPose
    }
    for i in range(VIT_LAYERS):
        p = f"backbone.blocks.{i}."
        for name in ("norm1", "norm2"):
            state[p + f"{name}.weight"] = 1 + 0.1 * torch.randn(VIT_W, generator=generator)
            state[p + f"{name}.bias"] = 0.1 * torch.randn(VIT_W, generator=generator)
        state[p + "attn.qkv.weight"] = torch.randn(3 * VIT_W, VIT_W, generator=generator) * 0.1
        state[p + "attn.qkv.bias"] = torch.randn(3 * VIT_W, generator=generator) * 0.1
        state[p + "attn.proj.weight"] = torch.randn(VIT_W, VIT_W, generator=generator) * 0.1
        state[p + "attn.proj.bias"] = torch.randn(VIT_W, generator=generator) * 0.1
        state[p + "mlp.fc1.weight"] = torch.randn(4 * VIT_W, VIT_W, generator=generator) * 0.1
        state[p + "mlp.fc1.bias"] = torch.randn(4 * VIT_W, generator=generator) * 0.1
        state[p + "mlp.fc2.weight"] = torch.randn(VIT_W, 4 * VIT_W, generator=generator) * 0.1
        state[p + "mlp.fc2.bias"] = torch.randn(VIT_W, generator=generator) * 0.1
    return state


def release_vit_forward(state, images):
    """TokenHMR's ViT as described: patch conv (padding 2), cls position added to every patch, pre-norm blocks."""
    s = {k.removeprefix("backbone."): v for k, v in state.items()}
    x = F.conv2d(
        images, s["patch_embed.proj.weight"], s["patch_embed.proj.bias"], stride=VIT_PATCH, padding=2
    )
    x = x.flatten(2).transpose(1, 2)
    x = x + s["pos_embed"][:, 1:] + s["pos_embed"][:, :1]
    for i in range(VIT_LAYERS):
        p = f"blocks.{i}."
        y = F.layer_norm(x, (VIT_W,), s[p + "norm1.weight"], s[p + "norm1.bias"], eps=1e-6)
        q, k, v = F.linear(y, s[p + "attn.qkv.weight"], s[p + "attn.qkv.bias"]).chunk(3, dim=-1)
        heads = lambda t: t.view(t.shape[0], t.shape[1], VIT_HEADS, -1).transpose(1, 2)  # noqa: E731
        weights = (heads(q) @ heads(k).transpose(-1, -2) / math.sqrt(VIT_W // VIT_HEADS)).softmax(-1)
        attended = (weights @ heads(v)).transpose(1, 2).reshape(x.shape)
        x = x + F.linear(attended, s[p + "attn.proj.weight"], s[p + "attn.proj.bias"])
        y = F.layer_norm(x, (VIT_W,), s[p + "norm2.weight"], s[p + "norm2.bias"], eps=1e-6)
        x = x + F.linear(
            F.gelu(F.linear(y, s[p + "mlp.fc1.weight"], s[p + "mlp.fc1.bias"])),
            s[p + "mlp.fc2.weight"],
            s[p + "mlp.fc2.bias"],
        )
    return F.layer_norm(x, (VIT_W,), s["last_norm.weight"], s["last_norm.bias"], eps=1e-6)


OVERRIDES = {
    "vision_config": {
        "model_type": "clip_vision_model",
        "hidden_size": CLIP_W,
        "intermediate_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "image_size": CLIP_SIZE,
        "patch_size": CLIP_PATCH,
    },
    "pose_vision_config": {
        "model_type": "vitpose_backbone",
        "hidden_size": VIT_W,
        "num_hidden_layers": VIT_LAYERS,
        "num_attention_heads": VIT_HEADS,
        "image_size": VIT_SIZE,
        "patch_size": (VIT_PATCH, VIT_PATCH),
        "mlp_ratio": 4,
        "layer_norm_eps": 1e-6,
        "out_indices": [-1],
    },
    "pose_vision_feature_padding": 1,
}


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """Tiny files in the exact layout of the published release."""
    root = tmp_path_factory.mktemp("release")
    generator = torch.Generator().manual_seed(0)
    tokenizer = base_tokenizer()
    base_vocab = len(tokenizer)

    # LLaVA-1.6 base, original layout.
    torch.manual_seed(0)
    lm = MistralForCausalLM(mistral_config(base_vocab))
    base_state = {f"model.{k}": v for k, v in lm.model.state_dict().items()} | {
        "lm_head.weight": lm.lm_head.weight
    }
    base_state |= {
        f"model.vision_tower.vision_tower.vision_model.{k}": v for k, v in clip_state(generator).items()
    }
    base_state |= {
        "model.mm_projector.0.weight": torch.zeros(H, CLIP_W),
        "model.image_newline": torch.zeros(H),
    }
    (root / "base").mkdir()
    save_file({k: v.contiguous() for k, v in base_state.items()}, root / "base" / "model.safetensors")
    tokenizer.save_pretrained(root / "base")

    # The UniPose folder: tokenizer with the release's pose tokens, config, trainables, LoRA adapter.
    release_tokenizer = base_tokenizer()
    release_tokenizer.add_tokens(
        [f"<pose_id_{k}>" for k in range(K + 2)] + [f"<pose_query_{i}>" for i in range(T)]
    )
    unipose = root / "unipose"
    release_tokenizer.save_pretrained(unipose)
    release_vocab = len(release_tokenizer)
    (unipose / "config.json").write_text(
        json.dumps(
            {
                **mistral_config(release_vocab).to_dict(),
                "model_type": "llava_mistral",
                "mm_hidden_size": CLIP_W + VIT_W,
            }
        )
    )
    embed = torch.randn(release_vocab, H, generator=generator) * 0.05
    head = torch.randn(release_vocab, H, generator=generator) * 0.05
    trainables = {
        "base_model.model.model.mm_projector.0.weight": torch.randn(H, CLIP_W + VIT_W, generator=generator)
        * 0.05,
        "base_model.model.model.mm_projector.0.bias": torch.zeros(H),
        "base_model.model.model.mm_projector.2.weight": torch.randn(H, H, generator=generator) * 0.05,
        "base_model.model.model.mm_projector.2.bias": torch.zeros(H),
        "base_model.model.model.embed_tokens.weight": embed,
        "base_model.model.lm_head.weight": head,
    }
    torch.save(trainables, unipose / "non_lora_trainables.bin")
    rank, alpha = 4, 8
    adapter = {}
    for i in range(LAYERS):
        for name in ("q_proj", "v_proj"):
            out_features = lm.model.layers[i].self_attn.get_submodule(name).weight.shape[0]
            prefix = f"base_model.model.model.layers.{i}.self_attn.{name}"
            adapter[f"{prefix}.lora_A.weight"] = torch.randn(rank, H, generator=generator) * 0.1
            adapter[f"{prefix}.lora_B.weight"] = torch.randn(out_features, rank, generator=generator) * 0.1
    save_file(adapter, unipose / "adapter_model.safetensors")
    (unipose / "adapter_config.json").write_text(
        json.dumps(
            {"r": rank, "lora_alpha": alpha, "target_modules": ["q_proj", "v_proj"], "peft_type": "LORA"}
        )
    )

    # The pose VQ-VAE (Lightning layout) and TokenHMR.
    torch.manual_seed(1)
    vqvae = ReleaseVQVAE()
    torch.save(
        {"state_dict": vqvae.state_dict(), "epoch": 239, "hyper_parameters": {"lr": 2e-4}},
        root / "vqvae.ckpt",
    )
    vit = release_vit_state(generator)
    torch.save({"state_dict": vit}, root / "tokenhmr.ckpt")

    out = root / "converted"
    report = convert_release(
        root / "base", unipose, root / "vqvae.ckpt", root / "tokenhmr.ckpt", out, config_overrides=OVERRIDES
    )
    return {
        "root": root,
        "out": out,
        "report": report,
        "lm": lm,
        "embed": embed,
        "head": head,
        "vqvae": vqvae,
        "vit": vit,
        "adapter": adapter,
        "rank": rank,
        "alpha": alpha,
        "release_tokenizer": release_tokenizer,
        "trainables": trainables,
    }


def test_every_source_key_is_mapped_or_dropped(release):
    report = release["report"]
    assert report.merged_lora_modules and len(report.merged_lora_modules) == 2 * LAYERS
    assert any("image_newline" in key for key in report.dropped)
    assert any("smpl_head" in key for key in report.dropped)
    assert (release["out"] / "model.safetensors").exists() and (release["out"] / "README.md").exists()
    # The card's `license: other` is named and linked to the LICENSE written beside it, as the Hub asks.
    from huggingface_hub import ModelCard

    card = ModelCard.load(release["out"] / "README.md").data
    assert (card.license, card.license_name, card.license_link) == ("other", "unipose-release-components", "LICENSE")
    assert "TokenHMR" in (release["out"] / "LICENSE").read_text()
    assert json.loads((release["out"] / "conversion_report.json").read_text())["num_mapped"] > 0


def test_unknown_keys_stop_the_conversion(release, tmp_path):
    root = release["root"]
    torch.save({"state_dict": {**release["vit"], "backbone.mystery": torch.zeros(1)}}, tmp_path / "vit.ckpt")
    with pytest.raises(ValueError, match="backbone.mystery"):
        convert_release(
            root / "base",
            root / "unipose",
            root / "vqvae.ckpt",
            tmp_path / "vit.ckpt",
            tmp_path / "out",
            config_overrides=OVERRIDES,
        )


def test_missing_source_file_is_named(release, tmp_path):
    root = release["root"]
    with pytest.raises(FileNotFoundError, match="pose VQ-VAE"):
        convert_release(
            root / "base", root / "unipose", tmp_path / "nope.ckpt", root / "tokenhmr.ckpt", tmp_path / "o"
        )


def test_the_pose_vit_computes_what_the_described_release_computes(release):
    model = UniPoseForConditionalGeneration.from_pretrained(release["out"]).eval()
    images = torch.randn(2, 3, *VIT_SIZE)
    with torch.no_grad():
        ours = model.model.pose_vision_tower(images).feature_maps[-1]
    torch.testing.assert_close(ours, release_vit_forward(release["vit"], images), atol=1e-5, rtol=1e-4)


def test_the_pose_tokenizer_computes_what_the_described_release_computes(release):
    model = UniPoseForConditionalGeneration.from_pretrained(release["out"]).eval()
    assert model.pose_tokenizer.config.compute_dtype == "bfloat16"  # as the release runs it
    model.pose_tokenizer.config.compute_dtype = "float32"  # the weights, compared in the reference's precision
    reference = release["vqvae"].eval()
    poses = torch.randn(4, J, 3) * 0.4
    from unipose.rotations import to_rotation_6d

    with torch.no_grad():
        codes = model.pose_tokenizer.encode(poses)
        assert torch.equal(codes, reference.encode(to_rotation_6d(poses)))
        torch.testing.assert_close(
            model.pose_tokenizer.decode(codes), reference.decode(codes), atol=1e-5, rtol=1e-4
        )


def test_vocabulary_rows_and_queries_move_to_our_ids(release):
    model = UniPoseForConditionalGeneration.from_pretrained(release["out"])
    config, embed, head = model.config, release["embed"], release["head"]
    vocab = release["release_tokenizer"].get_vocab()
    ours = model.get_input_embeddings().weight
    for k in (0, 5, K - 1):
        torch.testing.assert_close(ours[config.pose_code_token_offset + k], embed[vocab[f"<pose_id_{k}>"]])
        torch.testing.assert_close(
            model.lm_head.weight[config.pose_code_token_offset + k], head[vocab[f"<pose_id_{k}>"]]
        )
    torch.testing.assert_close(ours[config.pose_start_token_id], embed[vocab[f"<pose_id_{K}>"]])
    torch.testing.assert_close(ours[config.pose_end_token_id], embed[vocab[f"<pose_id_{K + 1}>"]])
    queries = torch.stack([embed[vocab[f"<pose_query_{i}>"]] for i in range(T)])
    torch.testing.assert_close(model.model.pose_queries, queries)
    torch.testing.assert_close(
        model.model.multi_modal_projector.linear_1.weight,
        release["trainables"]["base_model.model.model.mm_projector.0.weight"],
    )


def test_the_mapping_table_is_the_only_rename_rule():
    assert map_key("vqvae:encoder.encoder.12.model.1.conv2.bias") == (
        True,
        "model.pose_tokenizer.encoder.residual_stack.blocks.1.conv2.bias",
    )
    assert map_key("vit:smpl_head.anything") == (True, None)
    # The transformers layout of LLaVA-1.6 (llava-hf), old and new key styles.
    for key in ("base:language_model.model.layers.3.mlp.up_proj.weight", "base:model.language_model.layers.3.mlp.up_proj.weight"):
        assert map_key(key) == (True, "model.language_model.layers.3.mlp.up_proj.weight")
    for key in ("base:vision_tower.vision_model.encoder.layers.0.mlp.fc1.weight", "base:model.vision_tower.vision_model.encoder.layers.0.mlp.fc1.weight"):
        assert map_key(key) == (True, "model.vision_tower.encoder.layers.0.mlp.fc1.weight")
    assert map_key("vqvae:something.else") == (False, None)
    assert all(isinstance(pattern, str) for pattern, _ in KEY_MAPPING)


def test_converted_checkpoint_generates_through_the_auto_classes(release):
    from transformers import AutoModel, AutoProcessor

    model = AutoModel.from_pretrained(release["out"], trust_remote_code=True)
    processor = AutoProcessor.from_pretrained(release["out"], trust_remote_code=True)
    inputs = processor(text=["[INST] describe <pose> [/INST] <p>"], poses=[torch.zeros(J, 3)])
    out = model.generate(**inputs, max_new_tokens=T + 2, do_sample=False, return_dict_in_generate=True)
    assert out.poses[0].shape == (1, J, 3)
    assert model.config.pose_up_axis == "z"  # the published model's poses stand in AMASS's world
