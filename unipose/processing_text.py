"""
Tokenizing the UniPose processor's expanded prompts: one BOS per text whatever the route, text typed by users
(control tokens marked by transformers' `mark_control_tokens`) encoded as plain text, and length limits that
truncation may meet only by cutting text, never an image or a pose span.
"""

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from transformers.tokenization_utils_base import VERY_LARGE_INTEGER, TruncationStrategy

try:  # transformers' marking of user text (`sanitize_control_tokens`); older releases do not have it
    from transformers.utils.chat_template_utils import (
        _CONTROL_TOKEN_END,
        _CONTROL_TOKEN_START,
        _get_control_token_patterns,
        encode_marked_chat,
        mark_control_tokens,
    )

    SANITIZING_AVAILABLE = True
except ImportError:  # pragma: no cover - depends on the installed transformers
    SANITIZING_AVAILABLE = False
    encode_marked_chat = None
    _CONTROL_TOKEN_START, _CONTROL_TOKEN_END = "\U000f0000", "\U000f0001"  # never present: nothing is marked

from .processing_poses import (
    IGNORE_INDEX,
    POSE_CODE_PATTERN,
    POSE_END_TOKEN,
    POSE_QUERY_TOKEN,
    POSE_START_TOKEN,
    POSE_TOKEN,
    PoseSpans,
    pose_code_token,
)

IMAGE_TOKEN = "<image>"
# A control token marked as user text by `mark_control_tokens` (between two private-use characters).
_MARKED_TOKEN_PATTERN = re.compile(f"{_CONTROL_TOKEN_START}.*?{_CONTROL_TOKEN_END}", re.DOTALL)
# `<pose>` is not a prefix of `<pose_query>` (the `>` differs), so the alternatives cannot shadow each other.
_PLACEHOLDER_PATTERN = re.compile(
    "|".join(re.escape(token) for token in (IMAGE_TOKEN, POSE_QUERY_TOKEN, POSE_TOKEN))
)
_TOKEN_FIELDS = {
    "image_token_id": IMAGE_TOKEN,
    "pose_token_id": POSE_TOKEN,
    "pose_query_token_id": POSE_QUERY_TOKEN,
    "pose_start_token_id": POSE_START_TOKEN,
    "pose_end_token_id": POSE_END_TOKEN,
}


def placeholders(text: str, sanitize: bool):
    """The placeholder matches of `text`; with `sanitize`, those marked as user text are not placeholders."""
    for match in _PLACEHOLDER_PATTERN.finditer(text):
        if not (sanitize and match.start() > 0 and text[match.start() - 1] == _CONTROL_TOKEN_START):
            yield match


def get_unipose_token_ids(tokenizer) -> tuple[dict[str, int], int]:
    """
    Reads the ids of the UniPose tokens from a tokenizer and checks that they are usable.

    Args:
        tokenizer ([`PreTrainedTokenizerBase`]):
            A tokenizer that holds `<image>`, `<pose>`, `<pose_query>`, `<p>`, `</p>` and the code tokens
            `<pose_0>` ... `<pose_{K-1}>` as special tokens (see `unipose.tokenization.add_unipose_tokens`).

    Returns:
        `tuple[dict[str, int], int]`: the ids under the names of the `UniPoseConfig` fields (`image_token_id`,
        `pose_token_id`, `pose_query_token_id`, `pose_start_token_id`, `pose_end_token_id`,
        `pose_code_token_offset`), and the number of code tokens K.

    Raises:
        `ValueError`: if a token is missing, the code tokens are not contiguous, or the tokenizer splits a
        token.
    """
    vocab = tokenizer.get_vocab()
    missing = [token for token in (*_TOKEN_FIELDS.values(), pose_code_token(0)) if token not in vocab]
    if missing:
        raise ValueError(
            f"The tokenizer lacks the UniPose token(s) {missing}. Add them with "
            "`unipose.tokenization.add_unipose_tokens(tokenizer, codebook_size)`."
        )
    token_ids = {field: vocab[token] for field, token in _TOKEN_FIELDS.items()}
    codes = sorted(int(match.group(1)) for token in vocab if (match := POSE_CODE_PATTERN.fullmatch(token)))
    if codes != list(range(len(codes))):
        gaps = sorted(set(range(codes[-1] + 1)) - set(codes))[:5]
        raise ValueError(
            f"The tokenizer's pose code tokens must be <pose_0> ... <pose_{{K-1}}> with no gap; {len(codes)} "
            f"are present up to {pose_code_token(codes[-1])} and the first missing ones are {gaps}."
        )
    offset = vocab[pose_code_token(0)]
    misplaced = [code for code in codes if vocab[pose_code_token(code)] != offset + code]
    if misplaced:
        code = misplaced[0]
        raise ValueError(
            f"The pose code tokens must have contiguous ids from {pose_code_token(0)} (id {offset}), but "
            f"{pose_code_token(code)} has id {vocab[pose_code_token(code)]} instead of {offset + code}."
        )
    token_ids["pose_code_token_offset"] = offset
    probe = [*_TOKEN_FIELDS.values(), pose_code_token(0), pose_code_token(codes[-1])]
    encoded = tokenizer("".join(probe), add_special_tokens=False)["input_ids"]
    if encoded != [vocab[token] for token in probe]:
        raise ValueError(
            f"The tokenizer splits the UniPose tokens: {probe} encode to {encoded}. Add them as special "
            "tokens (`unipose.tokenization.add_unipose_tokens` does)."
        )
    return token_ids, len(codes)


