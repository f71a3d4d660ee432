"""
Processor of UniPose: text with image and pose placeholders, images and SMPL poses in; model inputs out.

A pose inside a sequence is always `<p>` + `num_pose_tokens` tokens + `</p>`. The processor writes every span,
so prompts only hold single placeholders:

- `<image>` becomes `image_seq_length` copies of `<image>`; the image gives `pixel_values` (CLIP) and
  `pose_pixel_values` (pose ViT).
- `<pose>` marks a pose given as input. A pose in any rotation format becomes `<p>` + `<pose>` x N + `</p>`
  and is returned in `pose_values` (the model encodes it with its frozen pose tokenizer); integer pose codes
  are written directly as the code tokens `<p><pose_12>...</p>`.
- `<pose_query>` marks a pose the model must produce in training: `<p>` + `<pose_query>` x N + `</p>`.
  With `target_poses` (codes), `labels` holds the code token of each query position, so that
  `model(**processor(...)).loss` is the pose loss; a chat tokenized with `return_assistant_tokens_mask=True`
  also labels the text of its answers.
- Text from users: `apply_chat_template(..., tokenize=True, sanitize_control_tokens=True)` (or
  `processor(text=..., sanitize_control_tokens=True)` on text whose user parts went through
  `processor.mark_control_tokens`) encodes the control tokens that users typed (`<image>`, `<pose>`,
  `<pose_query>`, `<p>`, `</p>`, the code tokens, `<s>`) as plain text; only the placeholders written by the
  prompt itself (or by the chat's image and pose items) take effect. Without it, a control token in the wrong
  place is refused: a placeholder without its input, a `<pose_query>` without `target_poses`, a `<p>`, `</p>`
  or code token outside a complete span.
- A prompt that ends with an open `<p>` asks `generate` for a pose right away (Text-to-Pose, Pose
  Estimation, Pose Editing): the model writes all N codes in one step. In a chat, a final assistant message
  `"<p>"` continued with `continue_final_message=True` does the same.

In a chat, `{"type": "pose", "pose": pose}` carries its pose as `{"type": "image", "image": image}` carries
its image. A text that already starts with the tokenizer's BOS (the chat template writes it) gets no second
one.
"""

import json
import os
import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import PIL.Image
import PIL.ImageOps
import torch
from transformers import CLIPImageProcessorPil
from transformers.feature_extraction_utils import BatchFeature
from transformers.image_utils import (
    IMAGENET_DEFAULT_MEAN,
    IMAGENET_DEFAULT_STD,
    OPENAI_CLIP_MEAN,
    OPENAI_CLIP_STD,
    PILImageResampling,
    load_image,
)
from transformers.processing_utils import MultiModalData, ProcessingKwargs, ProcessorMixin, Unpack
from transformers.tokenization_utils_base import VERY_LARGE_INTEGER, TruncationStrategy
from transformers.utils import logging

try:  # transformers' marking of user text (`sanitize_control_tokens`); older releases do not have it
    from transformers.utils.chat_template_utils import (
        _CONTROL_TOKEN_END,
        _CONTROL_TOKEN_START,
        _get_control_token_patterns,
        encode_marked_chat,
        mark_control_tokens,
    )
except ImportError:  # pragma: no cover - depends on the installed transformers
    encode_marked_chat = None
    _CONTROL_TOKEN_START, _CONTROL_TOKEN_END = "\U000f0000", "\U000f0001"  # never present: nothing is marked

# Imported so that the pipeline travels with the processor: `save_pretrained` copies relative imports.
from .pipeline_unipose import UniPosePipeline
from .rotations import to_rotation_6d
from .skeleton import NUM_BODY_JOINTS

logger = logging.get_logger(__name__)

IMAGE_TOKEN = "<image>"
POSE_TOKEN = "<pose>"
POSE_QUERY_TOKEN = "<pose_query>"
POSE_START_TOKEN = "<p>"
POSE_END_TOKEN = "</p>"
# Code k of the pose tokenizer is the token `<pose_k>`; the codes have contiguous ids from `<pose_0>`.
POSE_CODE_TOKEN_FORMAT = "<pose_{}>"
# Label value ignored by the loss (PyTorch's cross-entropy default).
IGNORE_INDEX = -100
POSE_SPAN_MODES = ("marker", "remove", "keep")

# Canonical code tokens only: `<pose_007>` is not a token of the vocabulary.
_POSE_CODE_PATTERN = re.compile(r"<pose_(0|[1-9][0-9]*)>")
# `<pose>` is not a prefix of `<pose_query>` (the `>` differs), so the alternatives cannot shadow each other.
_PLACEHOLDER_PATTERN = re.compile(
    "|".join(re.escape(token) for token in (IMAGE_TOKEN, POSE_QUERY_TOKEN, POSE_TOKEN))
)
# A control token marked as user text by `mark_control_tokens` (between two private-use characters).
_MARKED_TOKEN_PATTERN = re.compile(f"{_CONTROL_TOKEN_START}.*?{_CONTROL_TOKEN_END}", re.DOTALL)
_TOKEN_FIELDS = {
    "image_token_id": IMAGE_TOKEN,
    "pose_token_id": POSE_TOKEN,
    "pose_query_token_id": POSE_QUERY_TOKEN,
    "pose_start_token_id": POSE_START_TOKEN,
    "pose_end_token_id": POSE_END_TOKEN,
}
_IMAGE_TYPES = (PIL.Image.Image, np.ndarray, torch.Tensor, str, os.PathLike)
# Channel counts that convert to RGB: grey, RGB, RGBA.
_IMAGE_CHANNELS = (1, 3, 4)

ImageLike = PIL.Image.Image | np.ndarray | torch.Tensor | str | os.PathLike


def _placeholders(text: str, sanitize: bool):
    """The placeholder matches of `text`; with `sanitize`, those marked as user text are not placeholders."""
    for match in _PLACEHOLDER_PATTERN.finditer(text):
        if not (sanitize and match.start() > 0 and text[match.start() - 1] == _CONTROL_TOKEN_START):
            yield match


def pose_code_token(code: int) -> str:
    """The vocabulary token of pose code `code` (`<pose_{code}>`)."""
    return POSE_CODE_TOKEN_FORMAT.format(code)


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
    codes = sorted(int(match.group(1)) for token in vocab if (match := _POSE_CODE_PATTERN.fullmatch(token)))
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


