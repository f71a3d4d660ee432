"""
The synthetic corpus: procedural poses, automatic captions and rendered images, for all seven tasks, made
offline from a seed.

None of the real corpora (PoseScript, PoseFix, PoseEst, ImageScript, ImageDiff) can be downloaded here, so
tests, demos and smoke-training runs use this one. It is written in the record kinds of
`unipose.data.schema`, one `datasets.DatasetDict` (train / validation / test) per kind:

| kind         | records                                             | tasks                          |
| ------------ | --------------------------------------------------- | ------------------------------ |
| `pose_text`  | a sampled pose, automatic captions                  | Pose-to-Text, Text-to-Pose     |
| `pose_pair`  | poses A and B ([`sample_pose_pairs`]), instructions | Pose-Diff, Pose Editing        |
| `image_pose` | a rendered image, its pose, captions                | Pose Estimation, Image-to-Text |
| `image_pair` | images of A and B (one camera), poses, instructions | Image-Diff                     |

Captions come from `unipose.data.captioning` (the PoseScript-style describer and the PoseFix-style
instruction writer). Pose B of a pair is pose A with one to three body parts (an arm, a leg, the trunk, the
head) taken from another pose of A's category, or a pose of a related category (standing -> kneeling,
kneeling -> lying, ...) turned to A's heading, possibly keeping A's arms; pairs whose joints barely move
are drawn again.

Frames. Poses are SMPL axis-angle `(22, 3)` in SMPL's y-up world. Pose-only records are normalised like
PoseScript and PoseFix: the heading of the root (of pose A, for pairs; B gets the same turn) is zeroed with
`unipose.data.amass.heading_angle`'s definition. Image records keep the heading relative to the camera:
their root is the world root turned by minus the camera's yaw, so that the stored pose drawn by a camera
at yaw 0 (looking at the front of the rest pose) and the record's pitch gives the record's image; up stays
up (the camera pitch is not folded in), which keeps the captions true.

On disk:

```
OUT/
  README.md                                                dataset card: `load_dataset(OUT, kind)` per kind
  pose_text/   pose_pair/   image_pose/   image_pair/     parquet shards per split
  synthetic_corpus.json                                    parameters and split sizes
  contact_sheet.png                                        samples with their captions, to judge by eye
```

The directory is written under a temporary name next to `OUT` and renamed when complete.

Example:

```python
>>> from unipose.data.synthetic import build_synthetic_corpus
>>> corpus = build_synthetic_corpus("synthetic", num=200, seed=0)  # doctest: +SKIP
>>> corpus["image_pose"]["train"][0]["image"].size  # doctest: +SKIP
(336, 336)
```

Command line: `unipose data synth --out synthetic --num 1000 --seed 0`.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
import torch
from datasets import Dataset, DatasetDict
from PIL import Image, ImageDraw, ImageFont
from tqdm.auto import tqdm
from transformers.utils import logging

from ..body_model import pose_to_joints
from ..checks import check_positive_int
from ..files import atomic_path, staged_directory
from ..pose_sampler import POSE_CATEGORIES, PoseSampler
from ..rotations import axis_angle_to_matrix, elementary_rotation, matrix_to_axis_angle
from ..skeleton import JOINT_INDEX, NUM_BODY_JOINTS
from .amass import heading_angle
from .captioning import caption_pairs, caption_poses
from .hub import load_corpus, write_hub_dataset
from .rendering import IMAGE_SIZE, BodyRenderer, RenderSettings, Scene, frontal_scene, sample_scenes
from .schema import FEATURES

logger = logging.get_logger(__name__)

KINDS = ("pose_text", "pose_pair", "image_pose", "image_pair")
IMAGE_KINDS = ("image_pose", "image_pair")
SPLITS = ("train", "validation", "test")
# Shares of the splits; validation and test get at least one record each once there are three records.
SPLIT_FRACTIONS = {"train": 0.9, "validation": 0.05, "test": 0.05}
SOURCE = "synthetic"
METADATA_FILE = "synthetic_corpus.json"
CONTACT_SHEET_FILE = "contact_sheet.png"
CORPUS_VERSION = 1
DEFAULT_NUM_CAPTIONS = 3
IMAGE_FORMATS = ("jpeg", "png")
# JPEG without chroma subsampling keeps thin limbs' colours (which tell left from right) crisp.
JPEG_QUALITY = 90
# Images are rendered and encoded this many at a time (bounds the memory of pose batches, shows progress).
RENDER_CHUNK = 256

# -- pose pairs --------------------------------------------------------------------------------------------

# Body parts that a pair may change: pose B takes these joints' rotations from another pose.
PAIR_PART_JOINTS = {
    "left_arm": ("left_collar", "left_shoulder", "left_elbow", "left_wrist"),
    "right_arm": ("right_collar", "right_shoulder", "right_elbow", "right_wrist"),
    "left_leg": ("left_hip", "left_knee", "left_ankle", "left_foot"),
    "right_leg": ("right_hip", "right_knee", "right_ankle", "right_foot"),
    "trunk": ("spine1", "spine2", "spine3"),
    "head": ("neck", "head"),
}
PAIR_PARTS = tuple(PAIR_PART_JOINTS)
# Relative frequencies of one, two and three changed parts.
CHANGED_PARTS_WEIGHTS = (0.5, 0.35, 0.15)
# Share of pairs whose B is a pose of a related category rather than A with a few parts changed.
POSTURE_CHANGE_PROBABILITY = 0.35
# Share of posture changes that keep A's arms (so that only the posture changes).
KEEP_ARMS_PROBABILITY = 0.5
# A pair must move some joint by at least this much (metres, pelvis-aligned) to be worth an instruction.
MIN_PAIR_DISPLACEMENT = 0.15
PAIR_ATTEMPTS = 4

# Related categories: the same kind of posture or the next one (upright <-> low <-> lying).
POSTURE_FAMILIES = {
    "upright": (
        "standing",
        "walking",
        "running",
        "lunging",
        "reaching",
        "arms_raised",
        "kicking",
        "kicking_side",
        "bending",
        "twisting",
        "side_bend",
        "jumping",
    ),
    "low": ("sitting", "sitting_floor", "kneeling", "kneeling_one_knee", "crouching"),
    "lying": ("lying_back", "lying_front", "lying_side"),
}
NEIGHBOUR_FAMILIES = {
    "upright": ("upright", "low"),
    "low": ("upright", "low", "lying"),
    "lying": ("low", "lying"),
}

# -- contact sheet -----------------------------------------------------------------------------------------

SHEET_THUMBNAIL = 200
SHEET_SAMPLES_PER_KIND = 3
SHEET_FONT_SIZE = 13
SHEET_LINE_HEIGHT = 16
SHEET_MAX_LINES = 14
SHEET_PADDING = 10
# Pose-only records are drawn in a three-quarter view from slightly above (their heading is zeroed, so they
# face +z), on light grey.
SHEET_POSE_SCENE = frontal_scene(
    yaw_deg=40.0, pitch_deg=15.0, light=(0.36, -0.48, -0.8), background_colors=((0.93, 0.93, 0.93),) * 2
)
SHEET_TITLES = {
    "pose_text": "pose_text (Pose-to-Text, Text-to-Pose): caption 1",
    "pose_pair": "pose_pair (Pose-Diff, Pose Editing): A -> B, instruction 1",
    "image_pose": "image_pose (Pose Estimation, Image-to-Text): caption 1",
    "image_pair": "image_pair (Image-Diff): A -> B, instruction 1",
}


# ---------------------------------------------------------------------------------------------------------
# Seeds, splits and headings
# ---------------------------------------------------------------------------------------------------------


def derive_seed(seed: int, stream: str) -> int:
    """
    An independent 31-bit seed for one random stream of a corpus (`"pose_text/poses"`, ...), so that every
    kind and every ingredient draws from its own generator and a change in one leaves the others alone.
    """
    state = np.random.SeedSequence([int(seed), zlib.crc32(stream.encode("utf-8"))]).generate_state(1)[0]
    return int(state >> 1)


def split_sizes(num_records: int) -> dict[str, int]:
    """
    Records per split for `num_records` records: `SPLIT_FRACTIONS`, rounded, with at least one record in
    validation and test once there are three records; train takes the rest.
    """
    sizes = {}
    for split in SPLITS[1:]:
        share = math.floor(num_records * SPLIT_FRACTIONS[split] + 0.5)
        sizes[split] = max(share, 1) if num_records >= len(SPLITS) else 0
    sizes = {"train": num_records - sum(sizes.values()), **sizes}
    return {split: sizes[split] for split in SPLITS}


def turn_about_vertical(poses: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """
    Turn whole bodies about the vertical (y) axis: root `R -> R_y(angle) @ R`, other joints unchanged.

    Args:
        poses (`np.ndarray` of shape `(n, 22, 3)`): axis-angle poses.
        angles (`np.ndarray` of shape `(n,)`): radians, counter-clockwise seen from above.

    Returns:
        `np.ndarray` of shape `(n, 22, 3)`, float32.
    """
    poses = np.array(poses, dtype=np.float32)
    root = axis_angle_to_matrix(torch.from_numpy(poses[:, 0]).double())
    turn = elementary_rotation(torch.as_tensor(np.asarray(angles), dtype=torch.float64), "y")
    poses[:, 0] = matrix_to_axis_angle(turn @ root).numpy()
    return poses


def heading(poses: np.ndarray) -> np.ndarray:
    """
    Heading of each pose's root `(n,)` in radians: the angle about the vertical of the body's left axis,
    measured from the world's x axis (the definition of `unipose.data.amass.heading_angle`, y up).
    """
    root = axis_angle_to_matrix(torch.from_numpy(np.asarray(poses, dtype=np.float32)[:, 0]).double())
    return heading_angle(root, up_axis="y").numpy()


# ---------------------------------------------------------------------------------------------------------
# Pose pairs
# ---------------------------------------------------------------------------------------------------------


@dataclass
class PosePairSample:
    """
    Pose pairs drawn by [`sample_pose_pairs`].

    Args:
        poses_a (`np.ndarray` of shape `(n, 22, 3)`), poses_b (`np.ndarray` of shape `(n, 22, 3)`):
            float32 axis-angle, B sharing A's heading.
        categories_a (`list[str]`), categories_b (`list[str]`): the sampler categories of A and B.
        changes (`list[str]`): what B changes, e.g. `"left_arm+trunk"` or `"posture"` /
            `"posture (arms kept)"`.
    """

    poses_a: np.ndarray
    poses_b: np.ndarray
    categories_a: list[str]
    categories_b: list[str]
    changes: list[str]


def related_categories(category: str) -> tuple[str, ...]:
    """The categories a posture change may lead to from `category` (all others when it is not in a family)."""
    family = next((name for name, members in POSTURE_FAMILIES.items() if category in members), None)
    if family is None:
        related = POSE_CATEGORIES
    else:
        related = tuple(c for f in NEIGHBOUR_FAMILIES[family] for c in POSTURE_FAMILIES[f])
    return tuple(c for c in related if c != category and c in POSE_CATEGORIES)


def _sample_by_category(categories: Sequence[str], seed: int) -> np.ndarray:
    """One fresh pose of each requested category, `(len(categories), 22, 3)`, grouped by category."""
    poses = np.zeros((len(categories), NUM_BODY_JOINTS, 3), dtype=np.float32)
    names = np.asarray(categories)
    for index, category in enumerate(sorted(set(categories))):
        rows = np.flatnonzero(names == category)
        sampler = PoseSampler(seed=derive_seed(seed, f"category/{index}/{category}"), categories=(category,))
        poses[rows] = sampler.sample(len(rows)).poses
    return poses


def _max_displacement(poses_a: np.ndarray, poses_b: np.ndarray) -> np.ndarray:
    """Largest joint displacement `(n,)` in metres between A and B, both placed at the pelvis."""
    joints = pose_to_joints(np.concatenate((poses_a, poses_b)))  # one call for both: (2n, 22, 3)
    joints = joints - joints[:, :1]
    joints_a, joints_b = joints[: len(poses_a)], joints[len(poses_a) :]
    return np.sqrt(((joints_a - joints_b) ** 2).sum(-1)).max(-1)


def sample_pose_pairs(
    num_pairs: int, seed: int = 0, categories: Sequence[str] | None = None
) -> PosePairSample:
    """
    Draw pairs of poses where B is a plausible modification of A.

    A is a [`~unipose.pose_sampler.PoseSampler`] pose. With probability `POSTURE_CHANGE_PROBABILITY`, B is
    a pose of a related category ([`related_categories`]) turned to A's heading, keeping A's arms with
    probability `KEEP_ARMS_PROBABILITY`; otherwise B is A with one to three of `PAIR_PARTS` taken from
    another pose of A's category. Pairs whose joints move less than `MIN_PAIR_DISPLACEMENT` are drawn
    again (up to `PAIR_ATTEMPTS` times, then changed into posture changes).

    Args:
        num_pairs (`int`): how many pairs.
        seed (`int`, *optional*, defaults to 0): seed of every draw.
        categories (sequence of `str`, *optional*): categories of pose A (all by default).

    Returns:
        [`PosePairSample`].
    """
    if isinstance(num_pairs, bool) or not isinstance(num_pairs, (int, np.integer)) or num_pairs < 0:
        raise ValueError(f"`num_pairs` must be a non-negative integer, got {num_pairs!r}.")
    rng = np.random.default_rng(derive_seed(seed, "pairs/choices"))
    sample_a = PoseSampler(seed=derive_seed(seed, "pairs/a"), categories=categories).sample(int(num_pairs))
    poses_a = sample_a.poses
    poses_b = poses_a.copy()
    categories_b = list(sample_a.categories)
    changes = [""] * num_pairs

    # 1. Part changes: a few parts of A from another pose of the same category, redrawn while too small.
    posture = rng.random(num_pairs) < POSTURE_CHANGE_PROBABILITY
    pending = np.flatnonzero(~posture)
    for attempt in range(PAIR_ATTEMPTS):
        if not len(pending):
            break
        donors = _sample_by_category(
            [sample_a.categories[i] for i in pending], derive_seed(seed, f"pairs/donors/{attempt}")
        )
        for row, donor in zip(pending, donors):
            count = 1 + rng.choice(
                len(CHANGED_PARTS_WEIGHTS), p=np.asarray(CHANGED_PARTS_WEIGHTS) / sum(CHANGED_PARTS_WEIGHTS)
            )
            parts = sorted(rng.choice(len(PAIR_PARTS), size=count, replace=False))
            joints = [JOINT_INDEX[name] for part in parts for name in PAIR_PART_JOINTS[PAIR_PARTS[part]]]
            poses_b[row] = poses_a[row]
            poses_b[row, joints] = donor[joints]
            changes[row] = "+".join(PAIR_PARTS[part] for part in parts)
        moved = _max_displacement(poses_a[pending], poses_b[pending]) >= MIN_PAIR_DISPLACEMENT
        pending = pending[~moved]
    posture[pending] = True

    # 2. Posture changes: a pose of a related category, turned to A's heading.
    rows = np.flatnonzero(posture)
    if len(rows):
        targets = []
        for row in rows:
            related = related_categories(sample_a.categories[row]) or (sample_a.categories[row],)
            targets.append(related[rng.integers(len(related))])
        new = _sample_by_category(targets, derive_seed(seed, "pairs/posture"))
        new = turn_about_vertical(new, heading(poses_a[rows]) - heading(new))
        keep_arms = rng.random(len(rows)) < KEEP_ARMS_PROBABILITY
        arms = [JOINT_INDEX[name] for part in ("left_arm", "right_arm") for name in PAIR_PART_JOINTS[part]]
        for row, pose, target, keep in zip(rows, new, targets, keep_arms):
            poses_b[row] = pose
            if keep:
                poses_b[row, arms] = poses_a[row, arms]
            categories_b[row] = target
            changes[row] = "posture (arms kept)" if keep else "posture"
    return PosePairSample(poses_a, poses_b, list(sample_a.categories), categories_b, changes)


# ---------------------------------------------------------------------------------------------------------
# The corpus
# ---------------------------------------------------------------------------------------------------------


def _check_out_dir(out_dir, overwrite: bool) -> Path:
    if not isinstance(out_dir, (str, os.PathLike)):
        raise TypeError(f"`out_dir` must be a path (str or os.PathLike), got {type(out_dir).__name__}.")
    out_dir = Path(out_dir).expanduser().resolve()
    for ancestor in out_dir.parents:
        if ancestor.exists() and not ancestor.is_dir():
            raise NotADirectoryError(
                f"`out_dir` {out_dir} lies under {ancestor}, which is a file, not a directory."
            )
    if out_dir.exists():
        if not out_dir.is_dir():
            raise NotADirectoryError(
                f"`out_dir` {out_dir} is an existing file; give a directory path for the corpus."
            )
        if not overwrite:
            raise FileExistsError(
                f"`out_dir` {out_dir} already exists; pass `overwrite=True` (--overwrite) to replace it."
            )
        if any(out_dir.iterdir()) and not (out_dir / METADATA_FILE).is_file():
            raise FileExistsError(
                f"`out_dir` {out_dir} exists and is not a synthetic corpus (no {METADATA_FILE}); refusing to "
                "replace it. Choose another path."
            )
    return out_dir


def _encode(image: np.ndarray, image_format: str) -> dict:
    buffer = io.BytesIO()
    if image_format == "jpeg":
        Image.fromarray(image).save(buffer, format="JPEG", quality=JPEG_QUALITY, subsampling=0)
    else:
        Image.fromarray(image).save(buffer, format="PNG")
    return {"bytes": buffer.getvalue(), "path": None}


def _datasets(kind: str, columns: dict, seed: int) -> DatasetDict:
    """Cut per-record columns into the splits and build one `Dataset` per split with the kind's schema."""
    num_records = len(columns["texts"])
    splits, start = {}, 0
    for split, size in split_sizes(num_records).items():
        rows = slice(start, start + size)
        start += size
        data = {name: values[rows] for name, values in columns.items()}
        data["id"] = [f"{SOURCE}-{seed}-{kind}-{index:07d}" for index in range(rows.start, rows.stop)]
        data["source"] = [f"{SOURCE}/{split}"] * size
        splits[split] = Dataset.from_dict(
            {name: data[name] for name in FEATURES[kind]}, features=FEATURES[kind]
        )
    return DatasetDict(splits)


