"""
What the UniPose processor is given, read: images of any kind (PIL in any mode and bit depth, arrays, tensors,
paths) as 8-bit RGB, flat or per-sample nested inputs matched to the placeholders of each sample, the poses of a
chat's pose items, and token id rows to decode. Every error names the argument and the item. Also the two image
processors of UniPose.
"""

import os
from collections.abc import Callable
from typing import Any

import numpy as np
import PIL.Image
import PIL.ImageOps
import torch
from transformers import CLIPImageProcessorPil
from transformers.image_utils import (
    IMAGENET_DEFAULT_MEAN,
    IMAGENET_DEFAULT_STD,
    OPENAI_CLIP_MEAN,
    OPENAI_CLIP_STD,
    PILImageResampling,
    load_image,
)
from transformers.utils import to_py_obj

_IMAGE_TYPES = (PIL.Image.Image, np.ndarray, torch.Tensor, str, os.PathLike)
# Channel counts that convert to RGB: grey, RGB, RGBA.
_IMAGE_CHANNELS = (1, 3, 4)

ImageLike = PIL.Image.Image | np.ndarray | torch.Tensor | str | os.PathLike


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


def to_rgb_images(image: ImageLike, name: str) -> list[PIL.Image.Image]:
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
        try:
            with PIL.Image.open(source) as opened:
                image = PIL.ImageOps.exif_transpose(opened)
                image.load()
        except PIL.UnidentifiedImageError:
            raise ValueError(
                f"`{name}` is the path {source!r}, which is not an image file PIL can read."
            ) from None
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


def is_pose_item(value: Any) -> bool:
    return isinstance(value, (torch.Tensor, np.ndarray)) or _is_number_list(value)


def is_image_item(value: Any) -> bool:
    return isinstance(value, _IMAGE_TYPES)


def split_inputs(inputs: Any, name: str, is_item: Callable[[Any], bool], expected: str) -> tuple[list, bool]:
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


def map_items(entries: list, nested: bool, read: Callable[[Any, str], list]) -> list:
    """Applies `read(item, label)` to the `(label, item)` pairs of `split_inputs`, keeping their layout."""
    if nested:
        return [[read(item, label) for label, item in group] for group in entries]
    return [read(item, label) for label, item in entries]


def distribute(
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


def read_images(images: Any) -> list[PIL.Image.Image]:
    """Every image of `images` (one, a flat list, or one list per sample) as RGB, in order."""
    entries, nested = split_inputs(images, "images", is_image_item, "an image")
    pairs = [pair for group in entries for pair in group] if nested else entries
    return [image for label, item in pairs for image in to_rgb_images(item, label)]


def read_per_sample(
    inputs: Any,
    counts: list[int],
    name: str,
    placeholder: str,
    is_item: Callable[[Any], bool],
    read: Callable[[Any, str], list],
    expected: str,
    noun: str,
    hint: str = "",
) -> list[list[Any]]:
    """
    The values of a multimodal argument (`images`, `poses`, `target_poses`) per sample, in placeholder order:
    its layout read by [`split_inputs`], each item by `read(item, label)`, the values matched to the `counts`
    of `placeholder` in each sample by [`distribute`]. `None` gives no values, and is refused if a sample has
    a placeholder (`hint` then says what to do instead).
    """
    if inputs is None:
        if any(counts):
            raise ValueError(
                f"The text has {counts} `{placeholder}` placeholder(s) per sample but no `{name}`"
                + (f": {hint}" if hint else ".")
            )
        return [[] for _ in counts]
    entries, nested = split_inputs(inputs, name, is_item, expected)
    return distribute(map_items(entries, nested, read), nested, counts, name, placeholder, noun)


def read_texts(text: Any) -> list[str]:
    """The prompts of `text` (a string or a non-empty list of strings) as a list."""
    if isinstance(text, str):
        return [text]
    if not isinstance(text, (list, tuple)) or not text or not all(isinstance(sample, str) for sample in text):
        kind = (
            type(text).__name__
            if not isinstance(text, (list, tuple))
            else f"{type(text).__name__} of "
            + (", ".join(sorted({type(sample).__name__ for sample in text})) or "nothing")
        )
        raise TypeError(f"`text` must be a string or a non-empty list of strings, got a {kind}.")
    return list(text)


def as_id_row(token_ids: Any, name: str) -> list[int]:
    """The ids of one sequence (a 1D tensor, array or list of ints, or one int); `name` is the argument."""
    if isinstance(token_ids, (torch.Tensor, np.ndarray)):
        token_ids = token_ids.tolist()
    if isinstance(token_ids, int):
        token_ids = [token_ids]
    if not isinstance(token_ids, (list, tuple)) or not all(isinstance(token, int) for token in token_ids):
        raise TypeError(f"`{name}` must be one sequence of token ids (a 1D tensor, array or list of ints).")
    return list(token_ids)


def as_id_rows(sequences: Any, name: str) -> list[list[int]]:
    """Token id rows of a 2D tensor, array or list of rows (lists, 1D tensors or arrays, e.g. the new tokens of each
    row of `generate`'s output); `name` is the argument, for the error."""
    sequences = to_py_obj(sequences)  # tensors and arrays, also inside a list, as the tokenizer reads them
    if not isinstance(sequences, (list, tuple)) or not all(
        isinstance(row, (list, tuple)) for row in sequences
    ):
        raise TypeError(
            f"`{name}` must be a 2D tensor, array or list of token id rows, got {type(sequences).__name__}."
        )
    return [[int(token) for token in row] for row in sequences]


def chat_poses(conversation) -> list:
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


def pose_vit_view(image: PIL.Image.Image, height: int, width: int) -> PIL.Image.Image:
    """
    What the pose ViT sees of `image`, made as the published UniPose makes it: the short side resized to `height`
    (bicubic, the long side `int(height * long / short)`), the centre `height` square, then its central `width`
    columns. The square's offsets are rounded half to even, as torchvision's `CenterCrop` rounds them, where
    transformers' centre crop floors them: for a 16:9 photo the two are one pixel apart. The pose image processor
    then only rescales and normalises it.
    """
    image_width, image_height = image.size
    short, long = min(image.size), max(image.size)
    new_long = int(height * long / short)
    size = (height, new_long) if image_width <= image_height else (new_long, height)
    if size != image.size:
        image = image.resize(size, PIL.Image.BICUBIC)
    top, left = round((image.height - height) / 2), round((image.width - height) / 2)
    left += (height - width) // 2
    return image.crop((left, top, left + width, top + height))


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
            required here. The processor makes that view itself ([`pose_vit_view`], with the published
            model's rounding of the crop offsets) and has this processor rescale and normalise it.

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
    # Both resize the shortest edge, centre-crop and normalise; they differ in sizes and statistics.
    return tuple(
        CLIPImageProcessorPil(
            size={"shortest_edge": crop["height"]},
            crop_size=crop,
            resample=PILImageResampling.BICUBIC,
            image_mean=mean,
            image_std=std,
        )
        for crop, mean, std in (
            ({"height": clip_size, "width": clip_size}, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD),
            ({"height": height, "width": width}, IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD),
        )
    )
