"""Write a tiny UniPose release (random weights, the published folder layout) and record its reference outputs.

Runs in the environment of the published code (see `parity/README.md`); imports their code and nothing of `unipose`.
The folders are what a user downloads, at tiny sizes:

    OUT/base/                 LLaVA-1.6-Mistral layout: config.json (llava_mistral), model.safetensors (language model,
                              CLIP tower, LLaVA's own projector and image_newline), slow Llama tokenizer
    OUT/unipose/              config.json, tokenizer with the pose tokens, non_lora_trainables.bin, PEFT LoRA adapter
    OUT/pose_vqvae.ckpt       Lightning checkpoint (`state_dict`)
    OUT/tokenhmr_model.ckpt   TokenHMR checkpoint (`state_dict`, backbone keys prefixed `backbone.`)
    OUT/reference.safetensors the published program's outputs on these weights (`record_reference.py`)

Random weights do not make the published `generate` write a pose (it enters its pose step only when it writes the
begin token itself, and parses the 80 query outputs back from token strings). The weights are therefore given a
structure, with nothing but the state dict changed: two residual channels that no layer writes (their rows are zero
in every `o_proj` / `down_proj`, LoRA included, and in the projector's output), one constant in every input
embedding, one large in the 80 pose-query rows only; the output rows of the pose codes read the query channel, those
of every other pose token are pushed down by the constant one, and the output row of the begin token is fitted on
the model's own hidden states so that it wins exactly where a prompt asks for a pose.

    python parity/make_release_fixture.py --unipose-src UniPose --variant a --out tests/fixtures/release_a
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

import torch


VARIANTS = {
    # The sizes differ from the paper's and between the variants; `b` also has what a release may hold beyond the
    # plainest layout: `<im_start>`/`<im_end>` as added tokens, LoRA on the CLIP tower's q/k/v (target modules given
    # by name), rsLoRA, a sliding window in the config, loss weights in the VQ-VAE checkpoint, a codebook of 512
    # codes and a pose ViT with a narrower MLP.
    "a": {
        "hidden": 64, "layers": 2, "heads": 4, "kv_heads": 2, "intermediate": 128, "rope_theta": 1e6,
        "rms_norm_eps": 1e-5, "max_position": 4096, "sliding_window": None, "vocab": 1000,
        # The CLIP tower is named by a local folder holding its config.json (as LLaVA accepts a path).
        "clip": {"hidden": 32, "layers": 2, "heads": 4, "intermediate": 64, "name": "clip-vision"},
        "vit": {"width": 64, "depth": 2, "heads": 1, "mlp_ratio": 4},
        "vqvae": {"hidden": 64, "code_dim": 32, "nb_code": 2048},
        "lora": {"r": 4, "alpha": 8, "rslora": False, "targets": r"model\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)"},
        "im_tokens": False, "vqvae_extra_keys": False,
    },
    "b": {
        "hidden": 96, "layers": 3, "heads": 6, "kv_heads": 3, "intermediate": 160, "rope_theta": 5e5,
        "rms_norm_eps": 1e-6, "max_position": 8192, "sliding_window": 4096, "vocab": 1200,
        # Neither tower's head count is written anywhere: both follow the 64-wide heads of the released towers.
        "clip": {"hidden": 64, "layers": 2, "heads": 1, "intermediate": 96, "name": "fixture/clip-vit-tiny-336"},
        "vit": {"width": 128, "depth": 2, "heads": 2, "mlp_ratio": 2},
        "vqvae": {"hidden": 48, "code_dim": 24, "nb_code": 512},
        "lora": {"r": 8, "alpha": 16, "rslora": True, "targets": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]},
        "im_tokens": True, "vqvae_extra_keys": True,
    },
}
CONSTANT_CHANNEL, QUERY_CHANNEL = 0, 1  # the two reserved residual channels
CONSTANT, QUERY_VALUE = 1.0, 8.0


def train_sentencepiece(out_dir: Path, vocab: int, corpus_files: list[Path]) -> Path:
    """A Llama-style BPE sentencepiece model (byte fallback, unk 0 / bos 1 / eos 2) trained on local text."""
    import sentencepiece as spm

    text = out_dir / "corpus.txt"
    text.write_text("\n".join(f.read_text(errors="ignore") for f in corpus_files))
    spm.SentencePieceTrainer.train(
        input=str(text), model_prefix=str(out_dir / "tokenizer"), vocab_size=vocab, model_type="bpe",
        byte_fallback=True, unk_id=0, bos_id=1, eos_id=2, pad_id=-1, character_coverage=1.0,
        split_digits=True, add_dummy_prefix=True, remove_extra_whitespaces=False, normalization_rule_name="identity",
        num_threads=2, minloglevel=2,
    )
    text.unlink()
    return out_dir / "tokenizer.model"


def reserve_channels(state: dict, prefix: str = "") -> None:
    """Zero the rows of the reserved channels in every matrix that writes the residual stream."""
    for key, tensor in state.items():
        if key.endswith(("o_proj.weight", "down_proj.weight")) and ".vision_tower." not in key:
            tensor[[CONSTANT_CHANNEL, QUERY_CHANNEL]] = 0


def randomize_(module: torch.nn.Module, generator: torch.Generator, std: float = 0.08) -> None:
    """Weights of a scale that keeps tiny random networks' activations well away from zero."""
    for name, parameter in module.named_parameters():
        is_norm = ("norm" in name or "layrnorm" in name) and name.endswith("weight")
        with torch.no_grad():
            if is_norm:
                parameter.copy_(1 + 0.1 * torch.randn(parameter.shape, generator=generator))
            else:
                parameter.copy_(std * torch.randn(parameter.shape, generator=generator))


