"""
PoseEst: images of people with SMPL pose fits (Human3.6M, MPI-INF-3DHP, COCO, MPII), as a `datasets.Dataset` of
`image_pose` records (see `unipose.data.schema`).

Accepted layout: one `.npz` annotation file per corpus and split, with one row per person, as SPIN's files and
HMR 2.0's (4D-Humans') `.npz` files hold them. (HMR 2.0 ships its training sets as webdataset `.tar` shards
instead, an image and a pickled annotation per sample; they are not read here: write their annotations to one
`.npz` first.)

- `imgname` `(N,)`: image paths relative to an image root folder (unicode or byte strings);
- the pose, in one of three layouts (the body part is the global orientation and the 21 body joints,
  66 axis-angle values; SMPL's two hand joints and any further values are dropped):
  `pose` `(N, >= 66)` (SMPL's 72 values, global orientation first); or `body_pose` `(N, 63 or 69)` with
  `global_orient` `(N, 3)`; or `body_pose` `(N, 72)` alone (HMR 2.0's files: global orientation first);
- `center` `(N, 2)`: centre of the person's box in pixels (x, y);
- `scale` `(N,)`, `(N, 1)` or `(N, 2)`: size of the box, the largest of its values taken; the box is a square
  of side `scale * scale_unit` pixels around `center`. By default `scale_unit` follows the layout: HMR 2.0's
  files (a `has_body_pose` flag, or `body_pose` with 72 values) store pixels (`scale_unit=1`, as its
  `ImageDataset` reads them), the others SPIN's units of 200 pixels (`scale_unit=200`);
- optional: `has_smpl` or `has_body_pose` `(N,)`: rows whose flag is 0 carry no pose fit and are left out
  (their number is logged as a warning); `betas` and any other keys are ignored (the schema keeps poses).

Each record's image is the square box cut out of the image (parts outside the image are black) and resized to
`image_size` x `image_size` pixels (256 by default, the input size of HMR 2.0's backbone before its central
192 columns are kept), re-encoded as JPEG (quality 95) or PNG. The texts are empty: captions are added by
`unipose.data.image_corpora`.

Frames. The fits' global orientation is in the camera's frame (x right, y down, z away from the camera), so
the world's up axis is `-y`. `output_up_axis="-y"` keeps it; `"y"` turns the world by 180 degrees about x
(y up, and a person facing the camera faces +z, SMPL's rest frame); `"z"` then goes on to AMASS's z-up world.

A missing image raises `FileNotFoundError` naming the row and the path, unless `skip_missing=True`, which
leaves such rows out and logs how many. Several files (one per corpus) are combined with
`datasets.concatenate_datasets`.

Example:

```python
>>> from unipose.data.pose_estimation import load_pose_estimation
>>> dataset = load_pose_estimation("~/data/hmr2/coco_val.npz", "~/data/coco")  # doctest: +SKIP
>>> dataset[0]["image"].size, dataset[0]["pose"].shape  # doctest: +SKIP
((256, 256), (22, 3))
```
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import datasets
import numpy as np
import torch
from PIL import Image
from transformers.utils import logging

from ..files import open_npz, relative_path_inside
from ..rotations import axis_angle_to_matrix, matrix_to_axis_angle
from ..skeleton import NUM_BODY_JOINTS
from .amass import change_up_axis
from .schema import IMAGE_POSE_FEATURES, RECORD_UP_AXIS

logger = logging.get_logger(__name__)

PathLike = Union[str, os.PathLike]

IMAGE_NAME_KEY = "imgname"
CENTER_KEY = "center"
SCALE_KEY = "scale"
FIT_FLAG_KEYS = ("has_smpl", "has_body_pose")
# Pixels per unit of `scale` in SPIN-style files (the box side is 200 * scale), and in HMR 2.0's, which store pixels.
BOX_SCALE_UNIT = 200.0
HMR2_SCALE_UNIT = 1.0
DEFAULT_IMAGE_SIZE = 256
JPEG_QUALITY = 95
IMAGE_FORMATS = ("JPEG", "PNG")
# The world's up axis in the camera frame of the fits (y points down the image).
CAMERA_UP_AXIS = "-y"
OUTPUT_UP_AXES = ("-y", "y", "z")
NUM_BODY_POSE_VALUES = NUM_BODY_JOINTS * 3
# Rows per generator shard: bounds the memory of one shard and lets `num_proc` split the work.
ROWS_PER_SHARD = 1000
# Bumped when the records written for the same inputs change, so that older cached datasets are not reused.
_CACHE_VERSION = 1


@dataclass
class PoseEstimationAnnotations:
    """
    The rows of a PoseEst annotation file.

    Args:
        image_names (`list[str]`): image paths relative to the image root.
        poses (`np.ndarray` of shape `(N, 22, 3)`): float32 axis-angle, root in the camera frame.
        centers (`np.ndarray` of shape `(N, 2)`): box centres in pixels.
        box_sizes (`np.ndarray` of shape `(N,)`): box sides in pixels.
        fitted (`np.ndarray` of shape `(N,)`): bool, whether the row has a pose fit.
    """

    image_names: list
    poses: np.ndarray
    centers: np.ndarray
    box_sizes: np.ndarray
    fitted: np.ndarray


def _key_error(path: Path, files, message: str) -> ValueError:
    return ValueError(f"{message} in PoseEst file {str(path)!r} (keys: {sorted(files)}).")


def _pose_values(npz, path: Path, num_rows: int) -> np.ndarray:
    """The `(N, 66)` body axis-angle values in whichever of the three layouts the file uses."""
    files = set(npz.files)
    if "pose" in files:
        values, layout = np.asarray(npz["pose"]), "`pose` (N, >= 66)"
    elif "body_pose" in files and "global_orient" in files:
        body, root = np.asarray(npz["body_pose"]), np.asarray(npz["global_orient"])
        if body.ndim != 2 or body.shape[1] not in (63, 69) or root.shape != (len(body), 3):
            raise _key_error(
                path,
                files,
                f"`body_pose` has shape {body.shape} and `global_orient` {root.shape}; expected (N, 63) or "
                "(N, 69) and (N, 3)",
            )
        values, layout = (
            np.concatenate([root, body[:, : NUM_BODY_POSE_VALUES - 3]], axis=1),
            "`body_pose` + `global_orient`",
        )
    elif "body_pose" in files:
        values, layout = np.asarray(npz["body_pose"]), "`body_pose` (N, 72)"
        if values.ndim == 2 and values.shape[1] != 72:
            raise _key_error(
                path,
                files,
                f"`body_pose` has shape {values.shape} but there is no `global_orient`; expected (N, 72) "
                "with the global orientation first, or a `global_orient` key",
            )
    else:
        raise _key_error(
            path,
            files,
            "No pose: expected `pose`, or `body_pose` (with `global_orient` unless it has 72 values)",
        )
    if values.ndim != 2 or values.shape[0] != num_rows or values.shape[1] < NUM_BODY_POSE_VALUES:
        raise _key_error(
            path,
            files,
            f"The pose ({layout}) has shape {values.shape}; expected ({num_rows}, >= {NUM_BODY_POSE_VALUES})",
        )
    return values[:, :NUM_BODY_POSE_VALUES].astype(np.float64)


def default_scale_unit(files) -> float:
    """Pixels per unit of `scale` for a file holding the keys `files`: HMR 2.0's layout (a `has_body_pose` flag,
    or `body_pose` with the global orientation and no `global_orient`) stores pixels, SPIN's units of 200."""
    hmr2 = "has_body_pose" in files or ("body_pose" in files and "global_orient" not in files)
    return HMR2_SCALE_UNIT if hmr2 else BOX_SCALE_UNIT


