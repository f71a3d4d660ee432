"""
Images of posed bodies: a small software renderer for the synthetic image corpora.

The body mesh (the SMPL-H topology; by default the generated stand-in of `unipose.body_model`) is posed by
`smplx`, seen through a perspective camera, and rasterised with a z-buffer in NumPy:

1. posing: [`~unipose.body_model.BodyModel`] (smplx's SMPL-H layer) poses the mesh by the 22 body joints, the
   hands flat;
2. camera: an orbit around the body (yaw about the vertical, pitch from above or below), a field of view,
   and a framing that fits the body into a jittered share of the image;
3. rasterisation ([`rasterize`]): back faces culled, each front triangle tested against the pixel centres
   of its bounding box, all triangles of similar size at once, nearest fragment kept per pixel;
4. shading: Gouraud-interpolated Lambert light from a random direction on the camera's side, one flat
   colour per body part, a dark outline where a part occludes another part or the background.

Left and right are told apart by colour, the same way in every image: left limbs are drawn in blues and
right limbs in reds/oranges (hue ranges `LEFT_HUE_RANGE_DEG` / `RIGHT_HUE_RANGE_DEG`), the torso in a
neutral colour, the head with a skin-coloured face and hair on the back and top, which shows which way the
body faces. Everything an image varies by (camera, light, body shape, colours, background) is a [`Scene`],
drawn by [`sample_scenes`] from a NumPy generator, so a corpus is reproducible from its seed.

Example:

```python
>>> import numpy as np
>>> from unipose.data.rendering import BodyRenderer, sample_scenes
>>> renderer = BodyRenderer()  # the generated body model
>>> poses = np.zeros((2, 22, 3), dtype=np.float32)
>>> images = renderer.render(poses, sample_scenes(2, np.random.default_rng(0)))
>>> images.shape, images.dtype
((2, 336, 336, 3), dtype('uint8'))
```
"""

from __future__ import annotations

import colorsys
import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from PIL import Image

from ..body_model import BodyModel
from ..rotations import to_rotation_matrix
from ..skeleton import BODY_JOINT_NAMES, NUM_BODY_JOINTS, SMPLH_PARENTS

# The CLIP ViT-L/14 tower reads 336 x 336 images; the pose ViT's processor resizes and crops from there.
IMAGE_SIZE = 336

# ---------------------------------------------------------------------------------------------------------
# Body parts and materials
# ---------------------------------------------------------------------------------------------------------

# Parts are what outlines separate; every body joint's skinning region belongs to one of them.
PARTS = (
    "torso",
    "head",
    "left_upper_arm",
    "left_forearm",
    "left_hand",
    "left_thigh",
    "left_shank",
    "left_foot",
    "right_upper_arm",
    "right_forearm",
    "right_hand",
    "right_thigh",
    "right_shank",
    "right_foot",
)
_SEGMENT_OF_JOINT = {
    "pelvis": "torso",
    "spine1": "torso",
    "spine2": "torso",
    "spine3": "torso",
    "neck": "torso",  # the neck wears the torso's colour, like a collar
    "collar": "torso",
    "head": "head",
    "shoulder": "upper_arm",
    "elbow": "forearm",
    "wrist": "hand",
    "hip": "thigh",
    "knee": "shank",
    "ankle": "foot",
    "foot": "foot",
}


def _part_of_joint(name: str) -> str:
    for side in ("left", "right"):
        if name.startswith(side + "_"):
            segment = _SEGMENT_OF_JOINT[name[len(side) + 1 :]]
            return segment if segment == "torso" else f"{side}_{segment}"
    return _SEGMENT_OF_JOINT[name]


PART_OF_JOINT = tuple(PARTS.index(_part_of_joint(name)) for name in BODY_JOINT_NAMES)

# Materials are what colours differ by: the parts, with the head split into face and hair.
MATERIALS = ("torso", "skin", "hair") + PARTS[2:]
_MATERIAL_OF_PART = np.array([MATERIALS.index("skin" if part == "head" else part) for part in PARTS])
HAIR = MATERIALS.index("hair")

# Hair covers the head above this height and behind this depth, both as fractions of the head's half
# extents from its centre in the rest pose; the rest, facing forward, is the face.
HAIR_ABOVE = 0.35
HAIR_BEHIND = -0.15

# Limb colours: a hue per side, the same in every image, with saturation and value drawn per image. The
# segments of a limb are told apart by brightness.
LEFT_HUE_RANGE_DEG = (200.0, 232.0)  # blues
RIGHT_HUE_RANGE_DEG = (-10.0, 22.0)  # reds and oranges
LIMB_SATURATION_RANGE = (0.55, 0.85)
LIMB_VALUE_RANGE = (0.7, 0.95)
SEGMENT_BRIGHTNESS = {
    "upper_arm": 1.0,
    "forearm": 0.85,
    "hand": 0.7,
    "thigh": 1.0,
    "shank": 0.85,
    "foot": 0.7,
}
# The torso stays clear of both limb hues: greys, or yellows and greens.
TORSO_NEUTRAL_SATURATION = (0.0, 0.15)
TORSO_HUE_RANGE_DEG = (45.0, 160.0)
TORSO_SATURATION_RANGE = (0.3, 0.6)
TORSO_VALUE_RANGE = (0.55, 0.95)
SKIN_TONES = (
    (0.96, 0.80, 0.69),
    (0.89, 0.69, 0.55),
    (0.78, 0.57, 0.42),
    (0.55, 0.38, 0.26),
    (0.36, 0.24, 0.17),
)
HAIR_COLORS = (
    (0.08, 0.06, 0.05),
    (0.27, 0.16, 0.09),
    (0.55, 0.40, 0.22),
    (0.85, 0.72, 0.45),
    (0.6, 0.6, 0.6),
)
COLOR_JITTER = 0.04