def _pose_text(num: int, seed: int, num_captions: int) -> DatasetDict:
    poses = PoseSampler(seed=derive_seed(seed, "pose_text/poses")).sample(num).poses
    poses = turn_about_vertical(poses, -heading(poses))
    texts = caption_poses(poses, num_captions=num_captions, seed=derive_seed(seed, "pose_text/captions"))
    return _datasets("pose_text", {"pose": poses, "texts": texts}, seed)


def _pose_pair(num: int, seed: int, num_captions: int) -> DatasetDict:
    pairs = sample_pose_pairs(num, seed=derive_seed(seed, "pose_pair/poses"))
    # PoseFix's normalisation: A's heading is zeroed and B turns with it, so the pair's relative turn stays.
    correction = -heading(pairs.poses_a)
    poses_a = turn_about_vertical(pairs.poses_a, correction)
    poses_b = turn_about_vertical(pairs.poses_b, correction)
    texts = caption_pairs(
        poses_a, poses_b, num_captions=num_captions, seed=derive_seed(seed, "pose_pair/captions")
    )
    return _datasets("pose_pair", {"pose_a": poses_a, "pose_b": poses_b, "texts": texts}, seed)


def _camera_headings(scenes: Sequence[Scene]) -> np.ndarray:
    return -np.radians([scene.yaw_deg for scene in scenes])


