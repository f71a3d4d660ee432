"""Pictures of SMPL poses: skeletons (and, given a body model, shaded meshes), pairs, contact sheets, OBJ.

Rendering uses matplotlib (the `demo` extra), imported inside the functions so that the rest of the
package never needs it. Figures are drawn off-screen through matplotlib's Agg canvas, never through
`pyplot`, so no global state or window backend is touched.

Every view uses the same camera: the body's heading (its turn about the vertical axis) is removed so that
the camera looks at the front of the body, slightly from above and from the body's left. The body's left
limbs are drawn in blue, its right limbs in red, and a floor grid with the skeleton's shadow sits at the
height of the lowest joint.
"""

from __future__ import annotations

import math
import os
import tempfile
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from .rotations import to_rotation_matrix
from .skeleton import BODY_JOINT_NAMES, BODY_PARENTS, NUM_BODY_JOINTS


PathLike = Union[str, os.PathLike]

# The camera: orthographic, turned this far (degrees) about the vertical from straight in front of the
# body towards its left, and raised this far above the horizon.
CAMERA_AZIMUTH_DEG = 40.0
CAMERA_ELEVATION_DEG = 15.0
# Half the side of the square of the world (metres) that a picture shows, unless the body needs more: one
# scale for every picture, so that poses on a contact sheet compare at a glance.
VIEW_HALF_SIZE = 1.05
CAMERA_DISTANCE = 4.0
DPI = 100

LEFT_COLOR = "#1f6fd1"
RIGHT_COLOR = "#d83a2e"
CENTRE_COLOR = "#3c3c3c"
FLOOR_COLOR = "#d9d9d9"
SHADOW_COLOR = "#bdbdbd"
MESH_COLOR = np.array([0.78, 0.80, 0.84])

# The head is drawn as a circle this far (metres) above the head joint along the head's up axis, with a
# nose tick pointing along its forward axis: it shows which way the face looks.
HEAD_CENTRE_OFFSET = 0.09
HEAD_RADIUS = 0.095
NOSE_LENGTH = 0.07
# A body whose root's up axis has a vertical component below this (tilted more than about 37 degrees, as
# when lying or bent over) is seen from the side, head to the left, rather than from the front.
TILTED_UP_COMPONENT = 0.8
# Hands are drawn as a segment of this length (metres) from the wrist along the hand's axis.
HAND_LENGTH = 0.09
# The floor grid: lines this far apart (metres), reaching this far beyond the body's footprint.
FLOOR_SPACING = 0.25
FLOOR_MARGIN = 0.3

_HEAD = BODY_JOINT_NAMES.index("head")
_WRISTS = (BODY_JOINT_NAMES.index("left_wrist"), BODY_JOINT_NAMES.index("right_wrist"))
_SIDE_COLORS = tuple(
    LEFT_COLOR if name.startswith("left_") else RIGHT_COLOR if name.startswith("right_") else CENTRE_COLOR
    for name in BODY_JOINT_NAMES
)
_BONES = tuple((parent, child) for child, parent in enumerate(BODY_PARENTS) if parent >= 0)


def _import_matplotlib():
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.collections import LineCollection, PolyCollection
        from matplotlib.figure import Figure
        from matplotlib.patches import Circle
    except ImportError as error:
        raise ImportError(
            "Rendering poses needs matplotlib, which is not installed: `pip install unipose[demo]`."
        ) from error
    return Figure, FigureCanvasAgg, LineCollection, PolyCollection, Circle


# ---------------------------------------------------------------------------------------------------------
# Geometry: joints, heading and the camera
# ---------------------------------------------------------------------------------------------------------


def _global_rotations(rotmats: np.ndarray) -> np.ndarray:
    """World rotations `(B, 22, 3, 3)` of every joint from local ones, down the kinematic tree."""
    world = np.empty_like(rotmats)
    for joint, parent in enumerate(BODY_PARENTS):
        world[:, joint] = rotmats[:, joint] if parent < 0 else world[:, parent] @ rotmats[:, joint]
    return world