def build(args) -> None:
    spec = VARIANTS[args.variant]
    out = args.out.resolve()
    if out.exists():
        shutil.rmtree(out)
    work = out.parent / f".{out.name}.work"
    shutil.rmtree(work, ignore_errors=True)
    (work / "cache/smpl_models/smplh").mkdir(parents=True)
    shutil.copy(args.body_model, work / "cache/smpl_models/smplh/SMPLH_NEUTRAL.npz")
    base_dir, release_dir, clip_dir = out / "base", out / "unipose", work / "clip"
    for folder in (base_dir, release_dir, clip_dir):
        folder.mkdir(parents=True)
    generator = torch.Generator().manual_seed(args.seed)
    torch.manual_seed(args.seed)
    sys.path.insert(0, str(args.unipose_src))

    from llava.model.language_model.llava_mistral import LlavaMistralConfig, LlavaMistralForCausalLM
    from peft import LoraConfig, get_peft_model
    from safetensors.torch import save_file
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel, LlamaTokenizer

    # --- tokenizer -----------------------------------------------------------------------------------------------
    project = Path(__file__).resolve().parents[1]
    corpus = [project / "README.md", *sorted((project / "unipose").rglob("*.py"))]  # this project's own text
    tokenizer_model = train_sentencepiece(work, spec["vocab"], corpus)
    tokenizer = LlamaTokenizer(vocab_file=str(tokenizer_model), legacy=True, add_bos_token=True, add_eos_token=False)
    tokenizer.model_max_length = 4096
    tokenizer.save_pretrained(base_dir)

    # --- CLIP tower (336 px, patch 14: the release assumes a 24x24 grid) -------------------------------------------
    clip = spec["clip"]
    clip_config = CLIPVisionConfig(
        hidden_size=clip["hidden"], intermediate_size=clip["intermediate"], num_hidden_layers=clip["layers"],
        num_attention_heads=clip["heads"], image_size=336, patch_size=14, projection_dim=clip["hidden"],
    )
    clip_model = CLIPVisionModel(clip_config)
    randomize_(clip_model, generator, std=0.05)
    clip_model.save_pretrained(clip_dir)
    CLIPImageProcessor(
        size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336}, do_center_crop=True,
        image_mean=[0.48145466, 0.4578275, 0.40821073], image_std=[0.26862954, 0.26130258, 0.27577711],
    ).save_pretrained(clip_dir)

    # --- LLaVA-1.6-Mistral base ---------------------------------------------------------------------------------
    common = dict(
        vocab_size=len(tokenizer), hidden_size=spec["hidden"], intermediate_size=spec["intermediate"],
        num_hidden_layers=spec["layers"], num_attention_heads=spec["heads"], num_key_value_heads=spec["kv_heads"],
        rope_theta=spec["rope_theta"], rms_norm_eps=spec["rms_norm_eps"], max_position_embeddings=spec["max_position"],
        sliding_window=spec["sliding_window"], tie_word_embeddings=False, bos_token_id=1, eos_token_id=2,
        mm_vision_tower=str(clip_dir), mm_vision_select_layer=-2, mm_vision_select_feature="patch",
        mm_projector_type="mlp2x_gelu", mm_patch_merge_type="spatial_unpad", image_aspect_ratio="anyres",
        image_grid_pinpoints=[[336, 672], [672, 336], [672, 672]], mm_use_im_start_end=False,
        mm_use_im_patch_token=False, tokenizer_padding_side="left", use_cache=True, torch_dtype="float32",
        unfreeze_mm_vision_tower=True,
    )
    base_config = LlavaMistralConfig(**common, mm_hidden_size=clip["hidden"])
    base_config.architectures = ["LlavaMistralForCausalLM"]
    base = LlavaMistralForCausalLM(base_config)
    randomize_(base, generator)
    with torch.no_grad():
        base.get_model().get_vision_tower().vision_tower.load_state_dict(clip_model.state_dict())
    state = {k: v.detach().clone().contiguous() for k, v in base.state_dict().items()}
    reserve_channels(state)
    base.load_state_dict(state)
    base_config.save_pretrained(base_dir)
    save_file(state, str(base_dir / "model.safetensors"), metadata={"format": "pt"})

    # --- the UniPose release folder -----------------------------------------------------------------------------
    codebook = spec["vqvae"]["nb_code"]
    release_tokenizer = LlamaTokenizer.from_pretrained(base_dir, legacy=True)
    release_tokenizer.pad_token = release_tokenizer.unk_token
    release_tokenizer.add_tokens([f"<pose_id_{i}>" for i in range(codebook)])
    release_tokenizer.add_tokens([f"<pose_id_{codebook}>", f"<pose_id_{codebook + 1}>"], special_tokens=True)
    if spec["im_tokens"]:
        release_tokenizer.add_tokens(["<im_start>", "<im_end>"], special_tokens=True)
    release_tokenizer.add_tokens([f"<pose_query_{i}>" for i in range(80)])
    release_tokenizer.save_pretrained(release_dir)
    release_config = LlavaMistralConfig(**common, mm_hidden_size=clip["hidden"] + spec["vit"]["width"])
    release_config.architectures = ["LlavaMistralForCausalLM"]
    release_config.save_pretrained(release_dir)

    hidden, vocab = spec["hidden"], len(release_tokenizer)
    vocab_ids = release_tokenizer.get_vocab()
    embed = 0.6 * torch.randn(vocab, hidden, generator=generator)
    lm_head = 0.08 * torch.randn(vocab, hidden, generator=generator)
    query_rows = [vocab_ids[f"<pose_query_{i}>"] for i in range(80)]
    code_rows = [vocab_ids[f"<pose_id_{i}>"] for i in range(codebook)]
    other_added = [i for i in range(len(tokenizer), vocab) if i not in set(code_rows)]
    embed[:, CONSTANT_CHANNEL], embed[:, QUERY_CHANNEL] = CONSTANT, 0.0
    embed[query_rows, QUERY_CHANNEL] = QUERY_VALUE
    lm_head[code_rows, CONSTANT_CHANNEL], lm_head[code_rows, QUERY_CHANNEL] = -10.0, 3.0
    lm_head[other_added, CONSTANT_CHANNEL], lm_head[other_added, QUERY_CHANNEL] = -10.0, -3.0
    projector_in = clip["hidden"] + spec["vit"]["width"]
    linear_2_weight = 0.08 * torch.randn(hidden, hidden, generator=generator)
    linear_2_bias = 0.05 * torch.randn(hidden, generator=generator)
    linear_2_weight[[CONSTANT_CHANNEL, QUERY_CHANNEL]] = 0
    linear_2_bias[CONSTANT_CHANNEL], linear_2_bias[QUERY_CHANNEL] = CONSTANT, 0.0
    trainables = {
        "base_model.model.model.mm_projector.0.weight": 0.08 * torch.randn(hidden, projector_in, generator=generator),
        "base_model.model.model.mm_projector.0.bias": 0.05 * torch.randn(hidden, generator=generator),
        "base_model.model.model.mm_projector.2.weight": linear_2_weight,
        "base_model.model.model.mm_projector.2.bias": linear_2_bias,
        "base_model.model.model.embed_tokens.weight": embed,
        "base_model.model.lm_head.weight": lm_head,
    }
    torch.save(trainables, release_dir / "non_lora_trainables.bin")

    lora = spec["lora"]
    peft_model = get_peft_model(
        LlavaMistralForCausalLM.from_pretrained(base_dir),
        LoraConfig(r=lora["r"], lora_alpha=lora["alpha"], target_modules=lora["targets"], lora_dropout=0.05,
                   bias="none", task_type="CAUSAL_LM", use_rslora=lora["rslora"]),
    )
    with torch.no_grad():
        for name, parameter in peft_model.named_parameters():
            if "lora_" in name:
                parameter.copy_(0.05 * torch.randn(parameter.shape, generator=generator))
                if "lora_B" in name and (".o_proj." in name or ".down_proj." in name) and "vision_tower" not in name:
                    parameter[[CONSTANT_CHANNEL, QUERY_CHANNEL]] = 0
    peft_model.save_pretrained(release_dir)
    (release_dir / "README.md").unlink(missing_ok=True)

    # --- pose VQ-VAE and TokenHMR's ViT -------------------------------------------------------------------------
    os.chdir(work)
    from posegpt.models.base_module import build_model

    vq = spec["vqvae"]
    vqvae_config = _vqvae_config(vq)
    vqvae = build_model(vqvae_config)
    randomize_(vqvae, generator, std=0.08)
    with torch.no_grad():
        # Codebook entries drawn from encoder outputs of random poses, so that poses use many codes.
        rotations = torch.linalg.matrix_exp(_skew(0.5 * torch.randn(512, 22, 3, generator=generator)))
        latents = vqvae.quantizer.preprocess(vqvae.encoder(rotations[:, :, :2, :].reshape(512, 22, 6)))
        vqvae.quantizer.codebook.copy_(latents[torch.randperm(latents.shape[0], generator=generator)[:vq["nb_code"]]])
    vq_state = dict(vqvae.state_dict())
    if spec["vqvae_extra_keys"]:
        vq_state["loss.joint_weights"] = torch.ones(22)
        vq_state["loss.vertex_loss.weight"] = torch.tensor(100.0)
    torch.save({"state_dict": vq_state, "epoch": 239, "global_step": 0, "pytorch-lightning_version": "2.3.3"},
               out / "pose_vqvae.ckpt")

    vit = _tiny_vit(args.unipose_src, spec["vit"])
    randomize_(vit, generator, std=0.05)
    vit_state = {f"backbone.{k}": v for k, v in vit.state_dict().items()}
    vit_state["smpl_head.decpose.weight"] = torch.randn(144, 16, generator=generator) * 0.01
    vit_state["smpl_head.decpose.bias"] = torch.zeros(144)
    torch.save({"state_dict": vit_state}, out / "tokenhmr_model.ckpt")

    config_file = work / "inference_config.py"
    config_file.write_text(
        f"pose_vqvae_config = {json.dumps(vqvae_config)}\n"
        f"pose_vqvae_ckp_path = {json.dumps(str(out / 'pose_vqvae.ckpt'))}\n"
        f"hmr_vit_ckp_path = {json.dumps(str(out / 'tokenhmr_model.ckpt'))}\n"
    )

    # --- make the published generate take the pose path, then record ------------------------------------------
    import record_reference

    _patch_vit_factory(args.unipose_src, spec["vit"])
    projector_shape = (hidden, projector_in)
    for round_ in range(4):
        model, image_processor, _ = record_reference.load_release(
            args.unipose_src, str(release_dir), str(base_dir), str(config_file), projector_shape
        )
        if not _fit_begin_row(model, image_processor, release_dir, round_):
            break
    model, image_processor, _ = record_reference.load_release(
        args.unipose_src, str(release_dir), str(base_dir), str(config_file), projector_shape
    )
    poses = record_reference.generated_poses(6, seed=1)
    images = record_reference.generated_images(4, seed=2)
    tensors, metadata = record_reference.record(model, image_processor, poses, images)
    wrong = [c["name"] for c in metadata["cases"] if (c["num_poses_written"] > 0) != c["pose_answer"]]
    if wrong:
        raise RuntimeError(f"The calibrated weights still answer these cases with the wrong kind of output: {wrong}")
    metadata["variant"] = args.variant
    from safetensors.torch import save_file as save

    save({k: v.contiguous() for k, v in tensors.items()}, str(out / "reference.safetensors"),
         metadata={"unipose_reference": json.dumps(metadata)})
    # The folders as a user has them: the CLIP tower named by a relative folder or by a name, not by a path of this machine.
    if clip["name"] == "clip-vision":
        (base_dir / "clip-vision").mkdir()
        shutil.copy(clip_dir / "config.json", base_dir / "clip-vision" / "config.json")
    for folder in (base_dir, release_dir):
        config = json.loads((folder / "config.json").read_text())
        config["mm_vision_tower"] = clip["name"]
        (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    adapter = json.loads((release_dir / "adapter_config.json").read_text())
    adapter["base_model_name_or_path"] = "liuhaotian/llava-v1.6-mistral-7b"
    (release_dir / "adapter_config.json").write_text(json.dumps(adapter, indent=2) + "\n")
    shutil.rmtree(work)
    print(json.dumps(metadata, indent=1))


def _skew(v: torch.Tensor) -> torch.Tensor:
    zero = torch.zeros_like(v[..., 0])
    x, y, z = v.unbind(-1)
    return torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).reshape(v.shape[:-1] + (3, 3))


