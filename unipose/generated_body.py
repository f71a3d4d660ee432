"""
A body-model file in the SMPL-H npz format, generated from anthropometric tables.

The SMPL-H model cannot be bundled (its licence), yet code written against it (`smplx`, the pose
tokenizer's vertex and joint losses, metrics, rendering) should run offline and in tests. This module
builds a stand-in with the same kinematic tree (52 joints), the same array names, shapes and vertex
count, so that `smplx` loads it with the very code it uses for SMPL-H:

- rest joints of an adult of 1.70 m from segment-length fractions of stature (Winter; Drillis and Contini)
  and finger segment fractions of hand length (Buchholz et al.), in SMPL's axes (x = the body's left,
  y = up, z = forward; metres), pelvis joint at the origin, T-pose;
- a mesh of exactly 6,890 vertices made of closed capsule-like tubes (torso, neck, head, upper arms,
  forearms, palms, fingers, thighs, shanks, feet), with the vertices that `smplx` reads as extra keypoints
  (nose, eyes, ears, fingertips, toes, heels) placed where those are;
- smooth skinning weights, a joint regressor that reproduces the rest joints exactly, three shape
  directions (stature, limb length, girth; the other 13 of SMPL-H's 16 are zero), and no pose correctives.

It is a stand-in, not a body model learnt from scans: numbers computed with it are not comparable with
numbers computed with SMPL-H. `unipose.body_model` writes it to the cache and loads it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Optional

import numpy as np

from .skeleton import (
    JOINT_INDEX,
    NUM_BODY_JOINTS,
    NUM_HAND_JOINTS,
    NUM_SMPLH_JOINTS,
    SMPLH_JOINT_NAMES,
    SMPLH_PARENTS,
)


# Sizes fixed by the SMPL-H format.
NUM_VERTICES = 6890
NUM_SHAPE_COEFFICIENTS = 16  # the "Extended SMPL+H model" ships 16 betas
NUM_POSE_BASIS = (NUM_SMPLH_JOINTS - 1) * 9  # pose correctives: one 3x3 matrix per non-root joint
HAND_POSE_SIZE = NUM_HAND_JOINTS * 3

# Bump whenever the generated geometry changes: files are named and tagged after it.
GENERATOR_VERSION = 1
GENERATOR_TAG = f"unipose-generated-smplh-v{GENERATOR_VERSION}"


# ----------------------------------------------------------------------------------------------------
# 1. An anthropometric skeleton
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

    Positions that the tables above do not give (spine, neck, head and collar joints, depth offsets, the
    thumb's base) are estimates in the places where SMPL-family skeletons have them. `put` takes fractions
    of stature, with heights measured from the floor; the result is shifted so that the pelvis joint is at
    the origin.

    Returns:
        `dict[str, np.ndarray]`: name -> `(3,)` position in metres.
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


# ----------------------------------------------------------------------------------------------------
# 2. A capsule mesh
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Tube:
    """
    One body part: a closed tube around the segment `start` -> `end` with elliptical cross-sections and
    rounded ends. The ellipse's axes are `u` (the component of `up` across the segment) and `v = d x u`.

    `profile` holds `(t, radius_u, radius_v)` control points along the segment (t from 0 to 1, interpolated
    linearly); `caps` how far each rounded end reaches beyond the segment; the tube has `rings` rings of
    `segments` vertices plus one pole vertex per end. `skin` names the joints whose bones may move its
    vertices, with blend width `blend` (metres); `stretch` the two joints between which it follows the
    limb-length shape direction; `girth` whether the girth shape direction thickens it.
    """

    name: str
    start: np.ndarray
    end: np.ndarray
    up: np.ndarray
    profile: tuple[tuple[float, float, float], ...]
    caps: tuple[float, float]
    segments: int
    rings: int
    skin: tuple[str, ...]
    blend: float
    stretch: Optional[tuple[str, str]] = None
    girth: bool = False

    @property
    def num_vertices(self) -> int:
        return self.segments * self.rings + 2


_X, _Y = np.eye(3)[:2]


def _body_tubes(points: dict[str, np.ndarray]) -> list[_Tube]:
    """
    The parts of the generated body. Girths are plausible adult values (thigh about 0.55 m round, waist
    about 0.73 m, chest about 0.85 m); vertex counts are chosen so that the parts add up to exactly 6,890.
    """
    p = points
    height = {name: position[1] for name, position in p.items()}
    floor = -PELVIS_HEIGHT * STATURE
    tubes = [
        _Tube(
            "torso",
            start=np.array([0.0, floor + 0.49 * STATURE, 0.0]),
            end=np.array([0.0, height["neck"] - 0.02, -0.01]),
            up=_X,
            # (t, half width, half depth) from the buttocks to the base of the neck
            profile=(
                (0.00, 0.150, 0.105),
                (0.10, 0.168, 0.115),
                (0.25, 0.160, 0.108),
                (0.42, 0.135, 0.095),
                (0.62, 0.150, 0.108),
                (0.78, 0.162, 0.106),
                (0.90, 0.165, 0.090),
                (1.00, 0.120, 0.070),
            ),
            caps=(0.05, 0.05),
            segments=46,
            rings=24,
            skin=(
                "pelvis", "spine1", "spine2", "spine3", "neck", "left_hip", "right_hip", "left_collar",
                "right_collar", "left_shoulder", "right_shoulder",
            ),
            blend=0.05,
            girth=True,
        ),
        _Tube(
            "neck",
            start=p["neck"] + np.array([0.0, -0.05, 0.0]),
            end=p["head"] + np.array([0.0, 0.0, -0.01]),
            up=_X,
            profile=((0.0, 0.062, 0.060), (1.0, 0.052, 0.055)),
            caps=(0.03, 0.03),
            segments=20,
            rings=8,
            skin=("spine3", "neck", "head"),
            blend=0.03,
            girth=True,
        ),
        _Tube(
            "head",
            # An ellipsoid-like capsule from the chin to the top of the head, its middle at eye level.
            start=np.array([0.0, floor + (CHIN_HEIGHT + 1.0) / 2 * STATURE - 0.02, 0.012 * STATURE]),
            end=np.array([0.0, floor + (CHIN_HEIGHT + 1.0) / 2 * STATURE + 0.02, 0.012 * STATURE]),
            up=_X,
            profile=((0.0, 0.078, 0.098), (1.0, 0.078, 0.098)),
            caps=((1.0 - CHIN_HEIGHT) / 2 * STATURE - 0.02,) * 2,
            segments=28,
            rings=20,
            skin=("neck", "head"),
            blend=0.03,
        ),
    ]
    for side in ("left", "right"):
        s = lambda name: f"{side}_{name}"  # noqa: E731
        along = np.sign(p[s("wrist")][0]) * _X
        tubes += [
            _Tube(
                s("upper_arm"),
                start=p[s("shoulder")] - 0.03 * along,
                end=p[s("elbow")],
                up=_Y,
                profile=((0.0, 0.056, 0.056), (0.5, 0.047, 0.046), (1.0, 0.040, 0.040)),
                caps=(0.04, 0.03),
                segments=20,
                rings=18,
                skin=(s("collar"), s("shoulder"), s("elbow")),
                blend=0.025,
                stretch=(s("shoulder"), s("elbow")),
                girth=True,
            ),
            _Tube(
                s("forearm"),
                start=p[s("elbow")],
                end=p[s("wrist")],
                up=_Y,
                profile=((0.0, 0.041, 0.042), (0.3, 0.038, 0.041), (1.0, 0.022, 0.029)),
                caps=(0.03, 0.02),
                segments=18,
                rings=18,
                skin=(s("shoulder"), s("elbow"), s("wrist")),
                blend=0.025,
                stretch=(s("elbow"), s("wrist")),
                girth=True,
            ),
            _Tube(
                s("palm"),
                start=p[s("wrist")] + np.array([0.0, -0.004, -0.004]),
                end=p[s("middle1")] + np.array([0.0, 0.0, -0.006]),
                up=_Y,
                # (half thickness, half breadth)
                profile=((0.0, 0.018, 0.028), (0.35, 0.015, 0.042), (1.0, 0.013, 0.044)),
                caps=(0.012, 0.010),
                segments=16,
                rings=10,
                skin=(s("wrist"), s("index1"), s("middle1"), s("ring1"), s("pinky1"), s("thumb1")),
                blend=0.012,
                stretch=(s("wrist"), s("wrist")),
            ),
        ]
        for finger in (*FINGER_SEGMENTS, "thumb"):
            thumb = finger == "thumb"
            radius = 0.011 if thumb else (0.0075 if finger == "pinky" else 0.0088)
            tubes.append(
                _Tube(
                    s(finger),
                    start=p[s(f"{finger}1")] if thumb else p[s(f"{finger}1")] + 0.004 * along,
                    end=p[s(f"{finger}_tip")],
                    up=_Y,
                    # the thumb is broader at its base, inside the palm
                    profile=(
                        (0.0, radius * (1.25 if thumb else 1.0), radius * 1.1),
                        (1.0, radius * 0.8, radius * 0.85),
                    ),
                    caps=(radius, radius * 0.8),
                    segments=8,
                    rings=14,
                    skin=(s("wrist"), s(f"{finger}1"), s(f"{finger}2"), s(f"{finger}3")),
                    blend=0.006,
                    stretch=(s("wrist"), s("wrist")),
                )
            )
        tubes += [
            _Tube(
                s("thigh"),
                start=p[s("hip")] + np.array([0.0, 0.05, 0.0]),
                end=p[s("knee")],
                up=_X,
                profile=((0.0, 0.086, 0.090), (0.35, 0.078, 0.082), (1.0, 0.053, 0.056)),
                caps=(0.05, 0.04),
                segments=24,
                rings=20,
                skin=("pelvis", s("hip"), s("knee")),
                blend=0.04,
                stretch=(s("hip"), s("knee")),
                girth=True,
            ),
            _Tube(
                s("shank"),
                start=p[s("knee")],
                end=p[s("ankle")],
                up=_X,
                profile=((0.0, 0.052, 0.054), (0.3, 0.050, 0.060), (1.0, 0.031, 0.035)),
                caps=(0.04, 0.03),
                segments=20,
                rings=20,
                skin=(s("hip"), s("knee"), s("ankle")),
                blend=0.03,
                stretch=(s("knee"), s("ankle")),
                girth=True,
            ),
            _Tube(
                s("foot"),
                start=p[s("heel")] + np.array([0.0, 0.042, 0.03]),
                end=p[s("toe_tip")] + np.array([0.0, 0.012, -0.02]),
                up=_X,
                # (half width, half height) from the heel to the toes
                profile=((0.0, 0.032, 0.038), (0.4, 0.044, 0.034), (0.75, 0.047, 0.024), (1.0, 0.040, 0.014)),
                caps=(0.03, 0.02),
                segments=16,
                rings=14,
                skin=(s("knee"), s("ankle"), s("foot")),
                blend=0.02,
                stretch=(s("ankle"), s("ankle")),
            ),
        ]
    return tubes


def _tube_mesh(tube: _Tube) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """
    Vertices and faces of one tube, and for each vertex the nearest point of the tube's axis segment and the
    ring it belongs to.

    Rings are spread evenly by arc length over the outline: a quarter ellipse for each rounded end, the
    segment in between.

    Returns:
        `(vertices (n, 3), faces (2 * segments * rings, 3) indexing the vertices, axis_points (n, 3),
        ring_of_vertex (n,))`, with `n = segments * rings + 2`: the start pole, the rings from start to end,
        the end pole; the poles belong to no ring (-1).
    """
    axis = tube.end - tube.start
    length = float(np.linalg.norm(axis))
    direction = axis / length
    u = tube.up - (tube.up @ direction) * direction
    u /= np.linalg.norm(u)
    v = np.cross(direction, u)  # (u, v, direction) is right-handed, so the faces below face outwards

    t_control, ru_control, rv_control = (np.array(column) for column in zip(*tube.profile))

    def radii(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.interp(t, t_control, ru_control), np.interp(t, t_control, rv_control)

    # Arc length of each rounded end, taken as a quarter circle whose radius is the root mean square of the
    # end's depth and its mean radius.
    end_radius = [np.mean(radii(np.array(t))) for t in (0.0, 1.0)]
    cap_arcs = [
        math.pi / 2 * math.sqrt((depth**2 + radius**2) / 2) for depth, radius in zip(tube.caps, end_radius)
    ]
    total = cap_arcs[0] + length + cap_arcs[1]
    arc = (np.arange(tube.rings) + 0.5) / tube.rings * total

    axial = np.empty(tube.rings)
    scale = np.ones(tube.rings)
    t = np.clip((arc - cap_arcs[0]) / length, 0.0, 1.0)
    in_start, in_end = arc < cap_arcs[0], arc > cap_arcs[0] + length
    angle = np.pi / 2 * arc[in_start] / cap_arcs[0]  # from the pole
    axial[in_start], scale[in_start] = -tube.caps[0] * np.cos(angle), np.sin(angle)
    middle = ~in_start & ~in_end
    axial[middle] = arc[middle] - cap_arcs[0]
    angle = np.pi / 2 * (total - arc[in_end]) / cap_arcs[1]
    axial[in_end], scale[in_end] = length + tube.caps[1] * np.cos(angle), np.sin(angle)

    ru, rv = radii(t)
    around = 2 * np.pi * np.arange(tube.segments) / tube.segments
    centres = tube.start + axial[:, None] * direction  # (rings, 3)
    rings = (
        centres[:, None, :]
        + (scale * ru)[:, None, None] * np.cos(around)[None, :, None] * u
        + (scale * rv)[:, None, None] * np.sin(around)[None, :, None] * v
    ).reshape(-1, 3)
    poles = [tube.start - tube.caps[0] * direction, tube.end + tube.caps[1] * direction]
    vertices = np.concatenate([poles[0][None], rings, poles[1][None]])
    axis_points = tube.start + np.clip(axial, 0.0, length)[:, None] * direction
    axis_points = np.concatenate(
        [tube.start[None], np.repeat(axis_points, tube.segments, axis=0), tube.end[None]]
    )

    segments, last = tube.segments, tube.num_vertices - 1
    around_index = np.arange(segments)

    def ring(i: int, shift: int = 0) -> np.ndarray:
        """Vertex ids of ring `i` (after the start pole), rotated by `shift` steps around."""
        return 1 + i * segments + (around_index + shift) % segments

    faces = [np.stack([np.zeros(segments, dtype=np.int64), ring(0, 1), ring(0)], axis=1)]
    for i in range(tube.rings - 1):
        a, b, c, d = ring(i), ring(i, 1), ring(i + 1, 1), ring(i + 1)  # a quad, as two triangles
        faces += [np.stack([a, b, c], axis=1), np.stack([a, c, d], axis=1)]
    faces.append(np.stack([np.full(segments, last), ring(tube.rings - 1), ring(tube.rings - 1, 1)], axis=1))
    ring_of_vertex = np.concatenate([[-1], np.repeat(np.arange(tube.rings), tube.segments), [-1]])
    return vertices, np.concatenate(faces), axis_points, ring_of_vertex


# ----------------------------------------------------------------------------------------------------
# 3. Skinning weights, joint regressor, shape directions, keypoint vertices, and the whole file
# ----------------------------------------------------------------------------------------------------

# Skinning: a vertex follows at most this many bones, none with a weight below the floor.
MAX_BONE_INFLUENCES = 4
MIN_SKINNING_WEIGHT = 0.01
# Each joint is regressed from the vertices of this many whole rings of each part around it.
REGRESSOR_RINGS_PER_PART = 2
REGRESSOR_MAX_REFINEMENTS = 10
# The regressor must reproduce the rest joints to this accuracy (metres).
REGRESSOR_TOLERANCE = 1e-9
# Shape directions per unit beta: stature changes by about one standard deviation of adult stature,
# limbs lengthen by 4% (trunk unchanged), girth grows by 8% of each part's radius.
STATURE_STD = 0.07
LIMB_LENGTH_FRACTION = 0.04
GIRTH_FRACTION = 0.08
SHAPE_DIRECTIONS = ("stature", "limb_length", "girth")


def _segment_distances(points: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Distances from `points (n, 3)` to the segments `starts (m, 3)` -> `ends (m, 3)`: `(n, m)`."""
    along = ends - starts  # (m, 3)
    relative = points[:, None, :] - starts[None]  # (n, m, 3)
    t = np.clip((relative * along).sum(-1) / np.maximum((along * along).sum(-1), 1e-12), 0.0, 1.0)
    return np.linalg.norm(relative - t[..., None] * along, axis=-1)


