"""
The SMPL-H body model: loading through `smplx`, an offline stand-in file, and joints-only kinematics.

Three things live here.

- [`BodyModel`]: the full SMPL-H mesh through `smplx` (Romero, Tzionas and Black, "Embodied Hands", SIGGRAPH
  Asia 2017), read from the user's `SMPLH_NEUTRAL.npz` (the MANO/SMPL-H download, "Extended SMPL+H model").
- A generated body-model file in the very same npz format ([`generated_body_model_path`]): the SMPL-H
  kinematic tree with anthropometric rest joints and a capsule mesh of 6,890 vertices, so that everything
  written against SMPL-H (including `smplx`'s fixed vertex ids) runs offline. It is a stand-in for tests,
  demos and synthetic data, not a replacement: numbers computed with it are not comparable with numbers
  computed with SMPL-H.
- [`BodyJoints`]: forward kinematics of the 22 body joints alone, which is all that MPJPE and the pose
  tokenizer's joint loss need. It reproduces `smplx`'s joints for the same file and costs no mesh.

Axes are SMPL's, in the rest pose: x points to the body's left, y up, z forward; lengths in metres.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import math
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch
from transformers.utils import logging

from .rotations import to_rotation_matrix
from .skeleton import (
    BODY_PARENTS,
    JOINT_INDEX,
    NUM_BODY_JOINTS,
    NUM_HAND_JOINTS,
    NUM_SMPLH_JOINTS,
    SMPLH_JOINT_NAMES,
    SMPLH_PARENTS,
)


logger = logging.get_logger(__name__)

# ----------------------------------------------------------------------------------------------------
# Files and where to find them
# ----------------------------------------------------------------------------------------------------

SMPLH_PATH_ENV = "UNIPOSE_SMPLH_PATH"
CACHE_ENV = "UNIPOSE_CACHE"
DEFAULT_CACHE_DIR = Path("~/.cache/unipose")
SMPLH_FILE_NAME = "SMPLH_NEUTRAL.npz"
SMPLH_DOWNLOAD_URL = "https://mano.is.tue.mpg.de"
# Where a folder may hold the neutral model: smplx's own naming first, then the layout of the "Extended
# SMPL+H model" archive (one `model.npz` per gender folder), as AMASS users keep it.
SMPLH_FOLDER_CANDIDATES = (
    SMPLH_FILE_NAME,
    f"smplh/{SMPLH_FILE_NAME}",
    "neutral/model.npz",
    "smplh/neutral/model.npz",
)
# `BodyModel("generated")` and `resolve_body_model_path("generated")` select the generated stand-in.
GENERATED = "generated"

# Sizes fixed by the SMPL-H format.
NUM_VERTICES = 6890
NUM_SHAPE_COEFFICIENTS = 16  # the "Extended SMPL+H model" ships 16 betas
NUM_POSE_BASIS = (NUM_SMPLH_JOINTS - 1) * 9  # pose correctives: one 3x3 matrix per non-root joint
HAND_POSE_SIZE = NUM_HAND_JOINTS * 3
# smplx keeps at most this many betas of a file that has fewer than its 300-dimensional shape space.
SMPLX_MAX_BETAS = 10
DEFAULT_NUM_BETAS = 10

# Bump whenever the generated geometry changes: the cache folder is named after it.
GENERATOR_VERSION = 1
GENERATOR_TAG = f"unipose-generated-smplh-v{GENERATOR_VERSION}"


# ----------------------------------------------------------------------------------------------------
# smplx under NumPy 2
# ----------------------------------------------------------------------------------------------------

# Aliases of builtins that NumPy 1.24 removed. `smplx` 0.1.28 itself no longer uses them, but `chumpy`
# (imported when a model file holds pickled chumpy arrays, as the original SMPL-family `.pkl` files and
# npz files converted from them do) imports them at module level, and so do pickles written by code of
# that era.
_REMOVED_NUMPY_ALIASES = {
    "bool": bool,
    "int": int,
    "float": float,
    "complex": complex,
    "object": object,
    "str": str,
    "unicode": str,
}


def _smplx_compat() -> None:
    """
    Makes `smplx` 0.1.28 and the model files of its era load under NumPy 2. The single place for such shims.

    Restores the builtin aliases that NumPy removed (`np.float`, `np.int`, ...), only where they are absent,
    so that code that was written against NumPy < 1.24 (chumpy, old pickles) can be imported and unpickled.
    Everything else that `smplx` needs works unchanged; `numpy.core`, which NumPy 1.x pickles reference, is
    still importable in NumPy 2.
    """
    for name, builtin in _REMOVED_NUMPY_ALIASES.items():
        if name not in np.__dict__:
            setattr(np, name, builtin)


def _import_smplx():
    _smplx_compat()
    import smplx

    return smplx


@contextlib.contextmanager
def _smplx_messages():
    """Routes what `smplx` prints (e.g. its warning about 16 betas) to this module's logger."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        yield
    for line in buffer.getvalue().splitlines():
        if line.strip():
            logger.info("smplx: %s", line.strip())