def read_pose_estimation_annotations(
    path: PathLike, scale_unit: Optional[float] = None, allow_pickle: bool = False
) -> PoseEstimationAnnotations:
    """
    Reads and checks a PoseEst `.npz` annotation file (layout in the module docstring).

    Args:
        path (`str` or `os.PathLike`): the `.npz` file.
        scale_unit (`float`, *optional*): pixels per unit of `scale`; by default from the layout (see
            [`default_scale_unit`]).
        allow_pickle (`bool`, *optional*, defaults to `False`): allow object arrays (unpickled: only for files
            you trust), which some files use for `imgname`.

    Returns:
        [`PoseEstimationAnnotations`].

    Raises:
        `FileNotFoundError`: if the file does not exist.
        `ValueError`: naming the key (and the first bad row) of a missing, mis-shaped or non-finite array.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"PoseEst annotation file not found: {str(path)!r}.")
    if scale_unit is not None and not (scale_unit > 0 and math.isfinite(scale_unit)):
        raise ValueError(f"`scale_unit` must be a positive number of pixels, got {scale_unit!r}.")
    with open_npz(path, "PoseEst annotation file", allow_pickle=allow_pickle) as npz:
        files = set(npz.files)
        if scale_unit is None:
            scale_unit = default_scale_unit(files)
        for key in (IMAGE_NAME_KEY, CENTER_KEY, SCALE_KEY):
            if key not in files:
                raise _key_error(path, files, f"Missing key `{key}`")
        try:
            names = np.asarray(npz[IMAGE_NAME_KEY])
        except ValueError as error:
            raise ValueError(
                f"`{IMAGE_NAME_KEY}` in {str(path)!r} is an object array, which needs unpickling; pass "
                "`allow_pickle=True` if you trust the file."
            ) from error
        if names.ndim != 1:
            raise _key_error(path, files, f"`{IMAGE_NAME_KEY}` has shape {names.shape}; expected (N,)")
        num_rows = len(names)
        centers = np.asarray(npz[CENTER_KEY], dtype=np.float64)
        scales = np.asarray(npz[SCALE_KEY], dtype=np.float64)
        poses = _pose_values(npz, path, num_rows)
        flag_key = next((key for key in FIT_FLAG_KEYS if key in files), None)
        fitted = np.asarray(npz[flag_key]).reshape(-1) > 0 if flag_key else np.ones(num_rows, dtype=bool)
    if centers.shape != (num_rows, 2):
        raise _key_error(path, files, f"`{CENTER_KEY}` has shape {centers.shape}; expected ({num_rows}, 2)")
    if scales.ndim == 2 and scales.shape[1] in (1, 2):
        scales = scales.max(axis=1)
    if scales.shape != (num_rows,):
        raise _key_error(
            path,
            files,
            f"`{SCALE_KEY}` has shape {scales.shape}; expected ({num_rows},), ({num_rows}, 1) or "
            f"({num_rows}, 2)",
        )
    if fitted.shape != (num_rows,):
        raise _key_error(path, files, f"`{flag_key}` has shape {fitted.shape}; expected ({num_rows},)")
    for key, values in ((CENTER_KEY, centers), (SCALE_KEY, scales), ("pose", poses)):
        bad = ~np.isfinite(values.reshape(num_rows, -1)).all(axis=1) & fitted
        if bad.any():
            raise ValueError(
                f"`{key}` in {str(path)!r} has NaN or infinite values in row {int(np.argmax(bad))}."
            )
    small = (scales <= 0) & fitted
    if small.any():
        row = int(np.argmax(small))
        raise ValueError(f"`{SCALE_KEY}` in {str(path)!r} must be positive; row {row} has {scales[row]}.")
    image_names = [name.decode("utf-8") if isinstance(name, bytes) else str(name) for name in names.tolist()]
    return PoseEstimationAnnotations(
        image_names=image_names,
        poses=poses.reshape(num_rows, NUM_BODY_JOINTS, 3).astype(np.float32),
        centers=centers,
        box_sizes=scales * scale_unit,
        fitted=fitted,
    )


def crop_person(
    image: Image.Image, center, box_size: float, image_size: int = DEFAULT_IMAGE_SIZE
) -> Image.Image:
    """
    Cuts the square box of side `box_size` around `center` out of `image` and resizes it.

    The box keeps its sub-pixel position (parts outside the image are black), so that the crop of a box is the
    same whatever image it lies in.

    Args:
        image (`PIL.Image.Image`): the full image.
        center (`Sequence[float]` of length 2): box centre `(x, y)` in pixels.
        box_size (`float`): box side in pixels.
        image_size (`int`, *optional*, defaults to 256): side of the returned image.

    Returns:
        `PIL.Image.Image`: RGB, `image_size` x `image_size`.
    """
    if not (box_size > 0 and math.isfinite(box_size)):
        raise ValueError(f"`box_size` must be a positive number of pixels, got {box_size!r}.")
    x0, y0 = float(center[0]) - box_size / 2, float(center[1]) - box_size / 2
    left, top = math.floor(x0), math.floor(y0)
    right, bottom = math.ceil(x0 + box_size), math.ceil(y0 + box_size)
    region = image.convert("RGB").crop((left, top, right, bottom))
    box = (x0 - left, y0 - top, x0 - left + box_size, y0 - top + box_size)
    return region.resize((image_size, image_size), Image.Resampling.BICUBIC, box=box)


def camera_to_up_axis(root_orient: np.ndarray, up_axis: str) -> np.ndarray:
    """
    Re-expresses global orientations given in the camera frame (up = -y) in a world whose up is `up_axis`.

    Args:
        root_orient (`np.ndarray` of shape `(batch, 3)`): axis-angle global orientations in the camera frame.
        up_axis (`str`): `"-y"` (unchanged), `"y"` (180 degrees about x) or `"z"` (then AMASS's z-up world).

    Returns:
        `np.ndarray` of shape `(batch, 3)`, float32.
    """
    if up_axis not in OUTPUT_UP_AXES:
        raise ValueError(f"`up_axis` must be one of {list(OUTPUT_UP_AXES)}, got {up_axis!r}.")
    root = torch.from_numpy(np.asarray(root_orient, dtype=np.float64))
    if up_axis != CAMERA_UP_AXIS and len(root):
        # A half turn about x maps the camera's down (+y) to down (-y) and its viewing direction (+z) to -z,
        # so a person facing the camera faces +z.
        half_turn = torch.diag(torch.tensor([1.0, -1.0, -1.0], dtype=root.dtype))
        root = matrix_to_axis_angle(half_turn @ axis_angle_to_matrix(root))
        if up_axis == "z":
            root = change_up_axis(root, "y", "z")
    return root.numpy().astype(np.float32)


@dataclass
class _CropJob:
    """What the record generator needs, kept out of `gen_kwargs`' lists (which `datasets` shards)."""

    image_root: Path
    image_names: list
    poses: np.ndarray
    centers: np.ndarray
    box_sizes: np.ndarray
    image_size: int
    image_format: str
    id_prefix: str
    source: str


def _inside(root: Path, name, row: int, path: Path) -> Path:
    """`root / name`, refused when the annotation's image name leads out of `root` (an absolute path, `..`)."""
    inside = relative_path_inside(root, str(name))
    if inside is None:
        raise ValueError(
            f"Row {row} of {str(path)!r} names the image {str(name)!r}, which lies outside `image_root` "
            f"({str(root)!r}); image names must be relative paths inside it."
        )
    return inside


def _generate_records(shards, job: _CropJob):
    for rows in shards:
        for row in rows:
            row = int(row)
            image_path = job.image_root / job.image_names[row]
            try:
                with Image.open(image_path) as image:
                    crop = crop_person(image, job.centers[row], float(job.box_sizes[row]), job.image_size)
            except (OSError, ValueError, Image.DecompressionBombError) as error:
                # `datasets` would only say that an error occurred while generating the dataset.
                raise ValueError(
                    f"Row {row} of the PoseEst annotations ({job.id_prefix}): its image {str(image_path)!r} cannot "
                    f"be read ({type(error).__name__}: {error})."
                ) from error
            buffer = io.BytesIO()
            options = {"quality": JPEG_QUALITY} if job.image_format == "JPEG" else {}
            crop.save(buffer, format=job.image_format, **options)
            yield {
                "id": f"{job.id_prefix}/{row}",
                "image": {"bytes": buffer.getvalue(), "path": None},
                "pose": job.poses[row],
                "texts": [],
                "source": job.source,
            }


def _fingerprint(path: Path, image_paths: list, rows: np.ndarray, settings: dict) -> str:
    """A cache key that changes with the annotation file, the images used (size and time) and the settings."""
    digest = hashlib.sha256()
    stat = path.stat()
    digest.update(
        json.dumps([str(path.resolve()), stat.st_size, stat.st_mtime_ns, settings, _CACHE_VERSION]).encode()
    )
    for row in rows.tolist():
        image_stat = image_paths[row].stat()
        digest.update(f"{row}:{image_paths[row]}:{image_stat.st_size}:{image_stat.st_mtime_ns};".encode())
    return "unipose-poseest-" + digest.hexdigest()[:32]


def load_pose_estimation(
    annotation_file: PathLike,
    image_root: PathLike,
    image_size: int = DEFAULT_IMAGE_SIZE,
    skip_missing: bool = False,
    scale_unit: Optional[float] = None,
    output_up_axis: str = RECORD_UP_AXIS,
    source: Optional[str] = None,
    image_format: str = "JPEG",
    allow_pickle: bool = False,
    cache_dir: Optional[PathLike] = None,
    num_proc: Optional[int] = None,
):
    """
    Loads a PoseEst annotation file and crops its images into a dataset of `image_pose` records.

    Args:
        annotation_file (`str` or `os.PathLike`):
            The `.npz` file (layout in the module docstring).
        image_root (`str` or `os.PathLike`):
            The folder that the file's `imgname` paths are relative to.
        image_size (`int`, *optional*, defaults to 256):
            Side of the square crops, in pixels.
        skip_missing (`bool`, *optional*, defaults to `False`):
            Leave out rows whose image is missing (logging how many) instead of raising.
        scale_unit (`float`, *optional*):
            Pixels per unit of `scale`; by default 1 for HMR 2.0's files, which store pixels, and 200 for SPIN's
            (see [`default_scale_unit`]).
        output_up_axis (`str`, *optional*, defaults to `"y"`):
            Frame of the returned global orientations: `"-y"` the camera frame of the fits, `"y"` or `"z"`
            (see the module docstring).
        source (`str`, *optional*):
            The `source` column; defaults to `"poseest/<file name without extension>"`.
        image_format (`str`, *optional*, defaults to `"JPEG"`):
            Encoding of the crops, `"JPEG"` (quality 95) or `"PNG"` (lossless, about four times larger).
        allow_pickle (`bool`, *optional*, defaults to `False`):
            Allow object arrays in the file (see [`read_pose_estimation_annotations`]).
        cache_dir (`str` or `os.PathLike`, *optional*):
            Where `datasets` writes the records (its default cache otherwise). The cache is keyed by the file,
            the images' sizes and modification times and the arguments: a changed input is never served stale.
        num_proc (`int`, *optional*):
            Processes that crop images in parallel.

    Returns:
        `datasets.Dataset` of `image_pose` records: `id` `"<file name>/<row>"`, `image` the crop, `pose`
        `(22, 3)` float32 axis-angle, `texts` empty, `source`.

    Raises:
        `FileNotFoundError`: for a missing annotation file, or a missing image (naming its row and path)
            unless `skip_missing`.
        `ValueError`: for a malformed annotation file or argument.
    """
    if not (isinstance(image_size, int) and image_size > 0):
        raise ValueError(f"`image_size` must be a positive int, got {image_size!r}.")
    if image_format not in IMAGE_FORMATS:
        raise ValueError(f"`image_format` must be one of {list(IMAGE_FORMATS)}, got {image_format!r}.")
    if output_up_axis not in OUTPUT_UP_AXES:
        raise ValueError(f"`output_up_axis` must be one of {list(OUTPUT_UP_AXES)}, got {output_up_axis!r}.")
    path = Path(annotation_file).expanduser()
    image_root = Path(image_root).expanduser()
    if not image_root.is_dir():
        raise FileNotFoundError(f"`image_root` is not a folder: {str(image_root)!r}.")
    annotations = read_pose_estimation_annotations(path, scale_unit, allow_pickle)
    num_rows = len(annotations.image_names)
    unfitted = int((~annotations.fitted).sum())
    if unfitted:
        logger.warning(
            f"{unfitted} of {num_rows} rows of {str(path)!r} have no pose fit (flag 0) and are left out."
        )
    image_paths = [_inside(image_root, name, row, path) for row, name in enumerate(annotations.image_names)]
    rows = np.flatnonzero(annotations.fitted)
    missing = [row for row in rows.tolist() if not image_paths[row].is_file()]
    if missing and not skip_missing:
        raise FileNotFoundError(
            f"Image of row {missing[0]} of {str(path)!r} not found: {str(image_paths[missing[0]])!r} "
            f"({len(missing)} of {len(rows)} images are missing). Check `image_root`, or pass "
            "`skip_missing=True` to leave them out."
        )
    if missing:
        logger.warning(
            f"Skipped {len(missing)} of {len(rows)} rows of {str(path)!r} whose image is missing, e.g. row "
            f"{missing[0]}: {str(image_paths[missing[0]])!r}."
        )
        rows = np.setdiff1d(rows, np.array(missing, dtype=rows.dtype))
    if not len(rows):
        raise ValueError(f"No row of {str(path)!r} has both a pose fit and an image; nothing to load.")
    poses = annotations.poses.copy()
    poses[:, 0] = camera_to_up_axis(poses[:, 0], output_up_axis)
    source = source if source is not None else f"poseest/{path.stem}"
    settings = {
        "image_root": str(image_root.resolve()),
        "image_size": image_size,
        "scale_unit": scale_unit,
        "output_up_axis": output_up_axis,
        "source": source,
        "image_format": image_format,
    }
    job = _CropJob(
        image_root=image_root,
        image_names=annotations.image_names,
        poses=poses,
        centers=annotations.centers,
        box_sizes=annotations.box_sizes,
        image_size=image_size,
        image_format=image_format,
        id_prefix=path.stem,
        source=source,
    )
    shards = [rows[start : start + ROWS_PER_SHARD] for start in range(0, len(rows), ROWS_PER_SHARD)]
    return datasets.Dataset.from_generator(
        _generate_records,
        features=IMAGE_POSE_FEATURES,
        cache_dir=str(cache_dir) if cache_dir is not None else None,
        gen_kwargs={"shards": shards, "job": job},
        num_proc=num_proc,
        fingerprint=_fingerprint(path, image_paths, rows, settings),
    )


__all__ = [
    "BOX_SCALE_UNIT",
    "CAMERA_UP_AXIS",
    "DEFAULT_IMAGE_SIZE",
    "HMR2_SCALE_UNIT",
    "PoseEstimationAnnotations",
    "camera_to_up_axis",
    "crop_person",
    "default_scale_unit",
    "load_pose_estimation",
    "read_pose_estimation_annotations",
]
