"""Pictures of SMPL poses: skeletons (and, given a body model, shaded meshes), pairs, contact sheets, OBJ.

Rendering uses matplotlib (the `demo` extra), imported inside the functions so that the rest of the
package never needs it. Figures are drawn off-screen on matplotlib's Agg canvas, never through `pyplot`, so
no global state or window backend is touched.

Every picture uses the same camera. The body's heading (its turn about the vertical axis) is undone so that
the camera looks at the front of an upright body, from a little above and from the body's left; a body
lying down or bent over is seen from the side instead, head to the left. The body's left limbs are drawn in
blue and its right limbs in red, the head as a circle with a tick for the nose, and a floor grid with the
skeleton's shadow lies under the lowest point of the body. A perspective camera makes near limbs larger,
which tells near from far where a line drawing would be ambiguous.
"""

from __future__ import annotations

import math
import os
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch
from PIL import Image

from .body_model import pose_to_joints
from .checks import check_positive_int
from .files import atomic_path, write_text_atomically
from .rotations import elementary_rotation, to_rotation_matrix
from .skeleton import BODY_JOINT_NAMES, BODY_PARENTS

PathLike = Union[str, os.PathLike]

# The camera, relative to the body once its heading is undone: turned this far (degrees) about the
# vertical from straight in front towards the body's left, raised this far above the horizon, and this far
# (metres) from the pelvis.
CAMERA_AZIMUTH_DEG = 40.0
CAMERA_ELEVATION_DEG = 15.0
CAMERA_DISTANCE = 4.0
# A body whose root's forward axis has a vertical component above this (face turned more than about 37
# degrees up or down, as when lying on the back or front or bent over) is seen from the side, head to the
# left, rather than from the front.
TILTED_FORWARD_COMPONENT = 0.6
# Half the side (metres at the pelvis) of the square that a picture shows, unless the body needs more: one
# scale for every picture, so that the poses on a contact sheet compare at a glance.
VIEW_HALF_SIZE = 1.05
VIEW_MARGIN = 0.08
DPI = 100

LEFT_COLOR = "#1f6fd1"
RIGHT_COLOR = "#d83a2e"
CENTRE_COLOR = "#3c3c3c"
FLOOR_COLOR = "#d9d9d9"
SHADOW_COLOR = "#bdbdbd"
MESH_COLOR = (0.80, 0.80, 0.84)

# The head: a circle this far (metres) above the head joint along the head's up axis, and a nose tick
# along its forward axis, which shows which way the face looks. Hands: a segment from the wrist along the
# hand's axis (the arms lie along +-x in SMPL's rest pose).
HEAD_CENTRE_OFFSET = 0.09
HEAD_RADIUS = 0.095
NOSE_LENGTH = 0.07
HAND_LENGTH = 0.09
# The floor sits this far (metres) below the lowest joint, about the thickness of the body there, and its
# grid lines lie FLOOR_SPACING apart and reach FLOOR_MARGIN beyond the body's footprint.
FLOOR_CLEARANCE = 0.03
FLOOR_SPACING = 0.25
FLOOR_MARGIN = 0.3
# Mesh shading: ambient light plus a light from the camera, a little from above and from the left.
AMBIENT_LIGHT = 0.35
LIGHT_DIRECTION = (-0.3, 0.5, 1.0)