# ----------------------------------------------------------------------------------------------------
# Resolving a body-model file
# ----------------------------------------------------------------------------------------------------

PathLike = Union[str, os.PathLike]


def _missing_file_message(tried: list[str]) -> str:
    return (
        "No SMPL-H body model file was found (looked for: " + "; ".join(tried) + "). The SMPL-H model is "
        f"licensed by the Max Planck Institute and cannot be bundled. Register at {SMPLH_DOWNLOAD_URL}, "
        'download the "Extended SMPL+H model" (the npz files that AMASS uses) and point UniPose at the '
        f"neutral model (`{SMPLH_FILE_NAME}` or `neutral/model.npz`, or the folder holding it) with the "
        f"`path` argument or the {SMPLH_PATH_ENV} environment variable. To work offline without it, use the "
        f'generated stand-in instead: `BodyModel("{GENERATED}")`, `BodyJoints.from_generated()`, '
        "`generated_body_model_path()`, or `unipose body-model --out PATH` to write it to a file (its joints "
        "and mesh are not SMPL-H's, so numbers computed with it are not comparable with published ones)."
    )


def _file_in(location: Path) -> Optional[Path]:
    if location.is_file():
        return location
    if location.is_dir():
        for candidate in SMPLH_FOLDER_CANDIDATES:
            if (location / candidate).is_file():
                return location / candidate
    return None


def resolve_body_model_path(path: Optional[PathLike] = None) -> Path:
    """
    Finds the SMPL-H body-model file to load.

    Order: the explicit `path`, else the `UNIPOSE_SMPLH_PATH` environment variable. Either may name the
    `.npz` file itself or a folder holding `SMPLH_NEUTRAL.npz` (smplx's naming) or `neutral/model.npz` (the
    layout of the "Extended SMPL+H model" archive). The generated stand-in is used only when asked for with
    `path="generated"`.

    Args:
        path (`str` or `os.PathLike`, *optional*):
            A file, a folder, or `"generated"`.

    Returns:
        `pathlib.Path`: an existing `.npz` file.

    Raises:
        `FileNotFoundError`: when nothing is found; the message says where to download SMPL-H and how to
            point at it, and how to use the generated stand-in.
        `ValueError`: for a file that is not an `.npz` (smplx reads SMPL-H only from npz files).
    """
    if isinstance(path, str) and path == GENERATED:
        return generated_body_model_path()
    if path is not None:
        location, origin = Path(path).expanduser(), "the `path` argument"
    elif os.environ.get(SMPLH_PATH_ENV):
        location, origin = Path(os.environ[SMPLH_PATH_ENV]).expanduser(), f"${SMPLH_PATH_ENV}"
    else:
        raise FileNotFoundError(_missing_file_message([f"no `path` argument and ${SMPLH_PATH_ENV} is not set"]))
    found = _file_in(location)
    if found is None:
        tried = [f"{location} (from {origin})"]
        if location.is_dir():
            tried = [f"{location / candidate} (from {origin})" for candidate in SMPLH_FOLDER_CANDIDATES]
        raise FileNotFoundError(_missing_file_message(tried))
    if found.suffix != ".npz":
        raise ValueError(
            f"The body model file from {origin} is {found}, which is not an .npz file. smplx reads SMPL-H only "
            'from the npz files of the "Extended SMPL+H model" (the .pkl release stores chumpy objects); '
            f"download them from {SMPLH_DOWNLOAD_URL}."
        )
    return found


def default_cache_dir() -> Path:
    """`$UNIPOSE_CACHE`, else `~/.cache/unipose`."""
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE_DIR).expanduser()


def generated_body_model_path(cache_dir: Optional[PathLike] = None) -> Path:
    """
    The generated SMPL-H-format body model file, written on first use (about a second).

    The file lives at `<cache_dir>/body_models/<generator version>/SMPLH_NEUTRAL.npz`; it is deterministic
    and written atomically, so concurrent first uses are safe.

    Args:
        cache_dir (`str` or `os.PathLike`, *optional*):
            Defaults to `$UNIPOSE_CACHE`, else `~/.cache/unipose`.

    Returns:
        `pathlib.Path` of the file.
    """
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    path = root / "body_models" / GENERATOR_TAG / SMPLH_FILE_NAME
    if not path.is_file():
        logger.info("Generating the stand-in SMPL-H body model at %s", path)
        write_generated_body_model(path)
    return path