def _heading(root: np.ndarray) -> np.ndarray:
    """
    The rotation about the vertical `(B,)` (radians) that the camera undoes, from root rotations `(B, 3, 3)`.

    For an upright body it is the heading of the forward axis, so the camera sees the front. For a body
    lying or bent over it puts the head to the left of the picture, so that the camera sees the length of
    the trunk from the side rather than end-on.
    """
    up, forward = root[:, :, 1], root[:, :, 2]
    upright = np.abs(up[:, 1]) >= TILTED_UP_COMPONENT
    facing = np.arctan2(forward[:, 0], forward[:, 2])
    head_left = np.arctan2(up[:, 0], up[:, 2]) + math.pi / 2 - math.radians(CAMERA_AZIMUTH_DEG)
    return np.where(upright, facing, head_left)


def _rotation_y(angle: np.ndarray) -> np.ndarray:
    cos, sin, zero, one = np.cos(angle), np.sin(angle), np.zeros_like(angle), np.ones_like(angle)
    return np.stack((cos, zero, sin, zero, one, zero, -sin, zero, cos), axis=-1).reshape(angle.shape + (3, 3))


def _camera_rotation() -> np.ndarray:
    """World -> camera axes (x right on screen, y up on screen, z towards the viewer)."""
    azimuth, elevation = math.radians(CAMERA_AZIMUTH_DEG), math.radians(CAMERA_ELEVATION_DEG)
    # Turning the body away from the viewer by -azimuth shows more of its left; tilting it towards the
    # viewer by the elevation shows it from above.
    turn = _rotation_y(np.array(-azimuth))
    cos, sin = math.cos(elevation), math.sin(elevation)
    tilt = np.array([[1.0, 0.0, 0.0], [0.0, cos, -sin], [0.0, sin, cos]])
    return tilt @ turn


def _read_poses(poses: Any, name: str) -> np.ndarray:
    """Rotation matrices `(B, 22, 3, 3)` (float64) of poses in any format that the rotations module accepts."""
    return to_rotation_matrix(poses, name=name).detach().double().cpu().numpy()


def _joints(rotmats: np.ndarray) -> np.ndarray:
    """Joint positions `(B, 22, 3)` by forward kinematics of the generated body model."""
    from .body_model import pose_to_joints

    joints = pose_to_joints(rotmats)
    joints = joints.detach().cpu().numpy() if hasattr(joints, "detach") else np.asarray(joints)
    return joints.astype(np.float64)


class _View:
    """
    One body in camera space: joints, head circle and nose, floor and shadow, and an optional mesh.

    `frame` is the rotation that removes the heading (of this pose, or of another pose for pairs).
    """

    def __init__(self, rotmats: np.ndarray, joints: np.ndarray, frame: np.ndarray, mesh=None):
        camera = _camera_rotation() @ frame
        world = _global_rotations(rotmats[None])[0]
        joints = joints - joints[0]  # pelvis at the origin
        head_up, head_forward = world[_HEAD][:, 1], world[_HEAD][:, 2]
        head_centre = joints[_HEAD] + HEAD_CENTRE_OFFSET * head_up
        nose = head_centre + (HEAD_RADIUS + NOSE_LENGTH) * head_forward
        # The arms rest along +x (left) and -x (right) in the T-pose, and the hands continue them.
        hands = np.stack([joints[w] + sign * HAND_LENGTH * world[w][:, 0] for w, sign in zip(_WRISTS, (1.0, -1.0))])
        floor_height = min(joints[:, 1].min(), (head_centre[1] - HEAD_RADIUS)) - 0.03
        if mesh is not None:
            vertices = mesh[0] - mesh[2][0]  # same origin as the joints
            floor_height = min(floor_height, vertices[:, 1].min())
        # Shadow: the skeleton flattened onto the floor.
        shadow = joints.copy()
        shadow[:, 1] = floor_height
        # A square of floor around the body's footprint, in grid lines FLOOR_SPACING apart.
        low, high = shadow[:, [0, 2]].min(axis=0), shadow[:, [0, 2]].max(axis=0)
        centre = (low + high) / 2
        half = FLOOR_SPACING * math.ceil((max(high - low) / 2 + FLOOR_MARGIN) / FLOOR_SPACING)
        ticks = np.arange(-half, half + 1e-9, FLOOR_SPACING)
        floor_lines = []
        for tick in ticks:
            floor_lines.append([[centre[0] + tick, floor_height, centre[1] - half], [centre[0] + tick, floor_height, centre[1] + half]])
            floor_lines.append([[centre[0] - half, floor_height, centre[1] + tick], [centre[0] + half, floor_height, centre[1] + tick]])
        def project(points):
            # A pinhole camera CAMERA_DISTANCE in front of the pelvis: nearer parts look larger, which
            # tells near limbs from far ones where an orthographic line drawing is ambiguous.
            points = np.asarray(points) @ camera.T
            scale = CAMERA_DISTANCE / (CAMERA_DISTANCE - points[..., 2:])
            return np.concatenate([points[..., :2] * scale, points[..., 2:]], axis=-1)

        self.joints = project(joints)
        self.head = project(head_centre)
        self.nose = project(nose)
        self.hands = project(hands)
        self.shadow = project(shadow)
        self.floor = project(np.array(floor_lines))
        self.mesh = None
        if mesh is not None:
            self.mesh = (project(vertices), mesh[1])

    def bounds(self) -> tuple[float, float, float, float]:
        points = self.joints if self.mesh is None else np.concatenate([self.joints, self.mesh[0]])
        low, high = points[:, :2].min(axis=0), points[:, :2].max(axis=0)
        low = np.minimum(low, self.head[:2] - HEAD_RADIUS)
        high = np.maximum(high, self.head[:2] + HEAD_RADIUS)
        return low[0], high[0], low[1], high[1]