_HEAD = BODY_JOINT_NAMES.index("head")
_WRISTS = (BODY_JOINT_NAMES.index("left_wrist"), BODY_JOINT_NAMES.index("right_wrist"))
_HAND_AXES = np.array([[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]])  # left and right hands in their wrists' frames
_JOINT_COLORS = tuple(
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


def rendering_available() -> bool:
    """Whether matplotlib, which rendering needs (the `demo` extra), can be imported."""
    try:
        _import_matplotlib()
    except ImportError:
        return False
    return True


# ---------------------------------------------------------------------------------------------------------
# Geometry: from poses to what the camera sees
# ---------------------------------------------------------------------------------------------------------


@dataclass
class _Scene:
    """One body as the camera sees it; every point is `(screen x, screen y, depth towards the viewer)`."""

    joints: np.ndarray  # (22, 3)
    hands: np.ndarray  # (2, 3): left and right hand tips
    head: np.ndarray  # (3,): centre of the head circle
    nose: np.ndarray  # (3,)
    shadow: np.ndarray  # (22, 3): the joints dropped onto the floor
    floor: np.ndarray  # (num_lines, 2, 3)
    vertices: Optional[np.ndarray] = None  # (num_vertices, 3)
    faces: Optional[np.ndarray] = None  # (num_faces, 3)

    def extent(self) -> tuple[float, float, float, float]:
        """Left, right, bottom and top of the body on the screen."""
        head = self.head[None, :2]
        points = [self.joints[:, :2], self.hands[:, :2], head - HEAD_RADIUS, head + HEAD_RADIUS]
        if self.vertices is not None:
            points.append(self.vertices[:, :2])
        points = np.concatenate(points)
        (left, bottom), (right, top) = points.min(axis=0), points.max(axis=0)
        return left, right, bottom, top

    def half_size(self) -> float:
        left, right, bottom, top = self.extent()
        return max(VIEW_HALF_SIZE, (right - left) / 2 + VIEW_MARGIN, (top - bottom) / 2 + VIEW_MARGIN)


def _rotation_about(axis: str, angle) -> np.ndarray:
    """Rotations `(..., 3, 3)` about a coordinate axis by `angle` radians `(...)`, in float64."""
    return elementary_rotation(torch.as_tensor(angle, dtype=torch.float64), axis).numpy()


def _view_heading(root: np.ndarray) -> np.ndarray:
    """
    The turn about the vertical `(B,)` (radians) that the camera undoes, from root rotations `(B, 3, 3)`.

    While the forward axis is near horizontal (upright bodies, bodies lying on a side): its heading, so that
    the camera sees the front. Bodies lying on the back or front or bent over: the heading that puts the up
    axis (the head) to the left of the picture, so that the camera sees the trunk's length rather than
    looking along it or down on it.
    """
    up, forward = root[:, :, 1], root[:, :, 2]
    facing = np.arctan2(forward[:, 0], forward[:, 2])
    head_left = np.arctan2(up[:, 0], up[:, 2]) + math.pi / 2 - math.radians(CAMERA_AZIMUTH_DEG)
    return np.where(np.abs(forward[:, 1]) <= TILTED_FORWARD_COMPONENT, facing, head_left)


def _camera_rotation() -> np.ndarray:
    """Rotation `(3, 3)` from the body's frame, heading undone, to the camera's (x right, y up, z to us)."""
    # Turn the body's left towards the viewer by the azimuth, then tilt the scene towards the viewer, which
    # shows it from above.
    tilt = _rotation_about("x", math.radians(CAMERA_ELEVATION_DEG))
    return tilt @ _rotation_about("y", -math.radians(CAMERA_AZIMUTH_DEG))


def _project(points: np.ndarray, camera: np.ndarray) -> np.ndarray:
    """Points `(..., 3)` (metres, pelvis at the origin) seen through a pinhole camera `(3, 3)`."""
    points = points @ camera.T
    scale = CAMERA_DISTANCE / (CAMERA_DISTANCE - points[..., 2:])
    return np.concatenate([points[..., :2] * scale, points[..., 2:]], axis=-1)


def _floor_lines(shadow: np.ndarray, height: float) -> np.ndarray:
    """Grid lines `(num_lines, 2, 3)` of a square of floor around the footprint `(N, 3)`."""
    low, high = shadow[:, [0, 2]].min(axis=0), shadow[:, [0, 2]].max(axis=0)
    centre_x, centre_z = (low + high) / 2
    half = FLOOR_SPACING * math.ceil((max(high - low) / 2 + FLOOR_MARGIN) / FLOOR_SPACING)
    lines = []
    for tick in np.arange(-half, half + 1e-9, FLOOR_SPACING):
        lines.append([[centre_x + tick, height, centre_z - half], [centre_x + tick, height, centre_z + half]])
        lines.append([[centre_x - half, height, centre_z + tick], [centre_x + half, height, centre_z + tick]])
    return np.array(lines)


def _read_rotations(poses: Any, name: str) -> np.ndarray:
    """Rotation matrices `(B, 22, 3, 3)` (float64) of poses in any format of the rotations module."""
    return to_rotation_matrix(poses, name=name).detach().double().cpu().numpy()


def _global_rotations(rotmats: np.ndarray) -> np.ndarray:
    """World rotations `(B, 22, 3, 3)` of the joints from local ones `(B, 22, 3, 3)`, down the tree."""
    world = np.empty_like(rotmats)
    for joint, parent in enumerate(BODY_PARENTS):
        world[:, joint] = rotmats[:, joint] if parent < 0 else world[:, parent] @ rotmats[:, joint]
    return world


def _scenes(
    poses: Any, name: str, body_model=None, heading_from: Optional[np.ndarray] = None
) -> list[_Scene]:
    """
    Scenes of a batch of poses.

    `body_model` is a `BodyModel` (mesh drawn), a `BodyJoints` (its skeleton) or None (the generated body's
    skeleton). `heading_from`, a root rotation `(3, 3)`, makes every scene use that root's heading.
    """
    rotmats = _read_rotations(poses, name)
    vertices = faces = None
    if body_model is not None and hasattr(body_model, "faces"):
        with torch.no_grad():
            output = body_model(rotmats)
        joints = output.joints.double().cpu().numpy()
        vertices = output.vertices.double().cpu().numpy() - joints[:, :1]
        faces = output.faces.cpu().numpy()
    else:
        joints = np.asarray(pose_to_joints(rotmats, body=body_model), dtype=np.float64)
    joints = joints - joints[:, :1]  # pelvis at the origin

    world = _global_rotations(rotmats)
    head_centre = joints[:, _HEAD] + HEAD_CENTRE_OFFSET * world[:, _HEAD, :, 1]
    nose = head_centre + (HEAD_RADIUS + NOSE_LENGTH) * world[:, _HEAD, :, 2]
    hands = joints[:, _WRISTS] + HAND_LENGTH * np.einsum("bhij,hj->bhi", world[:, _WRISTS], _HAND_AXES)

    # Undo the heading first, so that everything built below (the floor grid too) turns with the body.
    root = rotmats[:, 0] if heading_from is None else np.broadcast_to(heading_from, rotmats[:, 0].shape)
    facing = _rotation_about("y", -_view_heading(root))  # (B, 3, 3)
    joints, hands, head_centre, nose = (
        np.einsum("bij,b...j->b...i", facing, points) for points in (joints, hands, head_centre, nose)
    )
    if vertices is not None:
        vertices = np.einsum("bij,bvj->bvi", facing, vertices)

    camera = _camera_rotation()
    scenes = []
    for index in range(len(rotmats)):
        if vertices is not None:
            floor_height = vertices[index, :, 1].min()  # the skin touches the floor
        else:  # joints lie inside the body, a little above the skin that touches the floor
            lowest = min(joints[index, :, 1].min(), hands[index, :, 1].min())
            lowest = min(lowest, head_centre[index, 1] - HEAD_RADIUS)
            floor_height = lowest - FLOOR_CLEARANCE
        shadow = joints[index].copy()
        shadow[:, 1] = floor_height
        scenes.append(
            _Scene(
                joints=_project(joints[index], camera),
                hands=_project(hands[index], camera),
                head=_project(head_centre[index], camera),
                nose=_project(nose[index], camera),
                shadow=_project(shadow, camera),
                floor=_project(_floor_lines(shadow, floor_height), camera),
                vertices=None if vertices is None else _project(vertices[index], camera),
                faces=faces,
            )
        )
    return scenes


# ---------------------------------------------------------------------------------------------------------
# Drawing
# ---------------------------------------------------------------------------------------------------------


def _draw_mesh(ax, scene: _Scene) -> None:
    _, _, _, PolyCollection, _ = _import_matplotlib()
    triangles = scene.vertices[scene.faces]  # (F, 3, 3)
    normals = np.cross(triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 0])
    normals /= np.maximum(np.linalg.norm(normals, axis=-1, keepdims=True), 1e-12)
    light = np.asarray(LIGHT_DIRECTION) / np.linalg.norm(LIGHT_DIRECTION)
    # Both sides of a triangle are lit alike, so that a mesh with either winding shades the same.
    shade = AMBIENT_LIGHT + (1.0 - AMBIENT_LIGHT) * np.abs(normals @ light)
    order = np.argsort(triangles[..., 2].mean(axis=1))  # painter's algorithm: far to near
    colors = np.clip(shade[order, None] * np.asarray(MESH_COLOR), 0.0, 1.0)
    # Edges in the face colour close the hairline gaps that anti-aliasing leaves between triangles.
    polygons = triangles[order, :, :2]
    mesh = PolyCollection(polygons, facecolors=colors, edgecolors=colors, linewidths=0.2, zorder=2)
    ax.add_collection(mesh)