def write_generated_body_model(path: PathLike) -> Path:
    """
    Writes the generated body model to `path` (atomically: a temporary file in the same folder, then a rename).

    Returns:
        `pathlib.Path` of the written file.
    """
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = build_generated_body_model()
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            _write_npz(file, arrays)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    return path


# A fixed timestamp for every zip entry: `np.savez` stamps the current time, which would make two
# generations of the same arrays differ byte for byte.
_ZIP_TIMESTAMP = (1980, 1, 1, 0, 0, 0)


def _write_npz(file, arrays: dict[str, np.ndarray]) -> None:
    """An `np.load`-readable, compressed npz whose bytes depend on the arrays only."""
    with zipfile.ZipFile(file, mode="w", compression=zipfile.ZIP_DEFLATED) as archive:
        for key in sorted(arrays):
            info = zipfile.ZipInfo(f"{key}.npy", date_time=_ZIP_TIMESTAMP)
            info.compress_type = zipfile.ZIP_DEFLATED
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.ascontiguousarray(arrays[key]), allow_pickle=False)
            archive.writestr(info, buffer.getvalue())


# ----------------------------------------------------------------------------------------------------
# The generated stand-in, 1: an anthropometric skeleton
# ----------------------------------------------------------------------------------------------------

# The stand-in is an adult of this stature (metres); all lengths below are fractions of it.
STATURE = 1.70

# Heights above the floor and segment lengths as fractions of stature, from D. A. Winter, "Biomechanics
# and Motor Control of Human Movement" (4th ed., Wiley 2009), Fig. 4.1, after Drillis and Contini (1966).
HIP_HEIGHT = 0.530  # greater trochanter
KNEE_HEIGHT = 0.285
ANKLE_HEIGHT = 0.039
SHOULDER_HEIGHT = 0.818  # acromion
CHIN_HEIGHT = 0.870
UPPER_ARM_LENGTH = 0.186
FOREARM_LENGTH = 0.146
HAND_LENGTH = 0.108
FOOT_LENGTH = 0.152
SHOULDER_WIDTH = 0.259
HIP_WIDTH = 0.191

# Finger segment lengths as fractions of hand length (metacarpal, proximal, middle, distal; the thumb has
# no middle phalanx), rounded from Buchholz, Armstrong and Goldstein, "Anthropometric data for describing
# the kinematics of the human hand", Ergonomics 35(12), 1992. Also here: where each knuckle sits across the
# hand (towards the thumb is +) and how far each finger fans out, both chosen for a relaxed flat hand.
FINGER_SEGMENTS = {
    "index": (0.374, 0.265, 0.143, 0.097),
    "middle": (0.373, 0.277, 0.170, 0.108),
    "ring": (0.336, 0.259, 0.165, 0.107),
    "pinky": (0.295, 0.206, 0.117, 0.093),
}
THUMB_SEGMENTS = (0.251, 0.196, 0.158)
KNUCKLE_OFFSET = {"index": 0.12, "middle": 0.02, "ring": -0.08, "pinky": -0.17}
FINGER_SPLAY = {"index": 0.10, "middle": 0.0, "ring": -0.08, "pinky": -0.18}

# The pelvis joint (SMPL's root) sits above the line of the hip joints, at the lower lumbar spine; the
# generated body keeps it at the origin, as SMPL keeps it near the origin, so the soles are at
# y = -PELVIS_HEIGHT * STATURE (about -0.98 m).
PELVIS_HEIGHT = 0.575