@dataclass
class _ImageKindWriter:
    """Scenes, rendering and encoding shared by the image kinds."""

    renderer: BodyRenderer | None
    settings: RenderSettings | None
    image_format: str
    progress: bool

    def scenes(self, num: int, seed: int, kind: str) -> list[Scene]:
        return sample_scenes(num, np.random.default_rng(derive_seed(seed, f"{kind}/scenes")), self.settings)

    def images(self, kind: str, scenes: Sequence[Scene], *poses: np.ndarray) -> list[list[dict]]:
        """The encoded images of one pose set, or of a pair of sets drawn pair by pair through one camera."""
        encoded = [[] for _ in poses]
        total = len(poses) * len(scenes)
        with tqdm(total=total, desc=kind, unit="image", disable=not self.progress) as bar:
            for start in range(0, len(scenes), RENDER_CHUNK):
                rows = slice(start, start + RENDER_CHUNK)
                chunk = [pose_set[rows] for pose_set in poses]
                if len(chunk) == 2:
                    rendered = self.renderer.render_pairs(*chunk, scenes[rows])
                else:
                    rendered = (self.renderer.render(chunk[0], scenes[rows]),)
                for images, batch in zip(encoded, rendered, strict=True):
                    images.extend(_encode(image, self.image_format) for image in batch)
                bar.update(len(chunk) * len(chunk[0]))
        return encoded