def _skinning_weights(
    vertices: np.ndarray, tube_of_vertex: np.ndarray, tubes: list[_Tube], joints: np.ndarray, ends: np.ndarray
) -> np.ndarray:
    """
    Smooth, sparse skinning weights: each vertex is shared by the bones of its part's `skin` joints, with
    weights falling off as a Gaussian of how much farther a bone is than the nearest one, so parts bend
    smoothly over a distance of about `blend` around each joint.

    Returns:
        `np.ndarray` of shape `(num_vertices, 52)`, rows summing to 1.
    """
    weights = np.zeros((len(vertices), NUM_SMPLH_JOINTS))
    for index, tube in enumerate(tubes):
        rows = np.flatnonzero(tube_of_vertex == index)
        columns = np.array([JOINT_INDEX[name] for name in tube.skin])
        distances = _segment_distances(vertices[rows], joints[columns], ends[columns])
        excess = distances - distances.min(axis=1, keepdims=True)
        local = np.exp(-((excess / tube.blend) ** 2))
        # Keep the strongest few influences, drop the negligible ones, renormalise.
        if local.shape[1] > MAX_BONE_INFLUENCES:
            weakest = np.argsort(-local, axis=1, kind="stable")[:, MAX_BONE_INFLUENCES:]
            np.put_along_axis(local, weakest, 0.0, axis=1)
        local[local < MIN_SKINNING_WEIGHT] = 0.0
        weights[rows[:, None], columns[None, :]] = local / local.sum(axis=1, keepdims=True)
    return weights


