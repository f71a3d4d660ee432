"""Compare a converted checkpoint with the outputs of the published UniPose program.

The published code needs transformers 4.37 and cannot share an environment with this package. Its outputs are
therefore recorded once, in its own environment, by `parity/record_reference.py` (a standalone script that imports
the release's code and nothing of `unipose`), into a safetensors file holding every input it used (prompts, images,
poses) and every output (prompt ids, pixels, image features, logits, greedy ids, pose codes, decoded poses).
[`verify_against_reference`] runs the same inputs through a converted checkpoint and reports, check by check, the
largest difference.

    unipose verify --model unipose-hf --reference reference.safetensors
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import PIL.Image
import torch
from safetensors import safe_open

from .modeling_unipose import UniPoseForConditionalGeneration
from .processing_unipose import UniPoseProcessor

PathLike = str | os.PathLike
DEFAULT_ATOL = 1e-4


@dataclass
class Check:
    """One comparison: `value` is the largest absolute difference, or the number of unequal entries."""

    name: str
    value: float
    tolerance: float
    unit: str = "max abs diff"

    @property
    def passed(self) -> bool:
        return self.value <= self.tolerance

    def as_row(self) -> str:
        verdict = "ok" if self.passed else "FAIL"
        shown = f"{self.value:.3g}" if self.unit == "max abs diff" else f"{int(self.value)}"
        return f"| {self.name} | {shown} | {self.unit} | {self.tolerance:g} | {verdict} |"


def read_reference(path: PathLike) -> tuple[dict[str, torch.Tensor], dict]:
    """The tensors and the metadata of a reference file written by `parity/record_reference.py`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"The reference file {path} does not exist.")
    with safe_open(str(path), framework="pt") as file:
        metadata = (file.metadata() or {}).get("unipose_reference")
        if metadata is None:
            raise ValueError(f"{path} is not a reference recorded by `parity/record_reference.py` (no metadata).")
        tensors = {key: file.get_tensor(key) for key in file.keys()}
    return tensors, json.loads(metadata)