def _image_pose(num: int, seed: int, num_captions: int, writer: _ImageKindWriter) -> DatasetDict:
    poses = PoseSampler(seed=derive_seed(seed, "image_pose/poses")).sample(num).poses
    scenes = writer.scenes(num, seed, "image_pose")
    (images,) = writer.images("image_pose", scenes, poses)
    stored = turn_about_vertical(poses, _camera_headings(scenes))
    texts = caption_poses(stored, num_captions=num_captions, seed=derive_seed(seed, "image_pose/captions"))
    return _datasets("image_pose", {"image": images, "pose": stored, "texts": texts}, seed)


def _image_pair(num: int, seed: int, num_captions: int, writer: _ImageKindWriter) -> DatasetDict:
    pairs = sample_pose_pairs(num, seed=derive_seed(seed, "image_pair/poses"))
    scenes = writer.scenes(num, seed, "image_pair")
    images_a, images_b = writer.images("image_pair", scenes, pairs.poses_a, pairs.poses_b)
    turn = _camera_headings(scenes)
    poses_a = turn_about_vertical(pairs.poses_a, turn)
    poses_b = turn_about_vertical(pairs.poses_b, turn)
    texts = caption_pairs(
        poses_a, poses_b, num_captions=num_captions, seed=derive_seed(seed, "image_pair/captions")
    )
    columns = {"image_a": images_a, "image_b": images_b, "pose_a": poses_a, "pose_b": poses_b, "texts": texts}
    return _datasets("image_pair", columns, seed)


