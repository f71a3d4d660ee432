"""
Pose spans in UniPose's token sequences: a pose is `<p>` + `num_pose_tokens` tokens of one kind + `</p>` (`<pose>`
placeholders of an input pose, `<pose_query>` queries of a pose to write, or the code tokens `<pose_k>`).
[`PoseSpans`] reads the poses a prompt gives, writes their spans, finds and checks the spans of a sequence, and
reads the labels and codes they hold.
"""

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .processing_inputs import is_pose_item, read_per_sample
from .rotations import to_rotation_6d

POSE_TOKEN = "<pose>"
POSE_QUERY_TOKEN = "<pose_query>"
POSE_START_TOKEN = "<p>"
POSE_END_TOKEN = "</p>"
# Code k of the pose tokenizer is the token `<pose_k>`; the codes have contiguous ids from `<pose_0>`.
POSE_CODE_TOKEN_FORMAT = "<pose_{}>"
# Canonical code tokens only: `<pose_007>` is not a token of the vocabulary.
POSE_CODE_PATTERN = re.compile(r"<pose_(0|[1-9][0-9]*)>")
# What decoding does with a pose span: one `<pose>` marker, nothing, or its tokens.
POSE_SPAN_MODES = ("marker", "remove", "keep")
# Label value ignored by the loss (PyTorch's cross-entropy default).
IGNORE_INDEX = -100


def pose_code_token(code: int) -> str:
    """The vocabulary token of pose code `code` (`<pose_{code}>`)."""
    return POSE_CODE_TOKEN_FORMAT.format(code)