def _vqvae_config(vq: dict) -> dict:
    def coder(kind, input_dim, output_dim):
        return {"target": f"posegpt.models.pose_vqvae.TokenHMR{kind}", "params": {
            "input_dim": input_dim, "hidden_dim": vq["hidden"], "output_dim": output_dim, "num_joints": 22,
            "upsample_step": 2, "downsample_step": 1}}

    return {"target": "posegpt.models.pose_vqvae.PoseVQVAE", "params": {
        "encoder": coder("Encoder", 6, vq["code_dim"]),
        "decoder": coder("Decoder", vq["code_dim"], 6),
        "quantizer": {"target": "posegpt.models.components.quantize_cnn.QuantizeEMAReset",
                      "params": {"nb_code": vq["nb_code"], "code_dim": vq["code_dim"], "mu": 0.99}}}}


def _patch_vit_factory(unipose_src: Path, sizes: dict) -> None:
    """The release's ViT loader hard-codes ViT-H; build its ViT at the fixture's sizes instead. The class looks
    itself up by name in its constructor, so the real class is put back while it runs."""
    sys.path.insert(0, str(unipose_src))
    import posegpt.models.vit as vit_module

    real = vit_module.ViT

    def factory(**kwargs):
        kwargs.update(embed_dim=sizes["width"], depth=sizes["depth"], num_heads=sizes["heads"], mlp_ratio=sizes["mlp_ratio"])
        vit_module.ViT = real
        try:
            return real(**kwargs)
        finally:
            vit_module.ViT = factory

    vit_module.ViT = factory