def expand_placeholders(
    texts: list[str], sanitize: bool, image_text: str, pose_texts: list[list[str]], query_text: str
) -> tuple[list[str], list[list[dict]]]:
    """
    Replaces each placeholder of `texts` (not marked as user text) by its span: `<image>` by `image_text`,
    the k-th `<pose>` of sample i by `pose_texts[i][k]`, `<pose_query>` by `query_text`. Also returns
    ProcessorMixin's replacement offsets.
    """
    kinds = {IMAGE_TOKEN: "image", POSE_TOKEN: "pose", POSE_QUERY_TOKEN: "pose_query"}
    fixed = {IMAGE_TOKEN: image_text, POSE_QUERY_TOKEN: query_text}  # the same text for every one
    expanded, offsets = [], []
    for text, sample_pose_texts in zip(texts, pose_texts, strict=True):
        poses = iter(sample_pose_texts)
        pieces, sample_offsets, last, shift = [], [], 0, 0
        for match in placeholders(text, sanitize):
            token, (start, end) = match.group(), match.span()
            replacement = next(poses) if token == POSE_TOKEN else fixed[token]
            pieces += [text[last:start], replacement]
            sample_offsets.append(
                {
                    "type": kinds[token],
                    "span": (start, end),
                    "new_span": (start + shift, start + shift + len(replacement)),
                    "text": token,
                    "replacement": replacement,
                }
            )
            shift += len(replacement) - (end - start)
            last = end
        pieces.append(text[last:])
        expanded.append("".join(pieces))
        offsets.append(sample_offsets)
    return expanded, offsets


def _is_truncating(truncation: Any) -> bool:
    return truncation not in (
        None,
        False,
        TruncationStrategy.DO_NOT_TRUNCATE,
        TruncationStrategy.DO_NOT_TRUNCATE.value,
    )