def _prepare(poses: Any, name: str, body_model=None, frame_from: Optional[np.ndarray] = None) -> list[_View]:
    rotmats = _read_poses(poses, name)
    joints = _joints(rotmats)
    meshes = [None] * len(rotmats)
    if body_model is not None:
        import torch

        with torch.no_grad():
            output = body_model(rotmats.astype(np.float32))
        faces = np.asarray(output.faces if not hasattr(output.faces, "cpu") else output.faces.cpu().numpy())
        vertices = output.vertices.detach().cpu().double().numpy()
        mesh_joints = output.joints.detach().cpu().double().numpy()
        meshes = [(vertices[i], faces.reshape(-1, 3), mesh_joints[i]) for i in range(len(rotmats))]
        joints = mesh_joints
    heading = _heading(rotmats[:, 0] if frame_from is None else np.broadcast_to(frame_from, rotmats[:, 0].shape))
    frames = _rotation_y(-heading)
    return [_View(rotmats[i], joints[i], frames[i], meshes[i]) for i in range(len(rotmats))]


# ---------------------------------------------------------------------------------------------------------
# Drawing
# ---------------------------------------------------------------------------------------------------------


def _draw(ax, view: _View, half_size: Optional[float] = None) -> None:
    _, _, LineCollection, PolyCollection, Circle = _import_matplotlib()
    ax.set_axis_off()
    ax.set_aspect("equal")
    ax.add_collection(LineCollection(view.floor[..., :2], colors=FLOOR_COLOR, linewidths=0.8, zorder=0))
    shadow = [view.shadow[[parent, child], :2] for parent, child in _BONES]
    ax.add_collection(LineCollection(shadow, colors=SHADOW_COLOR, linewidths=3.0, capstyle="round", zorder=1))

    if view.mesh is not None:
        vertices, faces = view.mesh
        triangles = vertices[faces]  # (F, 3, 3)
        normals = np.cross(triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 0])
        normals /= np.maximum(np.linalg.norm(normals, axis=-1, keepdims=True), 1e-12)
        # Light from the camera, a little from above; both faces of a triangle are lit alike.
        light = np.array([0.3, 0.5, 1.0]) / np.linalg.norm([0.3, 0.5, 1.0])
        shade = 0.35 + 0.65 * np.abs(normals @ light)
        order = np.argsort(triangles[..., 2].mean(axis=1))  # far to near
        colors = np.clip(shade[order, None] * MESH_COLOR, 0.0, 1.0)
        ax.add_collection(
            PolyCollection(triangles[order, :, :2], facecolors=colors, edgecolors="none", zorder=2, alpha=0.9)
        )

    # Bones far to near, each a little thicker when nearer, so that crossing limbs read in depth.
    bones = [view.joints[[parent, child]] for parent, child in _BONES]
    bones += [np.stack([view.joints[wrist], hand]) for wrist, hand in zip(_WRISTS, view.hands)]
    bone_colors = [_SIDE_COLORS[child] for _, child in _BONES] + [_SIDE_COLORS[wrist] for wrist in _WRISTS]
    depth = np.array([bone[:, 2].mean() for bone in bones])
    order = np.argsort(depth)
    segments = np.array(bones)[order, :, :2]
    colors = [bone_colors[i] for i in order]
    widths = 2.6 + 1.2 * (depth[order] - depth.min()) / max(np.ptp(depth), 1e-6)
    ax.add_collection(LineCollection(segments, colors=colors, linewidths=widths, capstyle="round", zorder=3))
    ax.scatter(view.joints[:, 0], view.joints[:, 1], s=7, c=list(_SIDE_COLORS), zorder=4, linewidths=0)
    ax.add_patch(Circle(view.head[:2], HEAD_RADIUS, facecolor="white", edgecolor=CENTRE_COLOR, linewidth=1.6, zorder=5))
    ax.plot([view.head[0], view.nose[0]], [view.head[1], view.nose[1]], color=CENTRE_COLOR, linewidth=1.6, zorder=5)

    left, right, bottom, top = view.bounds()
    cx, cy = (left + right) / 2, (bottom + top) / 2
    half = max(VIEW_HALF_SIZE if half_size is None else half_size, (right - left) / 2 + 0.08, (top - bottom) / 2 + 0.08)
    ax.set_xlim(cx - half, cx + half)
    ax.set_ylim(cy - half, cy + half)