def _draw(ax, scene: _Scene, half_size: float) -> None:
    """Draw a scene on a matplotlib axes showing a square of `2 * half_size` around the body."""
    _, _, LineCollection, _, Circle = _import_matplotlib()
    ax.set_axis_off()
    ax.set_aspect("equal")
    ax.add_collection(LineCollection(scene.floor[..., :2], colors=FLOOR_COLOR, linewidths=0.8, zorder=0))
    shadow = [scene.shadow[[parent, child], :2] for parent, child in _BONES]
    ax.add_collection(LineCollection(shadow, colors=SHADOW_COLOR, linewidths=3.0, capstyle="round", zorder=1))
    if scene.vertices is not None:
        _draw_mesh(ax, scene)

    # Bones far to near, nearer ones a little thicker, so that crossing limbs read in depth.
    bones = [scene.joints[[parent, child]] for parent, child in _BONES]
    bones += [np.stack([scene.joints[wrist], hand]) for wrist, hand in zip(_WRISTS, scene.hands)]
    colors = [_JOINT_COLORS[child] for _, child in _BONES] + [_JOINT_COLORS[wrist] for wrist in _WRISTS]
    depth = np.array([bone[:, 2].mean() for bone in bones])
    order = np.argsort(depth)
    nearness = (depth[order] - depth.min()) / max(np.ptp(depth), 1e-6)
    width = (1.6 if scene.vertices is not None else 2.6) + 1.2 * nearness
    ax.add_collection(
        LineCollection(
            np.array(bones)[order, :, :2],
            colors=[colors[i] for i in order],
            linewidths=width,
            capstyle="round",
            zorder=3,
        )
    )
    ax.scatter(scene.joints[:, 0], scene.joints[:, 1], s=7, c=list(_JOINT_COLORS), linewidths=0, zorder=4)
    if scene.vertices is None:  # a mesh shows the head itself
        outline = {"edgecolor": CENTRE_COLOR, "linewidth": 1.6, "zorder": 5}
        ax.add_patch(Circle(scene.head[:2], HEAD_RADIUS, facecolor="white", **outline))
        nose = np.stack([scene.head[:2], scene.nose[:2]], axis=1)
        ax.plot(*nose, color=CENTRE_COLOR, linewidth=1.6, zorder=5)

    left, right, bottom, top = scene.extent()
    centre_x, centre_y = (left + right) / 2, (bottom + top) / 2
    ax.set_xlim(centre_x - half_size, centre_x + half_size)
    ax.set_ylim(centre_y - half_size, centre_y + half_size)