def _regressor_parts(name: str) -> tuple[str, ...]:
    """The parts whose surface surrounds a joint (a joint between two parts uses both)."""
    side, _, rest = name.partition("_")
    if side not in ("left", "right"):
        return {"neck": ("torso", "neck"), "head": ("neck", "head")}.get(name, ("torso",))
    limb = {
        "hip": ("torso", "thigh"),
        "knee": ("thigh", "shank"),
        "ankle": ("shank", "foot"),
        "foot": ("foot",),
        "collar": ("torso",),
        "shoulder": ("torso", "upper_arm"),
        "elbow": ("upper_arm", "forearm"),
        "wrist": ("forearm", "palm"),
    }
    if rest in limb:
        parts = limb[rest]
    else:  # a finger joint such as "index2"
        finger, number = rest[:-1], rest[-1]
        parts = ("palm", finger) if number == "1" else (finger,)
    return tuple(part if part == "torso" else f"{side}_{part}" for part in parts)


def _closest_exact_weights(support: np.ndarray, joint: np.ndarray) -> np.ndarray:
    """Weights nearest to uniform that sum to 1 and average `support (n, 3)` to `joint (3,)`."""
    constraints = np.concatenate([support.T, np.ones((1, len(support)))])  # (4, n)
    uniform = np.full(len(support), 1.0 / len(support))
    residual = np.append(joint, 1.0) - constraints @ uniform
    return uniform + np.linalg.lstsq(constraints, residual, rcond=None)[0]