# Reference colours of [`frontal_scene`], for checks that look for a side's colour in an image.
REFERENCE_COLORS = {
    "torso": (0.75, 0.75, 0.7),
    "skin": SKIN_TONES[1],
    "hair": HAIR_COLORS[1],
    "left": (0.2, 0.45, 0.9),
    "right": (0.9, 0.3, 0.15),
}

# The light's direction (camera axes: x right, y down, z away from the camera) before normalisation: from
# either side, mostly from above, always from the camera's side of the body.
LIGHT_SIDEWAYS = (-1.0, 1.0)
LIGHT_DOWNWARDS = (-1.0, 0.3)
LIGHT_TOWARDS_CAMERA = (0.6, 1.4)

# The camera's "up" is the world's: it may not look straight down or up. Wider views distort too much.
MAX_PITCH_DEG = 80.0
MAX_FOV_DEG = 120.0

# Outlines darken the pixels on the near side of a part boundary to this fraction of their colour.
OUTLINE_SHADE = 0.35
BACKGROUNDS = ("solid", "gradient", "noise")
# Backgrounds are dark or light (HSV value ranges), never mid-toned like the body.
DARK_BACKGROUND_PROBABILITY = 0.4
DARK_BACKGROUND_VALUE = (0.03, 0.25)
LIGHT_BACKGROUND_VALUE = (0.7, 1.0)
BACKGROUND_SATURATION = (0.0, 0.45)
# "noise" backgrounds: smooth blobs from a coarse grid of this many cells per side, plus fine grain.
NOISE_GRID_RANGE = (3, 9)
NOISE_AMPLITUDE_RANGE = (0.08, 0.25)
GRAIN_AMPLITUDE = 0.03


# ---------------------------------------------------------------------------------------------------------
# Scenes: everything an image varies by
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RenderSettings:
    """
    The ranges [`sample_scenes`] draws from.

    Args:
        yaw_range_deg (`tuple[float, float]`, defaults to `(-180, 180)`):
            Camera azimuth about the vertical axis; 0 looks at the body's front in the rest pose (from +z).
        pitch_range_deg (`tuple[float, float]`, defaults to `(-10, 35)`):
            Camera elevation; positive looks down from above.
        fov_range_deg (`tuple[float, float]`, defaults to `(25, 55)`):
            Vertical field of view, i.e. how strong the perspective is.
        fill_range (`tuple[float, float]`, defaults to `(0.6, 0.92)`):
            Share of the image's side that the body's larger extent spans.
        offset_fraction (`float`, defaults to 0.8):
            How much of the free margin the body's centre may be shifted by, in each direction.
        ambient_range (`tuple[float, float]`, defaults to `(0.4, 0.6)`):
            Share of the light that does not depend on the surface's direction.
        background_weights (`tuple[float, float, float]`, defaults to `(1, 1, 1)`):
            Relative frequencies of `BACKGROUNDS` ("solid", "gradient", "noise").
        shape_std (`float`, defaults to 0.8):
            Standard deviation of the body-shape coefficients.
        num_shape_coefficients (`int`, defaults to 3):
            How many shape coefficients vary (the generated body has three: stature, limb length, girth).
        max_shape (`float`, defaults to 2.0):
            Shape coefficients are clipped to `[-max_shape, max_shape]`.
    """

    yaw_range_deg: tuple[float, float] = (-180.0, 180.0)
    pitch_range_deg: tuple[float, float] = (-10.0, 35.0)
    fov_range_deg: tuple[float, float] = (25.0, 55.0)
    fill_range: tuple[float, float] = (0.6, 0.92)
    offset_fraction: float = 0.8
    ambient_range: tuple[float, float] = (0.4, 0.6)
    background_weights: tuple[float, float, float] = (1.0, 1.0, 1.0)
    shape_std: float = 0.8
    num_shape_coefficients: int = 3
    max_shape: float = 2.0

    def __post_init__(self):
        limits = {
            "yaw_range_deg": (-math.inf, math.inf),
            "pitch_range_deg": (-MAX_PITCH_DEG, MAX_PITCH_DEG),
            "fov_range_deg": (0.0, MAX_FOV_DEG),
            "fill_range": (0.0, 1.0),
            "ambient_range": (0.0, 1.0),
        }
        for name, (lowest, highest) in limits.items():
            low, high = getattr(self, name)
            if not lowest <= low <= high <= highest:
                raise ValueError(
                    f"`{name}` must be a range (low, high) with {lowest} <= low <= high <= {highest}, "
                    f"got {(low, high)}."
                )
        if self.fov_range_deg[0] == 0.0 or self.fill_range[0] == 0.0:
            raise ValueError(
                f"`fov_range_deg` and `fill_range` must start above 0, got {self.fov_range_deg} and "
                f"{self.fill_range}."
            )
        if len(self.background_weights) != len(BACKGROUNDS) or min(self.background_weights) < 0:
            raise ValueError(
                f"`background_weights` must hold {len(BACKGROUNDS)} non-negative weights for {BACKGROUNDS}, "
                f"got {self.background_weights}."
            )