def _tiny_vit(unipose_src: Path, sizes: dict):
    sys.path.insert(0, str(unipose_src))
    from posegpt.models.vit import ViT

    vit = ViT(img_size=(256, 192), patch_size=16, embed_dim=sizes["width"], depth=sizes["depth"],
              num_heads=sizes["heads"], ratio=1, use_checkpoint=False, mlp_ratio=sizes["mlp_ratio"], qkv_bias=True,
              drop_path_rate=0.55)
    vit.eval()  # (their `train` returns None)
    return vit


@torch.no_grad()
def _fit_begin_row(model, image_processor, release_dir: Path, round_: int) -> bool:
    """Fit the output row of the begin token so that it wins (by a margin) at the end of every prompt that asks for
    a pose and loses everywhere text is written; returns False when the current row already does."""
    import record_reference

    tokenizer = model.tokenizer
    begin = model.pose_begin_idx
    positives, negatives = [], []
    poses = torch.from_numpy(record_reference.generated_poses(6, seed=1))
    images = record_reference.generated_images(4, seed=2)
    clip = torch.stack([image_processor.preprocess(i, return_tensors="pt")["pixel_values"][0] for i in images])
    hmr = torch.stack([record_reference.hmr_pixels(i) for i in images])
    codes = torch.cat([model.get_pose_vqvae().encode(p[None]) for p in poses])
    pose_cursor = image_cursor = 0
    ok = True
    for case in record_reference.CASES:
        pose_idx = list(range(pose_cursor, pose_cursor + case["poses"]))
        image_idx = list(range(image_cursor, image_cursor + case["images"]))
        pose_cursor += case["poses"]
        image_cursor += case["images"]
        chosen = [codes[i : i + 1] for i in pose_idx] + [codes[:1]] * 2
        input_ids, attention_mask = record_reference.prompt_ids(model, case, chosen[0], chosen[1])
        clip_in = torch.stack(([clip[i] for i in image_idx] + [torch.zeros_like(clip[0])] * 2)[:2])
        hmr_in = torch.stack(([hmr[i] for i in image_idx] + [torch.zeros_like(hmr[0])] * 2)[:2])
        try:
            output = model.generate(input_ids, images=clip_in, hmr_images=hmr_in, attention_mask=attention_mask,
                                    max_new_tokens=record_reference.MAX_NEW_TOKENS, num_beams=1, use_cache=True)
            new_ids = output[0]
            if int(new_ids[0]) == tokenizer.bos_token_id:
                new_ids = new_ids[1:]
        except RuntimeError:  # the published loop breaks when `<p>` follows a pose at once
            ok, new_ids = False, torch.tensor([begin])
        wrote_pose = bool((new_ids == begin).any())
        first_is_pose = int(new_ids[0]) == begin
        ok &= (first_is_pose if case["pose_answer"] else not wrote_pose)
        # Hidden states at the prompt's end and at every text position written afterwards.
        embeds, mask = record_reference.multimodal_embeddings(model, input_ids, attention_mask, clip_in, hmr_in)
        text_ids = new_ids[: (new_ids == begin).nonzero().flatten()[0]] if wrote_pose else new_ids
        follow = model.get_model().embed_tokens(text_ids[None])
        all_embeds = torch.cat([embeds, follow], 1)
        all_mask = torch.ones(all_embeds.shape[:2], dtype=torch.int8)
        hidden = model.model(inputs_embeds=all_embeds, attention_mask=all_mask, use_cache=False)[0][0]
        prompt_end = embeds.shape[1] - 1
        if case["pose_answer"]:
            positives.append(hidden[prompt_end])
            negatives.extend(hidden[prompt_end + 1 :])
            # The position of `</p>` after the pose: `<p>` there would start a second pose at once.
            table = model.get_model().embed_tokens
            span = torch.cat([table(torch.tensor([[begin]])), table.weight[None, -80:], table(torch.tensor([[model.pose_end_idx]]))], 1)
            span_mask = torch.cat([torch.ones(1, embeds.shape[1] + 1), 2 * torch.ones(1, 80), torch.ones(1, 1)], 1)
            after = model.model(inputs_embeds=torch.cat([embeds, span], 1), attention_mask=span_mask.to(torch.int8),
                                use_cache=False)[0][0]
            negatives.append(after[-1])
        else:
            negatives.extend(hidden[prompt_end:])
    if ok and round_ > 0:
        return False
    lm_head = model.lm_head.weight.detach().clone()
    others = torch.cat([lm_head[:begin], lm_head[begin + 1 :]])
    pos, neg = torch.stack(positives), torch.stack(negatives)
    pos_max, neg_max = (pos @ others.T).max(-1).values, (neg @ others.T).max(-1).values
    row = lm_head[begin].clone().requires_grad_(True)
    optimizer = torch.optim.Adam([row], lr=0.05)
    with torch.enable_grad():
        for _ in range(3000):
            optimizer.zero_grad()
            loss = torch.relu(pos_max + 2.0 - pos @ row).sum() + torch.relu(neg @ row - (neg_max - 2.0)).sum()
            loss = loss + 1e-3 * row.pow(2).sum()
            loss.backward()
            optimizer.step()
    row = row.detach()
    # Text positions carry nothing on the query channel, so this leaves the fit alone; it keeps the begin token
    # from winning at a query position (the published pose step breaks if one of its 80 outputs is `<p>`).
    row[QUERY_CHANNEL] = -3.0
    trainables = torch.load(release_dir / "non_lora_trainables.bin", weights_only=True)
    trainables["base_model.model.lm_head.weight"][begin] = row
    torch.save(trainables, release_dir / "non_lora_trainables.bin")
    print(f"round {round_}: begin row fitted (hinge loss {loss.item():.4f}); all cases right before: {ok}")
    return True


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--unipose-src", required=True, type=Path, help="Checkout of the published UniPose code.")
    parser.add_argument("--body-model", required=True, type=Path, help="An SMPL-H `.npz` (the generated one will do).")
    parser.add_argument("--variant", choices=sorted(VARIANTS), required=True)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--seed", type=int, default=0)
    build(parser.parse_args(argv))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    main()
