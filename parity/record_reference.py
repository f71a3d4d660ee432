"""Record the outputs of the published UniPose program, for `unipose verify`.

This script runs in the environment of the published code (transformers 4.37, its `posegpt` package and the LLaVA
package it pins; see `parity/README.md`), never in UniPose's own: it imports their code and nothing of `unipose`.
It loads a release with the published loader (`load_pretrained_model` of the release's `inference.py`, read out of
the file so that its torchvision import is not needed), runs a fixed set of prompts covering the seven tasks, and
writes every input it used and every output into one safetensors file:

- the prompt ids as the release builds them (`process_templates`, the `mistral_instruct` conversation, LLaVA's
  image splice), the images (uint8) and the pixels the release computes from them, the input poses;
- the CLIP features, the pose-ViT feature map and the projected image features;
- the forward logits of each prompt (all positions on a fixed subset of the vocabulary, the last positions in full);
- greedy generation through the release's own `generate`: the new token ids, and for a pose the logits of the
  80-query step, the codes and the decoded pose;
- the pose tokenizer on the input poses: codes, and the poses decoded from them.

    python parity/record_reference.py --unipose-src UniPose --model-path cache/unipose \\
        --model-base cache/llava-v1.6-mistral-7b --config UniPose/configs/inference.py --out reference.safetensors
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw


# Each case: the release's template language (`<image>`, `<pose>`, `<poseA>`/`<poseB>` for two poses), the images
# and poses it takes, and whether the answer is a pose.
CASES = [
    {"name": "text_to_pose", "template": "Generate the 3D pose of this description: a person kneels on the right knee with both arms raised.", "images": 0, "poses": 0, "pose_answer": True},
    {"name": "pose_to_text", "template": "Describe the body pose <pose> in detail.", "images": 0, "poses": 1, "pose_answer": False},
    {"name": "pose_diff", "template": "What should the person do to go from <poseA> to <poseB>?", "images": 0, "poses": 2, "pose_answer": False},
    {"name": "pose_edit", "template": "Modify the pose <pose> as follows: bend the left elbow and lift the right leg.", "images": 0, "poses": 1, "pose_answer": True},
    {"name": "image_to_text", "template": "Describe the pose of the person in the image <image>.", "images": 1, "poses": 0, "pose_answer": False},
    {"name": "image_diff", "template": "How does the pose change from image <image> to image <image>?", "images": 2, "poses": 0, "pose_answer": False},
    {"name": "pose_estimation", "template": "Estimate the SMPL pose of the person in <image>.", "images": 1, "poses": 0, "pose_answer": True},
    {"name": "text_only", "template": "What is a pose?", "images": 0, "poses": 0, "pose_answer": False},
]
MAX_NEW_TOKENS = 120  # room for a pose (`<p>` + 80 codes + `</p>`) and text after it
LOGIT_SUBSET_SIZE = 32
LAST_POSITIONS = 4
QUERY_LOGIT_CODES = 256  # the query step's logits are kept for the first codes


# ----------------------------------------------------------------------------------------------------------------
# Inputs: generated deterministically, or read from files
# ----------------------------------------------------------------------------------------------------------------


def _rotation_from_axis_angle(axis_angle: np.ndarray) -> np.ndarray:
    """Rodrigues' formula, `(..., 3) -> (..., 3, 3)` in float64."""
    angle = np.linalg.norm(axis_angle, axis=-1, keepdims=True)
    axis = axis_angle / np.maximum(angle, 1e-12)
    x, y, z = axis[..., 0], axis[..., 1], axis[..., 2]
    zero = np.zeros_like(x)
    skew = np.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).reshape(axis.shape[:-1] + (3, 3))
    angle = angle[..., None]
    return np.eye(3) + np.sin(angle) * skew + (1 - np.cos(angle)) * skew @ skew


def generated_poses(count: int, seed: int) -> np.ndarray:
    """Poses as real pipelines hand them over: SMPL rotation matrices rounded through bfloat16 (as the release's
    bf16 inference writes them), so that `max |R R^T - I|` is a few 1e-3. `(count, 22, 3, 3)` float32."""
    rng = np.random.default_rng(seed)
    axis_angle = rng.normal(0.0, 0.45, size=(count, 22, 3))
    matrices = torch.from_numpy(_rotation_from_axis_angle(axis_angle)).to(torch.bfloat16).float()
    return matrices.numpy()