@dataclass(frozen=True)
class Scene:
    """
    One image's camera, light, body shape, colours and background.

    Args:
        yaw_deg (`float`): camera azimuth about the vertical (0: in front of the rest pose, on +z).
        pitch_deg (`float`): camera elevation (positive: from above).
        fov_deg (`float`): vertical field of view.
        fill (`float`): share of the image side that the body's larger extent spans.
        offset (`tuple[float, float]`): shift of the body's centre, in fractions of the image (x right,
            y down).
        light (`tuple[float, float, float]`): unit direction towards the light, in camera axes (x right,
            y down, z away from the camera).
        ambient (`float`): share of the light that reaches every surface.
        colors (`tuple` of `len(MATERIALS)` RGB triples in `[0, 1]`): one colour per material.
        background (`str`): one of `BACKGROUNDS`.
        background_colors (`tuple` of two RGB triples): the background's colour(s).
        background_seed (`int`): seed of the background's texture ("noise") and direction ("gradient").
        betas (`tuple[float, ...]`): body-shape coefficients (zeros beyond those given).
    """

    yaw_deg: float = 0.0
    pitch_deg: float = 0.0
    fov_deg: float = 40.0
    fill: float = 0.85
    offset: tuple[float, float] = (0.0, 0.0)
    light: tuple[float, float, float] = (0.0, 0.0, -1.0)
    ambient: float = 0.45
    colors: tuple[tuple[float, float, float], ...] = field(default_factory=lambda: _reference_colors())
    background: str = "solid"
    background_colors: tuple[tuple[float, float, float], ...] = ((1.0, 1.0, 1.0), (1.0, 1.0, 1.0))
    background_seed: int = 0
    betas: tuple[float, ...] = ()

    def __post_init__(self):
        if self.background not in BACKGROUNDS:
            raise ValueError(f"`background` must be one of {BACKGROUNDS}, got {self.background!r}.")
        if len(self.colors) != len(MATERIALS):
            raise ValueError(
                f"`colors` must hold one RGB triple per material {MATERIALS}, got {len(self.colors)}."
            )
        if not 0.0 < self.fov_deg <= MAX_FOV_DEG:
            raise ValueError(f"`fov_deg` must lie in (0, {MAX_FOV_DEG}], got {self.fov_deg}.")
        if not -MAX_PITCH_DEG <= self.pitch_deg <= MAX_PITCH_DEG:
            raise ValueError(
                f"`pitch_deg` must lie in [-{MAX_PITCH_DEG}, {MAX_PITCH_DEG}], got {self.pitch_deg}."
            )
        if not 0.0 < self.fill <= 1.0:
            raise ValueError(f"`fill` must lie in (0, 1], got {self.fill}.")


def _reference_colors() -> tuple[tuple[float, float, float], ...]:
    colors = []
    for material in MATERIALS:
        if material.startswith(("left_", "right_")):
            side, segment = material.split("_", 1)
            colors.append(tuple(c * SEGMENT_BRIGHTNESS[segment] for c in REFERENCE_COLORS[side]))
        else:
            colors.append(REFERENCE_COLORS[material])
    return tuple(colors)


def frontal_scene(**overrides) -> Scene:
    """
    A plain scene: the camera in front of the rest pose at the body's height, light from the camera, the
    reference colours (`REFERENCE_COLORS`) on a white background. Keyword arguments replace fields.
    """
    return replace(Scene(), **overrides)


def _hsv(hue_deg: float, saturation: float, value: float) -> tuple[float, float, float]:
    return colorsys.hsv_to_rgb((hue_deg / 360.0) % 1.0, saturation, value)


def _jitter(color, rng: np.random.Generator) -> tuple[float, float, float]:
    return tuple(
        float(c) for c in np.clip(np.asarray(color) + rng.uniform(-COLOR_JITTER, COLOR_JITTER, 3), 0, 1)
    )


def _sample_colors(rng: np.random.Generator) -> tuple[tuple[float, float, float], ...]:
    if rng.random() < 0.5:
        torso = _hsv(
            rng.uniform(0, 360), rng.uniform(*TORSO_NEUTRAL_SATURATION), rng.uniform(*TORSO_VALUE_RANGE)
        )
    else:
        torso = _hsv(
            rng.uniform(*TORSO_HUE_RANGE_DEG),
            rng.uniform(*TORSO_SATURATION_RANGE),
            rng.uniform(*TORSO_VALUE_RANGE),
        )
    skin = _jitter(SKIN_TONES[rng.integers(len(SKIN_TONES))], rng)
    hair = _jitter(HAIR_COLORS[rng.integers(len(HAIR_COLORS))], rng)
    sides = {}
    for side, hues in (("left", LEFT_HUE_RANGE_DEG), ("right", RIGHT_HUE_RANGE_DEG)):
        sides[side] = (
            rng.uniform(*hues),
            rng.uniform(*LIMB_SATURATION_RANGE),
            rng.uniform(*LIMB_VALUE_RANGE),
        )
    colors = {"torso": torso, "skin": skin, "hair": hair}
    for material in MATERIALS[3:]:
        side, segment = material.split("_", 1)
        hue, saturation, value = sides[side]
        colors[material] = _hsv(hue, saturation, value * SEGMENT_BRIGHTNESS[segment])
    return tuple(tuple(float(c) for c in colors[m]) for m in MATERIALS)


def _sample_background_colors(rng: np.random.Generator) -> tuple[tuple[float, float, float], ...]:
    # Backgrounds are either dark or light, so that the mid-toned body stands out from them.
    dark = rng.random() < DARK_BACKGROUND_PROBABILITY
    colors = []
    for _ in range(2):
        value = rng.uniform(*DARK_BACKGROUND_VALUE) if dark else rng.uniform(*LIGHT_BACKGROUND_VALUE)
        colors.append(_hsv(rng.uniform(0, 360), rng.uniform(*BACKGROUND_SATURATION), value))
    return tuple(tuple(float(c) for c in color) for color in colors)