class PoseSpans:
    """
    The pose spans of one tokenizer's sequences.

    Args:
        tokenizer: the processor's tokenizer, for its padding id (an open `<p>` before the padding of a
            right-padded row still ends its prompt), its tokens (shown in errors) and decoding.
        token_ids (`dict[str, int]`): `pose_token_id`, `pose_query_token_id`, `pose_start_token_id`,
            `pose_end_token_id` and `pose_code_token_offset` (as `get_unipose_token_ids` returns them).
        codebook_size (`int`): number of pose codes.
        num_pose_tokens (`int`): tokens per pose span.
        num_joints (`int`): joints of a pose given as rotations.
    """

    def __init__(
        self, tokenizer, token_ids: dict[str, int], codebook_size: int, num_pose_tokens: int, num_joints: int
    ):
        self.tokenizer = tokenizer
        self.pose_token_id = token_ids["pose_token_id"]
        self.pose_query_token_id = token_ids["pose_query_token_id"]
        self.pose_start_token_id = token_ids["pose_start_token_id"]
        self.pose_end_token_id = token_ids["pose_end_token_id"]
        self.pose_code_token_offset = token_ids["pose_code_token_offset"]
        self.codebook_size = codebook_size
        self.code_ids = range(self.pose_code_token_offset, self.pose_code_token_offset + codebook_size)
        self.num_pose_tokens = num_pose_tokens
        self.num_joints = num_joints

    # -- poses given to the processor ----------------------------------------------------------------------

    def _read_item(self, item: Any, name: str, codes_only: bool) -> list[tuple[str, torch.Tensor]]:
        """
        One item of `poses` / `target_poses` as a list of `("rotation", (J, 6) float32)` or
        `("codes", (T,) int64)` pairs.
        """
        if isinstance(item, torch.Tensor):
            if item.dtype == torch.bool or item.is_complex():
                raise TypeError(
                    f"`{name}` has dtype {item.dtype}; expected floating-point rotations or integer codes."
                )
            is_codes = not item.is_floating_point()
        else:
            if isinstance(item, (list, tuple)):
                try:
                    item = np.asarray(item)
                except ValueError as error:
                    raise ValueError(f"`{name}` is a ragged nested list and no array: {error}") from error
            if item.dtype.kind not in "iuf":
                raise TypeError(
                    f"`{name}` has dtype {item.dtype}; expected floating-point rotations or integer codes."
                )
            is_codes = item.dtype.kind in "iu"
        if is_codes:
            return [("codes", codes) for codes in self._read_codes(item, name)]
        if codes_only:
            raise TypeError(
                f"`{name}` holds {item.dtype} values, but targets must be integer pose codes of shape "
                f"({self.num_pose_tokens},): encode poses into codes with the pose tokenizer first."
            )
        rotations = to_rotation_6d(item, num_joints=self.num_joints, name=name)
        return [("rotation", pose) for pose in rotations.detach().to("cpu", torch.float32)]

    def _read_codes(self, codes: Any, name: str) -> torch.Tensor:
        """Validated pose codes `(N, num_pose_tokens)` from `(num_pose_tokens,)` or `(N, num_pose_tokens)`."""
        codes = torch.as_tensor(codes).detach().to("cpu", torch.int64)
        shape = tuple(codes.shape)
        if codes.ndim == 1:
            codes = codes[None]
        if codes.ndim != 2 or codes.shape[1] != self.num_pose_tokens:
            raise ValueError(
                f"`{name}` holds integer pose codes of shape {shape}; expected ({self.num_pose_tokens},) or "
                f"(N, {self.num_pose_tokens}). (Integer values are read as codes: give a pose as floats.)"
            )
        invalid = (codes < 0) | (codes >= self.codebook_size)
        if bool(invalid.any()):
            row, column = invalid.nonzero()[0].tolist()
            where = (row, column) if len(codes) > 1 else column
            raise ValueError(
                f"`{name}` holds the pose code {int(codes[row, column])} at {where}; codes must be in "
                f"[0, {self.codebook_size})."
            )
        return codes

    def read(
        self, poses: Any, name: str, counts: list[int], placeholder: str, codes_only: bool
    ) -> list[list]:
        """
        The poses of `poses` (the processor's `poses` or `target_poses`) per sample, as `("rotation", (J, 6))`
        or `("codes", (T,))` pairs, checked against the `counts` of `placeholder` in each sample.
        """
        expected = (
            "an integer code tensor or array" if codes_only else "a pose tensor, array or list of numbers"
        )
        hint = ""
        if placeholder == POSE_QUERY_TOKEN:
            hint = (
                f"`{POSE_QUERY_TOKEN}` marks a pose to produce in training, with its codes in `{name}`. "
                f"To ask the model for a pose, end the prompt with `{POSE_START_TOKEN}`; to pass text typed "
                "by users, use `sanitize_control_tokens=True`."
            )
        return read_per_sample(
            poses,
            counts,
            name,
            placeholder,
            is_pose_item,
            lambda item, label: self._read_item(item, label, codes_only),
            expected,
            "pose(s)",
            hint,
        )

    def span_text(self, kind: str, value: torch.Tensor) -> str:
        """The text of the span of one pose read by [`read`]: its code tokens, or `<pose>` placeholders."""
        if kind == "codes":
            body = "".join(pose_code_token(code) for code in value.tolist())
        else:
            body = POSE_TOKEN * self.num_pose_tokens
        return POSE_START_TOKEN + body + POSE_END_TOKEN

    # -- spans in token ids --------------------------------------------------------------------------------

    def is_code(self, ids: np.ndarray) -> np.ndarray:
        """Whether each id of `ids` is a pose-code token."""
        return (ids >= self.code_ids.start) & (ids < self.code_ids.stop)

    def find(self, ids: Sequence[int], sample: int) -> list[tuple[int, str]]:
        """
        Checks that every pose token of a sequence sits in a well-formed span, `<p>` + `num_pose_tokens`
        tokens of one kind + `</p>`, and returns the spans as `(index of <p>, kind)` with kind `"pose"`,
        `"query"` or `"codes"`.
        """
        ids = np.asarray(ids, dtype=np.int64)
        length = self.num_pose_tokens
        kinds = {
            "pose": ids == self.pose_token_id,
            "query": ids == self.pose_query_token_id,
            "codes": self.is_code(ids),
        }
        spans = []
        pad_token_id = self.tokenizer.pad_token_id
        real = np.flatnonzero(ids != pad_token_id) if pad_token_id is not None else None
        last_real = int(real[-1]) if real is not None and len(real) else len(ids) - 1
        for start in np.flatnonzero(ids == self.pose_start_token_id).tolist():
            if start == last_real:
                # An open `<p>` that ends a prompt asks the model to write a pose in one step (`generate`).
                continue
            end = start + length + 1
            kind = next((name for name, mask in kinds.items() if mask[start + 1 : end].sum() == length), None)
            if kind is None or end >= len(ids) or ids[end] != self.pose_end_token_id:
                found = self.tokenizer.convert_ids_to_tokens(ids[start : end + 1].tolist())
                raise ValueError(
                    f"Sample {sample} holds a malformed pose span at token {start}: a span is `<p>`, "
                    f"{length} tokens of one kind (`<pose>`, `<pose_query>` or pose codes), then `</p>`; got "
                    f"{found[:6]} ... {found[-3:]} ({len(found)} tokens). Write single `<pose>` / "
                    "`<pose_query>` placeholders and let the processor write the spans."
                )
            spans.append((start, kind))
        stray_tokens = sum(int(mask.sum()) for mask in kinds.values()) - len(spans) * length
        stray_ends = int((ids == self.pose_end_token_id).sum()) - len(spans)
        if stray_tokens or stray_ends:
            raise ValueError(
                f"Sample {sample} holds {stray_tokens} pose token(s) and {stray_ends} `</p>` outside "
                f"`<p>...</p>` spans; pose tokens only occur in complete spans of {length}."
            )
        return spans

    def labels(
        self, input_ids: list[list[int]], spans: list[list[tuple[int, str]]], sample_targets: list[list]
    ) -> list[list[int]]:
        """`IGNORE_INDEX` everywhere, except at query positions: the vocabulary id of their target code."""
        labels = []
        for ids, sample_spans, targets in zip(input_ids, spans, sample_targets, strict=True):
            row = np.full(len(ids), IGNORE_INDEX, dtype=np.int64)
            query_starts = [start for start, kind in sample_spans if kind == "query"]
            for start, (_, codes) in zip(query_starts, targets, strict=True):
                row[start + 1 : start + 1 + self.num_pose_tokens] = (
                    codes.numpy() + self.pose_code_token_offset
                )
            labels.append(row.tolist())
        return labels

    def decode(self, rows: list[list[int]], skip_special_tokens: bool, mode: str, **kwargs) -> list[str]:
        """
        Decodes id rows, each pose span as `mode` says (see `UniPoseProcessor.decode`). The span tokens are
        special, so the tokenizer itself would drop them: the special tokens are dropped here instead, except
        the ones that `mode` keeps.
        """
        if mode not in POSE_SPAN_MODES:
            raise ValueError(f"`pose_spans` must be one of {POSE_SPAN_MODES}, got {mode!r}.")
        skipped = set()
        if skip_special_tokens:
            decoder = self.tokenizer.added_tokens_decoder
            skipped = {index for index, token in decoder.items() if token.special}
            skipped |= set(self.tokenizer.all_special_ids)
        texts = []
        for ids in rows:
            kept, keep = self._for_decoding(ids, mode)
            kept = [token for token in kept if token not in skipped or token in keep]
            texts.append(self.tokenizer.decode(kept, skip_special_tokens=False, **kwargs))
        return texts

    def _for_decoding(self, ids: list[int], mode: str) -> tuple[list[int], set[int]]:
        """
        The ids of a sequence to decode with its pose spans as `mode` asks (`"marker"`: one `<pose>` per span,
        `"remove"`: none, `"keep"`: every token), and the span ids to keep although they are special tokens.
        """
        if mode == "keep":
            span_tokens = {
                self.pose_start_token_id,
                self.pose_end_token_id,
                self.pose_token_id,
                self.pose_query_token_id,
            }
            return ids, span_tokens.union(self.code_ids)
        kept, index = [], self._continued_span_end(ids)
        if index and mode == "marker":
            kept.append(self.pose_token_id)
        while index < len(ids):
            if ids[index] != self.pose_start_token_id:
                kept.append(ids[index])
                index += 1
                continue
            # A span runs to its `</p>`, or to the end of a sequence cut short.
            try:
                end = ids.index(self.pose_end_token_id, index)
            except ValueError:
                end = len(ids)
            if mode == "marker":
                kept.append(self.pose_token_id)
            index = end + 1
        return kept, {self.pose_token_id} if mode == "marker" else set()

    def _continued_span_end(self, ids: Sequence[int]) -> int:
        """
        Where the span that `ids` continues ends (the index after its `</p>`), or 0. `ids` continue a span when
        they open with code tokens closed by `</p>`: the new tokens of a prompt that ended with `<p>`.
        """
        index = 0
        while index < len(ids) and ids[index] in self.code_ids:
            index += 1
        return index + 1 if 0 < index < len(ids) and ids[index] == self.pose_end_token_id else 0

    def codes(self, ids: Sequence[int]) -> torch.LongTensor:
        """`(num_spans, num_pose_tokens)`: the codes of the complete code spans of `ids`, in order, the span that
        `ids` continue (see [`_continued_span_end`]) first if it holds `num_pose_tokens` codes."""
        length = self.num_pose_tokens
        ids = np.asarray(ids, dtype=np.int64)
        spans = [ids[:length] - self.pose_code_token_offset] if self._continued_span_end(ids) == length + 1 else []
        for start in np.flatnonzero(ids == self.pose_start_token_id).tolist():
            body, end = ids[start + 1 : start + 1 + length], start + 1 + length
            if end < len(ids) and ids[end] == self.pose_end_token_id and self.is_code(body).all():
                spans.append(body - self.pose_code_token_offset)
        return torch.from_numpy(np.stack(spans)) if spans else torch.zeros(0, length, dtype=torch.long)


__all__ = [
    "IGNORE_INDEX",
    "POSE_CODE_TOKEN_FORMAT",
    "POSE_END_TOKEN",
    "POSE_QUERY_TOKEN",
    "POSE_START_TOKEN",
    "POSE_TOKEN",
    "PoseSpans",
    "pose_code_token",
]