class _IdMap:
    """Token ids of the release -> ids of the converted vocabulary (the base vocabulary keeps its ids)."""

    def __init__(self, tensors: dict, metadata: dict, processor: UniPoseProcessor):
        tokenizer = processor.tokenizer
        self.base_vocab_size = metadata["base_vocab_size"]
        self.table = {int(their): processor.pose_code_token_offset + code
                      for code, their in enumerate(tensors["release_code_token_ids"].tolist())}
        self.table[metadata["pose_begin_id"]] = processor.pose_start_token_id
        self.table[metadata["pose_end_id"]] = processor.pose_end_token_id
        for their, token in metadata["other_added_tokens"].items():
            ours = tokenizer.convert_tokens_to_ids(token)
            if ours is None or ours == tokenizer.unk_token_id:
                raise ValueError(f"The converted tokenizer has no `{token}`, which the release's vocabulary holds.")
            self.table[int(their)] = ours

    def __call__(self, ids: torch.Tensor) -> torch.Tensor:
        mapped = [i if 0 <= i < self.base_vocab_size else self.table.get(i, -1) for i in ids.tolist()]
        return torch.tensor(mapped, dtype=torch.long)

    def columns(self, their_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`(their_positions, our_ids)` of the vocabulary entries that exist on both sides."""
        ours = self(their_ids)
        keep = ours >= 0
        return keep.nonzero().flatten(), ours[keep]


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    if a.shape != b.shape:
        raise ValueError(f"Cannot compare tensors of shapes {tuple(a.shape)} and {tuple(b.shape)}.")
    return float((a.double() - b.double()).abs().max()) if a.numel() else 0.0


def _unequal(a: torch.Tensor, b: torch.Tensor) -> int:
    if a.shape != b.shape:
        return max(a.numel(), b.numel())
    return int((a != b).sum())


def _our_prompt(template: str) -> str:
    """The release's template language in the converted processor's: one `<pose>` per pose."""
    return f"[INST] {template.replace('<poseA>', '<pose>').replace('<poseB>', '<pose>')} [/INST]"


@torch.no_grad()
def verify_against_reference(model_dir: PathLike, reference: PathLike, atol: float = DEFAULT_ATOL) -> list[Check]:
    """Run the inputs of a recorded reference through a converted checkpoint and compare every output.

    Args:
        model_dir: a folder written by `unipose convert`.
        reference: a safetensors file written by `parity/record_reference.py` on the same release.
        atol (`float`): tolerance of the floating-point comparisons (logits, features, poses); ids and codes
            must be equal.
    Returns:
        The list of [`Check`]s; `all(check.passed for check in checks)` when the conversion is faithful.
    """
    tensors, metadata = read_reference(reference)
    model = UniPoseForConditionalGeneration.from_pretrained(model_dir, dtype=torch.float32).eval()
    # `record_reference.py` runs the release in float32, its pose tokenizer included (the release's own inference
    # runs that in bfloat16, as a conversion does by default: `parity/record_pose_tokenizer.py` records that).
    model.model.pose_tokenizer.config.compute_dtype = "float32"
    processor = UniPoseProcessor.from_pretrained(model_dir)
    id_map = _IdMap(tensors, metadata, processor)
    checks: list[Check] = []

    # --- the pose tokenizer on the input poses -------------------------------------------------------------------
    poses = tensors["poses"]
    pose_values = torch.as_tensor(processor(text=["<pose>"] * len(poses), poses=list(poses))["pose_values"])
    codes = model.model.encode_poses(pose_values) - model.config.pose_code_token_offset
    checks.append(Check("pose tokenizer: codes of the input poses", _unequal(codes, tensors["pose_codes"]), 0, "codes unequal"))
    decoded = model.model.pose_tokenizer.decode_to_matrix(tensors["pose_codes"])
    checks.append(Check("pose tokenizer: decoded rotation matrices", _max_diff(decoded, tensors["pose_decoded_rotmat"]), atol))

    # --- images --------------------------------------------------------------------------------------------------
    images = [PIL.Image.fromarray(tensors[f"images.{i}"].numpy()) for i in range(sum(1 for k in tensors if k.startswith("images.")))]
    if images:
        pixels = processor(text=["<image>"] * len(images), images=[[image] for image in images])
        clip_pixels = torch.as_tensor(pixels["pixel_values"])
        pose_pixels = torch.as_tensor(pixels["pose_pixel_values"])
        checks.append(Check("CLIP pixels", _max_diff(clip_pixels[..., ::8, ::8], tensors["clip_pixel_values_every_8th"]), atol))
        # The release crops the pose ViT's central 192 columns out of a 256 square: columns 32, 40, ... of theirs.
        checks.append(Check("pose-ViT pixels", _max_diff(pose_pixels[..., ::8, ::8], tensors["hmr_pixel_values_every_8th"][..., 4:28]), atol))
        vision = model.model.vision_tower(clip_pixels, output_hidden_states=True)
        clip_features = vision.hidden_states[model.config.vision_feature_layer][:, 1:]
        checks.append(Check("CLIP features", _max_diff(clip_features[:, ::8], tensors["clip_features_every_8th"]), atol))
        pose_features = model.model.pose_vision_tower(pose_pixels).feature_maps[-1]  # (images, patches, width)
        their_features = tensors["pose_vit_features"].flatten(2).transpose(1, 2)  # (images, width, 16, 12) -> same
        checks.append(Check("pose-ViT features", _max_diff(pose_features, their_features), atol))

    # --- every prompt ---------------------------------------------------------------------------------------------
    subset_positions, subset_ids = id_map.columns(tensors["logit_subset"])
    image_index = metadata["image_token_index"]
    for case in metadata["cases"]:
        name = case["name"]
        inputs = processor(
            text=[_our_prompt(case["template"])],
            images=[[images[i] for i in case["image_indices"]]] if case["image_indices"] else None,
            poses=[[poses[i] for i in case["pose_indices"]]] if case["pose_indices"] else None,
        )
        ours = inputs["input_ids"][0]
        theirs = _expand_release_prompt(tensors[f"{name}.input_ids"], id_map, processor, image_index)
        checks.append(Check(f"{name}: prompt ids", _unequal(ours, theirs), 0, "ids unequal"))
        if ours.shape != theirs.shape:
            continue

        logits = model(**inputs).logits[0]
        checks.append(Check(f"{name}: logits, all positions (vocabulary sample)",
                            _max_diff(logits[:, subset_ids], tensors[f"{name}.logits_subset"][:, subset_positions]), atol))
        last = metadata["last_positions"]
        columns, our_columns = id_map.columns(torch.arange(metadata["vocab_size"]))
        checks.append(Check(f"{name}: logits, last {last} positions",
                            _max_diff(logits[-last:, our_columns], tensors[f"{name}.logits_last"][:, columns]), atol))

        output = model.generate(**inputs, max_new_tokens=metadata["max_new_tokens"], do_sample=False,
                                return_dict_in_generate=True)
        new_ids = output.sequences[0, ours.shape[0]:]
        their_new = id_map(tensors[f"{name}.generated_ids"])
        checks.append(Check(f"{name}: greedy ids", _unequal(new_ids[: their_new.shape[0]], their_new), 0, "ids unequal"))
        if f"{name}.generated_codes" in tensors:
            our_codes = output.pose_codes[0][0] if output.pose_codes[0].numel() else torch.empty(0, dtype=torch.long)
            checks.append(Check(f"{name}: pose codes", _unequal(our_codes, tensors[f"{name}.generated_codes"]), 0, "codes unequal"))
            checks.append(Check(f"{name}: decoded pose (axis-angle)",
                                _max_diff(output.poses[0][0].flatten(), tensors[f"{name}.generated_pose_axis_angle"]), atol))
            start = int((new_ids == processor.pose_start_token_id).nonzero()[0])
            query_logits = _query_step_logits(model, processor, inputs, new_ids[: start + 1])
            width = tensors[f"{name}.query_step_logits"].shape[1]
            checks.append(Check(f"{name}: logits of the 80-query step",
                                _max_diff(query_logits[:, :width], tensors[f"{name}.query_step_logits"]), atol))
    return checks


def _expand_release_prompt(ids: torch.Tensor, id_map: _IdMap, processor: UniPoseProcessor, image_index: int) -> torch.Tensor:
    """The release's prompt ids in the converted vocabulary: its image marker becomes the image's tokens, the codes
    of an input pose the `<pose>` placeholders the processor writes (the codes are compared separately)."""
    pieces, inside_pose = [], False
    for token in ids.tolist():
        if token == image_index:
            pieces += [processor.image_token_id] * processor.image_seq_length
            continue
        ours = int(id_map(torch.tensor([token]))[0])
        if ours == processor.pose_start_token_id:
            inside_pose = True
        elif ours == processor.pose_end_token_id:
            inside_pose = False
        elif inside_pose:
            ours = processor.pose_token_id
        pieces.append(ours)
    return torch.tensor(pieces, dtype=torch.long)


def _query_step_logits(model, processor, inputs: dict, written: torch.Tensor) -> torch.Tensor:
    """Code logits of the 80 queries after the prompt and the written tokens up to `<p>`, `(80, codebook)`."""
    queries = torch.full((processor.num_pose_tokens,), processor.pose_query_token_id)
    input_ids = torch.cat([inputs["input_ids"][0], written, queries])[None]
    step = {**inputs, "input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}
    logits = model(**step).logits[0, -processor.num_pose_tokens :]
    codes = model.config.pose_code_token_ids
    return logits[:, codes.start : codes.stop]


def format_checks(checks: list[Check]) -> str:
    rows = ["| check | difference | measured as | tolerance | result |", "| --- | ---: | --- | ---: | --- |"]
    rows += [check.as_row() for check in checks]
    failed = sum(not check.passed for check in checks)
    rows.append(f"\n{len(checks) - failed} of {len(checks)} checks passed.")
    return "\n".join(rows)


__all__ = ["Check", "format_checks", "read_reference", "verify_against_reference"]