def generated_images(count: int, seed: int) -> list[np.ndarray]:
    """Stick figures on a textured background, of different sizes and aspect ratios, `(H, W, 3)` uint8."""
    rng = np.random.default_rng(seed)
    images = []
    for index in range(count):
        width, height = [(150, 210), (256, 192), (130, 130)][index % 3]
        base = rng.integers(0, 255, size=(height // 8 + 1, width // 8 + 1, 3), dtype=np.uint8)
        image = Image.fromarray(base).resize((width, height), Image.BILINEAR)
        draw = ImageDraw.Draw(image)
        points = rng.uniform([0.2 * width, 0.1 * height], [0.8 * width, 0.9 * height], size=(8, 2))
        for start, end in zip(points[:-1], points[1:]):
            draw.line([tuple(start), tuple(end)], fill=tuple(int(v) for v in rng.integers(0, 255, 3)), width=9)
        images.append(np.asarray(image.convert("RGB")))
    return images


def hmr_pixels(image: np.ndarray, size: int = 256) -> torch.Tensor:
    """The release's pose-ViT preprocessing (torchvision `Resize(256, BICUBIC)`, `CenterCrop(256)`, `ToTensor`,
    ImageNet `Normalize`), written with PIL, which is what torchvision calls for PIL images."""
    picture = Image.fromarray(image)
    width, height = picture.size
    short, long = (width, height) if width <= height else (height, width)
    new_long = int(size * long / short)
    new_size = (size, new_long) if width <= height else (new_long, size)
    picture = picture.resize(new_size, Image.BICUBIC)
    width, height = picture.size
    top, left = int(round((height - size) / 2.0)), int(round((width - size) / 2.0))
    picture = picture.crop((left, top, left + size, top + size)).convert("RGB")
    pixels = torch.from_numpy(np.asarray(picture, dtype=np.float32) / 255.0).permute(2, 0, 1)
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    return (pixels - mean) / std


# ----------------------------------------------------------------------------------------------------------------
# The published program
# ----------------------------------------------------------------------------------------------------------------


def import_release(unipose_src: Path):
    """The release's `posegpt` package and the loader function of its `inference.py`, without running that file."""
    sys.path.insert(0, str(unipose_src))
    import posegpt.models.posegpt_full_mask as full_mask  # noqa: F401  (their model)

    source = (unipose_src / "inference.py").read_text()
    tree = ast.parse(source)
    function = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "load_pretrained_model")
    return full_mask, ast.get_source_segment(source, function)


def load_release(unipose_src: Path, model_path: str, model_base: str, config_file: str, projector_shape=None):
    """`(model, clip_image_processor, config)` through the release's own loader, in float32 on the CPU."""
    import warnings

    import posegpt.models.posegpt_full_mask as full_mask
    from llava import conversation as conversation_lib
    from llava.model.language_model.llava_mistral import LlavaMistralConfig
    from peft import PeftModel
    from posegpt.utils import Config
    from transformers import AutoTokenizer

    _, loader_source = import_release(unipose_src)
    if projector_shape is not None:
        # The loader hard-codes the 7B projector's (4096, 2304) input matrix; a release of other sizes needs its own.
        loader_source = loader_source.replace("4096, 2304", f"{projector_shape[0]}, {projector_shape[1]}")
    namespace = {
        "os": os, "torch": torch, "warnings": warnings, "AutoTokenizer": AutoTokenizer,
        "LlavaMistralConfig": LlavaMistralConfig, "PoseGPTFullMask": full_mask.PoseGPTFullMask,
        "PeftModel": PeftModel,
    }
    exec(compile(loader_source, "inference.py:load_pretrained_model", "exec"), namespace)
    conversation_lib.default_conversation = conversation_lib.conv_templates["mistral_instruct"]
    config = Config.fromfile(config_file)
    model, image_processor = namespace["load_pretrained_model"](
        config, model_path, model_base, device_map="cpu", torch_dtype=torch.float32, **config
    )
    model.config.tokenizer_padding_side = "left"
    return model.eval(), image_processor, config


def prompt_ids(model, case: dict, pose_a_codes, pose_b_codes):
    """The prompt as the release builds it: `process_templates` with the `mistral_instruct` conversation."""
    from posegpt.models.posegpt import process_templates

    input_ids, attention_mask = process_templates(
        [""], [{"input": case["template"]}], pose_a_codes, pose_b_codes,
        tokenizer=model.tokenizer, codebook_size=model.pose_vqvae_codebook_size,
    )
    return input_ids, attention_mask


def multimodal_embeddings(model, input_ids, attention_mask, images, hmr_images):
    """Prompt embeddings as the release's `generate` computes them (its multimodal splice)."""
    _, position_ids, mask, _, embeds, _ = model.prepare_inputs_labels_for_multimodal(
        input_ids, None, attention_mask, None, None, images, hmr_images
    )
    return embeds, mask


class _QueryStepRecorder:
    """Keeps the logits of the release's 81-token pose step (`<p>` + 80 queries)."""

    def __init__(self, model):
        self.logits = []
        self.handle = model.lm_head.register_forward_hook(self)

    def __call__(self, module, args, output):
        if output.shape[1] == 81:
            self.logits.append(output[:, 1:].detach().float().clone())


@torch.no_grad()
def record(model, image_processor, poses: np.ndarray, images: list[np.ndarray], seed: int = 0) -> dict:
    """Run every case; returns `(tensors, metadata)` for the safetensors file."""
    tokenizer = model.tokenizer
    vocab = len(tokenizer)
    subset = torch.randperm(vocab, generator=torch.Generator().manual_seed(seed))[:LOGIT_SUBSET_SIZE].sort().values
    begin, end = model.pose_begin_idx, model.pose_end_idx
    codebook_size = model.pose_vqvae_codebook_size
    code_ids = torch.tensor(tokenizer.convert_tokens_to_ids([f"<pose_id_{k}>" for k in range(codebook_size)]))
    vqvae = model.get_pose_vqvae()
    tensors: dict[str, torch.Tensor] = {"logit_subset": subset, "release_code_token_ids": code_ids}
    base_vocab = tokenizer.vocab_size  # the sentencepiece model's pieces
    pose_tokens = {f"<pose_id_{k}>" for k in range(codebook_size + 2)} | {f"<pose_query_{i}>" for i in range(80)}
    other_added = {i: str(t) for i, t in tokenizer.added_tokens_decoder.items() if i >= base_vocab and str(t) not in pose_tokens}
    metadata = {"cases": [], "pose_begin_id": begin, "pose_end_id": end, "vocab_size": vocab,
                "base_vocab_size": base_vocab, "other_added_tokens": other_added, "image_token_index": -200,
                "max_new_tokens": MAX_NEW_TOKENS, "last_positions": LAST_POSITIONS}

    pose_tensor = torch.from_numpy(poses)
    tensors["poses"] = pose_tensor
    tensors["pose_codes"] = torch.cat([vqvae.encode(pose[None]) for pose in pose_tensor])
    decoded = vqvae.decode(tensors["pose_codes"], return_type="rotmat")
    tensors["pose_decoded_rotmat"] = decoded.float()
    tensors["pose_decoded_axis_angle"] = vqvae.decode(tensors["pose_codes"], return_type="axis_angle").float()

    clip_pixels, pose_pixels = [], []
    for index, image in enumerate(images):
        tensors[f"images.{index}"] = torch.from_numpy(image.copy())
        clip_pixels.append(image_processor.preprocess(image, return_tensors="pt")["pixel_values"][0])
        pose_pixels.append(hmr_pixels(image))
    clip_pixels, pose_pixels = torch.stack(clip_pixels), torch.stack(pose_pixels)
    # Every 8th row and column: enough to see any difference of resampling or normalisation.
    tensors["clip_pixel_values_every_8th"] = clip_pixels[..., ::8, ::8].contiguous()
    tensors["hmr_pixel_values_every_8th"] = pose_pixels[..., ::8, ::8].contiguous()
    clip_features = model.get_model().get_vision_tower()(clip_pixels)
    pose_features = model.get_hmr_vit_backbone()(pose_pixels[..., 32:-32])
    tensors["clip_features_every_8th"] = clip_features[:, ::8].float().contiguous()
    tensors["pose_vit_features"] = pose_features.float()

    blank_clip, blank_hmr = torch.zeros_like(clip_pixels[0]), torch.zeros_like(pose_pixels[0])
    pose_cursor, image_cursor = 0, 0
    for case in CASES:
        name = case["name"]
        pose_indices = list(range(pose_cursor, pose_cursor + case["poses"]))
        pose_cursor += case["poses"]
        image_indices = list(range(image_cursor, image_cursor + case["images"]))
        image_cursor += case["images"]
        codes = [tensors["pose_codes"][i : i + 1] for i in pose_indices] + [tensors["pose_codes"][:1]] * 2
        input_ids, attention_mask = prompt_ids(model, case, codes[0], codes[1])
        # As the release's `main`: always two image slots, zeros where the prompt has fewer images.
        clip = [clip_pixels[i] for i in image_indices] + [blank_clip] * 2
        hmr = [pose_pixels[i] for i in image_indices] + [blank_hmr] * 2
        images_in, hmr_in = torch.stack(clip[:2]), torch.stack(hmr[:2])

        embeds, mask = multimodal_embeddings(model, input_ids, attention_mask, images_in, hmr_in)
        logits = model(inputs_embeds=embeds, attention_mask=mask.to(torch.int8), use_cache=False).logits[0]
        tensors[f"{name}.input_ids"] = input_ids[0]
        tensors[f"{name}.logits_subset"] = logits[:, subset].float()
        tensors[f"{name}.logits_last"] = logits[-LAST_POSITIONS:].float()
        tensors[f"{name}.argmax"] = logits.argmax(-1)

        recorder = _QueryStepRecorder(model)
        try:
            output = model.generate(
                input_ids, images=images_in, hmr_images=hmr_in, attention_mask=attention_mask,
                max_new_tokens=MAX_NEW_TOKENS, num_beams=1, use_cache=True, do_sample=False,
            )
        finally:
            recorder.handle.remove()
        new_ids = output[0]
        # With only embeddings as input, transformers 4.37 starts the output with a dummy BOS.
        if new_ids.numel() and int(new_ids[0]) == tokenizer.bos_token_id:
            new_ids = new_ids[1:]
        # A pose begun at the length limit stays open (its queries are never run): keep what precedes it.
        open_pose = (new_ids == -1).nonzero().flatten()
        if open_pose.numel():
            new_ids = new_ids[: int(open_pose[0]) - 1]
        tensors[f"{name}.generated_ids"] = new_ids.clone()
        starts = (new_ids == begin).nonzero().flatten().tolist()
        entry = {"name": name, "template": case["template"], "pose_indices": pose_indices,
                 "image_indices": image_indices, "pose_answer": case["pose_answer"], "num_poses_written": len(starts)}
        if starts:
            start = starts[0]
            written = new_ids[start + 1 : start + 81]
            their_codes = torch.tensor([int(tokenizer.convert_ids_to_tokens(int(i))[len("<pose_id_") : -1]) for i in written])
            tensors[f"{name}.generated_codes"] = their_codes
            tensors[f"{name}.query_step_logits"] = recorder.logits[0][0][:, code_ids[:QUERY_LOGIT_CODES]].float()
            tensors[f"{name}.generated_pose_axis_angle"] = vqvae.decode(their_codes[None], return_type="axis_angle")[0].float()
        metadata["cases"].append(entry)
    return tensors, metadata


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--unipose-src", required=True, type=Path, help="Checkout of the published UniPose code.")
    parser.add_argument("--model-path", required=True, help="The UniPose release folder (LoRA, trainables, tokenizer).")
    parser.add_argument("--model-base", required=True, help="The LLaVA-1.6-Mistral-7B folder.")
    parser.add_argument("--config", required=True, help="The release's inference config (pose VQ-VAE, ViT paths).")
    parser.add_argument("--out", required=True, type=Path, help="safetensors file to write.")
    parser.add_argument("--pose-files", nargs="*", default=[], help="Extra poses, `.npy` rotation matrices (22, 3, 3).")
    parser.add_argument("--projector-shape", nargs=2, type=int, default=None, help="For releases not of the 7B sizes.")
    parser.add_argument("--workdir", default=".", help="Folder holding the release's relative `cache/` paths.")
    args = parser.parse_args(argv)

    from safetensors.torch import save_file

    unipose_src, out = args.unipose_src.resolve(), args.out.resolve()
    pose_files = [Path(f).resolve() for f in args.pose_files]
    os.chdir(args.workdir)  # the release opens its body model and checkpoints by paths relative to its folder
    torch.manual_seed(0)
    model, image_processor, _ = load_release(
        unipose_src, args.model_path, args.model_base, args.config, args.projector_shape
    )
    poses = generated_poses(6, seed=1)
    if pose_files:
        poses = np.concatenate([np.stack([np.load(f).astype(np.float32) for f in pose_files]), poses])
    tensors, metadata = record(model, image_processor, poses, generated_images(4, seed=2))
    tensors = {k: v.contiguous() for k, v in tensors.items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out), metadata={"unipose_reference": json.dumps(metadata)})
    print(json.dumps(metadata, indent=1))


if __name__ == "__main__":
    main()