def _skeleton_points() -> dict[str, np.ndarray]:
    """
    Rest joints (SMPL-H names) and a few surface points of the generated body, in the T-pose.

    Positions not given by the anthropometric tables above (spine, neck, head and collar joints, depth
    offsets, the thumb's base) are placed where SMPL-family skeletons put them, within a centimetre or two.

    Returns:
        `dict[str, np.ndarray]`: name -> `(3,)` position in metres, y measured from the floor.
    """
    points: dict[str, np.ndarray] = {}

    def put(name: str, x: float, height: float, z: float) -> None:
        points[name] = np.array([x, height, z]) * STATURE

    put("pelvis", 0.0, PELVIS_HEIGHT, 0.0)
    put("spine1", 0.0, 0.625, -0.008)
    put("spine2", 0.0, 0.690, -0.010)
    put("spine3", 0.0, 0.745, -0.006)
    put("neck", 0.0, 0.848, -0.012)
    put("head", 0.0, 0.895, 0.004)
    put("head_top", 0.0, 1.0, 0.010)
    for side, sign in (("left", 1.0), ("right", -1.0)):
        # Hip joint centres lie about halfway between the midline and the greater trochanters.
        put(f"{side}_hip", sign * HIP_WIDTH / 4, HIP_HEIGHT, 0.0)
        put(f"{side}_knee", sign * 0.052, KNEE_HEIGHT, 0.004)
        put(f"{side}_ankle", sign * 0.056, ANKLE_HEIGHT, -0.012)
        heel_z = -0.012 - 0.30 * FOOT_LENGTH  # the ankle sits about 30% of the foot's length from the heel
        put(f"{side}_heel", sign * 0.056, 0.0, heel_z)
        put(f"{side}_foot", sign * 0.062, 0.012, heel_z + 0.73 * FOOT_LENGTH)  # ball of the foot
        put(f"{side}_toe_tip", sign * 0.060, 0.010, heel_z + FOOT_LENGTH)
        put(f"{side}_collar", sign * 0.040, 0.812, -0.004)
        # The shoulder joint centre is a little inside and below the acromion.
        shoulder_x = SHOULDER_WIDTH / 2 - 0.025
        put(f"{side}_shoulder", sign * shoulder_x, SHOULDER_HEIGHT - 0.006, -0.008)
        put(f"{side}_elbow", sign * (shoulder_x + UPPER_ARM_LENGTH), SHOULDER_HEIGHT - 0.006, -0.008)
        wrist_x = shoulder_x + UPPER_ARM_LENGTH + FOREARM_LENGTH
        put(f"{side}_wrist", sign * wrist_x, SHOULDER_HEIGHT - 0.006, -0.008)

        # Hands: arms along +-x, palms down, thumbs forward (+z); lengths in units of the hand's length.
        wrist, hand = points[f"{side}_wrist"], HAND_LENGTH * STATURE
        along = np.array([sign, 0.0, 0.0])
        for finger, segments in FINGER_SEGMENTS.items():
            knuckle = wrist + hand * (segments[0] * along + np.array([0.0, -0.02, KNUCKLE_OFFSET[finger]]))
            direction = along + np.array([0.0, 0.0, FINGER_SPLAY[finger]])
            direction /= np.linalg.norm(direction)
            chain = [knuckle]
            for length in segments[1:]:
                chain.append(chain[-1] + hand * length * direction)
            for number, position in enumerate(chain[:3], start=1):
                points[f"{side}_{finger}{number}"] = position
            points[f"{side}_{finger}_tip"] = chain[3]
        thumb_base = wrist + hand * np.array([0.12 * sign, -0.06, 0.13])
        thumb_direction = np.array([0.70 * sign, -0.15, 0.70])
        thumb_direction /= np.linalg.norm(thumb_direction)
        chain = [thumb_base]
        for length in THUMB_SEGMENTS:
            chain.append(chain[-1] + hand * length * thumb_direction)
        for number, position in enumerate(chain[:3], start=1):
            points[f"{side}_thumb{number}"] = position
        points[f"{side}_thumb_tip"] = chain[3]

    pelvis = points["pelvis"].copy()
    return {name: position - pelvis for name, position in points.items()}


def _bone_ends(points: dict[str, np.ndarray]) -> np.ndarray:
    """
    The far end of the bone that each joint's rotation moves: its principal child, or a surface point for
    the leaves (head top, toe tips, fingertips).

    Returns:
        `np.ndarray` of shape `(52, 3)`.
    """
    principal_child = {"pelvis": "spine1", "spine3": "neck", "head": "head_top"}
    for side in ("left", "right"):
        principal_child[f"{side}_wrist"] = f"{side}_middle1"
        principal_child[f"{side}_foot"] = f"{side}_toe_tip"
        for finger in (*FINGER_SEGMENTS, "thumb"):
            principal_child[f"{side}_{finger}3"] = f"{side}_{finger}_tip"
    children: dict[int, list[int]] = {}
    for joint, parent in enumerate(SMPLH_PARENTS):
        children.setdefault(parent, []).append(joint)
    ends = []
    for joint, name in enumerate(SMPLH_JOINT_NAMES):
        if name in principal_child:
            ends.append(points[principal_child[name]])
        else:  # exactly one child
            (child,) = children[joint]
            ends.append(points[SMPLH_JOINT_NAMES[child]])
    return np.stack(ends)
