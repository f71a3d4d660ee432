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

import contextlib
import functools
import io
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch
from transformers.utils import logging

from .files import atomic_path, open_npz
from .generated_body import GENERATOR_TAG, build_body_model_arrays
from .rotations import to_rotation_matrix
from .skeleton import BODY_PARENTS, NUM_BODY_JOINTS, NUM_HAND_JOINTS

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
# The arrays of an SMPL-H npz file that smplx reads, and its hand PCA arrays (not in every download).
SMPLH_ARRAYS = ("v_template", "J_regressor", "shapedirs", "posedirs", "weights", "f", "kintree_table")
SMPLH_HAND_ARRAYS = ("hands_componentsl", "hands_componentsr", "hands_meanl", "hands_meanr")

# smplx keeps at most this many betas of a file that has fewer than its 300-dimensional shape space.
SMPLX_MAX_BETAS = 10
DEFAULT_NUM_BETAS = 10



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
        tried = [f"no `path` argument and ${SMPLH_PATH_ENV} is not set"]
        raise FileNotFoundError(_missing_file_message(tried))
    found = _file_in(location)
    if found is None:
        tried = [f"{location} (from {origin})"]
        if location.is_dir():
            tried = [f"{location / candidate} (from {origin})" for candidate in SMPLH_FOLDER_CANDIDATES]
        raise FileNotFoundError(_missing_file_message(tried))
    if found.suffix != ".npz":
        raise ValueError(
            f"The body model file from {origin} is {found}, which is not an .npz file. smplx reads SMPL-H "
            'only from the npz files of the "Extended SMPL+H model" (the .pkl release stores chumpy '
            f"objects); download them from {SMPLH_DOWNLOAD_URL}."
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


def build_generated_body_model() -> dict[str, np.ndarray]:
    """
    The arrays of the generated stand-in body model (see `unipose.generated_body`), with the vertices that
    `smplx` reads as extra keypoints (its fixed SMPL-H vertex ids) placed at those body points.

    Returns:
        `dict[str, np.ndarray]`: the SMPL-H npz arrays (`v_template`, `f`, `J_regressor`, `weights`, ...).
    """
    return build_body_model_arrays(_import_smplx().vertex_ids.vertex_ids["smplh"])


def write_generated_body_model(path: PathLike, overwrite: bool = False) -> Path:
    """
    Writes the generated body model to `path`, atomically (a temporary file in the same folder, then a
    rename), and creates the folder if needed. An existing file is replaced only if it is a generated body
    model too, or with `overwrite`: it may be the licensed SMPL-H file.

    Returns:
        `pathlib.Path` of the written file.
    """
    path = Path(path).expanduser()
    if path.exists() and not overwrite and not _is_generated_body_model(path):
        raise FileExistsError(
            f"{str(path)!r} exists and is not a generated body model (it may be the SMPL-H file): write the "
            "generated one elsewhere, or pass `overwrite=True` (`--overwrite`) to replace it."
        )
    arrays = build_generated_body_model()
    with atomic_path(path) as temporary, open(temporary, "wb") as file:
        _write_npz(file, arrays)
    return path


def _is_generated_body_model(path: Path) -> bool:
    """Whether `path` is an npz archive written by [`write_generated_body_model`] (with `unipose_generator`)."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            return "unipose_generator" in archive.files
    except (OSError, ValueError, zipfile.BadZipFile, AttributeError):  # not an npz archive
        return False


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
# Joints-only forward kinematics
# ----------------------------------------------------------------------------------------------------


def _kinematic_levels(parents: tuple[int, ...]) -> list[tuple[list[int], list[int]]]:
    """
    Joints grouped by depth in the tree, each level with the position of every joint's parent inside the
    previous level: `[(joints, parent_positions), ...]`, the root alone first.
    """
    depth = []
    for parent in parents:
        depth.append(0 if parent < 0 else depth[parent] + 1)
    levels = [[joint for joint in range(len(parents)) if depth[joint] == d] for d in range(max(depth) + 1)]
    result = [(levels[0], [])]
    for previous, current in zip(levels, levels[1:]):
        result.append((current, [previous.index(parents[joint]) for joint in current]))
    return result


def _check_num_betas(num_betas, maximum: int, reason: str) -> None:
    if isinstance(num_betas, bool) or not isinstance(num_betas, int) or not 0 <= num_betas <= maximum:
        raise ValueError(f"`num_betas` must be an integer from 0 to {maximum} ({reason}), got {num_betas!r}.")


def _as_tensor(value, name: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (np.ndarray, list, tuple)):
        array = np.asarray(value)
        if array.dtype.kind not in "iuf":
            raise TypeError(f"`{name}` must hold real numbers, got dtype {array.dtype}.")
        return torch.from_numpy(np.ascontiguousarray(array))
    raise TypeError(f"`{name}` must be a torch.Tensor, a numpy array or a list, got {type(value).__name__}.")


def _batched(value, name: str, width: int, batch_size: int, like: torch.Tensor) -> torch.Tensor:
    """
    `value` of shape `(width,)`, `(1, width)` or `(batch_size, width)` as `(batch_size, width)` in the dtype
    and on the device of `like`; raises for any other shape and for NaN or infinite values.
    """
    tensor = _as_tensor(value, name)
    shape = tuple(tensor.shape)
    if tensor.ndim == 1:
        tensor = tensor[None]
    if tensor.ndim != 2 or tensor.shape[1] != width or tensor.shape[0] not in (1, batch_size):
        raise ValueError(
            f"`{name}` has shape {shape}; expected ({width},), (1, {width}) or ({batch_size}, {width}) for a "
            f"batch of {batch_size} pose(s)."
        )
    if not bool(torch.isfinite(tensor).all()):
        raise ValueError(f"`{name}` contains NaN or infinite values.")
    return tensor.to(dtype=like.dtype, device=like.device).expand(batch_size, width)


class BodyJoints(torch.nn.Module):
    """
    Forward kinematics of the 22 SMPL-H body joints, without the mesh.

    The rest joints are the body file's `J_regressor @ (v_template + shapedirs @ betas)`, with the regressor
    applied to the shape directions once, at construction; the posed joints then follow the kinematic tree.
    The result equals the first 22 joints that `smplx` returns for the same file, betas, pose and
    translation: each joint rotates about its parent, the root rotation turns the body about the pelvis
    joint (which stays where the shape puts it), and `transl` is added last.

    Args:
        template_joints (`torch.Tensor` of shape `(22, 3)`):
            Rest joints of the mean shape.
        joint_shapedirs (`torch.Tensor` of shape `(22, 3, num_betas)`):
            How the rest joints move per unit of each shape coefficient.
        parents (`tuple[int, ...]`, *optional*, defaults to the SMPL-H body tree):
            Parent of each joint, -1 for the root.

    Example:

    ```python
    >>> import torch
    >>> from unipose.body_model import BodyJoints
    >>> body = BodyJoints.from_generated()
    >>> body(torch.eye(3).expand(2, 22, 3, 3)).shape
    torch.Size([2, 22, 3])
    ```
    """

    def __init__(
        self,
        template_joints: torch.Tensor,
        joint_shapedirs: torch.Tensor,
        parents: tuple[int, ...] = BODY_PARENTS,
    ) -> None:
        super().__init__()
        num_joints = len(parents)
        if tuple(template_joints.shape) != (num_joints, 3):
            raise ValueError(
                f"`template_joints` must have shape ({num_joints}, 3), got {tuple(template_joints.shape)}."
            )
        if joint_shapedirs.ndim != 3 or tuple(joint_shapedirs.shape[:2]) != (num_joints, 3):
            raise ValueError(
                f"`joint_shapedirs` must have shape ({num_joints}, 3, num_betas), got "
                f"{tuple(joint_shapedirs.shape)}."
            )
        self.parents = tuple(parents)
        self.register_buffer("template_joints", template_joints.clone())
        self.register_buffer("joint_shapedirs", joint_shapedirs.clone())
        self._levels = _kinematic_levels(self.parents)
        level_order = [joint for joints, _ in self._levels for joint in joints]
        self._joint_order = [level_order.index(joint) for joint in range(num_joints)]

    @property
    def num_joints(self) -> int:
        return len(self.parents)

    @property
    def num_betas(self) -> int:
        return self.joint_shapedirs.shape[-1]

    @classmethod
    def from_arrays(
        cls,
        v_template: np.ndarray,
        J_regressor: np.ndarray,
        shapedirs: np.ndarray,
        num_betas: int = DEFAULT_NUM_BETAS,
    ) -> "BodyJoints":
        """
        Builds the body from the arrays of an SMPL-H file (in float64, then stored as float32).

        Args:
            v_template (`np.ndarray` of shape `(num_vertices, 3)`)
            J_regressor (`np.ndarray` of shape `(num_joints >= 22, num_vertices)`)
            shapedirs (`np.ndarray` of shape `(num_vertices, 3, K)`), of which the first `num_betas` are used.
            num_betas (`int`, *optional*, defaults to 10)
        """
        v_template, J_regressor, shapedirs = (
            np.asarray(array, dtype=np.float64) for array in (v_template, J_regressor, shapedirs)
        )
        num_vertices = v_template.shape[0] if v_template.ndim == 2 else -1
        if v_template.ndim != 2 or v_template.shape[1] != 3:
            raise ValueError(f"`v_template` must have shape (num_vertices, 3), got {v_template.shape}.")
        if (
            J_regressor.ndim != 2
            or J_regressor.shape[0] < NUM_BODY_JOINTS
            or J_regressor.shape[1] != num_vertices
        ):
            raise ValueError(
                f"`J_regressor` must have shape (>= {NUM_BODY_JOINTS}, {num_vertices}), got "
                f"{J_regressor.shape}."
            )
        if shapedirs.ndim != 3 or shapedirs.shape[:2] != (num_vertices, 3):
            raise ValueError(f"`shapedirs` must have shape ({num_vertices}, 3, K), got {shapedirs.shape}.")
        _check_num_betas(num_betas, shapedirs.shape[2], "the file's shape space")
        body_regressor = J_regressor[:NUM_BODY_JOINTS]
        template = body_regressor @ v_template
        joint_shapedirs = np.einsum("jv,vkl->jkl", body_regressor, shapedirs[:, :, :num_betas])
        return cls(torch.from_numpy(template).float(), torch.from_numpy(joint_shapedirs).float())

    @classmethod
    def from_body_model_file(
        cls, path: Optional[PathLike] = None, num_betas: int = DEFAULT_NUM_BETAS
    ) -> "BodyJoints":
        """
        Reads an SMPL-H npz file: `path` (a file, a folder, or `"generated"`), else `$UNIPOSE_SMPLH_PATH`
        (see [`resolve_body_model_path`]). Only numeric arrays are read; nothing is unpickled.
        """
        file = resolve_body_model_path(path)
        with open_npz(file, "body model file") as data:
            missing = [key for key in ("v_template", "J_regressor", "shapedirs") if key not in data]
            if missing:
                raise ValueError(
                    f"The body model file {file} lacks the arrays {missing}; is it an SMPL-H npz file?"
                )
            arrays = (data["v_template"], data["J_regressor"], data["shapedirs"])
        return cls.from_arrays(*arrays, num_betas=num_betas)

    @classmethod
    def from_generated(
        cls, cache_dir: Optional[PathLike] = None, num_betas: int = DEFAULT_NUM_BETAS
    ) -> "BodyJoints":
        """The joints of the generated stand-in body (see [`generated_body_model_path`])."""
        return cls.from_body_model_file(generated_body_model_path(cache_dir), num_betas=num_betas)

    def rest_joints(
        self, betas=None, batch_size: int = 1, like: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """
        Rest-pose joints for the given shape.

        Args:
            betas (`torch.Tensor` of shape `(batch, num_betas)` or `(num_betas,)`, *optional*):
                Shape coefficients; zeros (the mean shape) when omitted.
            batch_size (`int`, *optional*, defaults to 1):
                Batch size of the result.
            like (`torch.Tensor`, *optional*):
                The result takes its dtype and device (defaults to the buffers').

        Returns:
            `torch.Tensor` of shape `(batch_size, 22, 3)`.
        """
        like = self.template_joints if like is None else like
        template = self.template_joints.to(dtype=like.dtype, device=like.device)
        rest = template.expand(batch_size, -1, -1)
        if betas is not None:
            betas = _batched(betas, "betas", self.num_betas, batch_size, like)
            rest = rest + torch.einsum("jkl,bl->bjk", self.joint_shapedirs.to(template), betas)
        return rest

    def forward(self, rotmats: torch.Tensor, betas=None, transl=None) -> torch.Tensor:
        """
        Posed body joints.

        Args:
            rotmats (`torch.Tensor` of shape `(batch, 22, 3, 3)`):
                Local joint rotations, the root's first (as given by `rotations.to_rotation_matrix`).
            betas (`torch.Tensor` of shape `(batch, num_betas)` or `(num_betas,)`, *optional*):
                Shape coefficients; the mean shape when omitted.
            transl (`torch.Tensor` of shape `(batch, 3)` or `(3,)`, *optional*):
                Translation added to every joint.

        Returns:
            `torch.Tensor` of shape `(batch, 22, 3)`, in the dtype and on the device of `rotmats`.
        """
        if not isinstance(rotmats, torch.Tensor):
            raise TypeError(
                f"`rotmats` must be a torch.Tensor of shape (batch, {self.num_joints}, 3, 3), got "
                f"{type(rotmats).__name__}; `pose_to_joints` accepts poses in any format."
            )
        if rotmats.ndim != 4 or tuple(rotmats.shape[1:]) != (self.num_joints, 3, 3):
            raise ValueError(
                f"`rotmats` must have shape (batch, {self.num_joints}, 3, 3), got {tuple(rotmats.shape)}."
            )
        batch_size = rotmats.shape[0]
        rest = self.rest_joints(betas, batch_size, like=rotmats)  # (B, J, 3)
        parents = list(self.parents[1:])
        offsets = torch.cat([rest[:, :1], rest[:, 1:] - rest[:, parents]], dim=1)  # (B, J, 3), bone vectors

        # Level by level down the tree: a joint's global rotation is its parent's times its own, and it
        # sits at its parent's position plus its rest offset turned by the parent's global rotation.
        (root,), _ = self._levels[0]
        rotations, positions = rotmats[:, [root]], rest[:, [root]]
        all_positions = [positions]
        for joints, parent_positions in self._levels[1:]:
            parent_rotations = rotations[:, parent_positions]  # (B, n, 3, 3)
            turned_offsets = (parent_rotations @ offsets[:, joints, :, None])[..., 0]  # (B, n, 3)
            positions = positions[:, parent_positions] + turned_offsets
            rotations = parent_rotations @ rotmats[:, joints]
            all_positions.append(positions)
        joints = torch.cat(all_positions, dim=1)[:, self._joint_order]
        if transl is not None:
            joints = joints + _batched(transl, "transl", 3, batch_size, rotmats)[:, None]
        return joints


@functools.lru_cache(maxsize=4)
def _cached_generated_joints(cache_dir: str) -> BodyJoints:
    return BodyJoints.from_generated(cache_dir)


def pose_to_joints(poses, body: Optional[BodyJoints] = None, betas=None) -> Union[torch.Tensor, np.ndarray]:
    """
    Body joints of poses in any format, for metrics and plots.

    Args:
        poses (`torch.Tensor`, `np.ndarray` or nested lists):
            Any layout that `rotations.to_rotation_matrix` accepts: axis-angle `(B, 22, 3)` or `(B, 66)`,
            rotation matrices `(B, 22, 3, 3)`, 6D `(B, 22, 6)`, with or without the batch axis.
        body (`BodyJoints`, *optional*):
            The body to pose; defaults to the generated stand-in (cached), whose joints are not SMPL-H's:
            pass `BodyJoints.from_body_model_file()` for numbers comparable with published ones.
        betas (*optional*):
            Shape coefficients, `(num_betas,)` or `(B, num_betas)`.

    Returns:
        Joints of shape `(B, 22, 3)` in metres: a numpy array for numpy or list input, else a tensor on the
        input's device. float64 input gives float64, anything else float32.
    """
    rotmats = to_rotation_matrix(poses, num_joints=NUM_BODY_JOINTS, name="poses")
    if body is None:
        body = _cached_generated_joints(str(default_cache_dir()))
    joints = body(rotmats, betas=betas)
    return joints if isinstance(poses, torch.Tensor) else joints.numpy()


# ----------------------------------------------------------------------------------------------------
# The full mesh through smplx
# ----------------------------------------------------------------------------------------------------


@dataclass
class BodyModelOutput:
    """
    Args:
        vertices (`torch.Tensor` of shape `(batch, 6890, 3)`): posed mesh vertices, metres.
        joints (`torch.Tensor` of shape `(batch, 22, 3)`): posed body joints, metres.
        faces (`torch.LongTensor` of shape `(num_faces, 3)`): triangles, indexing `vertices`.
    """

    vertices: torch.Tensor
    joints: torch.Tensor
    faces: torch.Tensor


class BodyModel(torch.nn.Module):
    """
    The SMPL-H body (mesh and joints) through `smplx`, posed by the 22 body joints; hands stay flat.

    Wraps `smplx.SMPLHLayer`: the same loading code as `smplx.SMPLH`, but posed by rotation matrices and
    holding no pose or shape parameters of its own.

    Args:
        path (`str` or `os.PathLike`, *optional*):
            The SMPL-H npz file or its folder; `"generated"` for the generated stand-in; when omitted,
            `$UNIPOSE_SMPLH_PATH` (see [`resolve_body_model_path`]).
        num_betas (`int`, *optional*, defaults to 10):
            Shape coefficients to use (smplx keeps at most 10 of the 16 in the SMPL-H files).
        dtype (`torch.dtype`, *optional*, defaults to `torch.float32`):
            Dtype of the model's buffers and outputs.

    Example:

    ```python
    >>> import torch
    >>> from unipose.body_model import BodyModel
    >>> body = BodyModel("generated")
    >>> output = body(torch.zeros(2, 22, 3))
    >>> output.vertices.shape, output.joints.shape
    (torch.Size([2, 6890, 3]), torch.Size([2, 22, 3]))
    ```
    """

    def __init__(
        self,
        path: Optional[PathLike] = None,
        num_betas: int = DEFAULT_NUM_BETAS,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        _check_num_betas(num_betas, SMPLX_MAX_BETAS, "the most smplx keeps of an SMPL-H file")
        self.path = resolve_body_model_path(path)
        # The arrays smplx reads, taken here (smplx would leave a corrupt archive open). The hand PCA arrays are
        # absent from some SMPL-H downloads (the extended model for AMASS), where smplx would fail on them though
        # it does not use them without PCA: neutral ones stand in.
        with open_npz(self.path, "body model file") as data:
            missing = [key for key in SMPLH_ARRAYS if key not in data]
            if missing:
                raise ValueError(f"The body model file {self.path} lacks the arrays {missing}; is it an SMPL-H npz file?")
            arrays = {key: data[key] for key in (*SMPLH_ARRAYS, *SMPLH_HAND_ARRAYS) if key in data}
            self.is_generated = "unipose_generator" in data
        for side in "lr":
            arrays.setdefault(f"hands_components{side}", np.eye(3 * NUM_HAND_JOINTS))
            arrays.setdefault(f"hands_mean{side}", np.zeros(3 * NUM_HAND_JOINTS))
        smplx = _import_smplx()
        with _smplx_messages():
            self.smplh = smplx.SMPLHLayer(
                model_path=str(self.path),
                data_struct=smplx.utils.Struct(**arrays),
                ext="npz",
                use_pca=False,
                num_betas=num_betas,
                dtype=dtype,
            )
        available = self.smplh.shapedirs.shape[-1]
        if available != num_betas:
            raise ValueError(
                f"`num_betas` is {num_betas} but the body model file {self.path} has only {available} shape "
                "coefficients."
            )
        if self.is_generated:
            logger.warning_once(
                "Using the generated stand-in body model: its joints and mesh are not SMPL-H's, so numbers "
                "computed with it are not comparable with published ones. Download SMPL-H from "
                f"{SMPLH_DOWNLOAD_URL} for those."
            )

    @property
    def num_betas(self) -> int:
        return self.smplh.num_betas

    @property
    def faces(self) -> torch.Tensor:
        """`torch.LongTensor` of shape `(num_faces, 3)`."""
        return self.smplh.faces_tensor

    def body_joints(self) -> BodyJoints:
        """The joints-only kinematics of this very body (same buffers), for cheap joint computations."""
        smplh = self.smplh
        return BodyJoints.from_arrays(
            smplh.v_template.double().cpu().numpy(),
            smplh.J_regressor.double().cpu().numpy(),
            smplh.shapedirs.double().cpu().numpy(),
            num_betas=self.num_betas,
        ).to(smplh.v_template.device)

    def forward(self, poses, betas=None, transl=None) -> BodyModelOutput:
        """
        Poses the body.

        Args:
            poses (`torch.Tensor`, `np.ndarray` or nested lists):
                B poses of the 22 body joints in any format that `rotations.to_rotation_matrix` accepts.
            betas (`torch.Tensor` or `np.ndarray` of shape `(B, num_betas)` or `(num_betas,)`, *optional*):
                Shape coefficients; the mean shape when omitted.
            transl (`torch.Tensor` or `np.ndarray` of shape `(B, 3)` or `(3,)`, *optional*):
                Translation added to the vertices and joints.

        Returns:
            [`BodyModelOutput`] with `vertices (B, 6890, 3)`, `joints (B, 22, 3)` and `faces`.
        """
        reference = self.smplh.v_template
        rotmats = to_rotation_matrix(poses, num_joints=NUM_BODY_JOINTS, name="poses").to(reference)
        batch_size = rotmats.shape[0]
        if betas is None:
            betas = reference.new_zeros(batch_size, self.num_betas)
        else:
            betas = _batched(betas, "betas", self.num_betas, batch_size, reference)
        transl = None if transl is None else _batched(transl, "transl", 3, batch_size, reference)
        output = self.smplh(
            betas=betas, global_orient=rotmats[:, :1], body_pose=rotmats[:, 1:], transl=transl
        )
        # smplx appends the hand joints and its vertex keypoints after the 22 body joints.
        joints = output.joints[:, :NUM_BODY_JOINTS]
        return BodyModelOutput(vertices=output.vertices, joints=joints, faces=self.faces)


# ----------------------------------------------------------------------------------------------------
# Command line: `unipose body-model`
# ----------------------------------------------------------------------------------------------------


__all__ = [
    "BodyJoints",
    "BodyModel",
    "BodyModelOutput",
    "build_generated_body_model",
    "generated_body_model_path",
    "pose_to_joints",
    "resolve_body_model_path",
    "write_generated_body_model",
]