def _new_figure(width: int, height: int):
    Figure, FigureCanvasAgg, *_ = _import_matplotlib()
    figure = Figure(figsize=(width / DPI, height / DPI), dpi=DPI, facecolor="white")
    FigureCanvasAgg(figure)
    return figure


def _to_image(figure, size: tuple[int, int]):
    from PIL import Image

    figure.canvas.draw()
    image = Image.fromarray(np.asarray(figure.canvas.buffer_rgba())[..., :3].copy())
    if image.size != tuple(size):  # guards against rounding of figsize * dpi
        image = image.resize(size, Image.LANCZOS)
    return image


def _save_png(image, path: PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        image.save(temporary, format="PNG")
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def _check_size(size: Any, name: str) -> tuple[int, int]:
    if (
        not isinstance(size, (tuple, list))
        or len(size) != 2
        or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 16 for v in size)
    ):
        raise ValueError(f"`{name}` must be (width, height) in pixels, each an integer >= 16, got {size!r}.")
    return int(size[0]), int(size[1])


def _single(poses: Any, name: str, body_model=None, frame_from=None) -> _View:
    views = _prepare(poses, name, body_model, frame_from)
    if len(views) != 1:
        raise ValueError(f"`{name}` must be a single pose, got a batch of {len(views)}.")
    return views[0]


# ---------------------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------------------


def render_pose(
    pose: Any,
    path: Optional[PathLike] = None,
    title: Optional[str] = None,
    body_model=None,
    size: tuple[int, int] = (400, 400),
):
    """
    Render one pose as a skeleton seen from the front (and as a shaded mesh when `body_model` is given).

    Args:
        pose (array, tensor or nested lists):
            One SMPL pose in any format accepted by `unipose.rotations.to_rotation_6d` (axis-angle `(66,)`
            or `(22, 3)`, matrices `(22, 3, 3)`, 6D `(22, 6)`, or the same with a batch axis of 1).
        path (`str` or `os.PathLike`, *optional*):
            Where to write the picture as PNG (atomically).
        title (`str`, *optional*):
            Text above the picture.
        body_model ([`~unipose.body_model.BodyModel`], *optional*):
            When given, its mesh is drawn under the skeleton.
        size (`tuple[int, int]`, *optional*, defaults to `(400, 400)`):
            Width and height in pixels.

    Returns:
        `PIL.Image.Image`: the RGB picture of the given size.

    Example:

    ```python
    >>> from unipose.pose_sampler import sample_poses
    >>> render_pose(sample_poses(1, seed=3)[0], title="a sampled pose").size
    (400, 400)
    ```
    """
    width, height = _check_size(size, "size")
    view = _single(pose, "pose", body_model)
    figure = _new_figure(width, height)
    ax = figure.add_axes((0.0, 0.0, 1.0, 0.9 if title else 1.0))
    _draw(ax, view)
    if title:
        figure.text(0.5, 0.95, title, ha="center", va="center", fontsize=11)
    image = _to_image(figure, (width, height))
    if path is not None:
        _save_png(image, path)
    return image