def _joint_regressor(
    vertices: np.ndarray,
    tube_of_vertex: np.ndarray,
    ring_of_vertex: np.ndarray,
    tubes: list[_Tube],
    joints: np.ndarray,
) -> np.ndarray:
    """
    A joint regressor that reproduces the rest joints exactly.

    Each joint starts from the uniform average of the vertices of the rings nearest to it on the parts
    around it (whole rings, so that the average lies near the part's axis, where the joints are); the
    smallest change of those weights (least squares) then moves the average exactly onto the joint while
    the weights keep summing to one, so that the regressed joints follow any translation of the mesh. The
    change is linear in the vertex positions, which leaves the weights positive for joints well inside
    their rings; where a joint sits near the edge of its rings, the vertices that would get a negative
    weight are dropped and the rest solved again.

    Returns:
        `np.ndarray` of shape `(52, num_vertices)`.
    """
    tube_index = {tube.name: index for index, tube in enumerate(tubes)}
    regressor = np.zeros((NUM_SMPLH_JOINTS, len(vertices)))
    for joint, name in enumerate(SMPLH_JOINT_NAMES):
        chosen = []
        for part in _regressor_parts(name):
            in_part = (tube_of_vertex == tube_index[part]) & (ring_of_vertex >= 0)
            rings = np.unique(ring_of_vertex[in_part])
            centres = np.stack([vertices[in_part & (ring_of_vertex == ring)].mean(axis=0) for ring in rings])
            nearest = rings[np.argsort(np.linalg.norm(centres - joints[joint], axis=1), kind="stable")]
            in_rings = np.isin(ring_of_vertex, nearest[:REGRESSOR_RINGS_PER_PART])
            chosen.append(np.flatnonzero(in_part & in_rings))
        chosen = np.concatenate(chosen)
        weights = _closest_exact_weights(vertices[chosen], joints[joint])
        # Vertices that would get a negative weight leave the support, and the rest is solved again.
        for _ in range(REGRESSOR_MAX_REFINEMENTS):
            if weights.min() >= 0:
                break
            chosen = chosen[weights > 0]
            weights = _closest_exact_weights(vertices[chosen], joints[joint])
        regressor[joint, chosen] = weights
        error = np.abs(regressor[joint] @ vertices - joints[joint]).max()
        if error > REGRESSOR_TOLERANCE:
            raise RuntimeError(f"The regressor of joint {name!r} misses it by {error:.3g} m.")
    return regressor