def _to_8_bit(image: PIL.Image.Image, name: str) -> PIL.Image.Image:
    """A grayscale image of more than 8 bits (PIL modes `I;16*`, `I`, `F`) brought to 8 bits by its range, where
    PIL's own `convert` clips every value above 255 to white: 16-bit values are divided by 257; 32-bit integers
    by 257 when they fit 16 bits, else by their maximum; floats are read as [0, 1] when they lie there, else
    scaled by their maximum."""
    array = np.asarray(image, dtype=np.float64)
    if not np.isfinite(array).all() or array.min() < 0:
        raise ValueError(
            f"`{name}` (PIL mode {image.mode!r}) holds negative, NaN or infinite values; expected intensities >= 0."
        )
    if image.mode.startswith("I;16") or (image.mode == "I" and array.max() <= 65535):
        scale = 65535.0
    elif image.mode == "F" and array.max() <= 1.0:
        scale = 1.0
    else:
        scale = max(float(array.max()), 1e-12)
    return PIL.Image.fromarray(np.round(array / scale * 255.0).astype(np.uint8), mode="L")


def _image_from_array(array: np.ndarray, name: str) -> PIL.Image.Image:
    """An RGB PIL image from an `(H, W)` or `(H, W, C)` array of uint8 or uint16 (divided by 257), or of floats
    in [0, 1]."""
    if array.ndim == 3 and array.shape[-1] not in _IMAGE_CHANNELS:
        raise ValueError(
            f"`{name}` has shape {array.shape}, whose {array.shape[-1]} channels do not convert to RGB; "
            f"expected (H, W) or (H, W, C) with C in {_IMAGE_CHANNELS} (numpy arrays are channels-last, "
            "torch tensors channels-first)."
        )
    if 0 in array.shape[:2]:
        raise ValueError(f"`{name}` is an empty image of shape {array.shape}.")
    if array.dtype.kind == "f":
        if not np.isfinite(array).all() or array.min() < 0 or array.max() > 1:
            raise ValueError(
                f"`{name}` holds floats outside [0, 1] (min {np.nanmin(array):.4g}, max "
                f"{np.nanmax(array):.4g}, or NaN/inf); float images must be in [0, 1], integer images uint8."
            )
        array = np.round(array * 255).astype(np.uint8)
    elif array.dtype == np.uint16:
        array = np.round(array / 257.0).astype(np.uint8)  # 65535 -> 255
    elif array.dtype != np.uint8:
        raise TypeError(f"`{name}` has dtype {array.dtype}; expected uint8 or uint16, or floats in [0, 1].")
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    return PIL.Image.fromarray(np.ascontiguousarray(array)).convert("RGB")


def _to_rgb_images(image: ImageLike, name: str) -> list[PIL.Image.Image]:
    """
    Validates one image input and returns it as RGB PIL images (several for a batched array or tensor).

    PIL images of any mode are converted to RGB (an alpha channel is dropped). Numpy arrays are `(H, W)`,
    `(H, W, C)` or `(N, H, W, C)`; torch tensors `(H, W)`, `(C, H, W)` or `(N, C, H, W)`; both uint8, or
    floats in [0, 1]. Strings and paths are image files (or http(s) URLs).
    """
    if isinstance(image, (str, os.PathLike)):
        source = os.fspath(image)
        if source.startswith(("http://", "https://")):
            return [load_image(source)]
        if not os.path.isfile(source):
            raise FileNotFoundError(f"`{name}` is the path {source!r}, which is not a file.")
        with PIL.Image.open(source) as opened:
            image = PIL.ImageOps.exif_transpose(opened)
            image.load()
    if isinstance(image, PIL.Image.Image):
        if image.width == 0 or image.height == 0:
            raise ValueError(f"`{name}` is an empty image of size {image.width}x{image.height}.")
        if image.mode in ("I", "F") or image.mode.startswith("I;16"):
            image = _to_8_bit(image, name)
        try:
            return [image.convert("RGB")]
        except (ValueError, OSError) as error:
            raise ValueError(
                f"`{name}` (PIL mode {image.mode!r}) cannot be converted to RGB: {error}"
            ) from error
    if isinstance(image, torch.Tensor):
        if image.is_complex() or image.dtype == torch.bool:
            raise TypeError(f"`{name}` has dtype {image.dtype}; expected uint8, or floats in [0, 1].")
        array = image.detach().cpu()
        array = (array.float() if array.is_floating_point() else array).numpy()
        if array.ndim not in (2, 3, 4):
            raise ValueError(
                f"`{name}` has shape {tuple(image.shape)}; expected (H, W), (C, H, W) or (N, C, H, W)."
            )
        # Tensors are channels-first; move the channels last as in numpy images.
        if array.ndim >= 3:
            if array.shape[-3] not in _IMAGE_CHANNELS:
                raise ValueError(
                    f"`{name}` has shape {tuple(image.shape)}; torch images are channels-first (C, H, W) or "
                    f"(N, C, H, W) with C in {_IMAGE_CHANNELS}."
                )
            array = np.moveaxis(array, -3, -1)
        image = array
    if isinstance(image, np.ndarray):
        if image.ndim == 4:
            return [_image_from_array(frame, f"{name}[{index}]") for index, frame in enumerate(image)]
        if image.ndim not in (2, 3):
            raise ValueError(f"`{name}` has shape {image.shape}; expected (H, W), (H, W, C) or (N, H, W, C).")
        return [_image_from_array(image, name)]
    raise TypeError(
        f"`{name}` is a {type(image).__name__}; expected a PIL image, a numpy array (H, W, C), a torch "
        "tensor (C, H, W) or the path of an image file."
    )


def _is_number_list(value: Any) -> bool:
    """Whether `value` is a non-empty (nested) list or tuple of real numbers, i.e. one array written out."""
    if not isinstance(value, (list, tuple)) or not value:
        return False
    return all(
        _is_number_list(item)
        or (isinstance(item, (int, float, np.number)) and not isinstance(item, (bool, np.bool_)))
        for item in value
    )


def _is_pose_item(value: Any) -> bool:
    return isinstance(value, (torch.Tensor, np.ndarray)) or _is_number_list(value)


def _is_image_item(value: Any) -> bool:
    return isinstance(value, _IMAGE_TYPES)


def _split_inputs(inputs: Any, name: str, is_item: Callable[[Any], bool], expected: str) -> tuple[list, bool]:
    """
    Reads the layout of a multimodal argument: one item, a flat list of items, or a list (one per sample) of
    lists of items.

    Returns:
        `tuple[list, bool]`: the `(label, item)` pairs (a flat list, or one list per sample) and whether the
        input was nested per sample. Labels locate the item in the user's argument for error messages.
    """
    if is_item(inputs):
        return [(name, inputs)], False
    if not isinstance(inputs, (list, tuple)):
        raise TypeError(f"`{name}` is a {type(inputs).__name__}; expected {expected}, or a list of them.")
    if all(is_item(item) for item in inputs):
        return [(f"{name}[{index}]", item) for index, item in enumerate(inputs)], False
    nested = []
    for sample, group in enumerate(inputs):
        if not isinstance(group, (list, tuple)):
            raise TypeError(
                f"`{name}` mixes items and lists: `{name}[{sample}]` is a {type(group).__name__}. Give a "
                "flat list of items, or one list per sample."
            )
        for index, item in enumerate(group):
            if not is_item(item):
                raise TypeError(
                    f"`{name}[{sample}][{index}]` is a {type(item).__name__}; expected {expected}."
                )
        nested.append([(f"{name}[{sample}][{index}]", item) for index, item in enumerate(group)])
    return nested, True