def render_pose_pair(
    pose_a: Any,
    pose_b: Any,
    path: Optional[PathLike] = None,
    title: Optional[str] = None,
    captions: Sequence[str] = ("A", "B"),
    body_model=None,
    size: tuple[int, int] = (720, 400),
):
    """
    Render two poses side by side, A -> B, both seen from the front of pose A (so that a turn shows).

    Args:
        pose_a, pose_b (array, tensor or nested lists):
            One pose each, in any format accepted by [`render_pose`].
        path (`str` or `os.PathLike`, *optional*):
            Where to write the picture as PNG (atomically).
        title (`str`, *optional*):
            Text above both panels, e.g. the instruction that turns A into B (wrapped to the width).
        captions (`Sequence[str]`, *optional*, defaults to `("A", "B")`):
            Labels under the panels.
        body_model ([`~unipose.body_model.BodyModel`], *optional*):
            When given, meshes are drawn under the skeletons.
        size (`tuple[int, int]`, *optional*, defaults to `(720, 400)`):
            Width and height in pixels.

    Returns:
        `PIL.Image.Image`: the RGB picture.
    """
    width, height = _check_size(size, "size")
    if isinstance(captions, str) or len(captions) != 2:
        raise ValueError(f"`captions` must be two strings (for A and B), got {captions!r}.")
    root_a = _read_poses(pose_a, "pose_a")[:, 0]
    view_a = _single(pose_a, "pose_a", body_model)
    view_b = _single(pose_b, "pose_b", body_model, frame_from=root_a)
    # One scale for both panels, so that the two bodies compare.
    half = max(
        VIEW_HALF_SIZE,
        *[max(v.bounds()[1] - v.bounds()[0], v.bounds()[3] - v.bounds()[2]) / 2 + 0.08 for v in (view_a, view_b)],
    )
    figure = _new_figure(width, height)
    title_lines = textwrap.wrap(title, max(20, width // 8)) if title else []
    top = 1.0 - 0.06 * len(title_lines)
    for index, (view, caption) in enumerate(zip((view_a, view_b), captions)):
        ax = figure.add_axes((0.02 + index * 0.52, 0.08, 0.44, top - 0.1))
        _draw(ax, view, half)
        figure.text(0.24 + index * 0.52, 0.04, caption, ha="center", va="center", fontsize=11)
    figure.text(0.5, (top + 0.08) / 2, "\u2192", ha="center", va="center", fontsize=28, color=CENTRE_COLOR)
    if title_lines:
        figure.text(0.5, 1.0 - 0.03 * len(title_lines), "\n".join(title_lines), ha="center", va="center", fontsize=10)
    image = _to_image(figure, (width, height))
    if path is not None:
        _save_png(image, path)
    return image


def contact_sheet(
    poses: Any,
    captions: Optional[Sequence[str]] = None,
    path: Optional[PathLike] = None,
    columns: int = 8,
    cell_size: tuple[int, int] = (200, 230),
    body_model=None,
):
    """
    Render many poses on one grid, each with an optional caption (wrapped to the cell's width).

    Args:
        poses (array, tensor or nested lists):
            A batch of poses in any format accepted by `unipose.rotations.to_rotation_6d`, e.g. axis-angle
            `(N, 22, 3)`.
        captions (`Sequence[str]`, *optional*):
            One caption per pose.
        path (`str` or `os.PathLike`, *optional*):
            Where to write the sheet as PNG (atomically).
        columns (`int`, *optional*, defaults to 8):
            Cells per row (fewer when there are fewer poses).
        cell_size (`tuple[int, int]`, *optional*, defaults to `(200, 230)`):
            Width and height of one cell in pixels.
        body_model ([`~unipose.body_model.BodyModel`], *optional*):
            When given, meshes are drawn under the skeletons.

    Returns:
        `PIL.Image.Image`: the RGB sheet, `columns * cell_width` wide.
    """
    cell_width, cell_height = _check_size(cell_size, "cell_size")
    if isinstance(columns, bool) or not isinstance(columns, (int, np.integer)) or columns < 1:
        raise ValueError(f"`columns` must be a positive integer, got {columns!r}.")
    views = _prepare(poses, "poses", body_model)
    if captions is not None:
        if isinstance(captions, str) or len(captions) != len(views):
            raise ValueError(
                f"`captions` must hold one string per pose ({len(views)}), got "
                f"{'a string' if isinstance(captions, str) else len(captions)}."
            )
    columns = min(int(columns), len(views))
    rows = math.ceil(len(views) / columns)
    width, height = columns * cell_width, rows * cell_height
    figure = _new_figure(width, height)
    caption_fraction = 0.0 if captions is None else 0.18
    # Roughly how many characters of an 8-point font fit in a cell.
    wrap_width = max(10, cell_width // 6)
    for index, view in enumerate(views):
        row, column = divmod(index, columns)
        left, bottom = column / columns, 1.0 - (row + 1) / rows
        ax = figure.add_axes((left, bottom + caption_fraction / rows, 1.0 / columns, (1.0 - caption_fraction) / rows))
        _draw(ax, view)
        if captions is not None:
            text = "\n".join(textwrap.wrap(str(captions[index]), wrap_width)[:3])
            figure.text(left + 0.5 / columns, bottom + 0.5 * caption_fraction / rows, text, ha="center", va="center", fontsize=8)
    image = _to_image(figure, (width, height))
    if path is not None:
        _save_png(image, path)
    return image


def save_obj(vertices: Any, faces: Any, path: PathLike) -> Path:
    """
    Write a triangle mesh as a Wavefront OBJ file (atomically): one `v x y z` line per vertex, then one
    `f i j k` line per face with 1-based indices.

    Args:
        vertices (array or tensor of shape `(num_vertices, 3)`): positions, finite.
        faces (array or tensor of shape `(num_faces, 3)`): 0-based vertex indices.
        path (`str` or `os.PathLike`): the file to write.

    Returns:
        `pathlib.Path`: the written file.
    """
    vertices = _as_numpy(vertices, "vertices")
    faces = _as_numpy(faces, "faces")
    if vertices.ndim != 2 or vertices.shape[1] != 3 or not np.issubdtype(vertices.dtype, np.number):
        raise ValueError(f"`vertices` must be a numeric array of shape (num_vertices, 3), got {vertices.dtype} {vertices.shape}.")
    if not np.isfinite(vertices).all():
        raise ValueError("`vertices` contains NaN or infinite values.")
    if faces.ndim != 2 or faces.shape[1] != 3 or not np.issubdtype(faces.dtype, np.integer):
        raise ValueError(f"`faces` must be an integer array of shape (num_faces, 3), got {faces.dtype} {faces.shape}.")
    if faces.size and (faces.min() < 0 or faces.max() >= len(vertices)):
        raise ValueError(
            f"`faces` must index vertices in [0, {len(vertices) - 1}], got indices in [{faces.min()}, {faces.max()}]."
        )
    lines = [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in vertices.tolist()]
    lines += [f"f {i} {j} {k}" for i, j, k in (faces + 1).tolist()]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as file:
            file.write("\n".join(lines) + "\n")
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def _as_numpy(value: Any, name: str) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    try:
        return np.asarray(value)
    except (TypeError, ValueError) as error:
        raise TypeError(f"`{name}` must be an array or a tensor, got {type(value).__name__}.") from error


__all__ = ["contact_sheet", "render_pose", "render_pose_pair", "save_obj"]