def build_synthetic_corpus(
    out_dir: str | os.PathLike,
    num: int = 1000,
    seed: int = 0,
    image_size: int = IMAGE_SIZE,
    num_images: int | None = None,
    num_captions: int = DEFAULT_NUM_CAPTIONS,
    kinds: Sequence[str] = KINDS,
    image_format: str = "jpeg",
    overwrite: bool = False,
    contact_sheet: bool = True,
    body_model=None,
    render_settings: RenderSettings | None = None,
    progress: bool = False,
) -> dict[str, DatasetDict]:
    """
    Generate the synthetic corpus and write it as a Hub dataset folder (`unipose.data.hub`): a configuration per
    record kind, parquet shards per split, a dataset card.

    The same arguments give the same records, image bytes included.

    Args:
        out_dir (`str` or `os.PathLike`):
            Directory to create; it must not exist, unless `overwrite` (then it must be a synthetic corpus).
        num (`int`, *optional*, defaults to 1000):
            Records of each pose-only kind (`pose_text`, `pose_pair`).
        seed (`int`, *optional*, defaults to 0):
            Seed of every random draw.
        image_size (`int`, *optional*, defaults to 336):
            Side of the square images; the processors resize and crop from there.
        num_images (`int`, *optional*):
            Records of each image kind (`image_pose`, `image_pair`: two images each); `num` when omitted.
        num_captions (`int`, *optional*, defaults to 3):
            Automatic captions (or instructions) per record.
        kinds (sequence of `str`, *optional*):
            Which of `KINDS` to write (all by default).
        image_format (`str`, *optional*, defaults to `"jpeg"`):
            `"jpeg"` (quality 90, no chroma subsampling) or `"png"`.
        overwrite (`bool`, *optional*, defaults to `False`):
            Replace an existing synthetic corpus at `out_dir`.
        contact_sheet (`bool`, *optional*, defaults to `True`):
            Also write `contact_sheet.png`: samples of every kind with their first caption.
        body_model (*optional*):
            The body to render (a `BodyModel`, a path or `"generated"`); the generated stand-in by default.
        render_settings ([`~unipose.data.rendering.RenderSettings`], *optional*):
            Ranges of the camera, light, shape and background draws.
        progress (`bool`, *optional*, defaults to `False`):
            Show progress bars while rendering.

    Returns:
        `dict[str, DatasetDict]`: kind -> its splits, as saved (reload with [`load_synthetic_corpus`]).
    """
    num = check_positive_int(num, "num")
    seed = check_positive_int(seed, "seed", minimum=0)
    image_size = check_positive_int(image_size, "image_size", minimum=16)
    num_images = num if num_images is None else check_positive_int(num_images, "num_images")
    num_captions = check_positive_int(num_captions, "num_captions")
    if isinstance(kinds, str) or not kinds or any(kind not in KINDS for kind in kinds):
        raise ValueError(f"`kinds` must be a non-empty selection of {KINDS}, got {kinds!r}.")
    kinds = tuple(kind for kind in KINDS if kind in kinds)
    if image_format not in IMAGE_FORMATS:
        raise ValueError(f"`image_format` must be one of {IMAGE_FORMATS}, got {image_format!r}.")
    out_dir = _check_out_dir(out_dir, overwrite)

    needs_renderer = contact_sheet or any(kind in IMAGE_KINDS for kind in kinds)
    renderer = BodyRenderer(body_model, image_size=image_size) if needs_renderer else None
    writer = _ImageKindWriter(renderer, render_settings, image_format, progress)
    corpus = {}
    for kind in kinds:
        logger.info(f"Generating the synthetic `{kind}` records (seed {seed}).")
        if kind == "pose_text":
            corpus[kind] = _pose_text(num, seed, num_captions)
        elif kind == "pose_pair":
            corpus[kind] = _pose_pair(num, seed, num_captions)
        elif kind == "image_pose":
            corpus[kind] = _image_pose(num_images, seed, num_captions, writer)
        else:
            corpus[kind] = _image_pair(num_images, seed, num_captions, writer)

    with staged_directory(out_dir) as staging:
        metadata = {
            "generator": __name__,
            "version": CORPUS_VERSION,
            "seed": seed,
            "num": num,
            "num_images": num_images,
            "num_captions": num_captions,
            "image_size": image_size,
            "image_format": image_format,
            "body_model": None if renderer is None else renderer.body_model_name,
            "splits": {
                kind: {split: len(data) for split, data in splits.items()} for kind, splits in corpus.items()
            },
        }
        with _datasets_progress(progress):
            write_hub_dataset(staging, corpus, "UniPose synthetic corpus", _card_text(metadata))
        (staging / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")
        if contact_sheet:
            write_contact_sheet(corpus, staging / CONTACT_SHEET_FILE, renderer)
    logger.info(f"Wrote the synthetic corpus to {out_dir}: {metadata['splits']}")
    return load_synthetic_corpus(out_dir)


@contextlib.contextmanager
def _datasets_progress(enabled: bool):
    """`datasets`' own progress bars (saving shards) only when progress is wanted."""
    silence = not enabled and datasets.utils.logging.is_progress_bar_enabled()
    if silence:
        datasets.utils.logging.disable_progress_bar()
    try:
        yield
    finally:
        if silence:
            datasets.utils.logging.enable_progress_bar()


def load_synthetic_corpus(path: str | os.PathLike, kind: str | None = None):
    """
    Load a corpus written by [`build_synthetic_corpus`].

    Args:
        path (`str` or `os.PathLike`): the corpus directory.
        kind (`str`, *optional*): one of `KINDS`; all kinds present when omitted.

    Returns:
        `DatasetDict` for one kind, or `dict[str, DatasetDict]` of every kind present.
    """
    path = Path(path).expanduser()
    if not (path / METADATA_FILE).is_file():
        raise FileNotFoundError(
            f"`path` {path} is not a synthetic corpus (no {METADATA_FILE}); write one with "
            f"`unipose data synth --out {path}`."
        )
    if kind is not None:
        if kind not in KINDS:
            raise ValueError(f"`kind` must be one of {KINDS}, got {kind!r}.")
        if not (path / kind).is_dir():
            raise FileNotFoundError(f"The synthetic corpus at {path} has no `{kind}` records.")
        return load_corpus(path, kind)
    return {name: load_corpus(path, name) for name in KINDS if (path / name).is_dir()}


def _card_text(metadata: dict) -> str:
    """The dataset card's body: what the corpus is, how it was made, its splits and how to load it."""
    body = f"`{metadata['body_model']}`"
    if metadata["body_model"] == "generated":
        body += " (the project's generated stand-in, not SMPL-H)"
    rows = "\n".join(
        f"| `{kind}` | {' / '.join(f'{count:,}' for count in sizes.values())} |" for kind, sizes in metadata["splits"].items()
    )
    return f"""# UniPose synthetic corpus

Procedural 3D human poses with automatic descriptions, modification instructions and rendered images, for the seven
tasks of UniPose (Pose-to-Text, Image-to-Text, Pose-Diff, Image-Diff, Text-to-Pose, Pose Estimation, Pose Editing).
Generated offline by `unipose data synth` (generator `{metadata['generator']}`, version {metadata['version']}, seed
{metadata['seed']}); the same arguments give the same records, image bytes included.

| configuration | train / validation / test |
| --- | --- |
{rows}

Poses are SMPL-H body axis-angle `(22, 3)` (root orientation, then the 21 body joints), in SMPL's y-up frame.
Captions and instructions are written by the project's PoseScript- and PoseFix-style automatic writers; images are
{metadata['image_size']}-pixel {metadata['image_format'].upper()} renders of the body model {body}.
Nothing in it comes from a real person or a licensed corpus: it is for tests, demos and smoke training, not for
figures comparable with the paper's.

```python
from datasets import load_dataset
pose_text = load_dataset("path/to/corpus", "pose_text")
```
"""


# ---------------------------------------------------------------------------------------------------------
# Contact sheet
# ---------------------------------------------------------------------------------------------------------


def _wrap(text: str, font, width: int) -> list[str]:
    """Greedy word wrap to `width` pixels, at most `SHEET_MAX_LINES` lines (the last ending in "...")."""
    lines, line = [], ""
    for word in text.split():
        candidate = f"{line} {word}".strip()
        if line and font.getlength(candidate) > width:
            lines.append(line)
            line = word
        else:
            line = candidate
    if line:
        lines.append(line)
    if len(lines) > SHEET_MAX_LINES:
        lines = lines[:SHEET_MAX_LINES]
        lines[-1] += " ..."
    return lines


def write_contact_sheet(
    corpus: dict[str, DatasetDict], path: str | os.PathLike, renderer: BodyRenderer | None = None
) -> Path:
    """
    Draw samples of every kind with their first caption (or instruction) on one PNG, for a person to judge
    whether poses, images and texts agree. Pose-only records are drawn with `SHEET_POSE_SCENE`.

    Args:
        corpus (`dict[str, DatasetDict]`): kind -> splits, as returned by [`build_synthetic_corpus`].
        path (`str` or `os.PathLike`): the PNG to write (atomically).
        renderer ([`~unipose.data.rendering.BodyRenderer`], *optional*): draws the pose-only records.

    Returns:
        `Path` of the sheet.
    """
    renderer = BodyRenderer() if renderer is None else renderer
    font = ImageFont.load_default(size=SHEET_FONT_SIZE)
    thumb, pad = SHEET_THUMBNAIL, SHEET_PADDING
    cell_width = 2 * thumb + pad
    columns = SHEET_SAMPLES_PER_KIND
    # Each section: its title, and per sample the pictures (one, or A and B) and the wrapped first caption.
    sections = []
    for kind in (kind for kind in KINDS if kind in corpus):
        rows = corpus[kind]["train"].select(range(min(columns, len(corpus[kind]["train"]))))
        if kind == "pose_text":
            poses = np.asarray(rows["pose"], dtype=np.float32)
            pictures = [(image,) for image in renderer.render(poses, [SHEET_POSE_SCENE] * len(poses))]
        elif kind == "pose_pair":
            poses_a, poses_b = (np.asarray(rows[name], dtype=np.float32) for name in ("pose_a", "pose_b"))
            pictures = list(zip(*renderer.render_pairs(poses_a, poses_b, [SHEET_POSE_SCENE] * len(poses_a))))
        elif kind == "image_pose":
            pictures = [(np.asarray(image.convert("RGB")),) for image in rows["image"]]
        else:
            pictures = [
                (np.asarray(a.convert("RGB")), np.asarray(b.convert("RGB")))
                for a, b in zip(rows["image_a"], rows["image_b"])
            ]
        lines = [_wrap(texts[0] if texts else "(no caption)", font, cell_width) for texts in rows["texts"]]
        sections.append((SHEET_TITLES[kind], pictures, lines))

    title_height = SHEET_LINE_HEIGHT + 2 * pad
    heights = [
        thumb + pad + max(map(len, lines), default=0) * SHEET_LINE_HEIGHT + pad for *_, lines in sections
    ]
    width = columns * (cell_width + pad) + pad
    sheet = Image.new("RGB", (width, pad + sum(title_height + h for h in heights)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    top = pad
    for (title, pictures, lines), height in zip(sections, heights):
        draw.text((pad, top + pad), title, fill=(0, 0, 0), font=font)
        top += title_height
        for column, (images, caption) in enumerate(zip(pictures, lines)):
            left = pad + column * (cell_width + pad)
            offset = (cell_width - len(images) * thumb - (len(images) - 1) * pad) // 2
            for index, image in enumerate(images):
                picture = Image.fromarray(image).resize((thumb, thumb), Image.Resampling.BILINEAR)
                sheet.paste(picture, (left + offset + index * (thumb + pad), top))
            if len(images) == 2:
                draw.text((left + cell_width // 2 - 4, top + thumb // 2 - 8), ">", fill=(0, 0, 0), font=font)
            for index, line in enumerate(caption):
                position = (left, top + thumb + pad + index * SHEET_LINE_HEIGHT)
                draw.text(position, line, fill=(20, 20, 20), font=font)
        top += height

    path = Path(path)
    with atomic_path(path) as temporary:
        sheet.save(temporary, format="PNG")
    return path


__all__ = [
    "KINDS",
    "PAIR_PARTS",
    "SPLITS",
    "SPLIT_FRACTIONS",
    "PosePairSample",
    "build_synthetic_corpus",
    "derive_seed",
    "heading",
    "load_synthetic_corpus",
    "related_categories",
    "sample_pose_pairs",
    "split_sizes",
    "turn_about_vertical",
    "write_contact_sheet",
]