def _shape_directions(
    vertices: np.ndarray,
    axis_points: np.ndarray,
    tube_of_vertex: np.ndarray,
    tubes: list[_Tube],
    joints: np.ndarray,
) -> np.ndarray:
    """
    Per-vertex displacements for one unit of each shape coefficient, `SHAPE_DIRECTIONS` first and zeros
    for the rest of SMPL-H's 16.

    - stature: the whole body scaled about the pelvis;
    - limb length: each limb joint moves away from the limb's root by a fraction of the bones above it,
      and the vertices of a limb part follow the two joints at its ends by linear interpolation (so parts
      that meet at a joint move together there);
    - girth: every trunk and limb part grows away from its axis.

    Returns:
        `np.ndarray` of shape `(num_vertices, 3, 16)`.
    """
    directions = np.zeros((len(vertices), 3, NUM_SHAPE_COEFFICIENTS))
    directions[:, :, 0] = vertices * (STATURE_STD / STATURE)

    offsets = np.zeros_like(joints)  # (52, 3): where each joint goes for one unit of limb length
    for joint, parent in enumerate(SMPLH_PARENTS):  # parents come first, so their offsets are known
        name = SMPLH_JOINT_NAMES[joint]
        if name.endswith(("_knee", "_ankle", "_elbow", "_wrist")):
            offsets[joint] = offsets[parent] + LIMB_LENGTH_FRACTION * (joints[joint] - joints[parent])
        elif name.endswith("_foot") or joint >= NUM_BODY_JOINTS:
            offsets[joint] = offsets[parent]  # feet and hands move with their limb's end, unscaled
    for index, tube in enumerate(tubes):
        rows = tube_of_vertex == index
        if tube.stretch is not None:
            first, second = (JOINT_INDEX[name] for name in tube.stretch)
            along = joints[second] - joints[first]
            span = max(float(along @ along), 1e-12)
            t = np.clip((axis_points[rows] - joints[first]) @ along / span, 0.0, 1.0)[:, None]
            directions[rows, :, 1] = (1 - t) * offsets[first] + t * offsets[second]
        if tube.girth:
            directions[rows, :, 2] = GIRTH_FRACTION * (vertices[rows] - axis_points[rows])
    return directions