def _map_items(entries: list, nested: bool, read: Callable[[Any, str], list]) -> list:
    """Applies `read(item, label)` to the `(label, item)` pairs of `_split_inputs`, keeping their layout."""
    if nested:
        return [[read(item, label) for label, item in group] for group in entries]
    return [read(item, label) for label, item in entries]


def _distribute(
    entries: list, nested: bool, counts: list[int], name: str, placeholder: str, noun: str
) -> list[list[Any]]:
    """
    Assigns the values read from a multimodal argument to the samples, checking them against the number of
    placeholders of each sample.

    Args:
        entries (`list`):
            Flat: a list of value lists (one per item of the argument, in order). Nested: one such list per
            sample.
        counts (`list[int]`):
            Number of placeholders in each sample's text.

    Returns:
        `list[list]`: the values of each sample, in placeholder order.
    """
    if not nested:
        values = [value for item_values in entries for value in item_values]
        if len(values) != sum(counts):
            raise ValueError(
                f"The text has {sum(counts)} `{placeholder}` placeholder(s) ({counts} per sample) but "
                f"`{name}` gives {len(values)} {noun}."
            )
        starts = np.cumsum([0, *counts]).tolist()
        return [values[start:stop] for start, stop in zip(starts[:-1], starts[1:], strict=True)]
    if len(entries) != len(counts):
        raise ValueError(
            f"`{name}` is nested per sample with {len(entries)} sample(s), but `text` has {len(counts)}."
        )
    per_sample = [[value for item_values in group for value in item_values] for group in entries]
    given = [len(values) for values in per_sample]
    if given != counts:
        raise ValueError(
            f"`{name}` gives {given} {noun} per sample, but the text has {counts} `{placeholder}` "
            "placeholder(s) per sample."
        )
    return per_sample


def _is_truncating(truncation: Any) -> bool:
    return truncation not in (
        None,
        False,
        TruncationStrategy.DO_NOT_TRUNCATE,
        TruncationStrategy.DO_NOT_TRUNCATE.value,
    )