class PromptEncoder:
    """
    Tokenizes expanded prompts for [`UniPoseProcessor`].

    Args:
        tokenizer: the processor's tokenizer.
        token_ids (`dict[str, int]`): the ids of the UniPose tokens, as `get_unipose_token_ids` returns them.
        image_seq_length (`int`): tokens per image.
        pose_spans ([`PoseSpans`]): the pose spans of the same tokenizer (sizes, code ids).
    """

    def __init__(self, tokenizer, token_ids: dict[str, int], image_seq_length: int, pose_spans: PoseSpans):
        self.tokenizer = tokenizer
        self.token_ids = token_ids
        self.image_seq_length = image_seq_length
        self.pose_spans = pose_spans
        # The placeholders (image, pose, query); with the span markers, the tokens that truncation must keep.
        placeholders = ("image_token_id", "pose_token_id", "pose_query_token_id")
        markers = ("pose_start_token_id", "pose_end_token_id")
        self.placeholder_ids = tuple(token_ids[name] for name in placeholders)
        self.protected_ids = tuple(token_ids[name] for name in placeholders + markers)

    def _protected_counts(self, ids: Sequence[int]) -> tuple[int, ...]:
        """Counts of the tokens that truncation must keep: image, pose, query, `<p>`, `</p>`, code tokens."""
        ids = np.asarray(ids, dtype=np.int64)
        counts = (int((ids == token_id).sum()) for token_id in self.protected_ids)
        return (*counts, int(self.pose_spans.is_code(ids).sum()))

    def _protected_counts_in_text(self, text: str, sanitize: bool) -> tuple[int, ...]:
        """The same counts read from the text (exact: `get_unipose_token_ids` checked that none is split);
        tokens marked as user text are plain text, and do not count."""
        if sanitize:
            text = _MARKED_TOKEN_PATTERN.sub("", text)
        tokens = (IMAGE_TOKEN, POSE_TOKEN, POSE_QUERY_TOKEN, POSE_START_TOKEN, POSE_END_TOKEN)
        codes = sum(int(code) < self.pose_spans.codebook_size for code in POSE_CODE_PATTERN.findall(text))
        return (*(text.count(token) for token in tokens), codes)

    def encode(self, texts: list[str], text_kwargs: dict, sanitize: bool) -> dict[str, list]:
        """Tokenizes the expanded texts; refuses an over-long sequence and a truncation that cuts a span."""
        text_kwargs = dict(text_kwargs)
        return_attention_mask = text_kwargs.pop("return_attention_mask", None)
        truncation, max_length = text_kwargs.get("truncation"), text_kwargs.get("max_length")
        if not _is_truncating(truncation) and text_kwargs.get("padding") != "max_length":
            # The tokenizer would only warn that it ignores it; it is checked below.
            text_kwargs.pop("max_length", None)
        encoding = self._encode_marked(texts, text_kwargs) if sanitize else self._encode(texts, text_kwargs)
        if _is_truncating(truncation):
            for sample, (text, ids) in enumerate(zip(texts, encoding["input_ids"], strict=True)):
                # Padding ids are never UniPose tokens, so the padded row can be counted as it is.
                if self._protected_counts(ids) != self._protected_counts_in_text(text, sanitize):
                    limit = max_length if max_length is not None else self.tokenizer.model_max_length
                    raise ValueError(
                        f"Truncating sample {sample} to {limit} tokens would cut an image or a pose span; "
                        "truncation may only remove text. Raise `max_length` or shorten the text."
                    )
        else:
            # Without truncation `max_length` is a limit to check, or the length to pad to.
            limit = max_length
            if limit is None and self.tokenizer.model_max_length < VERY_LARGE_INTEGER:
                limit = self.tokenizer.model_max_length
            lengths = [int(sum(mask)) for mask in encoding["attention_mask"]]
            too_long = [
                sample for sample, length in enumerate(lengths) if limit is not None and length > limit
            ]
            if too_long:
                source = "`max_length`" if max_length is not None else "the tokenizer's `model_max_length`"
                raise ValueError(
                    f"Sample(s) {too_long} have {[lengths[sample] for sample in too_long]} tokens after "
                    f"expanding their placeholders (each image is {self.image_seq_length} tokens, each pose "
                    f"{self.pose_spans.num_pose_tokens + 2}), more than {source} = {limit}. Shorten the text, "
                    "raise the limit, or pass `truncation=True` to cut text (never images or poses)."
                )
        if return_attention_mask is False:
            del encoding["attention_mask"]
        return encoding

    def _encode(self, texts: list[str], text_kwargs: dict) -> dict[str, list]:
        """
        The tokenizer's encoding of `texts`, with one BOS each: unless `add_special_tokens` is given, a text
        that already starts with the BOS (the chat template writes it) is encoded without special tokens, the
        way `apply_chat_template(..., tokenize=True)` encodes it, and the others with them.
        """
        add_special_tokens = text_kwargs.pop("add_special_tokens", None)
        bos = self.tokenizer.bos_token
        if add_special_tokens is None:
            add = [bos is None or not text.startswith(bos) for text in texts]
        else:
            add = [add_special_tokens] * len(texts)
        if len(set(add)) == 1:
            return dict(
                self.tokenizer(texts, **text_kwargs, add_special_tokens=add[0], return_attention_mask=True)
            )
        # A batch of both kinds: each text on its own, padded together afterwards.
        padding_keys = ("padding", "pad_to_multiple_of", "padding_side")
        unpadded = {key: value for key, value in text_kwargs.items() if key not in padding_keys}
        rows = [
            self.tokenizer(text, **unpadded, add_special_tokens=flag, return_attention_mask=True)
            for text, flag in zip(texts, add, strict=True)
        ]
        encoding = {key: [row[key] for row in rows] for key in rows[0]}
        offsets = encoding.pop("offset_mapping", None)
        padded = dict(
            self.tokenizer.pad(
                encoding,
                **{key: text_kwargs[key] for key in (*padding_keys, "max_length") if key in text_kwargs},
            )
        )
        if offsets is not None:
            side = text_kwargs.get("padding_side", self.tokenizer.padding_side)
            padded["offset_mapping"] = [
                [(0, 0)] * (len(ids) - len(row)) + row
                if side == "left"
                else row + [(0, 0)] * (len(ids) - len(row))
                for ids, row in zip(padded["input_ids"], offsets, strict=True)
            ]
        return padded

    def _encode_marked(self, texts: list[str], text_kwargs: dict) -> dict[str, list]:
        """
        [`_encode`] for texts whose user parts went through [`mark_control_tokens`]: a marked control token is
        encoded as plain text (transformers' `encode_marked_chat`), everything else as the tokenizer encodes it.
        """
        if not SANITIZING_AVAILABLE:
            raise ValueError(
                "`sanitize_control_tokens=True` needs a transformers release with `mark_control_tokens` "
                "(transformers.utils.chat_template_utils); upgrade transformers."
            )
        unsupported = [key for key in ("return_offsets_mapping", "stride") if text_kwargs.get(key)]
        if unsupported or text_kwargs.get("is_split_into_words"):
            raise ValueError(
                f"`sanitize_control_tokens=True` cannot be combined with `{unsupported or 'is_split_into_words'}`."
            )
        add_special_tokens = text_kwargs.get("add_special_tokens")
        bos, bos_id = self.tokenizer.bos_token, self.tokenizer.bos_token_id
        max_length = text_kwargs.get("max_length")
        truncating = _is_truncating(text_kwargs.get("truncation")) and max_length is not None
        rows = []
        for text in texts:
            add = (
                (bos is None or not text.startswith(bos))
                if add_special_tokens is None
                else add_special_tokens
            )
            prefix = [bos_id] if add and bos_id is not None else []
            body = encode_marked_chat(self.tokenizer, text)
            if truncating:  # as the tokenizer truncates: the text, on its truncation side; the BOS it adds stays
                room = max(max_length - len(prefix), 0)
                body = body[len(body) - room :] if self.tokenizer.truncation_side == "left" else body[:room]
            rows.append(prefix + body)
        padding_keys = ("padding", "pad_to_multiple_of", "padding_side")
        padding = {key: text_kwargs[key] for key in padding_keys if key in text_kwargs}
        if text_kwargs.get("padding") == "max_length":
            padding["max_length"] = max_length
        return dict(
            self.tokenizer.pad(
                {"input_ids": rows},
                **padding,
                return_attention_mask=True,
            )
        )

    def answer_labels(self, out: dict, has_targets: bool):
        """The labels of a chat tokenized with its assistant masks: each answer token labels itself, except
        the `<image>` and `<pose>` placeholders (-100) and the pose queries, which keep the codes of
        `out["labels"]`. An answer that holds pose codes is refused: a pose to produce is a span of queries."""
        input_ids = out["input_ids"]
        rows, masks, targets = (
            value.tolist() if isinstance(value, (torch.Tensor, np.ndarray)) else value
            for value in (input_ids, out["assistant_masks"], out.get("labels"))
        )
        query_id = self.token_ids["pose_query_token_id"]
        labels = []
        for row, (ids, mask) in enumerate(zip(rows, masks, strict=True)):
            if not has_targets and any(
                answer and token == query_id for token, answer in zip(ids, mask, strict=True)
            ):
                raise ValueError(
                    f"The answer of conversation {row} holds a pose to produce (`<pose_query>`) but no "
                    "`target_poses` were given in `processor_kwargs`: its labels need the pose's codes."
                )
            is_code = self.pose_spans.is_code(np.asarray(ids, dtype=np.int64)).tolist()
            if any(answer and code for answer, code in zip(mask, is_code)):
                raise ValueError(
                    f"The answer of conversation {row} holds a pose written as its codes. As labels, each code "
                    "would learn the next one, which it sees (the codes of a pose attend to each other), and "
                    "`generate` writes a pose in one step, never code by code. Write a pose to produce as "
                    '`{"type": "pose_query"}` and give its codes in `target_poses`.'
                )
            base = targets[row] if targets is not None else [IGNORE_INDEX] * len(ids)
            labels.append(
                [
                    token if answer and token not in self.placeholder_ids else label
                    for token, answer, label in zip(ids, mask, base, strict=True)
                ]
            )
        if isinstance(input_ids, torch.Tensor):
            return torch.tensor(labels, dtype=torch.long, device=input_ids.device)
        return np.asarray(labels, dtype=np.int64) if isinstance(input_ids, np.ndarray) else labels


def mark_user_text(tokenizer, chat_template: str | None, text: str) -> str:
    """`text` with the tokenizer's control tokens marked as user text (see `UniPoseProcessor.mark_control_tokens`)."""
    if not SANITIZING_AVAILABLE:
        raise ValueError(
            "`mark_control_tokens` needs a transformers release that has it; upgrade transformers."
        )
    if not isinstance(text, str):
        raise TypeError(f"`text` must be a string, got {type(text).__name__}.")
    pattern, _ = _get_control_token_patterns(tuple(tokenizer._get_control_tokens(chat_template or "")))
    return mark_control_tokens(text, pattern)


__all__ = [
    "IMAGE_TOKEN",
    "SANITIZING_AVAILABLE",
    "PromptEncoder",
    "expand_placeholders",
    "get_unipose_token_ids",
    "mark_user_text",
    "placeholders",
]