def _keypoint_targets(
    points: dict[str, np.ndarray], tubes: list[_Tube]
) -> dict[str, tuple[str, Optional[np.ndarray]]]:
    """
    Where each vertex that `smplx` reads as an extra keypoint should sit on the generated body: name ->
    (part, target point), or (part, None) for the part's far pole (the fingertips).
    """
    head = next(tube for tube in tubes if tube.name == "head")
    centre = (head.start + head.end) / 2
    _, half_width, half_depth = head.profile[0]
    eye = centre + np.array([0.0, 0.0, half_depth])
    eye_x = 0.032  # half the distance between the pupils
    eye_z = -half_depth * (1 - math.sqrt(1 - (eye_x / half_width) ** 2))  # the head curves back to the sides
    targets = {
        "nose": ("head", eye + np.array([0.0, -0.035, 0.0])),
        "leye": ("head", eye + np.array([eye_x, 0.0, eye_z])),
        "reye": ("head", eye + np.array([-eye_x, 0.0, eye_z])),
        "lear": ("head", centre + np.array([half_width, -0.01, 0.0])),
        "rear": ("head", centre + np.array([-half_width, -0.01, 0.0])),
    }
    for side, short, toe_side in (("left", "l", "L"), ("right", "r", "R")):
        sign = 1.0 if side == "left" else -1.0
        for finger in (*FINGER_SEGMENTS, "thumb"):
            targets[f"{short}{finger}"] = (f"{side}_{finger}", None)
        toe, heel = points[f"{side}_toe_tip"], points[f"{side}_heel"]
        targets[f"{toe_side}BigToe"] = (f"{side}_foot", toe + np.array([-0.02 * sign, 0.0, 0.0]))
        targets[f"{toe_side}SmallToe"] = (f"{side}_foot", toe + np.array([0.035 * sign, 0.0, -0.04]))
        targets[f"{toe_side}Heel"] = (f"{side}_foot", heel + np.array([0.0, 0.01, 0.0]))
    return targets