def sample_scenes(
    num_scenes: int, rng: np.random.Generator | int, settings: RenderSettings | None = None
) -> list[Scene]:
    """
    Draw random scenes.

    Args:
        num_scenes (`int`): how many.
        rng (`np.random.Generator` or `int`): the generator to draw from (it advances), or a seed.
        settings ([`RenderSettings`], *optional*): the ranges; the defaults when omitted.

    Returns:
        `list[Scene]` of length `num_scenes`.
    """
    if isinstance(num_scenes, bool) or not isinstance(num_scenes, (int, np.integer)) or num_scenes < 0:
        raise ValueError(f"`num_scenes` must be a non-negative integer, got {num_scenes!r}.")
    if not isinstance(rng, np.random.Generator):
        rng = np.random.default_rng(rng)
    settings = RenderSettings() if settings is None else settings
    background_p = np.asarray(settings.background_weights, dtype=np.float64)
    background_p = background_p / background_p.sum()
    scenes = []
    for _ in range(int(num_scenes)):
        fill = rng.uniform(*settings.fill_range)
        margin = (1.0 - fill) / 2 * settings.offset_fraction
        light = np.array(
            [rng.uniform(*LIGHT_SIDEWAYS), rng.uniform(*LIGHT_DOWNWARDS), -rng.uniform(*LIGHT_TOWARDS_CAMERA)]
        )
        betas = rng.normal(0.0, settings.shape_std, settings.num_shape_coefficients)
        betas = np.clip(betas, -settings.max_shape, settings.max_shape)
        scenes.append(
            Scene(
                yaw_deg=float(rng.uniform(*settings.yaw_range_deg)),
                pitch_deg=float(rng.uniform(*settings.pitch_range_deg)),
                fov_deg=float(rng.uniform(*settings.fov_range_deg)),
                fill=float(fill),
                offset=(float(rng.uniform(-margin, margin)), float(rng.uniform(-margin, margin))),
                light=tuple(float(c) for c in light / np.linalg.norm(light)),
                ambient=float(rng.uniform(*settings.ambient_range)),
                colors=_sample_colors(rng),
                background=BACKGROUNDS[rng.choice(len(BACKGROUNDS), p=background_p)],
                background_colors=_sample_background_colors(rng),
                background_seed=int(rng.integers(2**31)),
                betas=tuple(float(b) for b in betas),
            )
        )
    return scenes


# ---------------------------------------------------------------------------------------------------------
# Rasterisation
# ---------------------------------------------------------------------------------------------------------


@dataclass
class Fragments:
    """
    The visible surface point of every covered pixel.

    Args:
        pixels (`np.ndarray` of shape `(P,)`, int64): flat pixel indices `row * width + column`.
        faces (`np.ndarray` of shape `(P,)`, int64): the triangle seen at each pixel.
        barycentric (`np.ndarray` of shape `(P, 3)`, float32): the pixel centre's barycentric coordinates
            in that triangle (screen space).
        inverse_depth (`np.ndarray` of shape `(P,)`, float32): `1 / depth` of the surface at the pixel.
    """

    pixels: np.ndarray
    faces: np.ndarray
    barycentric: np.ndarray
    inverse_depth: np.ndarray


# Triangles are rasterised in groups whose bounding boxes fit in `size x size` pixels, `size` from here.
_BOX_SIZES = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)
# Barycentric slack, so that a pixel centre on an edge shared by two triangles is never missed by both.
_EDGE_EPSILON = 1e-5