class UniPoseProcessor(ProcessorMixin):
    r"""
    Builds the inputs of [`UniPoseForConditionalGeneration`] from text with placeholders, images and SMPL
    poses, and decodes its outputs.

    Args:
        image_processor ([`CLIPImageProcessor`]):
            Preprocessing of the CLIP vision tower (336 px: resize the short side, centre crop, CLIP
            mean/std).
        pose_image_processor ([`CLIPImageProcessor`]):
            Preprocessing of the pose ViT: resize the short side to 256, centre crop 256x192, ImageNet
            mean/std (a CLIP processor configured for it; see [`~UniPoseProcessor.default_image_processors`]).
        tokenizer ([`PreTrainedTokenizerBase`]):
            A tokenizer holding the UniPose tokens (`unipose.tokenization.add_unipose_tokens`).
        chat_template (`str`, *optional*):
            Jinja template of [`~ProcessorMixin.apply_chat_template`]; defaults to the tokenizer's.
        image_seq_length (`int`, *optional*, defaults to 576):
            Tokens per image (CLIP's patch grid: 24x24 at 336 px with 14 px patches).
        num_pose_tokens (`int`, *optional*, defaults to 80):
            Tokens per pose span, between `<p>` and `</p>` (the pose tokenizer's `num_tokens`).
        num_joints (`int`, *optional*, defaults to 22):
            Joints per pose.
        image_start_text (`str`, *optional*, defaults to `""`), image_end_text (`str`, *optional*, defaults to `""`):
            Text written before and after the tokens of every image. A checkpoint converted from the published
            UniPose sets `"<im_start>"` and `"<im_end>"`, the way the release writes images in its prompts.

    Example:

    ```python
    >>> import torch
    >>> from unipose.testing import tiny_model_and_processor
    >>> _, processor = tiny_model_and_processor()
    >>> inputs = processor(text=["Describe this pose: <pose>"], poses=[torch.zeros(22, 3)])
    >>> inputs["pose_values"].shape  # the pose in 6D, for the model's pose tokenizer
    torch.Size([1, 22, 6])
    >>> int((inputs["input_ids"] == processor.pose_token_id).sum()) == processor.num_pose_tokens
    True
    ```
    """

    # Defaults of `__call__`: a padded batch of PyTorch tensors (padded on the left, see `__call__`).
    text_kwargs = {"padding": True, "return_tensors": "pt"}

    def __init__(
        self,
        image_processor,
        pose_image_processor,
        tokenizer,
        chat_template: str | None = None,
        image_seq_length: int = 576,
        num_pose_tokens: int = 80,
        num_joints: int = NUM_BODY_JOINTS,
        image_start_text: str = "",
        image_end_text: str = "",
    ):
        for name, value in (("image_start_text", image_start_text), ("image_end_text", image_end_text)):
            if not isinstance(value, str):
                raise TypeError(f"`{name}` must be a string, got {type(value).__name__}.")
        self.image_start_text, self.image_end_text = image_start_text, image_end_text
        for name, value in (
            ("image_seq_length", image_seq_length),
            ("num_pose_tokens", num_pose_tokens),
            ("num_joints", num_joints),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
        self.image_seq_length = image_seq_length
        self.num_pose_tokens = num_pose_tokens
        self.num_joints = num_joints
        if chat_template is None:
            chat_template = getattr(tokenizer, "chat_template", None)
        super().__init__(image_processor, pose_image_processor, tokenizer, chat_template=chat_template)

        token_ids, self.pose_codebook_size = get_unipose_token_ids(tokenizer)
        self.image_token_id = token_ids["image_token_id"]
        self.pose_token_id = token_ids["pose_token_id"]
        self.pose_query_token_id = token_ids["pose_query_token_id"]
        self.pose_start_token_id = token_ids["pose_start_token_id"]
        self.pose_end_token_id = token_ids["pose_end_token_id"]
        self.pose_code_token_offset = token_ids["pose_code_token_offset"]
        # Read by ProcessorMixin's multimodal helpers (token type ids, placeholder checks).
        self.image_token = IMAGE_TOKEN

    @staticmethod
    def default_image_processors(
        clip_size: int = 336, pose_size: tuple[int, int] = (256, 192)
    ) -> tuple[CLIPImageProcessorPil, CLIPImageProcessorPil]:
        """
        The two image processors of UniPose.

        They use the PIL backend on purpose: it resizes with PIL's bicubic filter, as the preprocessing the
        published weights were trained with, whereas the torchvision backend's tensor resize differs slightly.

        Args:
            clip_size (`int`, *optional*, defaults to 336):
                CLIP input side: the short side is resized to it, then the centre `clip_size` square is kept.
            pose_size (`tuple[int, int]`, *optional*, defaults to `(256, 192)`):
                Pose ViT input `(height, width)`. UniPose resizes the short side to 256, centre-crops 256x256
                and keeps the central 192 columns; this equals resizing the short side to `height` and
                centre-cropping `height` x `width` directly whenever `height - width` is even, which is
                required here. (The reference code crops with torchvision, which rounds the crop offset where
                transformers floors it: for some image sizes the two crops are one pixel apart.)

        Returns:
            `tuple[CLIPImageProcessorPil, CLIPImageProcessorPil]`: the CLIP and the pose ViT image processors.
        """
        height, width = pose_size
        if not 0 < width <= height or (height - width) % 2:
            raise ValueError(
                "`pose_size` must be (height, width) with 0 < width <= height and an even difference (so "
                f"that the central columns of the centre square are the centre crop), got {pose_size}."
            )
        if clip_size < 1:
            raise ValueError(f"`clip_size` must be a positive integer, got {clip_size}.")
        image_processor = CLIPImageProcessorPil(
            size={"shortest_edge": clip_size},
            crop_size={"height": clip_size, "width": clip_size},
            resample=PILImageResampling.BICUBIC,
            image_mean=OPENAI_CLIP_MEAN,
            image_std=OPENAI_CLIP_STD,
        )
        pose_image_processor = CLIPImageProcessorPil(
            size={"shortest_edge": height},
            crop_size={"height": height, "width": width},
            resample=PILImageResampling.BICUBIC,
            image_mean=IMAGENET_DEFAULT_MEAN,
            image_std=IMAGENET_DEFAULT_STD,
        )
        return image_processor, pose_image_processor

    def to_dict(self) -> dict[str, Any]:
        output = super().to_dict()
        # transformers saves a PIL-backend image processor under its backend-free name (`CLIPImageProcessor`),
        # which loads the torchvision class where torchvision is installed and otherwise falls back to the PIL
        # one with a warning. The PIL name loads the class the processor was built with, silently.
        for name in ("image_processor", "pose_image_processor"):
            if isinstance(output.get(name), dict):
                output[name]["image_processor_type"] = type(getattr(self, name)).__name__
        return output

    def save_pretrained(self, save_directory, push_to_hub: bool = False, **kwargs):
        """
        [`~ProcessorMixin.save_pretrained`], which also writes `pipeline_unipose.py` (the pipeline is imported
        by this file, and the saved code follows relative imports) and, when the model's `config.json` is
        already in `save_directory`, registers the pipeline there (`custom_pipelines`), so that
        `pipeline("image-text-to-text", model=save_directory, trust_remote_code=True)` returns the poses.
        Save the model first.
        """
        result = super().save_pretrained(save_directory, push_to_hub=push_to_hub, **kwargs)
        config_file = os.path.join(save_directory, "config.json")
        if os.path.isfile(config_file):
            with open(config_file, encoding="utf-8") as handle:
                config = json.load(handle)
            pipelines, registration = config.get("custom_pipelines", {}), UniPosePipeline.registration()
            if any(pipelines.get(task) != entry for task, entry in registration.items()):
                config["custom_pipelines"] = {**pipelines, **registration}
                with open(config_file, "w", encoding="utf-8") as handle:
                    handle.write(json.dumps(config, indent=2, sort_keys=True) + "\n")
        return result

    @property
    def model_input_names(self) -> list[str]:
        names = [*self.tokenizer.model_input_names, *self.image_processor.model_input_names]
        return list(dict.fromkeys([*names, "pose_pixel_values", "pose_values", "pose_labels"]))

    def replace_image_token(self, image_inputs: dict | None = None, image_idx: int = 0, **kwargs) -> str:
        """The text that replaces one `<image>` placeholder: `image_seq_length` copies of `<image>`, between
        `image_start_text` and `image_end_text`."""
        return self.image_start_text + IMAGE_TOKEN * self.image_seq_length + self.image_end_text

    def _get_num_multimodal_tokens(self, image_sizes=None, **kwargs) -> MultiModalData:
        """Tokens and patches per image: every image is `image_seq_length` tokens, whatever its size."""
        if image_sizes is None:
            return MultiModalData()
        return MultiModalData(
            num_image_tokens=[self.image_seq_length] * len(image_sizes),
            num_image_patches=[1] * len(image_sizes),
        )

    # ---------------------------------------------------------------------------------------------------
    # Chats
    # ---------------------------------------------------------------------------------------------------

    def apply_chat_template(self, conversation, chat_template: str | None = None, **kwargs):
        r"""
        [`~ProcessorMixin.apply_chat_template`] with poses in the content: `{"type": "pose", "pose": pose}`
        renders `<pose>` and, with `tokenize=True`, gives its pose to the processor (any format of `poses`).

        - The template writes the BOS; tokenized here or by the processor afterwards, a chat has one BOS.
        - A final assistant message `"<p>"` with `continue_final_message=True` asks for a pose answer:
          the prompt ends with an open `<p>` and `generate` writes the pose in one step.
        - With `tokenize=True, return_dict=True, return_assistant_tokens_mask=True`, the result also holds
          `labels`: the answers' tokens label themselves, their pose queries carry the codes of `target_poses`
          (in `processor_kwargs`) and everything else is `-100` -- what training needs.

        Example:

        ```python
        >>> question = [{"type": "text", "text": "Describe this pose:"}, {"type": "pose", "pose": pose}]
        >>> chat = [{"role": "user", "content": question}]
        >>> inputs = processor.apply_chat_template(chat, tokenize=True, return_dict=True)
        >>> ask_pose = [
        ...     {"role": "user", "content": "Generate the pose described as follows: a person kneeling."},
        ...     {"role": "assistant", "content": "<p>"},
        ... ]
        >>> inputs = processor.apply_chat_template(
        ...     ask_pose, tokenize=True, return_dict=True, continue_final_message=True
        ... )
        >>> model.generate(**inputs, return_dict_in_generate=True).poses[0].shape
        torch.Size([1, 22, 3])
        ```
        """
        processor_kwargs = kwargs.get("processor_kwargs") or {}
        chat_poses = self._chat_poses(conversation)
        if kwargs.get("tokenize") and chat_poses:
            if processor_kwargs.get("poses") is not None:
                raise ValueError(
                    'The poses are given twice: in the chat\'s `{"type": "pose", "pose": ...}` items and in '
                    "`processor_kwargs['poses']`. Give them in one place."
                )
            kwargs["processor_kwargs"] = processor_kwargs = {**processor_kwargs, "poses": chat_poses}
        out = super().apply_chat_template(conversation, chat_template, **kwargs)
        if (
            kwargs.get("tokenize")
            and kwargs.get("return_dict")
            and kwargs.get("return_assistant_tokens_mask")
        ):
            out["labels"] = self._answer_labels(
                out, has_targets=processor_kwargs.get("target_poses") is not None
            )
        return out

    @staticmethod
    def _chat_poses(conversation) -> list:
        """
        The poses of the chat's `{"type": "pose", "pose": ...}` items as `poses` of `__call__`: a flat list
        for one conversation, one list per conversation for a batch, empty if no item carries a pose.
        """
        batched = bool(conversation) and (
            isinstance(conversation[0], (list, tuple)) or hasattr(conversation[0], "messages")
        )
        found = [
            [
                # A pose written as a plain list of numbers becomes an array: a list would read as several.
                np.asarray(item["pose"]) if isinstance(item["pose"], (list, tuple)) else item["pose"]
                for message in getattr(chat, "messages", chat)
                if isinstance(message, dict) and isinstance(message.get("content"), (list, tuple))
                for item in message["content"]
                if isinstance(item, dict) and item.get("type") == "pose" and item.get("pose") is not None
            ]
            for chat in (conversation if batched else [conversation])
        ]
        if not any(found):
            return []
        return found if batched else found[0]

    def _answer_labels(self, out: BatchFeature, has_targets: bool):
        """The labels of a tokenized chat: each answer token labels itself, except the `<image>` and `<pose>`
        placeholders (-100) and the pose queries, which keep the codes of `labels`."""
        input_ids = out["input_ids"]
        rows = input_ids.tolist() if isinstance(input_ids, (torch.Tensor, np.ndarray)) else input_ids
        masks = out["assistant_masks"]
        masks = masks.tolist() if isinstance(masks, (torch.Tensor, np.ndarray)) else masks
        targets = out.get("labels")
        targets = targets.tolist() if isinstance(targets, (torch.Tensor, np.ndarray)) else targets
        placeholders = (self.image_token_id, self.pose_token_id, self.pose_query_token_id)
        labels = []
        for row, (ids, mask) in enumerate(zip(rows, masks, strict=True)):
            if not has_targets and any(
                answer and token == self.pose_query_token_id for token, answer in zip(ids, mask, strict=True)
            ):
                raise ValueError(
                    f"The answer of conversation {row} holds a pose to produce (`<pose_query>`) but no "
                    "`target_poses` were given in `processor_kwargs`: its labels need the pose's codes."
                )
            base = targets[row] if targets is not None else [IGNORE_INDEX] * len(ids)
            labels.append(
                [
                    token if answer and token not in placeholders else label
                    for token, answer, label in zip(ids, mask, base, strict=True)
                ]
            )
        if isinstance(input_ids, torch.Tensor):
            return torch.tensor(labels, dtype=torch.long, device=input_ids.device)
        return np.asarray(labels, dtype=np.int64) if isinstance(input_ids, np.ndarray) else labels

    # ---------------------------------------------------------------------------------------------------
    # Inputs
    # ---------------------------------------------------------------------------------------------------

    def __call__(
        self,
        images: ImageLike | Sequence | None = None,
        text: str | list[str] | None = None,
        poses: Any = None,
        target_poses: Any = None,
        videos: None = None,
        audio: None = None,
        **kwargs: Unpack[ProcessingKwargs],
    ) -> BatchFeature:
        r"""
        Expands the placeholders of `text`, tokenizes it and preprocesses images and poses.

        Images, poses and targets are given either as a flat list matched to the placeholders in order across
        the batch, or nested, one list per sample. A single item (or a batched array) stands for a flat list.

        Args:
            images (PIL image, numpy array, torch tensor, path, or a (nested) list of them, *optional*):
                One image per `<image>`. Numpy arrays are `(H, W, C)` (or `(N, H, W, C)` for several), torch
                tensors `(C, H, W)` (or `(N, C, H, W)`), uint8 or floats in [0, 1]; any PIL mode converts to
                RGB.
            text (`str` or `list[str]`):
                The prompts, with `<image>`, `<pose>` and `<pose_query>` placeholders written once each.
            poses (tensor, array, nested list of numbers, or a (nested) list of them, *optional*):
                One pose per `<pose>`. The dtype decides how a pose enters the model:

                - floating point: a pose in any format of `to_rotation_6d` (axis-angle `(J*3,)` / `(J, 3)`,
                  rotation matrices `(J, 3, 3)`, 6D `(J, 6)`, or several stacked on a leading axis); it is
                  validated, returned in `pose_values` and its span holds `<pose>` placeholders that the model
                  fills from its pose tokenizer. Matrices and 6D are taken as given (`pose_values` holds the
                  raw first two rows, not re-orthonormalised), as the published UniPose model reads them;
                - integer: pose codes of shape `(num_pose_tokens,)` (or `(N, num_pose_tokens)`), written
                  directly as the code tokens `<p><pose_c1>...</p>`.

                A plain Python list of numbers is read as one array (`[0] * 66` holds integers, hence codes:
                write `[0.0] * 66` for a pose); per-sample nesting needs the poses as tensors or arrays.
            target_poses (integer tensor, array or a (nested) list of them, *optional*):
                The codes `(num_pose_tokens,)` of the pose to produce at each `<pose_query>`; they give
                `labels`.
            return_tensors (`str`, *optional*, defaults to `"pt"`):
                `"pt"`, `"np"`, or `None` for lists.
            padding (`bool` or `str`, *optional*, defaults to `True`):
                Padding strategy of the tokenizer.
            padding_side (`str`, *optional*, defaults to `"left"`):
                Left unless given, whatever the tokenizer's own setting.
            add_special_tokens (`bool`, *optional*):
                By default the tokenizer's special tokens (the BOS) are added to every text that does not
                already start with the BOS, as a text rendered by the chat template does.
            truncation (`bool` or `str`, *optional*, defaults to `False`):
                Truncation may only remove text: a cut through (or of) an image or a pose span raises a
                `ValueError`.
            max_length (`int`, *optional*):
                Maximum sequence length. Without truncation a longer sequence raises a `ValueError`, as does
                one longer than the tokenizer's `model_max_length`.

        Returns:
            [`BatchFeature`]: with
            - **input_ids**, **attention_mask** -- the tokenized, expanded text (`(batch, length)`);
            - **pixel_values** `(num_images, 3, H, W)` and **pose_pixel_values** `(num_images, 3, 256, 192)`
              -- when images are given;
            - **pose_values** `(num_poses, num_joints, 6)` float32 -- when poses are given as rotations;
            - **labels** `(batch, length)` -- when `target_poses` are given: `-100` everywhere except at the
              query positions, which hold the vocabulary id of their code (`pose_code_token_offset` + code),
              as the model's loss reads them: `model(**inputs).loss` is the pose loss. (**pose_labels** holds
              the same, for callers that still read it; it will be removed.)
        """
        if videos is not None or audio is not None:
            raise ValueError(f"{type(self).__name__} takes no `videos` or `audio`.")
        output_kwargs = self._merge_kwargs(tokenizer_init_kwargs=self.tokenizer.init_kwargs, **kwargs)
        text_kwargs, images_kwargs = output_kwargs["text_kwargs"], output_kwargs["images_kwargs"]
        sanitize = bool(text_kwargs.pop("sanitize_control_tokens", None))
        if sanitize and encode_marked_chat is None:
            raise ValueError(
                "`sanitize_control_tokens=True` needs a transformers release with `mark_control_tokens` "
                "(transformers.utils.chat_template_utils); upgrade transformers."
            )
        if "padding_side" not in kwargs and "padding_side" not in kwargs.get("text_kwargs", {}):
            text_kwargs["padding_side"] = "left"
        return_tensors = text_kwargs.pop("return_tensors", None)
        images_kwargs.pop("return_tensors", None)

        if text is None:
            if poses is not None or target_poses is not None:
                raise ValueError(
                    "`poses` and `target_poses` need `text` with `<pose>` / `<pose_query>` placeholders."
                )
            if images is None:
                raise ValueError(f"{type(self).__name__} needs `text`, `images` or both.")
            entries, _ = _split_inputs(images, "images", _is_image_item, "an image")
            flat_images = [image for label, item in entries for image in _to_rgb_images(item, label)]
            return BatchFeature(
                self._process_image_list(flat_images, images_kwargs), tensor_type=return_tensors
            )

        texts = self._read_text(text)
        placeholders = [[match.group() for match in _placeholders(sample, sanitize)] for sample in texts]
        image_counts = [found.count(IMAGE_TOKEN) for found in placeholders]
        pose_counts = [found.count(POSE_TOKEN) for found in placeholders]
        query_counts = [found.count(POSE_QUERY_TOKEN) for found in placeholders]

        sample_images = [[] for _ in texts]
        if images is not None or any(image_counts):
            if images is None:
                raise ValueError(
                    f"The text has {image_counts} `{IMAGE_TOKEN}` placeholder(s) per sample but no `images`."
                )
            entries, nested = _split_inputs(images, "images", _is_image_item, "an image")
            entries = _map_items(entries, nested, _to_rgb_images)
            sample_images = _distribute(entries, nested, image_counts, "images", IMAGE_TOKEN, "image(s)")

        sample_poses = [[] for _ in texts]
        if poses is not None or any(pose_counts):
            if poses is None:
                raise ValueError(
                    f"The text has {pose_counts} `{POSE_TOKEN}` placeholder(s) per sample but no `poses`."
                )
            sample_poses = self._read_poses(poses, "poses", pose_counts, POSE_TOKEN, codes_only=False)

        sample_targets = None
        if target_poses is None and any(query_counts):
            raise ValueError(
                f"The text has {query_counts} `{POSE_QUERY_TOKEN}` placeholder(s) per sample but no `target_poses`: "
                f"`{POSE_QUERY_TOKEN}` marks a pose to produce in training, with its codes in `target_poses`. "
                f"To ask the model for a pose, end the prompt with `{POSE_START_TOKEN}`; to pass text typed by "
                "users, use `sanitize_control_tokens=True`."
            )
        if target_poses is not None:
            sample_targets = self._read_poses(
                target_poses, "target_poses", query_counts, POSE_QUERY_TOKEN, codes_only=True
            )

        expanded, replacement_offsets = self._expand_placeholders(
            texts, sample_images, sample_poses, sanitize
        )
        encoding = self._tokenize(expanded, text_kwargs, sanitize)

        spans = [self._find_pose_spans(ids, index) for index, ids in enumerate(encoding["input_ids"])]
        data = dict(encoding)
        if sample_targets is not None:
            data["labels"] = self._pose_labels(encoding["input_ids"], spans, sample_targets)
            data["pose_labels"] = data["labels"]  # deprecated name of the same labels
        flat_images = [image for group in sample_images for image in group]
        if flat_images:
            data.update(self._process_image_list(flat_images, images_kwargs))
        rotations = [value for group in sample_poses for kind, value in group if kind == "rotation"]
        if rotations:
            data["pose_values"] = torch.stack(rotations).numpy()
        if output_kwargs["return_mm_token_type_ids"]:
            data["mm_token_type_ids"] = self.create_mm_token_type_ids(data["input_ids"])
        if output_kwargs["return_text_replacement_offsets"]:
            data["text_replacement_offsets"] = replacement_offsets
        return BatchFeature(
            data, tensor_type=return_tensors, skip_tensor_conversion=self.skip_tensor_conversion
        )

    @staticmethod
    def _read_text(text: Any) -> list[str]:
        if isinstance(text, str):
            return [text]
        if (
            not isinstance(text, (list, tuple))
            or not text
            or not all(isinstance(sample, str) for sample in text)
        ):
            kind = (
                type(text).__name__
                if not isinstance(text, (list, tuple))
                else f"{type(text).__name__} of "
                + (", ".join(sorted({type(sample).__name__ for sample in text})) or "nothing")
            )
            raise TypeError(f"`text` must be a string or a non-empty list of strings, got a {kind}.")
        return list(text)

    def _process_image_list(
        self, images: list[PIL.Image.Image], images_kwargs: dict
    ) -> dict[str, np.ndarray]:
        """CLIP and pose ViT pixels of the same images. `images_kwargs` apply to the CLIP processor only."""
        pixel_values = self.image_processor(images, **images_kwargs, return_tensors="np")["pixel_values"]
        pose_pixel_values = self.pose_image_processor(images, return_tensors="np")["pixel_values"]
        return {"pixel_values": pixel_values, "pose_pixel_values": pose_pixel_values}

    def _read_pose_item(self, item: Any, name: str, codes_only: bool) -> list[tuple[str, torch.Tensor]]:
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
        invalid = (codes < 0) | (codes >= self.pose_codebook_size)
        if bool(invalid.any()):
            row, column = (int(index) for index in invalid.nonzero()[0])
            raise ValueError(
                f"`{name}` holds the pose code {int(codes[row, column])} at "
                f"{(row, column) if len(codes) > 1 else column}; codes must be in [0, "
                f"{self.pose_codebook_size})."
            )
        return codes

    def _read_poses(
        self, poses: Any, name: str, counts: list[int], placeholder: str, codes_only: bool
    ) -> list[list]:
        expected = (
            "an integer code tensor or array" if codes_only else "a pose tensor, array or list of numbers"
        )
        entries, nested = _split_inputs(poses, name, _is_pose_item, expected)
        entries = _map_items(
            entries, nested, lambda item, label: self._read_pose_item(item, label, codes_only)
        )
        return _distribute(entries, nested, counts, name, placeholder, "pose(s)")

    def _pose_span_text(self, kind: str, value: torch.Tensor) -> str:
        if kind == "codes":
            body = "".join(pose_code_token(code) for code in value.tolist())
        else:
            body = POSE_TOKEN * self.num_pose_tokens
        return POSE_START_TOKEN + body + POSE_END_TOKEN

    def _expand_placeholders(
        self, texts: list[str], sample_images: list[list], sample_poses: list[list], sanitize: bool
    ) -> tuple[list[str], list[list[dict]]]:
        """Replaces each placeholder (not marked as user text) by its span; also returns ProcessorMixin's
        replacement offsets."""
        query_text = POSE_START_TOKEN + POSE_QUERY_TOKEN * self.num_pose_tokens + POSE_END_TOKEN
        expanded, offsets = [], []
        for sample, text in enumerate(texts):
            poses = iter(sample_poses[sample])
            image_indices = iter(range(len(sample_images[sample])))
            pieces, sample_offsets, last, shift = [], [], 0, 0
            for match in _placeholders(text, sanitize):
                token = match.group()
                if token == IMAGE_TOKEN:
                    replacement, kind = self.replace_image_token(image_idx=next(image_indices)), "image"
                elif token == POSE_TOKEN:
                    replacement, kind = self._pose_span_text(*next(poses)), "pose"
                else:
                    replacement, kind = query_text, "pose_query"
                start, end = match.span()
                pieces += [text[last:start], replacement]
                sample_offsets.append(
                    {
                        "type": kind,
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

    def _protected_counts(self, ids: Sequence[int]) -> tuple[int, ...]:
        """Counts of the tokens that truncation must keep: image, pose, query, `<p>`, `</p>`, code tokens."""
        ids = np.asarray(ids, dtype=np.int64)
        kinds = (self.image_token_id, self.pose_token_id, self.pose_query_token_id)
        kinds += (self.pose_start_token_id, self.pose_end_token_id)
        is_code = (ids >= self.pose_code_token_offset) & (
            ids < self.pose_code_token_offset + self.pose_codebook_size
        )
        return (*(int((ids == kind).sum()) for kind in kinds), int(is_code.sum()))

    def _protected_counts_in_text(self, text: str, sanitize: bool) -> tuple[int, ...]:
        """The same counts read from the text (exact: `get_unipose_token_ids` checked that none is split);
        tokens marked as user text are plain text, and do not count."""
        if sanitize:
            text = _MARKED_TOKEN_PATTERN.sub("", text)
        tokens = (IMAGE_TOKEN, POSE_TOKEN, POSE_QUERY_TOKEN, POSE_START_TOKEN, POSE_END_TOKEN)
        codes = sum(int(code) < self.pose_codebook_size for code in _POSE_CODE_PATTERN.findall(text))
        return (*(text.count(token) for token in tokens), codes)

    def _tokenize(self, texts: list[str], text_kwargs: dict, sanitize: bool) -> dict[str, list]:
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
                    f"{self.num_pose_tokens + 2}), more than {source} = {limit}. Shorten the text, raise the "
                    "limit, or pass `truncation=True` to cut text (never images or poses)."
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
        unsupported = [key for key in ("return_offsets_mapping", "stride") if text_kwargs.get(key)]
        if unsupported or text_kwargs.get("is_split_into_words"):
            raise ValueError(
                f"`sanitize_control_tokens=True` cannot be combined with `{unsupported or 'is_split_into_words'}`."
            )
        add_special_tokens = text_kwargs.get("add_special_tokens")
        bos, bos_id = self.tokenizer.bos_token, self.tokenizer.bos_token_id
        rows = []
        for text in texts:
            add = (
                (bos is None or not text.startswith(bos))
                if add_special_tokens is None
                else add_special_tokens
            )
            rows.append(
                ([bos_id] if add and bos_id is not None else []) + encode_marked_chat(self.tokenizer, text)
            )
        max_length = text_kwargs.get("max_length")
        if _is_truncating(text_kwargs.get("truncation")) and max_length is not None:
            keep_end = self.tokenizer.truncation_side == "left"
            rows = [row[-max_length:] if keep_end else row[:max_length] for row in rows]
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

    def mark_control_tokens(self, text: str) -> str:
        """
        Marks the control tokens in `text`, a string typed by a user, so that
        `processor(..., sanitize_control_tokens=True)` encodes them as plain text: a `<pose_query>`, `<image>`,
        `<p>` or `<pose_12>` typed by a user is then just text, never a placeholder or a pose span. (The chat
        route does this itself: `apply_chat_template(..., tokenize=True, sanitize_control_tokens=True)`.)

        Example:

        ```python
        >>> user_text = "what does <pose_query> mean?"
        >>> prompt = "Describe this pose: <pose> " + processor.mark_control_tokens(user_text)
        >>> inputs = processor(text=prompt, poses=[pose], sanitize_control_tokens=True)  # one pose, no query
        ```
        """
        if encode_marked_chat is None:
            raise ValueError(
                "`mark_control_tokens` needs a transformers release that has it; upgrade transformers."
            )
        if not isinstance(text, str):
            raise TypeError(f"`text` must be a string, got {type(text).__name__}.")
        control_tokens = self.tokenizer._get_control_tokens(self.chat_template or "")
        pattern, _ = _get_control_token_patterns(tuple(control_tokens))
        return mark_control_tokens(text, pattern)

    def _is_code(self, ids: np.ndarray) -> np.ndarray:
        return (ids >= self.pose_code_token_offset) & (
            ids < self.pose_code_token_offset + self.pose_codebook_size
        )

    def _find_pose_spans(self, ids: Sequence[int], sample: int) -> list[tuple[int, str]]:
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
            "codes": self._is_code(ids),
        }
        spans = []
        real = (
            np.flatnonzero(ids != self.tokenizer.pad_token_id)
            if self.tokenizer.pad_token_id is not None
            else None
        )
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

    def _pose_labels(
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

    # ---------------------------------------------------------------------------------------------------
    # Decoding
    # ---------------------------------------------------------------------------------------------------

    def _skipped_token_ids(self, skip_special_tokens: bool) -> set[int]:
        """The ids that decoding drops. The span tokens are special, so the tokenizer itself would drop them
        too: decoding skips the special tokens here and lets through the ones `pose_spans` keeps."""
        if not skip_special_tokens:
            return set()
        special = {index for index, token in self.tokenizer.added_tokens_decoder.items() if token.special}
        return special | set(self.tokenizer.all_special_ids)

    def _decode_ids(self, ids: list[int], skipped: set[int], pose_spans: str, **kwargs) -> str:
        if pose_spans not in POSE_SPAN_MODES:
            raise ValueError(f"`pose_spans` must be one of {POSE_SPAN_MODES}, got {pose_spans!r}.")
        if pose_spans == "keep":
            kept = ids
            span_tokens = {
                self.pose_start_token_id,
                self.pose_end_token_id,
                self.pose_token_id,
                self.pose_query_token_id,
            }
            code_range = range(
                self.pose_code_token_offset, self.pose_code_token_offset + self.pose_codebook_size
            )
            keep = span_tokens.union(code_range)
        else:
            kept, index = [], 0
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
                if pose_spans == "marker":
                    kept.append(self.pose_token_id)
                index = end + 1
            keep = {self.pose_token_id} if pose_spans == "marker" else set()
        kept = [token for token in kept if token not in skipped or token in keep]
        return self.tokenizer.decode(kept, skip_special_tokens=False, **kwargs)

    @staticmethod
    def _as_id_rows(sequences: Any, name: str) -> list[list[int]]:
        if isinstance(sequences, (torch.Tensor, np.ndarray)):
            sequences = sequences.tolist()
        if not isinstance(sequences, (list, tuple)) or not all(
            isinstance(row, (list, tuple)) for row in sequences
        ):
            raise TypeError(
                f"`{name}` must be a 2D tensor, array or list of token id lists, got "
                f"{type(sequences).__name__}."
            )
        return [[int(token) for token in row] for row in sequences]

    def decode(
        self, token_ids: Any, skip_special_tokens: bool = True, pose_spans: str = "marker", **kwargs
    ) -> str:
        """
        Decodes one sequence of token ids.

        Args:
            token_ids (`torch.Tensor`, `np.ndarray` or `list[int]` of shape `(length,)`):
                The ids, e.g. a row of `generate`'s output.
            skip_special_tokens (`bool`, *optional*, defaults to `True`):
                Whether to drop special tokens (BOS, EOS, padding, `<image>`...). The pose marker of
                `pose_spans="marker"` and the spans of `pose_spans="keep"` stay.
            pose_spans (`str`, *optional*, defaults to `"marker"`):
                What to do with each pose span `<p> ... </p>` (an unterminated one runs to the end):
                `"marker"` writes `<pose>` in its place, `"remove"` drops it, `"keep"` decodes its tokens
                (`<p><pose_12>...</p>`). Get the codes themselves with
                [`~UniPoseProcessor.extract_pose_codes`].
            kwargs:
                Passed to the tokenizer's `decode` (e.g. `clean_up_tokenization_spaces`).

        Returns:
            `str`: the text.
        """
        if isinstance(token_ids, (torch.Tensor, np.ndarray)):
            token_ids = token_ids.tolist()
        if isinstance(token_ids, int):
            token_ids = [token_ids]
        if not isinstance(token_ids, (list, tuple)) or not all(isinstance(token, int) for token in token_ids):
            raise TypeError(
                "`token_ids` must be one sequence of token ids (a 1D tensor, array or list of ints)."
            )
        return self._decode_ids(
            list(token_ids), self._skipped_token_ids(skip_special_tokens), pose_spans, **kwargs
        )

    def batch_decode(
        self, sequences: Any, skip_special_tokens: bool = True, pose_spans: str = "marker", **kwargs
    ) -> list[str]:
        """
        Decodes a batch of sequences `(batch, length)`; see [`~UniPoseProcessor.decode`] for the arguments.

        Example:

        ```python
        >>> codes = torch.zeros(processor.num_pose_tokens, dtype=torch.long)
        >>> ids = processor(text=["Like this: <pose>"], poses=[codes])
        >>> processor.batch_decode(ids["input_ids"])
        ['Like this: <pose>']
        >>> processor.batch_decode(ids["input_ids"], pose_spans="remove")
        ['Like this: ']
        ```
        """
        skipped = self._skipped_token_ids(skip_special_tokens)
        return [
            self._decode_ids(row, skipped, pose_spans, **kwargs)
            for row in self._as_id_rows(sequences, "sequences")
        ]

    def post_process_image_text_to_text(
        self, generated_outputs, skip_special_tokens: bool = True, **kwargs
    ) -> list[str]:
        """The texts of `generate`'s output, with each pose span replaced by a `<pose>` marker by default."""
        return self.batch_decode(generated_outputs, skip_special_tokens=skip_special_tokens, **kwargs)

    def extract_pose_codes(self, sequences: Any) -> list[torch.LongTensor]:
        """
        The pose codes written in each sequence, e.g. the poses that `generate` produced.

        Args:
            sequences (`torch.Tensor`, `np.ndarray` or `list[list[int]]` of shape `(batch, length)`):
                Token ids.

        Returns:
            `list[torch.LongTensor]`: per sequence, a tensor `(num_spans, num_pose_tokens)` with the codes of
            its complete code spans in order (spans of `<pose>` or `<pose_query>` placeholders hold no codes
            and are left out). Decode them to poses with the pose tokenizer.
        """
        length = self.num_pose_tokens
        result = []
        for row in self._as_id_rows(sequences, "sequences"):
            ids = np.asarray(row, dtype=np.int64)
            spans = []
            for start in np.flatnonzero(ids == self.pose_start_token_id).tolist():
                body, end = ids[start + 1 : start + 1 + length], start + 1 + length
                if end < len(ids) and ids[end] == self.pose_end_token_id and self._is_code(body).all():
                    spans.append(body - self.pose_code_token_offset)
            result.append(
                torch.from_numpy(np.stack(spans)) if spans else torch.zeros(0, length, dtype=torch.long)
            )
        return result


# `save_pretrained` copies this file (and its relative imports) next to the processor files, so that
# `AutoProcessor.from_pretrained(..., trust_remote_code=True)` works where `unipose` is not installed.
UniPoseProcessor.register_for_auto_class()

__all__ = ["UniPoseProcessor"]