def _new_figure(width: int, height: int):
    Figure, FigureCanvasAgg, *_ = _import_matplotlib()
    figure = Figure(figsize=(width / DPI, height / DPI), dpi=DPI, facecolor="white")
    FigureCanvasAgg(figure)
    return figure


def _to_image(figure, size: tuple[int, int], path: Optional[PathLike]):
    """The drawn figure as a PIL image of exactly `size`, also written to `path` as PNG when given."""
    figure.canvas.draw()
    image = Image.fromarray(np.asarray(figure.canvas.buffer_rgba())[..., :3].copy())
    if image.size != size:  # figsize * dpi can round a pixel away
        image = image.resize(size, Image.Resampling.LANCZOS)
    if path is not None:
        with atomic_path(path) as temporary:
            image.save(temporary, format="PNG")
    return image


def _check_pixels(size: Any, name: str) -> tuple[int, int]:
    if (
        not isinstance(size, (tuple, list))
        or len(size) != 2
        or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 16 for v in size)
    ):
        raise ValueError(f"`{name}` must be (width, height) in pixels, two integers >= 16, got {size!r}.")
    return int(size[0]), int(size[1])


def _single(scenes: list[_Scene], name: str) -> _Scene:
    if len(scenes) != 1:
        raise ValueError(f"`{name}` must be one pose, got a batch of {len(scenes)}.")
    return scenes[0]


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
    Render one pose seen from the front: a skeleton, over a shaded mesh when `body_model` is a `BodyModel`.

    Args:
        pose (array, tensor or nested lists):
            One SMPL pose in any format of `unipose.rotations.to_rotation_matrix`: axis-angle `(66,)` or
            `(22, 3)`, rotation matrices `(22, 3, 3)` or 6D `(22, 6)`, optionally with a batch axis of 1.
        path (`str` or `os.PathLike`, *optional*):
            Where to write the picture as PNG (atomically).
        title (`str`, *optional*):
            A line of text above the body.
        body_model (`BodyModel` or `BodyJoints`, *optional*):
            A [`~unipose.body_model.BodyModel`] draws its mesh under the skeleton; a
            [`~unipose.body_model.BodyJoints`] gives the skeleton's joints. Defaults to the skeleton of the
            generated stand-in body.
        size (`tuple[int, int]`, *optional*, defaults to `(400, 400)`):
            Width and height in pixels.

    Returns:
        `PIL.Image.Image`: the RGB picture, of the given size.

    Example:

    ```python
    >>> from unipose.pose_sampler import sample_poses
    >>> render_pose(sample_poses(1, seed=3), title="a sampled pose").size
    (400, 400)
    ```
    """
    width, height = _check_pixels(size, "size")
    scene = _single(_scenes(pose, "pose", body_model), "pose")
    figure = _new_figure(width, height)
    title_height = 24 / height if title else 0.0  # pixels of one line of text
    _draw(figure.add_axes((0.0, 0.0, 1.0, 1.0 - title_height)), scene, scene.half_size())
    if title:
        figure.text(0.5, 1.0 - title_height / 2, title, ha="center", va="center", fontsize=11)
    return _to_image(figure, (width, height), path)


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
    Render two poses side by side, A -> B, both seen from the camera of pose A so that a turn shows.

    Args:
        pose_a, pose_b (array, tensor or nested lists):
            One pose each, in any format accepted by [`render_pose`].
        path (`str` or `os.PathLike`, *optional*):
            Where to write the picture as PNG (atomically).
        title (`str`, *optional*):
            Text above both panels, e.g. the instruction that turns A into B; wrapped to the width.
        captions (`Sequence[str]`, *optional*, defaults to `("A", "B")`):
            Labels under the two panels.
        body_model (`BodyModel` or `BodyJoints`, *optional*):
            As in [`render_pose`].
        size (`tuple[int, int]`, *optional*, defaults to `(720, 400)`):
            Width and height in pixels.

    Returns:
        `PIL.Image.Image`: the RGB picture, of the given size.
    """
    width, height = _check_pixels(size, "size")
    if isinstance(captions, str) or len(captions) != 2:
        raise ValueError(f"`captions` must be two strings, for A and B, got {captions!r}.")
    root_a = _read_rotations(pose_a, "pose_a")
    if root_a.shape[0] != 1:
        raise ValueError(f"`pose_a` must be one pose, got a batch of {root_a.shape[0]}.")
    scene_a = _single(_scenes(pose_a, "pose_a", body_model), "pose_a")
    scene_b = _single(_scenes(pose_b, "pose_b", body_model, heading_from=root_a[0, 0]), "pose_b")
    half_size = max(scene_a.half_size(), scene_b.half_size())  # one scale, so that the bodies compare

    figure = _new_figure(width, height)
    line_height = 18 / height
    title_lines = textwrap.wrap(title, max(20, width // 8)) if title else []
    caption_height, top = 1.5 * line_height, 1.0 - line_height * (len(title_lines) + 0.5 * bool(title_lines))
    panel_width, arrow_width = 0.45, 0.10
    for index, (scene, caption) in enumerate(zip((scene_a, scene_b), captions)):
        left = index * (panel_width + arrow_width)
        _draw(figure.add_axes((left, caption_height, panel_width, top - caption_height)), scene, half_size)
        x, y = left + panel_width / 2, caption_height / 2
        figure.text(x, y, str(caption), ha="center", va="center", fontsize=11)
    arrow_y = (top + caption_height) / 2
    figure.text(0.5, arrow_y, "\u2192", ha="center", va="center", fontsize=28, color=CENTRE_COLOR)
    if title_lines:
        figure.text(0.5, (1.0 + top) / 2, "\n".join(title_lines), ha="center", va="center", fontsize=10)
    return _to_image(figure, (width, height), path)


def contact_sheet(
    poses: Any,
    captions: Optional[Sequence[str]] = None,
    path: Optional[PathLike] = None,
    columns: int = 8,
    cell_size: tuple[int, int] = (200, 230),
    body_model=None,
):
    """
    Render many poses on one grid, each with an optional caption wrapped to the cell's width.

    Every cell uses the same scale (unless a body needs more room), so that sizes compare across the sheet.

    Args:
        poses (array, tensor or nested lists):
            A batch of poses in any format of `unipose.rotations.to_rotation_matrix`, e.g. axis-angle
            `(N, 22, 3)`.
        captions (`Sequence[str]`, *optional*):
            One caption per pose (at most three lines are shown).
        path (`str` or `os.PathLike`, *optional*):
            Where to write the sheet as PNG (atomically).
        columns (`int`, *optional*, defaults to 8):
            Cells per row (fewer when there are fewer poses).
        cell_size (`tuple[int, int]`, *optional*, defaults to `(200, 230)`):
            Width and height of one cell in pixels.
        body_model (`BodyModel` or `BodyJoints`, *optional*):
            As in [`render_pose`].

    Returns:
        `PIL.Image.Image`: the RGB sheet, `min(columns, N) * cell_width` wide and `ceil(N / columns)` cells
        high.
    """
    cell_width, cell_height = _check_pixels(cell_size, "cell_size")
    check_positive_int(columns, "columns")
    scenes = _scenes(poses, "poses", body_model)
    if captions is not None and (isinstance(captions, str) or len(captions) != len(scenes)):
        got = "a single string" if isinstance(captions, str) else f"{len(captions)} captions"
        raise ValueError(f"`captions` must hold one string per pose ({len(scenes)}), got {got}.")
    columns = min(int(columns), len(scenes))
    rows = math.ceil(len(scenes) / columns)
    figure = _new_figure(columns * cell_width, rows * cell_height)
    # Room for three lines of 8-point text under each body, and about how many characters fit in a line.
    caption_height = 0.0 if captions is None else min(0.3, 42 / cell_height)
    characters_per_line = max(10, cell_width // 6)
    for index, scene in enumerate(scenes):
        row, column = divmod(index, columns)
        left, bottom = column / columns, 1.0 - (row + 1) / rows
        box = (left, bottom + caption_height / rows, 1.0 / columns, (1.0 - caption_height) / rows)
        _draw(figure.add_axes(box), scene, scene.half_size())
        if captions is not None:
            text = "\n".join(textwrap.wrap(str(captions[index]), characters_per_line)[:3])
            x, y = left + 0.5 / columns, bottom + 0.5 * caption_height / rows
            figure.text(x, y, text, ha="center", va="center", fontsize=8, linespacing=1.1)
    return _to_image(figure, (columns * cell_width, rows * cell_height), path)


def save_obj(vertices: Any, faces: Any, path: PathLike) -> Path:
    """
    Write a triangle mesh as a Wavefront OBJ file, atomically: a `v x y z` line per vertex, then an
    `f i j k` line per face with 1-based indices.

    Args:
        vertices (array or tensor of shape `(num_vertices, 3)`): positions, finite.
        faces (array or tensor of shape `(num_faces, 3)`): 0-based integer vertex indices.
        path (`str` or `os.PathLike`): the file to write.

    Returns:
        `pathlib.Path`: the file written.
    """
    vertices, faces = _as_array(vertices, "vertices"), _as_array(faces, "faces")
    if vertices.ndim != 2 or vertices.shape[1] != 3 or not np.issubdtype(vertices.dtype, np.number):
        raise ValueError(
            f"`vertices` must be numbers of shape (num_vertices, 3), got {vertices.dtype} of shape "
            f"{vertices.shape}."
        )
    if not np.isfinite(vertices).all():
        raise ValueError("`vertices` contains NaN or infinite values.")
    if faces.ndim != 2 or faces.shape[1] != 3 or not np.issubdtype(faces.dtype, np.integer):
        raise ValueError(
            f"`faces` must be integers of shape (num_faces, 3), got {faces.dtype} of shape {faces.shape}."
        )
    if faces.size and (faces.min() < 0 or faces.max() >= len(vertices)):
        raise ValueError(
            f"`faces` must index the {len(vertices)} vertices (0 to {len(vertices) - 1}), got indices from "
            f"{faces.min()} to {faces.max()}."
        )
    lines = [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in vertices.tolist()]
    lines += [f"f {i} {j} {k}" for i, j, k in (faces.astype(np.int64) + 1).tolist()]
    path = Path(path)
    write_text_atomically(path, "\n".join(lines) + "\n")
    return path


def _as_array(value: Any, name: str) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu().numpy()
    if not isinstance(value, (np.ndarray, list, tuple)):
        raise TypeError(f"`{name}` must be an array, a tensor or nested lists, got {type(value).__name__}.")
    return np.asarray(value)


__all__ = ["contact_sheet", "render_pose", "render_pose_pair", "rendering_available", "save_obj"]