def _barycentric(
    x: np.ndarray, y: np.ndarray, centre_x: np.ndarray, centre_y: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """
    Barycentric coordinates of points in triangles.

    Args:
        x, y (`np.ndarray` of shape `(n, 3)`): the triangles' corners.
        centre_x, centre_y (`np.ndarray` of shape `(n, k)`): k points per triangle.

    Returns:
        Three `np.ndarray` of shape `(n, k)`, the weights of the three corners.
    """
    edge1_x, edge1_y = x[:, 1:2] - x[:, :1], y[:, 1:2] - y[:, :1]
    edge2_x, edge2_y = x[:, 2:] - x[:, :1], y[:, 2:] - y[:, :1]
    inverse_area = 1.0 / (edge1_x * edge2_y - edge1_y * edge2_x)  # of twice the signed area
    dx, dy = centre_x - x[:, :1], centre_y - y[:, :1]
    weight1 = (dx * edge2_y - dy * edge2_x) * inverse_area
    weight2 = (edge1_x * dy - edge1_y * dx) * inverse_area
    return 1.0 - weight1 - weight2, weight1, weight2


def rasterize(points: np.ndarray, faces: np.ndarray, height: int, width: int) -> Fragments:
    """
    Z-buffer rasterisation of triangles in screen space.

    Every triangle is tested against the pixel centres (`column + 0.5`, `row + 0.5`) inside its bounding
    box; the triangles are grouped by box size so that each group is one vectorised pass. The nearest
    fragment (largest inverse depth, which is linear in screen space) wins each pixel.

    Args:
        points (`np.ndarray` of shape `(V, 3)`):
            Screen positions: x (columns) and y (rows) in pixels, and inverse depth `1 / z` (positive).
        faces (`np.ndarray` of shape `(F, 3)`):
            Vertex indices of the triangles to draw (cull back faces before, if wanted).
        height (`int`), width (`int`): image size in pixels.

    Returns:
        [`Fragments`], one per covered pixel.
    """
    points = np.asarray(points, dtype=np.float32)
    faces = np.asarray(faces, dtype=np.int64)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"`points` must have shape (num_vertices, 3), got {points.shape}.")
    if faces.ndim != 2 or faces.shape[1] != 3:
        raise ValueError(f"`faces` must have shape (num_faces, 3), got {faces.shape}.")
    corners = points[faces]  # (F, 3 corners, 3)
    x, y, inverse_depth = corners[..., 0], corners[..., 1], corners[..., 2]
    area = (x[:, 1] - x[:, 0]) * (y[:, 2] - y[:, 0]) - (y[:, 1] - y[:, 0]) * (x[:, 2] - x[:, 0])
    # Pixel rows/columns whose centres can fall inside each triangle (element-wise over the three corners:
    # much faster than reductions along a length-3 axis).
    column_min = np.clip(np.ceil(np.minimum(np.minimum(x[:, 0], x[:, 1]), x[:, 2]) - 0.5), 0, width)
    column_max = np.clip(np.floor(np.maximum(np.maximum(x[:, 0], x[:, 1]), x[:, 2]) - 0.5), -1, width - 1)
    row_min = np.clip(np.ceil(np.minimum(np.minimum(y[:, 0], y[:, 1]), y[:, 2]) - 0.5), 0, height)
    row_max = np.clip(np.floor(np.maximum(np.maximum(y[:, 0], y[:, 1]), y[:, 2]) - 0.5), -1, height - 1)
    columns_spanned, rows_spanned = column_max - column_min, row_max - row_min
    drawn = (np.abs(area) > 1e-12) & (columns_spanned >= 0) & (rows_spanned >= 0)
    group = np.searchsorted(np.asarray(_BOX_SIZES), np.maximum(columns_spanned, rows_spanned) + 1)
    group[~drawn] = -1

    pixel_chunks, face_chunks, depth_chunks = [], [], []
    for index in np.unique(group[group >= 0]):
        members = np.flatnonzero(group == index)
        size = (
            _BOX_SIZES[index]
            if index < len(_BOX_SIZES)
            else int(max(columns_spanned.max(), rows_spanned.max())) + 1
        )
        offset_row, offset_column = np.divmod(np.arange(size * size, dtype=np.float32), np.float32(size))
        columns = column_min[members, None] + offset_column  # (n, size^2), float32 pixel indices
        rows = row_min[members, None] + offset_row
        weight0, weight1, weight2 = _barycentric(x[members], y[members], columns + 0.5, rows + 0.5)
        inside = (
            (offset_column <= columns_spanned[members, None])
            & (offset_row <= rows_spanned[members, None])
            & (weight0 >= -_EDGE_EPSILON)
            & (weight1 >= -_EDGE_EPSILON)
            & (weight2 >= -_EDGE_EPSILON)
        )
        member, cell = np.nonzero(inside)
        owner_depth = inverse_depth[members[member]]
        depth_chunks.append(
            weight0[member, cell] * owner_depth[:, 0]
            + weight1[member, cell] * owner_depth[:, 1]
            + weight2[member, cell] * owner_depth[:, 2]
        )
        pixel_chunks.append(
            rows[member, cell].astype(np.int64) * width + columns[member, cell].astype(np.int64)
        )
        face_chunks.append(members[member])
    if not pixel_chunks:
        empty = np.zeros(0, dtype=np.int64)
        return Fragments(empty, empty, np.zeros((0, 3), np.float32), np.zeros(0, np.float32))
    pixels = np.concatenate(pixel_chunks)
    depth = np.concatenate(depth_chunks)
    # Nearest fragment per pixel: the largest inverse depth; among exact ties the last one written wins.
    nearest = np.full(height * width, -np.inf, dtype=np.float32)
    np.maximum.at(nearest, pixels, depth)
    winners = np.flatnonzero(depth >= nearest[pixels])
    owner = np.full(height * width, -1, dtype=np.int64)
    owner[pixels[winners]] = winners
    covered = np.flatnonzero(owner >= 0)
    chosen = owner[covered]
    face = np.concatenate(face_chunks)[chosen]
    # Barycentric coordinates of the winners only.
    row, column = np.divmod(covered, width)
    weights = _barycentric(
        x[face], y[face], (column.astype(np.float32) + 0.5)[:, None], (row.astype(np.float32) + 0.5)[:, None]
    )
    barycentric = np.concatenate(weights, axis=1).astype(np.float32)
    return Fragments(pixels=covered, faces=face, barycentric=barycentric, inverse_depth=depth[chosen])


# ---------------------------------------------------------------------------------------------------------
# Camera and backgrounds
# ---------------------------------------------------------------------------------------------------------


def camera_rotation(yaw_deg: float, pitch_deg: float) -> np.ndarray:
    """
    World-to-camera rotation of a camera orbiting the origin.

    The camera sits in direction `(sin(yaw) cos(pitch), sin(pitch), cos(yaw) cos(pitch))` from the body
    and looks at it; camera axes are x right, y down, z forward (away from the camera), as in OpenCV.

    Returns:
        `np.ndarray` of shape `(3, 3)`: rows are the camera's right, down and forward axes in world
        coordinates (SMPL's: x the body's left, y up, z forward).
    """
    yaw, pitch = math.radians(yaw_deg), math.radians(pitch_deg)
    toward_camera = np.array(
        [math.sin(yaw) * math.cos(pitch), math.sin(pitch), math.cos(yaw) * math.cos(pitch)]
    )
    forward = -toward_camera
    right = np.cross(forward, np.array([0.0, 1.0, 0.0]))
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    return np.stack((right, down, forward))


# Grain is cut from a fixed texture this many pixels larger than the image, at a random offset.
_GRAIN_MARGIN = 64
_GRAIN_SEED = 20250601


@functools.lru_cache(maxsize=4)
def _grain_texture(height: int, width: int) -> np.ndarray:
    """A fixed float32 texture `(height + margin, width + margin)` of uniform grain, `+-GRAIN_AMPLITUDE`."""
    rng = np.random.default_rng(_GRAIN_SEED)
    shape = (height + _GRAIN_MARGIN, width + _GRAIN_MARGIN)
    return rng.uniform(-GRAIN_AMPLITUDE, GRAIN_AMPLITUDE, shape).astype(np.float32)