def _keypoint_vertex_order(
    vertices: np.ndarray,
    tube_of_vertex: np.ndarray,
    tubes: list[_Tube],
    points: dict[str, np.ndarray],
    keypoint_vertex_ids: Mapping[str, int],
) -> np.ndarray:
    """
    A vertex order that puts, at each vertex id `smplx` reads as an extra keypoint (nose, eyes, ears,
    fingertips, toes, heels), the generated vertex at that place; all other vertices keep their order.

    Returns:
        `np.ndarray` of shape `(num_vertices,)`: `order[new_id] = old_id`.
    """
    ids = keypoint_vertex_ids
    tube_index = {tube.name: index for index, tube in enumerate(tubes)}
    chosen = {}
    for name, (part, target) in _keypoint_targets(points, tubes).items():
        rows = np.flatnonzero(tube_of_vertex == tube_index[part])
        if target is None:
            chosen[ids[name]] = rows[-1]
        else:
            chosen[ids[name]] = rows[np.argmin(np.linalg.norm(vertices[rows] - target, axis=1))]
    order = np.full(len(vertices), -1)
    order[list(chosen)] = list(chosen.values())
    order[order < 0] = np.setdiff1d(np.arange(len(vertices)), list(chosen.values()))
    return order


def build_body_model_arrays(keypoint_vertex_ids: Mapping[str, int]) -> dict[str, np.ndarray]:
    """
    The arrays of the generated body model, in the SMPL-H npz format that `smplx.SMPLH` reads.

    Deterministic. Keys and shapes: `v_template (6890, 3)`, `f (13680, 3)` faces, `J (52, 3)` rest joints,
    `J_regressor (52, 6890)`, `weights (6890, 52)` skinning weights, `kintree_table (2, 52)` (parents, then
    joint ids), `shapedirs (6890, 3, 16)` (stature, limb length, girth, then zeros), `posedirs (6890, 3, 459)`
    (zeros: no pose correctives), `hands_componentsl/r (45, 45)` (identity: hand "PCA" coefficients are
    axis-angle), `hands_meanl/r (45,)` (zeros: flat hands), and `unipose_generator`, which tells it apart
    from SMPL-H.

    Returns:
        `dict[str, np.ndarray]`.
    """
    points = _skeleton_points()
    joints = np.stack([points[name] for name in SMPLH_JOINT_NAMES])
    tubes = _body_tubes(points)
    meshes = [_tube_mesh(tube) for tube in tubes]
    counts = [len(mesh[0]) for mesh in meshes]
    if sum(counts) != NUM_VERTICES:
        raise RuntimeError(f"The generated parts have {sum(counts)} vertices, not {NUM_VERTICES}.")
    starts = np.cumsum([0] + counts[:-1])
    vertices, faces, axis_points, ring_of_vertex = (np.concatenate(arrays) for arrays in zip(*meshes))
    faces += np.repeat(starts, [len(mesh[1]) for mesh in meshes])[:, None]
    tube_of_vertex = np.repeat(np.arange(len(tubes)), counts)

    order = _keypoint_vertex_order(vertices, tube_of_vertex, tubes, points, keypoint_vertex_ids)
    vertices, axis_points = vertices[order], axis_points[order]
    tube_of_vertex, ring_of_vertex = tube_of_vertex[order], ring_of_vertex[order]
    faces = np.argsort(order)[faces]

    ends = _bone_ends(points)
    kintree_table = np.stack([np.array(SMPLH_PARENTS), np.arange(NUM_SMPLH_JOINTS)]).astype(np.int64)
    return {
        "v_template": vertices,
        "f": faces.astype(np.int32),
        "J": joints,
        "J_regressor": _joint_regressor(vertices, tube_of_vertex, ring_of_vertex, tubes, joints),
        "weights": _skinning_weights(vertices, tube_of_vertex, tubes, joints, ends),
        "kintree_table": kintree_table,
        "shapedirs": _shape_directions(vertices, axis_points, tube_of_vertex, tubes, joints),
        # float32 halves the file's unpacking time; it holds only zeros, and smplx reads it as float32 anyway.
        "posedirs": np.zeros((NUM_VERTICES, 3, NUM_POSE_BASIS), dtype=np.float32),
        "hands_componentsl": np.eye(HAND_POSE_SIZE),
        "hands_componentsr": np.eye(HAND_POSE_SIZE),
        "hands_meanl": np.zeros(HAND_POSE_SIZE),
        "hands_meanr": np.zeros(HAND_POSE_SIZE),
        "unipose_generator": np.array(GENERATOR_TAG),
    }


__all__ = ["GENERATOR_TAG", "NUM_VERTICES", "build_body_model_arrays"]
