"""
The data collator of UniPose training: conversations with images and poses in, model inputs with labels out.

For each example the collator renders the conversation through the processor's chat template (so prompts look
exactly as they will at inference), expands the placeholders, and builds

- `labels`, aligned with `input_ids`: `-100` on the prompt and on padding; the token itself on the answer
  (marked by the template's `{% generation %}` block); at each pose query of the answer, the vocabulary id of
  the target pose's code at that position (the model's parallel pose output);
- `shift_labels`: the target of each position's output ([`pose_shift_labels`]: the next token for text, the
  code itself at a query, nothing at the `<p>` that opens a pose to produce). Trainers that count the items of
  a batch (`num_items_in_batch`) count these.

Target poses are encoded into codes here, one at a time, with a CPU copy of the model's frozen pose tokenizer,
so that the dataset keeps plain SMPL poses and the codes always come from the tokenizer inside the model being
trained.
Input poses go to the model as `pose_values`; it encodes them itself. Both come in the corpora's frame (SMPL's, y
up) and are turned into the world of the model's poses (`PoseVQVAEConfig.up_axis`) first.

Truncation (`max_length`) only ever removes text of the answer, from its end: the prompt, every image and
every pose span stay whole, so the placeholders always match `pixel_values` / `pose_values`. Each truncation
is logged with counts; an example whose prompt and spans alone exceed `max_length` raises a `ValueError`.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import torch
from transformers.utils import logging

from ..data.amass import change_pose_up_axis
from ..data.schema import RECORD_UP_AXIS
from ..modeling_unipose import pose_shift_labels
from ..processing_poses import IGNORE_INDEX
from ..processing_text import get_unipose_token_ids

logger = logging.get_logger(__name__)


class UniPoseDataCollator:
    r"""
    Turns examples of `unipose.training.tasks.CONVERSATION_FEATURES` into a padded batch for
    [`UniPoseForConditionalGeneration`].

    Args:
        processor ([`UniPoseProcessor`]):
            The model's processor (tokenizer with the UniPose tokens and chat template, image processors).
        pose_tokenizer ([`PoseVQVAE`]):
            The model's frozen pose tokenizer; it encodes the target poses into codes (use
            [`~UniPoseDataCollator.from_model`] to take a CPU copy of the model's own).
        config ([`UniPoseConfig`]):
            The model's config (token ids of the pose spans).
        max_length (`int`, *optional*):
            Longest sequence; longer examples lose answer text from the end (see the module docstring).
        pad_to_multiple_of (`int`, *optional*):
            Pad the batch length to a multiple of this.

    Returns (when called on a list of examples) a `dict` of tensors: `input_ids`, `attention_mask`, `labels`,
    `shift_labels` `(batch, length)`; `pixel_values` `(num_images, 3, H, W)` and `pose_pixel_values`
    `(num_images, 3, 256, 192)` when the batch has images; `pose_values` `(num_poses, 22, 6)` when it has
    input poses.

    Example:

    ```python
    >>> from unipose.testing import tiny_model_and_processor
    >>> model, processor = tiny_model_and_processor()
    >>> collator = UniPoseDataCollator.from_model(model, processor, max_length=512)
    >>> batch = collator([example])  # a row of a `build_task_mixture` dataset
    >>> model(**batch).loss
    ```
    """

    def __init__(
        self,
        processor,
        pose_tokenizer,
        config,
        max_length: int | None = None,
        pad_to_multiple_of: int | None = None,
    ):
        if max_length is not None and (
            isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1
        ):
            raise ValueError(f"`max_length` must be a positive integer or None, got {max_length!r}.")
        if pad_to_multiple_of is not None and (
            not isinstance(pad_to_multiple_of, int) or pad_to_multiple_of < 1
        ):
            raise ValueError(
                f"`pad_to_multiple_of` must be a positive integer or None, got {pad_to_multiple_of!r}."
            )
        token_ids, _ = get_unipose_token_ids(processor.tokenizer)
        mismatched = {
            name: (value, getattr(config, name))
            for name, value in token_ids.items()
            if value != getattr(config, name)
        }
        if mismatched:
            raise ValueError(
                f"The processor and the model config disagree on token ids (processor, config): {mismatched}."
            )
        self.processor = processor
        self.pose_tokenizer = pose_tokenizer
        self.config = config
        self.max_length = max_length
        self.pad_to_multiple_of = pad_to_multiple_of
        tokenizer = processor.tokenizer
        # Padding is masked out and carries no label; any id that is not a pose-span token would do.
        self.pad_token_id = (
            tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        )
        self.num_truncated = 0
        self.num_without_targets = 0

    @classmethod
    def from_model(cls, model, processor, **kwargs) -> UniPoseDataCollator:
        """A collator with a CPU float32 copy of `model`'s pose tokenizer (`model` may be wrapped by PEFT)."""
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        pose_tokenizer = copy.deepcopy(base.model.pose_tokenizer).to("cpu", torch.float32).eval()
        return cls(processor, pose_tokenizer, base.config, **kwargs)

    # ------------------------------------------------------------------------------------------------------

    def __call__(self, examples: Sequence[dict]) -> dict[str, torch.Tensor]:
        if not examples:
            raise ValueError("The collator got an empty batch.")
        target_codes = self._encode_targets(examples)
        encoded = [
            self._encode_example(index, example, codes)
            for index, (example, codes) in enumerate(zip(examples, target_codes))
        ]
        if self.max_length is not None:
            encoded = self._truncate(encoded)
        return self._pad(encoded)

    def _encode_targets(self, examples: Sequence[dict]) -> list[list[torch.Tensor]]:
        """Codes `(num_pose_tokens,)` of every target pose, per example.

        Each pose is encoded on its own: convolutions take other code paths for other batch sizes, and a
        last-bit difference can move a latent across the boundary between two codes. One at a time, the
        labels of an example never depend on the examples it is batched with (or on the number of
        processes)."""
        with torch.no_grad():
            return [
                [self.pose_tokenizer.encode(self._model_frame(pose))[0].cpu() for pose in example["target_poses"]]
                if example.get("target_poses")
                else []
                for example in examples
            ]

    def _model_frame(self, pose) -> np.ndarray:
        """A pose of the corpora (SMPL's y-up world) in the world of the model's poses."""
        pose = np.asarray(pose, dtype=np.float32)
        return change_pose_up_axis(pose, RECORD_UP_AXIS, self.pose_tokenizer.config.up_axis)

    def _encode_example(self, index: int, example: dict, target_codes: list[torch.Tensor]) -> dict:
        """Tokens, labels and pixel / pose values of one example, unpadded."""
        messages = example["messages"]
        num_queries = sum(
            1
            for turn in messages
            if not isinstance(turn["content"], str)
            for item in turn["content"]
            if item["type"] == "pose_query"
        )
        if num_queries != len(target_codes):
            raise ValueError(
                f"Example {index} (task {example.get('task')!r}, id {example.get('id')!r}) asks for "
                f"{num_queries} pose(s) to produce but has {len(target_codes)} `target_poses`."
            )
        processor_kwargs = {"padding": False, "return_tensors": None}
        if example.get("images"):
            processor_kwargs["images"] = list(example["images"])
        if example.get("poses"):
            processor_kwargs["poses"] = [self._model_frame(pose) for pose in example["poses"]]
        if target_codes:
            processor_kwargs["target_poses"] = target_codes
        inputs = self.processor.apply_chat_template(
            messages,
            tokenize=True,
            return_dict=True,
            return_assistant_tokens_mask=True,
            processor_kwargs=processor_kwargs,
        )
        # The processor labels the answers: their tokens, and the codes of `target_poses` at their queries.
        input_ids = np.asarray(inputs["input_ids"][0], dtype=np.int64)
        answer = np.asarray(inputs["assistant_masks"][0], dtype=bool)
        labels = np.asarray(inputs["labels"][0], dtype=np.int64)
        return {
            "input_ids": input_ids,
            "labels": labels,
            "answer": answer,
            "pixel_values": inputs.get("pixel_values"),
            "pose_pixel_values": inputs.get("pose_pixel_values"),
            "pose_values": inputs.get("pose_values"),
            "name": f"{example.get('task')!r} example {example.get('id')!r}",
        }

    def _protected(self, input_ids: np.ndarray) -> np.ndarray:
        """Positions that truncation keeps: images, pose spans with their `<p>` / `</p>` markers."""
        codes = self.config.pose_code_token_ids
        is_code = (input_ids >= codes.start) & (input_ids < codes.stop)
        return is_code | np.isin(input_ids, list(self.config.special_token_ids.values()))

    def _truncate(self, encoded: list[dict]) -> list[dict]:
        """Removes answer text from the end of every example longer than `max_length`."""
        truncated, removed = 0, 0
        for item in encoded:
            excess = len(item["input_ids"]) - self.max_length
            if excess <= 0:
                continue
            removable = np.flatnonzero(item["answer"] & ~self._protected(item["input_ids"]))
            if len(removable) < excess:
                raise ValueError(
                    f"The {item['name']} is {len(item['input_ids'])} tokens long and cannot fit in "
                    f"`max_length`={self.max_length}: only {len(removable)} answer text tokens may be "
                    "removed (the prompt, images and pose spans are never cut). Raise `max_length`."
                )
            keep = np.ones(len(item["input_ids"]), dtype=bool)
            keep[removable[-excess:]] = False
            for key in ("input_ids", "labels", "answer"):
                item[key] = item[key][keep]
            truncated += 1
            removed += excess
        if truncated:
            self.num_truncated += truncated
            logger.warning(
                f"Truncated the answers of {truncated} of {len(encoded)} examples to `max_length`="
                f"{self.max_length} ({removed} text tokens removed; {self.num_truncated} examples truncated "
                "so far)."
            )
        return encoded

    def _pad(self, encoded: list[dict]) -> dict[str, torch.Tensor]:
        length = max(len(item["input_ids"]) for item in encoded)
        if self.pad_to_multiple_of is not None:
            length = -(-length // self.pad_to_multiple_of) * self.pad_to_multiple_of
        batch_size = len(encoded)
        input_ids = torch.full((batch_size, length), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((batch_size, length), dtype=torch.long)
        labels = torch.full((batch_size, length), IGNORE_INDEX, dtype=torch.long)
        for row, item in enumerate(encoded):
            size = len(item["input_ids"])
            # Right padding: positions follow the attention mask in the model, so either side works.
            input_ids[row, :size] = torch.from_numpy(item["input_ids"])
            attention_mask[row, :size] = 1
            labels[row, :size] = torch.from_numpy(item["labels"])
        shift_labels = pose_shift_labels(input_ids, labels, self.config)
        without_targets = int(((shift_labels != IGNORE_INDEX).sum(-1) == 0).sum())
        if without_targets:
            self.num_without_targets += without_targets
            logger.warning(
                f"{without_targets} of {batch_size} examples of this batch have nothing to learn from (no "
                f"answer token left); {self.num_without_targets} so far."
            )
        batch = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "labels": labels,
            "shift_labels": shift_labels,
        }
        for key in ("pixel_values", "pose_pixel_values", "pose_values"):
            values = [np.asarray(item[key]) for item in encoded if item[key] is not None and len(item[key])]
            if values:
                batch[key] = torch.from_numpy(np.concatenate(values)).float()
        return batch


__all__ = ["UniPoseDataCollator"]