def render_background(scene: Scene, height: int, width: int) -> np.ndarray:
    """
    The scene's background.

    Returns:
        `np.ndarray` of shape `(height, width, 3)`, float32 in `[0, 1]`.
    """
    first, second = (np.asarray(c, dtype=np.float32) for c in scene.background_colors)
    if scene.background == "solid":
        return np.broadcast_to(first, (height, width, 3)).copy()
    rng = np.random.default_rng(scene.background_seed)
    if scene.background == "gradient":
        angle = rng.uniform(0, 2 * math.pi)
        rows = (np.arange(height, dtype=np.float32) + 0.5) / height - 0.5
        columns = (np.arange(width, dtype=np.float32) + 0.5) / width - 0.5
        t = np.clip(columns[None, :] * math.cos(angle) + rows[:, None] * math.sin(angle) + 0.5, 0.0, 1.0)
        return first + (second - first) * t[..., None]
    # "noise": smooth colour blobs between the two colours (a coarse random grid, upsampled), then grain cut
    # at a random place from one fixed texture (drawing fresh grain per image would cost more than the body).
    cells = int(rng.integers(NOISE_GRID_RANGE[0], NOISE_GRID_RANGE[1] + 1))
    coarse = rng.integers(0, 256, (cells, cells, 3), dtype=np.uint8)
    blobs = Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC)
    t = np.asarray(blobs, dtype=np.float32) * np.float32(1.0 / 255.0)
    amplitude = np.float32(rng.uniform(*NOISE_AMPLITUDE_RANGE))
    top, left = rng.integers(0, _GRAIN_MARGIN + 1, 2)
    grain = _grain_texture(height, width)[top : top + height, left : left + width]
    base = first + (second - first) * t.mean(-1, keepdims=True)
    return np.clip(base + amplitude * (t - 0.5) + grain[..., None], 0.0, 1.0)


# ---------------------------------------------------------------------------------------------------------
# The renderer
# ---------------------------------------------------------------------------------------------------------


def connected_components(faces: np.ndarray, num_vertices: int) -> np.ndarray:
    """
    Connected pieces of a triangle mesh.

    Args:
        faces (`np.ndarray` of shape `(F, 3)`): vertex indices.
        num_vertices (`int`): V.

    Returns:
        `np.ndarray` of shape `(V,)`, int64: the piece of each vertex, numbered from 0 in order of their
        smallest vertex index.
    """
    first, second = faces.reshape(-1), np.roll(faces, 1, axis=1).reshape(-1)  # the three edges of each face
    label = np.arange(num_vertices)
    while True:
        # Both ends of every edge take the smaller label; pointer jumping then shortcuts chains of labels.
        smaller = np.minimum(label[first], label[second])
        updated = label.copy()
        np.minimum.at(updated, first, smaller)
        np.minimum.at(updated, second, smaller)
        updated = updated[updated]
        if np.array_equal(updated, label):
            break
        label = updated
    return np.unique(label, return_inverse=True)[1].reshape(-1)


def _numpy(tensor) -> np.ndarray:
    return tensor.detach().cpu().numpy() if hasattr(tensor, "detach") else np.asarray(tensor)


class BodyRenderer:
    """
    Renders posed bodies into RGB images with a NumPy z-buffer rasteriser.

    Args:
        body_model ([`~unipose.body_model.BodyModel`], `str` or `os.PathLike`, *optional*):
            The body to draw: a loaded `BodyModel`, or a path (or `"generated"`) to load one from. Defaults
            to the generated stand-in body.
        image_size (`int`, *optional*, defaults to 336):
            Side of the square images, in pixels.

    Example:

    ```python
    >>> renderer = BodyRenderer(image_size=224)
    >>> image = renderer.render_image(np.zeros((22, 3)), frontal_scene())  # a PIL image of the T-pose
    ```
    """

    def __init__(self, body_model=None, image_size: int = IMAGE_SIZE):
        if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) or image_size < 16:
            raise ValueError(f"`image_size` must be an integer of at least 16 pixels, got {image_size!r}.")
        self.image_size = int(image_size)
        if body_model is None or not hasattr(body_model, "smplh"):
            body_model = BodyModel("generated" if body_model is None else body_model)
        # Named in corpus metadata: "generated", or the user's body-model file.
        self.body_model_name = (
            "generated" if getattr(body_model, "is_generated", False) else str(body_model.path)
        )
        self.body_model = body_model
        smplh = body_model.smplh
        template = _numpy(smplh.v_template).astype(np.float64)  # (V, 3)
        weights = _numpy(smplh.lbs_weights).astype(np.float64)  # (V, 52)
        faces = _numpy(smplh.faces_tensor).astype(np.int64)

        # Hands stay flat, so every hand joint moves with its wrist: the parts are those of the body joints.
        body_of = np.arange(len(SMPLH_PARENTS))
        for joint in range(NUM_BODY_JOINTS, len(SMPLH_PARENTS)):
            parent = SMPLH_PARENTS[joint]
            body_of[joint] = parent if parent < NUM_BODY_JOINTS else body_of[parent]
        folded = np.zeros((template.shape[0], NUM_BODY_JOINTS))
        np.add.at(folded.T, body_of[: weights.shape[1]], weights.T)

        # Outward-facing winding, so that back faces can be told from front ones.
        corners = template[faces]
        volume = np.einsum("fc,fc->f", corners[:, 0], np.cross(corners[:, 1], corners[:, 2])).sum()
        self.faces = faces if volume >= 0 else faces[:, ::-1].copy()
        self.face_parts, self.face_materials = self._face_labels(template, folded)

    def _face_labels(self, template: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Part (index into `PARTS`) and material (index into `MATERIALS`) of each face, `(F,)` each."""
        vertex_part = np.asarray(PART_OF_JOINT)[weights.argmax(1)]  # (V,)
        num_vertices = len(template)
        component = connected_components(self.faces, num_vertices)
        num_components = component.max() + 1
        if num_components > 1:
            # A body made of separate closed pieces (the generated one: a tube per segment) colours each
            # piece by the part most of its vertices belong to, so that skinning weights that reach across
            # a joint (the hip's over the lower torso) do not tint the neighbouring piece.
            votes = np.zeros((num_components, len(PARTS)), dtype=np.int64)
            np.add.at(votes, (component, vertex_part), 1)
            vertex_part = votes.argmax(1)[component]
        corner_parts = vertex_part[self.faces]  # (F, 3)
        face_votes = np.zeros((len(self.faces), len(PARTS)), dtype=np.int64)
        np.add.at(face_votes, (np.repeat(np.arange(len(self.faces)), 3), corner_parts.reshape(-1)), 1)
        face_parts = face_votes.argmax(1)

        head = vertex_part == PARTS.index("head")
        hair = np.zeros(num_vertices, dtype=bool)
        if head.any():
            low, high = template[head].min(0), template[head].max(0)
            centre, half = (low + high) / 2, np.maximum((high - low) / 2, 1e-9)
            relative = (template - centre) / half
            hair = head & ((relative[:, 1] > HAIR_ABOVE) | (relative[:, 2] < HAIR_BEHIND))
        face_materials = _MATERIAL_OF_PART[face_parts]
        face_hair = (face_parts == PARTS.index("head")) & (hair[self.faces].sum(1) >= 2)
        face_materials[face_hair] = HAIR
        return face_parts.astype(np.int64), face_materials.astype(np.int64)

    # -- geometry ------------------------------------------------------------------------------------------

    def pose_vertices(self, poses, betas=None) -> np.ndarray:
        """
        Linear blend skinning of the body mesh.

        Args:
            poses: B poses in any format `unipose.rotations.to_rotation_matrix` accepts (e.g. axis-angle
                `(B, 22, 3)`), the root orientation first, in SMPL's y-up world.
            betas (`np.ndarray` of shape `(B, k)` or `(k,)`, *optional*): shape coefficients (`k` up to the
                body's number of coefficients; the rest are zero).

        Returns:
            `np.ndarray` of shape `(B, V, 3)`, float32: vertices in metres, placed as `BodyModel` places them
            (no translation).
        """
        rotations = to_rotation_matrix(poses, num_joints=NUM_BODY_JOINTS, name="poses")
        batch, num_betas = rotations.shape[0], self.body_model.num_betas
        if betas is not None:
            betas = torch.as_tensor(np.atleast_2d(np.asarray(betas, dtype=np.float32)))
            if betas.ndim != 2 or betas.shape[1] > num_betas or betas.shape[0] not in (1, batch):
                raise ValueError(
                    f"`betas` must have shape ({batch}, k) or (k,) with k <= {num_betas}, got "
                    f"{tuple(betas.shape)}."
                )
            betas = torch.nn.functional.pad(betas, (0, num_betas - betas.shape[1])).expand(batch, -1)
        with torch.no_grad():
            return _numpy(self.body_model(rotations, betas=betas).vertices).astype(np.float32)

    # -- drawing -------------------------------------------------------------------------------------------

    def _project(
        self, vertices: np.ndarray, scene: Scene, framing: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """
        Screen points `(V, 3)` (x and y in pixels, inverse depth) and camera-space positions `(V, 3)` of
        `vertices`, through the scene's camera, framed on `framing` (`(N, 3)`; the vertices when `None`).
        """
        rotation = camera_rotation(scene.yaw_deg, scene.pitch_deg).astype(np.float32)
        reference = vertices if framing is None else framing
        # The camera orbits the centroid, which turns with the body: a camera at yaw t sees exactly what a
        # camera at yaw 0 sees of the body turned by -t.
        centre = reference.mean(0)
        offsets = reference - centre
        radius = float(np.sqrt((offsets[:, 0] ** 2 + offsets[:, 1] ** 2 + offsets[:, 2] ** 2).max()))
        # Far enough for the bounding sphere to fit in the field of view.
        distance = np.float32(radius / math.sin(math.radians(scene.fov_deg) / 2))
        camera = (vertices - centre) @ rotation.T
        camera[:, 2] += distance
        inverse_depth = 1.0 / camera[:, 2]
        plane = camera[:, :2] * inverse_depth[:, None]  # the image plane at unit focal length
        if framing is None:
            plane_low, plane_high = plane.min(0), plane.max(0)
        else:
            frame = (framing - centre) @ rotation.T
            frame_plane = frame[:, :2] / (frame[:, 2:] + distance)
            plane_low, plane_high = frame_plane.min(0), frame_plane.max(0)
        size = self.image_size
        scale = scene.fill * size / max(float((plane_high - plane_low).max()), 1e-6)
        image_centre = size / 2 + np.asarray(scene.offset, dtype=np.float32) * size
        screen = np.empty_like(camera)
        screen[:, :2] = (plane - (plane_low + plane_high) / 2) * np.float32(scale) + image_centre
        screen[:, 2] = inverse_depth
        return screen, camera

    def render_vertices(
        self, vertices: np.ndarray, scene: Scene, framing: np.ndarray | None = None
    ) -> np.ndarray:
        """
        Draw one posed mesh.

        Args:
            vertices (`np.ndarray` of shape `(V, 3)`): posed vertices (world, metres, y up).
            scene ([`Scene`]): camera, light, colours and background.
            framing (`np.ndarray` of shape `(N, 3)`, *optional*): points the camera frames (defaults to the
                vertices); pass both meshes of a pair so that they share one camera.

        Returns:
            `np.ndarray` of shape `(image_size, image_size, 3)`, uint8 RGB.
        """
        size = self.image_size
        vertices = np.asarray(vertices, dtype=np.float32)
        framing = None if framing is None else np.asarray(framing, dtype=np.float32)
        screen, camera = self._project(vertices, scene, framing)

        corners = camera[self.faces]
        # Face normals, outward and as long as twice the face's area.
        normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
        front = np.einsum("fc,fc->f", normals, corners[:, 0]) < 0  # facing the camera at the origin
        fragments = rasterize(screen, self.faces[front], size, size)
        face = np.flatnonzero(front)[fragments.faces]

        # Vertex normals: sums of the area-weighted normals of the faces around each vertex, out of the body.
        corners_of = self.faces.reshape(-1)
        vertex_normals = np.stack(
            [np.bincount(corners_of, np.repeat(normals[:, axis], 3), len(vertices)) for axis in range(3)], -1
        )
        length = np.sqrt(vertex_normals[:, 0] ** 2 + vertex_normals[:, 1] ** 2 + vertex_normals[:, 2] ** 2)
        cosine = (vertex_normals @ np.asarray(scene.light, dtype=np.float32)) / np.maximum(length, 1e-12)
        intensity = scene.ambient + (1.0 - scene.ambient) * np.maximum(cosine, 0.0)
        shade = np.einsum("pk,pk->p", fragments.barycentric, intensity[self.faces[face]])
        colors = np.asarray(scene.colors, dtype=np.float32)[self.face_materials[face]] * shade[:, None]

        # Outline: a covered pixel whose 4-neighbour shows another part, or the background, farther away.
        part = np.full(size * size, -1, dtype=np.int16)
        part[fragments.pixels] = self.face_parts[face]
        depth = np.full(size * size, -np.inf, dtype=np.float32)  # inverse depth; the background is farthest
        depth[fragments.pixels] = fragments.inverse_depth
        part, depth = part.reshape(size, size), depth.reshape(size, size)
        edge = np.zeros((size, size), dtype=bool)
        for near, far in (
            ((slice(1, None),), (slice(None, -1),)),
            ((slice(None), slice(1, None)), (slice(None), slice(None, -1))),
        ):
            differs = part[near] != part[far]
            edge[near] |= differs & (depth[far] < depth[near])
            edge[far] |= differs & (depth[near] < depth[far])
        colors[edge.reshape(-1)[fragments.pixels]] *= OUTLINE_SHADE

        image = render_background(scene, size, size).reshape(-1, 3)
        image[fragments.pixels] = colors
        return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8).reshape(size, size, 3)

    def render(self, poses, scenes: Sequence[Scene]) -> np.ndarray:
        """
        Draw B poses, one scene each.

        Args:
            poses: B poses in any format `unipose.rotations.to_rotation_matrix` accepts.
            scenes (sequence of [`Scene`]): one per pose.

        Returns:
            `np.ndarray` of shape `(B, image_size, image_size, 3)`, uint8 RGB.
        """
        vertices = self._posed(poses, scenes, "poses")
        images = [self.render_vertices(v, scene)[None] for v, scene in zip(vertices, scenes)]
        return np.concatenate([np.zeros((0, self.image_size, self.image_size, 3), dtype=np.uint8)] + images)

    def render_pairs(self, poses_a, poses_b, scenes: Sequence[Scene]) -> tuple[np.ndarray, np.ndarray]:
        """
        Draw B pairs of poses, each pair through the same camera, light, body and colours, framed so that
        both poses fit (their sizes in the images are comparable).

        Returns:
            `tuple` of two `np.ndarray` of shape `(B, image_size, image_size, 3)`, uint8 RGB.
        """
        vertices_a = self._posed(poses_a, scenes, "poses_a")
        vertices_b = self._posed(poses_b, scenes, "poses_b")  # as many as `scenes`, hence as `poses_a`
        empty = np.zeros((0, self.image_size, self.image_size, 3), dtype=np.uint8)
        images_a, images_b = [empty], [empty]
        for a, b, scene in zip(vertices_a, vertices_b, scenes):
            framing = np.concatenate((a, b))
            images_a.append(self.render_vertices(a, scene, framing)[None])
            images_b.append(self.render_vertices(b, scene, framing)[None])
        return np.concatenate(images_a), np.concatenate(images_b)

    def render_image(self, pose, scene: Scene | None = None) -> Image.Image:
        """One pose (`(22, 3)` axis-angle or another single-pose format) as a PIL image (`frontal_scene()`)."""
        scene = frontal_scene() if scene is None else scene
        return Image.fromarray(self.render(pose, [scene])[0])

    def _posed(self, poses, scenes: Sequence[Scene], name: str) -> np.ndarray:
        if isinstance(scenes, Scene):
            raise TypeError(
                f"`scenes` must be a sequence of `Scene`, one per pose in `{name}`, got a single `Scene`."
            )
        rotations = to_rotation_matrix(poses, num_joints=NUM_BODY_JOINTS, name=name)
        if len(scenes) != rotations.shape[0]:
            raise ValueError(
                f"`scenes` must hold one `Scene` per pose in `{name}` ({rotations.shape[0]}), got "
                f"{len(scenes)}."
            )
        width = max([len(scene.betas) for scene in scenes] + [0])
        if width == 0:
            return self.pose_vertices(rotations)
        betas = np.zeros((len(scenes), width), dtype=np.float32)
        for row, scene in enumerate(scenes):
            betas[row, : len(scene.betas)] = scene.betas
        return self.pose_vertices(rotations, betas=betas)


__all__ = [
    "BACKGROUNDS",
    "IMAGE_SIZE",
    "MATERIALS",
    "PARTS",
    "REFERENCE_COLORS",
    "BodyRenderer",
    "Fragments",
    "RenderSettings",
    "Scene",
    "camera_rotation",
    "connected_components",
    "frontal_scene",
    "rasterize",
    "render_background",
    "sample_scenes",
]
