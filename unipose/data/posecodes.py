"""
Posecodes: small categorical facts about a 3D body pose, measured on its joint positions.

A posecode measures one quantity of a pose (the angle at the left elbow, the distance between the hands,
how far the right hand is above the head, the forward lean of the torso) and sorts the value into one of a
few named categories: "bent at ninety degrees", "close", "clearly above". Captions are written from these
categories by `unipose.data.captioning`. Pair codes measure how the same quantities change from a pose A to
a pose B ("bend more", "move closer", "turn to the left"), for the instructions of pose editing.

Everything works on whole batches: [`measure_posecodes`] returns a `(batch, num_posecodes)` array of values
and [`categorize`] bins it with thresholds that may be shifted a little per sample, so that captions of
similar poses do not all switch wording at exactly the same value.

Frames. Joint positions are in metres in a y-up world: x is the body's left, y up and z forward in the rest
pose (SMPL's axes; the frame of `unipose.pose_sampler`, and of `unipose.data.amass` with
`output_up_axis="y"`). The global orientation may be anything: [`normalize_heading`] turns each pose about
the vertical axis so that it faces +z and centres it on the pelvis. Left/right and front/back are then the
body's own, while up/down (and "lying", "upside down", "leaning") stay those of the world.

Mirror symmetry. Every posecode has a mirror posecode (possibly itself) that measures the same quantity on
the other side of the body, with the same value or its negation ([`PosecodeTable.mirror_index`],
[`PosecodeTable.mirror_sign`]). Thresholds of signed kinds are symmetric about zero and are shifted
symmetrically, so a mirrored pose falls into the mirrored categories exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..skeleton import BODY_JOINT_NAMES, BODY_MIRROR_INDEX, NUM_BODY_JOINTS

# ---------------------------------------------------------------------------------------------------------
# Points: the 22 body joints and a few virtual ones
# ---------------------------------------------------------------------------------------------------------

# The middle of the palm lies about this far past the wrist, along the forearm (the hand is ~0.18 m long).
HAND_REACH = 0.08
# The tips of the toes lie about this far past SMPL's foot joint (the ball of the foot), away from the ankle.
TOE_REACH = 0.05
# Vectors shorter than this (metres, or unit-free for directions) are treated as degenerate.
EPSILON = 1e-8

SIDES = ("left", "right")

# name -> (rule, joints): "extend" puts a point `reach` past joints[1] along joints[0] -> joints[1];
# "mean" averages the joints.
VIRTUAL_POINTS: dict[str, tuple[str, tuple[str, ...]]] = {}
for _side in SIDES:
    VIRTUAL_POINTS[f"{_side}_hand"] = ("extend", (f"{_side}_elbow", f"{_side}_wrist"))
    VIRTUAL_POINTS[f"{_side}_toes"] = ("extend", (f"{_side}_ankle", f"{_side}_foot"))
    VIRTUAL_POINTS[f"{_side}_upper_arm"] = ("mean", (f"{_side}_shoulder", f"{_side}_elbow"))
    VIRTUAL_POINTS[f"{_side}_forearm"] = ("mean", (f"{_side}_elbow", f"{_side}_wrist"))
    VIRTUAL_POINTS[f"{_side}_thigh"] = ("mean", (f"{_side}_hip", f"{_side}_knee"))
    VIRTUAL_POINTS[f"{_side}_shin"] = ("mean", (f"{_side}_knee", f"{_side}_ankle"))
VIRTUAL_POINTS["torso"] = ("mean", ("pelvis", "spine1", "spine2", "spine3"))
_REACH = {"hand": HAND_REACH, "toes": TOE_REACH}

POINT_NAMES: tuple[str, ...] = BODY_JOINT_NAMES + tuple(VIRTUAL_POINTS)
POINT_INDEX = {name: index for index, name in enumerate(POINT_NAMES)}
NUM_POINTS = len(POINT_NAMES)


def mirror_name(name: str) -> str:
    """The name of the left/right counterpart of a point or entity (`name` itself on the midline)."""
    for side, other in (("left", "right"), ("right", "left")):
        if name.startswith(side + "_"):
            return other + name[len(side) :]
    return name


POINT_MIRROR_INDEX = tuple(POINT_INDEX[mirror_name(name)] for name in POINT_NAMES)
if POINT_MIRROR_INDEX[:NUM_BODY_JOINTS] != tuple(BODY_MIRROR_INDEX):
    raise RuntimeError("The point mirror map disagrees with unipose.skeleton.BODY_MIRROR_INDEX.")


def _unit(vectors: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norm, EPSILON)


def add_virtual_points(joints: np.ndarray) -> np.ndarray:
    """
    Append the virtual points of `VIRTUAL_POINTS` (hands, toes, limb midpoints, torso centre) to the joints.

    Args:
        joints (`np.ndarray` of shape `(batch, 22, 3)`):
            Body joint positions in metres.

    Returns:
        `np.ndarray` of shape `(batch, NUM_POINTS, 3)`: the joints followed by the virtual points, in the
        order of `POINT_NAMES`.
    """
    index = POINT_INDEX
    extra = []
    for name, (rule, parts) in VIRTUAL_POINTS.items():
        if rule == "extend":
            start, end = joints[:, index[parts[0]]], joints[:, index[parts[1]]]
            extra.append(end + _REACH[name.split("_", 1)[1]] * _unit(end - start))
        else:
            extra.append(joints[:, [index[part] for part in parts]].mean(axis=1))
    return np.concatenate([joints, np.stack(extra, axis=1)], axis=1)


def body_axes(joints: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """
    The body's own axes: left (across the hips), up (along the spine) and forward (their cross product).

    Args:
        joints (`np.ndarray` of shape `(batch, J >= 22, 3)`): joint positions (SMPL order first).

    Returns:
        `tuple` of three `np.ndarray` of shape `(batch, 3)`: unit left, spine and forward vectors.
    """
    index = POINT_INDEX
    left = _unit(joints[:, index["left_hip"]] - joints[:, index["right_hip"]])
    spine = _unit(joints[:, index["neck"]] - joints[:, index["pelvis"]])
    forward = _unit(np.cross(left, spine))
    return left, spine, forward


def heading_angles(joints: np.ndarray) -> np.ndarray:
    """
    The heading of each pose: the angle about the world's vertical (y) axis from +z to the body's facing
    direction, positive towards +x. A person turning to their left increases it.

    The facing direction is the horizontal part of `left x up` (defined unless the hips are vertical, as when
    lying on the side) plus the horizontal part of the torso's forward axis (defined unless the person lies
    on the back or front); the sum is defined for every posture and both terms agree when both are.

    Args:
        joints (`np.ndarray` of shape `(batch, J >= 22, 3)`): joint positions.

    Returns:
        `np.ndarray` of shape `(batch,)`: headings in radians, in `(-pi, pi]`.
    """
    left, _, forward = body_axes(joints)
    up = np.array([0.0, 1.0, 0.0])
    facing = np.cross(left, up) + forward
    return np.arctan2(facing[:, 0], facing[:, 2])


def normalize_heading(joints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """
    Centre each pose on its pelvis and turn it about the vertical axis so that it faces +z.

    Args:
        joints (`np.ndarray` of shape `(batch, J, 3)`): positions; the first 22 in SMPL order.

    Returns:
        `tuple`: the normalised positions (`(batch, J, 3)`) and the headings that were removed (`(batch,)`,
        radians, see [`heading_angles`]).
    """
    heading = heading_angles(joints)
    cos, sin = np.cos(heading), np.sin(heading)
    centred = joints - joints[:, POINT_INDEX["pelvis"]][:, None] * np.array([1.0, 0.0, 1.0])
    x, y, z = centred[..., 0], centred[..., 1], centred[..., 2]
    # Rotation by -heading about y: the facing direction (sin h, 0, cos h) goes to +z.
    new_x = cos[:, None] * x - sin[:, None] * z
    new_z = sin[:, None] * x + cos[:, None] * z
    return np.stack([new_x, y, new_z], axis=-1), heading


# ---------------------------------------------------------------------------------------------------------
# Kinds of measurement: units, bins and category names
# ---------------------------------------------------------------------------------------------------------

NEVER, SAY, RARE = 0, 1, 2
"""Eligibility of a category: never described, described (may be skipped at random), or rare enough to be
always described."""


@dataclass(frozen=True)
class MeasurementKind:
    """
    One way of measuring a pose, with the bins that turn its values into categories.

    Args:
        name (`str`): identifier, used by `Posecode.kind`.
        thresholds (`tuple[float, ...]`): increasing bin edges; `len(categories) == len(thresholds) + 1`.
        categories (`tuple[str, ...]`): category names, from the lowest values to the highest.
        jitter (`float`): largest random shift of the thresholds, in the kind's unit.
        signed (`bool`): the thresholds are symmetric about 0 and mirror images take opposite values;
            jitter then moves each threshold away from (or towards) zero, keeping the symmetry.
        unit (`str`): unit of the values, for documentation.
    """

    name: str
    thresholds: tuple[float, ...]
    categories: tuple[str, ...]
    jitter: float
    signed: bool = False
    unit: str = ""

    def __post_init__(self):
        if len(self.categories) != len(self.thresholds) + 1:
            raise ValueError(
                f"MeasurementKind {self.name!r} has {len(self.thresholds)} thresholds and "
                f"{len(self.categories)} categories; expected one more category than thresholds."
            )
        if list(self.thresholds) != sorted(self.thresholds):
            raise ValueError(f"MeasurementKind {self.name!r} has unsorted thresholds {self.thresholds}.")
        if self.signed and not np.allclose(self.thresholds, [-t for t in reversed(self.thresholds)]):
            raise ValueError(
                f"Signed kind {self.name!r} needs thresholds symmetric about 0, got {self.thresholds}."
            )


_RELATIVE_BINS = (-0.15, -0.05, 0.05, 0.15)  # metres
_ANGLE_CHANGE_BINS = (-80.0, -45.0, -18.0, 18.0, 45.0, 80.0)  # degrees
_CHANGE_CATEGORIES = ("much_less", "less", "slightly_less", "same", "slightly_more", "more", "much_more")
_COARSE_CHANGES = ("much_less", "less", "same", "more", "much_more")
_ROLL_CATEGORIES = ("right", "slightly_right", "none", "slightly_left", "left")
_TWIST_CATEGORIES = ("right_far", "right", "none", "left", "left_far")
_TILT_CATEGORIES = ("upright", "tilted", "horizontal", "tipped", "inverted")
_HEADING_CHANGE_CATEGORIES = (
    *("around_right", "back_right", "right", "slightly_right"),
    "same",
    *("slightly_left", "left", "back_left", "around_left"),
)

KINDS: dict[str, MeasurementKind] = {
    kind.name: kind
    for kind in (
        # Interior angle at a joint (180 = straight).
        MeasurementKind(
            "angle",
            (45.0, 75.0, 105.0, 135.0, 160.0),
            ("completely_bent", "mostly_bent", "square", "partly_bent", "slightly_bent", "straight"),
            jitter=5.0,
            unit="degree",
        ),
        MeasurementKind("distance", (0.20, 0.40, 0.80), ("close", "spaced", "apart", "far"), 0.03, unit="m"),
        # Position of the first point relative to the second along the body's left (x), up (y), forward (z).
        *(
            MeasurementKind(axis, _RELATIVE_BINS, categories, jitter=0.02, signed=True, unit="m")
            for axis, categories in (
                ("x", ("right", "slightly_right", "aligned", "slightly_left", "left")),
                ("y", ("below", "slightly_below", "level", "slightly_above", "above")),
                ("z", ("behind", "slightly_behind", "aligned", "slightly_front", "front")),
            )
        ),
        # Angle between a segment (first point -> second) and the world's up direction: 0 points up.
        MeasurementKind(
            "elevation",
            (10.0, 80.0, 100.0, 170.0),
            ("up", "raised", "horizontal", "lowered", "down"),
            jitter=3.0,
            unit="degree",
        ),
        # Height above the lowest point of the body.
        MeasurementKind("height", (0.10,), ("ground", "raised"), jitter=0.02, unit="m"),
        # Forward lean of the torso in the body's sagittal plane (0 upright, 90 horizontal, forward > 0).
        MeasurementKind(
            "pitch",
            (-35.0, -15.0, 15.0, 45.0, 80.0),
            ("back_far", "back", "upright", "forward", "bent", "bent_over"),
            jitter=4.0,
            unit="degree",
        ),
        # Sideways lean of the torso towards the body's left (> 0) or right (< 0).
        MeasurementKind("roll", (-30.0, -12.0, 12.0, 30.0), _ROLL_CATEGORIES, 3.0, True, "degree"),
        # Turn of the shoulder line relative to the hip line about the spine; > 0 turns the chest left.
        MeasurementKind("twist", (-45.0, -20.0, 20.0, 45.0), _TWIST_CATEGORIES, 4.0, True, "degree"),
        # Angle between the spine and the world's up direction: 0 upright, 90 lying, 180 upside down.
        MeasurementKind("tilt", (30.0, 60.0, 120.0, 150.0), _TILT_CATEGORIES, 5.0, unit="degree"),
        # Upward component of the body's forward axis: > 0 faces the sky (lying on the back).
        MeasurementKind("facing", (-0.6, 0.6), ("down", "sideways", "up"), jitter=0.05),
        # Upward component of the body's left axis: < 0 has the left side down (lying on the left side).
        MeasurementKind("side_down", (-0.6, 0.6), ("left", "level", "right"), jitter=0.05, signed=True),
        # ---- changes from pose A to pose B (B minus A) ----
        MeasurementKind("angle_change", _ANGLE_CHANGE_BINS, _CHANGE_CATEGORIES, 5.0, True, "degree"),
        MeasurementKind("distance_change", (-0.4, -0.1, 0.1, 0.4), _COARSE_CHANGES, 0.03, True, "m"),
        MeasurementKind("position_change", (-0.40, -0.15, 0.15, 0.40), _COARSE_CHANGES, 0.03, True, "m"),
        MeasurementKind(
            "heading_change",
            (-150.0, -120.0, -60.0, -20.0, 20.0, 60.0, 120.0, 150.0),
            _HEADING_CHANGE_CATEGORIES,
            jitter=5.0,
            signed=True,
            unit="degree",
        ),
        # Difference of two category indices (B minus A), e.g. of "height" or of a fired super-code.
        MeasurementKind("category_change", (-0.5, 0.5), ("less", "same", "more"), 0.0, True),
    )
}

_TORSO_KINDS = ("pitch", "roll", "twist", "tilt", "facing", "side_down")
_CHANGE_OF = {
    "angle": "angle_change",
    "pitch": "angle_change",
    "roll": "angle_change",
    "twist": "angle_change",
    "distance": "distance_change",
    "x": "position_change",
    "y": "position_change",
    "z": "position_change",
    "height": "category_change",
}


# ---------------------------------------------------------------------------------------------------------
# The posecodes
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Posecode:
    """
    One measured quantity of a pose.

    Args:
        name (`str`): unique identifier, e.g. `"left_knee_angle"`; mirror codes swap `left`/`right`.
        kind (`str`): a key of `KINDS`.
        points (`tuple[str, ...]`): the points measured (names of `POINT_NAMES`): three for an angle (the
            middle one is the vertex), two for distances, relative positions and elevations (first relative
            to second), one for a height, none for the torso kinds.
        eligibility (`tuple[int, ...]`): `NEVER`, `SAY` or `RARE` per category of the kind.
        subject (`str`): the entity the caption talks about (`"left_knee"`, `"hands"`, `"torso"`).
        other (`str`, *optional*): the entity it is compared with (`"head"`), if any.
        phrase (`str`, *optional*): template group in `unipose.data.templates`; defaults to the kind.
        thresholds (`tuple[float, ...]`, *optional*): bin edges replacing the kind's.
        categories (`tuple[str, ...]`, *optional*): category names replacing the kind's (with `thresholds`).
        in_pairs (`bool`): also measured as a change between two poses.
    """

    name: str
    kind: str
    points: tuple[str, ...]
    eligibility: tuple[int, ...]
    subject: str
    other: Optional[str] = None
    phrase: Optional[str] = None
    thresholds: Optional[tuple[float, ...]] = None
    categories: Optional[tuple[str, ...]] = None
    in_pairs: bool = True

    @property
    def category_names(self) -> tuple[str, ...]:
        return self.categories or KINDS[self.kind].categories


_N, _S, _R = NEVER, SAY, RARE


def _swap_sides(text: str) -> str:
    """Swap the words `left` and `right` in an underscore-separated name."""
    swap = {"left": "right", "right": "left"}
    return "_".join(swap.get(token, token) for token in text.split("_"))


def _with_mirror(code: Posecode) -> list[Posecode]:
    """A left-side posecode followed by its right-side mirror image; a midline code alone."""
    mirrored_name = _swap_sides(code.name)
    if mirrored_name == code.name:
        return [code]
    # Mirroring negates x: a category of an "x" code becomes the opposite one of its mirror.
    eligibility = code.eligibility[::-1] if code.kind == "x" else code.eligibility
    mirrored = Posecode(
        name=mirrored_name,
        kind=code.kind,
        points=tuple(mirror_name(point) for point in code.points),
        eligibility=eligibility,
        subject=mirror_name(code.subject),
        other=None if code.other is None else mirror_name(code.other),
        phrase=code.phrase,
        thresholds=code.thresholds,
        categories=code.categories,
        in_pairs=code.in_pairs,
    )
    return [code, mirrored]


_ELIGIBILITY_LETTERS = {"N": NEVER, "S": SAY, "R": RARE}
_RELATIONS = ("distance", "x", "y", "z")


# The posecodes in the order a caption walks the body: whole body and torso, then arms, then legs. Each
# left-side code gets its right-side mirror. `says` has one letter per category of the kind: `N`ever, `S`ay
# or `R`are; `pairs` says whether the code is also measured as a change between two poses. The subject
# defaults to the angle's vertex or the first point, and a relation's other entity to its second point; a
# relation with a subject of its own (a pair of sides: "hands", "arms") uses the pair phrases.
_POSECODE_TABLE = """
# name                              kind      says   pairs subject        points
# ---- whole body and torso ----
torso_tilt                           tilt      NNNNR  no    body           -
body_facing                          facing    NNN    no    body           -
body_side_down                       side_down NNN    no    body           -
torso_pitch                          pitch     SSNSSS yes   torso          -
torso_roll                           roll      SNNNS  yes   torso          -
torso_twist                          twist     SSNSS  yes   torso          -
head_vs_pelvis_y                     y         RNNNN  no    -              head pelvis
# ---- arms ----
left_elbow_angle                     angle     RSSSNS yes   -              left_shoulder left_elbow left_wrist
left_upper_arm_elevation             elevation SNSNN  no    left_upper_arm left_shoulder left_elbow
left_forearm_elevation               elevation SNSNN  no    left_forearm   left_elbow left_wrist
left_hand_vs_head_y                  y         NNSNR  yes   -              left_hand head
left_elbow_vs_head_y                 y         NNNNS  no    -              left_elbow head
left_hand_vs_shoulder_y              y         NNSNS  yes   -              left_hand left_shoulder
left_elbow_vs_shoulder_y             y         NNNNS  yes   -              left_elbow left_shoulder
left_hand_vs_pelvis_y                y         NNSNS  yes   -              left_hand pelvis
left_hand_vs_knee_y                  y         SNNNN  yes   -              left_hand left_knee
hands_y                              y         SNNNS  yes   -              left_hand right_hand
left_hand_vs_torso_z                 z         SNNNS  yes   -              left_hand torso
left_elbow_vs_torso_z                z         SNNNN  no    -              left_elbow torso
hands_z                              z         NNNNN  yes   -              left_hand right_hand
# Only the outward direction: a hand inside its shoulder line is the common case.
left_hand_vs_shoulder_x              x         NNNNS  yes   -              left_hand left_shoulder
# A left hand to the right of the right shoulder reaches across the body.
left_hand_vs_right_shoulder_x        x         SNNNN  no    -              left_hand right_shoulder
arms_crossed                         x         RNNNN  no    arms           left_hand right_hand
hands_distance                       distance  SNNS   yes   hands          left_hand right_hand
elbows_distance                      distance  RNNN   no    elbows         left_elbow right_elbow
left_hand_vs_head_distance           distance  SNNN   yes   -              left_hand head
left_hand_vs_right_shoulder_distance distance  SNNN   yes   -              left_hand right_shoulder
left_hand_vs_shoulder_distance       distance  SNNN   no    -              left_hand left_shoulder
left_hand_vs_hip_distance            distance  SNNN   yes   -              left_hand left_hip
left_hand_vs_torso_distance          distance  SNNN   no    -              left_hand torso
left_hand_vs_right_elbow_distance    distance  SNNN   no    -              left_hand right_elbow
left_hand_vs_knee_distance           distance  SNNN   yes   -              left_hand left_knee
left_hand_vs_right_knee_distance     distance  SNNN   no    -              left_hand right_knee
left_hand_vs_foot_distance           distance  RNNN   yes   -              left_hand left_foot
left_hand_vs_right_foot_distance     distance  RNNN   no    -              left_hand right_foot
left_hand_height                     height    RN     yes   -              left_hand
left_elbow_height                    height    RN     no    -              left_elbow
# ---- legs ----
left_knee_angle                      angle     RSSSNS yes   -              left_hip left_knee left_ankle
left_thigh_elevation                 elevation RRSNN  no    left_thigh     left_hip left_knee
left_shin_elevation                  elevation RRSNN  no    left_shin      left_knee left_ankle
left_knee_vs_hip_y                   y         NNSNR  yes   -              left_knee left_hip
left_foot_vs_knee_y                  y         NNSNR  no    -              left_foot left_knee
left_foot_vs_right_knee_y            y         NNNNS  no    -              left_foot right_knee
left_foot_vs_hip_y                   y         NNSNR  yes   -              left_foot left_hip
feet_y                               y         SNNNS  yes   -              left_foot right_foot
left_knee_vs_hip_z                   z         SNNNS  yes   -              left_knee left_hip
left_foot_vs_hip_z                   z         SNNNS  yes   -              left_foot left_hip
feet_z                               z         SNNNS  yes   -              left_foot right_foot
# A left foot to the right of the left hip steps across the body.
left_foot_vs_hip_x                   x         SNNNN  yes   -              left_foot left_hip
legs_crossed                         x         RNNNN  no    legs           left_foot right_foot
feet_distance                        distance  SNSR   yes   feet           left_foot right_foot
knees_distance                       distance  NNSS   yes   knees          left_knee right_knee
left_foot_vs_right_knee_distance     distance  RNNN   no    -              left_foot right_knee
left_knee_height                     height    RN     yes   -              left_knee
left_foot_height                     height    NS     yes   -              left_foot
pelvis_height                        height    RNN    no    -              pelvis
head_height                          height    RN     no    -              head
"""
# The pelvis joint sits well inside the body: seated on the floor it is ~0.15 m above the lowest joint, lying
# down (on the side, or with the knees up) up to ~0.5 m, bent over from standing ~0.9 m; the second bin tells
# lying from bending over.
_OWN_BINS = {"pelvis_height": {"thresholds": (0.17, 0.60), "categories": ("ground", "low", "raised")}}
_PAIR_PHRASES = {"distance": "distance_pair", "x": "crossed"}


def _build_posecodes() -> tuple[Posecode, ...]:
    codes = []
    for line in _POSECODE_TABLE.splitlines():
        if not line or line.startswith("#"):
            continue
        name, kind, says, pairs, subject, *points = line.split()
        points = () if points == ["-"] else tuple(points)
        options = dict(_OWN_BINS.get(name, {}), in_pairs=pairs == "yes")
        if subject != "-":
            options["phrase"] = _PAIR_PHRASES.get(kind) if kind in _RELATIONS else None
        elif kind in _RELATIONS:
            subject, options["other"] = points[0], points[1]
        else:
            subject = points[1] if kind == "angle" else points[0]
        eligibility = tuple(_ELIGIBILITY_LETTERS[letter] for letter in says)
        codes += _with_mirror(Posecode(name, kind, points, eligibility, subject, **options))
    return tuple(codes)


POSECODES: tuple[Posecode, ...] = _build_posecodes()


# ---------------------------------------------------------------------------------------------------------
# Measurements
# ---------------------------------------------------------------------------------------------------------


def _angle_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angle in degrees between vectors `(..., 3)`; `atan2` keeps it accurate near 0 and 180."""
    return np.degrees(np.arctan2(np.linalg.norm(np.cross(a, b), axis=-1), np.sum(a * b, axis=-1)))


def torso_measures(points: np.ndarray) -> dict[str, np.ndarray]:
    """
    The whole-body measures: torso pitch, roll and twist in the body's heading frame, and the tilt, facing
    and side-down measures against the world's vertical.

    Args:
        points (`np.ndarray` of shape `(batch, P, 3)`): heading-normalised points (see [`normalize_heading`]).

    Returns:
        `dict[str, np.ndarray]`: one `(batch,)` array per kind of `_TORSO_KINDS`.
    """
    index = POINT_INDEX
    spine = points[:, index["neck"]] - points[:, index["pelvis"]]
    length = np.maximum(np.linalg.norm(spine, axis=-1), EPSILON)
    left, spine_unit, forward = body_axes(points)
    hips = points[:, index["left_hip"]] - points[:, index["right_hip"]]
    shoulders = points[:, index["left_shoulder"]] - points[:, index["right_shoulder"]]
    # Twist: signed angle from the hip line to the shoulder line about the spine, both projected on the
    # plane across the spine.
    hips = hips - np.sum(hips * spine_unit, -1, keepdims=True) * spine_unit
    shoulders = shoulders - np.sum(shoulders * spine_unit, -1, keepdims=True) * spine_unit
    twist = np.degrees(
        np.arctan2(np.sum(np.cross(hips, shoulders) * spine_unit, -1), np.sum(hips * shoulders, -1))
    )
    return {
        "pitch": np.degrees(np.arctan2(spine[:, 2], spine[:, 1])),
        "roll": np.degrees(np.arcsin(np.clip(spine[:, 0] / length, -1.0, 1.0))),
        "twist": twist,
        "tilt": np.degrees(np.arccos(np.clip(spine[:, 1] / length, -1.0, 1.0))),
        "facing": forward[:, 1],
        "side_down": left[:, 1],
    }


def _compiled_fields(codes, kinds, edges, mirror_index: np.ndarray, mirror_sign: np.ndarray) -> dict:
    """
    The fields both tables compile alike: each code's bin edges padded with +inf, its eligibilities padded
    with `NEVER`, its kind's jitter and sign, the mirror map and the index by name.
    """
    thresholds = np.full((len(codes), max(map(len, edges))), np.inf)
    eligibility = np.full((len(codes), thresholds.shape[1] + 1), NEVER, dtype=np.int8)
    for i, (code_edges, code) in enumerate(zip(edges, codes, strict=True)):
        thresholds[i, : len(code_edges)] = code_edges
        eligibility[i, : len(code.eligibility)] = code.eligibility
    return {
        "codes": codes,
        "thresholds": thresholds,
        "jitter": np.array([kind.jitter for kind in kinds]),
        "signed": np.array([kind.signed for kind in kinds]),
        "eligibility": eligibility,
        "mirror_index": mirror_index,
        "mirror_sign": mirror_sign,
        "canonical": np.minimum(np.arange(len(codes)), mirror_index),
        "name_index": {code.name: i for i, code in enumerate(codes)},
    }


class _CodeTable:
    """What the compiled tables share: their length and the index of a code by name."""

    def __len__(self) -> int:
        return len(self.codes)

    def index(self, name: str) -> int:
        if name not in self.name_index:
            raise KeyError(f"{type(self).__name__} has no code named {name!r}.")
        return self.name_index[name]


@dataclass(frozen=True)
class PosecodeTable(_CodeTable):
    """
    A compiled list of posecodes: index arrays for vectorised measurement, thresholds, eligibility, and the
    mirror map. Build it with [`PosecodeTable.build`].
    """

    codes: tuple[Posecode, ...]
    kinds: tuple[MeasurementKind, ...]
    thresholds: np.ndarray  # (S, T) float, padded with +inf
    jitter: np.ndarray  # (S,)
    signed: np.ndarray  # (S,) bool
    eligibility: np.ndarray  # (S, C) int8, padded with NEVER
    num_categories: np.ndarray  # (S,)
    mirror_index: np.ndarray  # (S,)
    mirror_sign: np.ndarray  # (S,) +1 or -1: value of the mirror code on the mirrored pose, times this
    canonical: np.ndarray  # (S,) min(index, mirror index): codes that share random draws
    groups: tuple[tuple[str, np.ndarray, np.ndarray], ...]  # (kind, code indices, point indices)
    name_index: dict

    @classmethod
    def build(cls, codes: tuple[Posecode, ...]) -> "PosecodeTable":
        kinds = tuple(KINDS[code.kind] for code in codes)
        for code, kind in zip(codes, kinds, strict=True):
            names = code.category_names
            if (
                len(code.eligibility) != len(names)
                or len(names) != len(code.thresholds or kind.thresholds) + 1
            ):
                raise ValueError(
                    f"Posecode {code.name!r} gives {len(code.eligibility)} eligibilities for the categories "
                    f"{names} and {len(code.thresholds or kind.thresholds)} thresholds; expected one "
                    f"eligibility per category and one category more than thresholds."
                )
            unknown = [point for point in code.points if point not in POINT_INDEX]
            if unknown:
                raise ValueError(f"Posecode {code.name!r} names unknown points {unknown}.")
        mirror_index, mirror_sign = _mirror_map(codes)
        for i, code in enumerate(codes):
            expected = code.eligibility[::-1] if mirror_sign[i] < 0 else code.eligibility
            if codes[mirror_index[i]].eligibility != expected:
                raise ValueError(
                    f"Posecodes {code.name!r} and its mirror {codes[mirror_index[i]].name!r} disagree on "
                    f"eligibility: {code.eligibility} vs {codes[mirror_index[i]].eligibility}."
                )
        groups = []
        for kind_name in dict.fromkeys(code.kind for code in codes):
            members = np.array([i for i, code in enumerate(codes) if code.kind == kind_name])
            points = np.array([[POINT_INDEX[p] for p in codes[i].points] for i in members], dtype=np.int64)
            groups.append((kind_name, members, points))
        edges = [code.thresholds or kind.thresholds for code, kind in zip(codes, kinds, strict=True)]
        return cls(
            **_compiled_fields(codes, kinds, edges, mirror_index, mirror_sign),
            kinds=kinds,
            num_categories=np.array([len(code.eligibility) for code in codes]),
            groups=tuple(groups),
        )


def _mirror_map(codes: tuple[Posecode, ...]) -> tuple[np.ndarray, np.ndarray]:
    """
    For each code, the code measuring the same quantity on the mirrored pose and the sign relating them.

    Under the mirror, point p goes to mirror(p) with its x negated. A code on points (a, b) maps to the code
    on (mirror(a), mirror(b)) with the same value for every kind but "x" (negated); if only the reversed
    pair (mirror(b), mirror(a)) exists, relative positions change sign once more. Torso roll, twist and
    side-down are their own mirrors with the sign flipped.
    """
    lookup = {(code.kind, code.points): i for i, code in enumerate(codes)}
    index, sign = np.zeros(len(codes), dtype=np.int64), np.ones(len(codes))
    for i, code in enumerate(codes):
        flips = -1.0 if code.kind in ("x", "roll", "twist", "side_down") else 1.0
        mirrored = tuple(mirror_name(p) for p in code.points)
        if (code.kind, mirrored) in lookup:
            index[i], sign[i] = lookup[(code.kind, mirrored)], flips
        elif (code.kind, mirrored[::-1]) in lookup and code.kind in ("x", "y", "z", "distance"):
            index[i] = lookup[(code.kind, mirrored[::-1])]
            sign[i] = flips * (-1.0 if code.kind in ("x", "y", "z") else 1.0)
        else:
            raise ValueError(f"Posecode {code.name!r} on {code.points} has no mirror code.")
        if KINDS[code.kind].signed is False and sign[i] < 0:
            raise ValueError(
                f"Posecode {code.name!r} changes sign under the mirror but its kind is not signed."
            )
    return index, sign


def measure_posecodes(points: np.ndarray, table: PosecodeTable) -> np.ndarray:
    """
    Measure every posecode of `table` on a batch of poses.

    Args:
        points (`np.ndarray` of shape `(batch, NUM_POINTS, 3)`):
            Heading-normalised points with the virtual ones (see [`prepare_points`]).
        table (`PosecodeTable`): the posecodes.

    Returns:
        `np.ndarray` of shape `(batch, len(table))`: values in the units of each code's kind.
    """
    values = np.empty((points.shape[0], len(table)))
    torso = None
    lowest = points[:, :, 1].min(axis=1, keepdims=True)
    for kind, members, index in table.groups:
        if kind == "angle":
            vertex = points[:, index[:, 1]]
            values[:, members] = _angle_between(
                points[:, index[:, 0]] - vertex, points[:, index[:, 2]] - vertex
            )
        elif kind == "distance":
            values[:, members] = np.linalg.norm(points[:, index[:, 0]] - points[:, index[:, 1]], axis=-1)
        elif kind in ("x", "y", "z"):
            axis = "xyz".index(kind)
            values[:, members] = points[:, index[:, 0], axis] - points[:, index[:, 1], axis]
        elif kind == "elevation":
            segment = points[:, index[:, 1]] - points[:, index[:, 0]]
            cosine = segment[..., 1] / np.maximum(np.linalg.norm(segment, axis=-1), EPSILON)
            values[:, members] = np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0)))
        elif kind == "height":
            values[:, members] = points[:, index[:, 0], 1] - lowest
        elif kind in _TORSO_KINDS:
            torso = torso_measures(points) if torso is None else torso
            values[:, members] = torso[kind][:, None]
        else:
            raise ValueError(f"No measurement is defined for kind {kind!r}.")
    return values


def prepare_points(joints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """
    Heading-normalise joints and add the virtual points.

    Args:
        joints (`np.ndarray` of shape `(batch, 22, 3)`): joint positions in metres, y up.

    Returns:
        `tuple`: points `(batch, NUM_POINTS, 3)` and the removed headings `(batch,)` in radians.
    """
    normalized, heading = normalize_heading(np.asarray(joints, dtype=np.float64))
    return add_virtual_points(normalized), heading


def categorize(values: np.ndarray, table: PosecodeTable, offsets: Optional[np.ndarray] = None) -> np.ndarray:
    """
    Bin measurements into category indices, optionally with shifted thresholds.

    Args:
        values (`np.ndarray` of shape `(..., S)`): measurements, `S = len(table)`.
        table (`PosecodeTable`): the codes measured.
        offsets (`np.ndarray` of shape `(..., S)`, *optional*): threshold shifts in `[-1, 1]`, scaled by each
            kind's jitter. For signed kinds a positive offset moves every threshold away from zero.

    Returns:
        `np.ndarray` of shape `(..., S)`, int64: category indices.
    """
    thresholds = np.broadcast_to(table.thresholds, values.shape + table.thresholds.shape[-1:])
    if offsets is not None:
        shift = offsets * table.jitter
        direction = np.where(table.signed[:, None], np.sign(table.thresholds), 1.0)
        thresholds = thresholds + shift[..., None] * direction
    return np.sum(values[..., None] > thresholds, axis=-1)


# ---------------------------------------------------------------------------------------------------------
# Pair codes: changes from pose A to pose B
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Paircode:
    """
    One change between two poses: of a posecode's value (`base`), or of the heading (`base=None`).

    Args:
        name (`str`): identifier, e.g. `"left_knee_angle_change"`.
        kind (`str`): a change kind of `KINDS`.
        base (`str`, *optional*): the name of the posecode whose value changes.
        eligibility (`tuple[int, ...]`): per category of the kind.
    """

    name: str
    kind: str
    base: Optional[str]
    eligibility: tuple[int, ...]


def _build_paircodes(codes: tuple[Posecode, ...]) -> tuple[Paircode, ...]:
    # A turn of more than ~60 degrees is always said.
    pair_codes = [Paircode("heading_change", "heading_change", None, (_R, _R, _R, _S, _N, _S, _R, _R, _R))]
    for code in codes:
        if not code.in_pairs or code.kind not in _CHANGE_OF:
            continue
        kind = KINDS[_CHANGE_OF[code.kind]]
        eligibility = tuple(_N if category == "same" else _S for category in kind.categories)
        if kind.name == "category_change":
            eligibility = (_S, _N, _S)
        pair_codes.append(Paircode(f"{code.name}_change", kind.name, code.name, eligibility))
    return tuple(pair_codes)


PAIRCODES: tuple[Paircode, ...] = _build_paircodes(POSECODES)


@dataclass(frozen=True)
class PaircodeTable(_CodeTable):
    """Compiled pair codes, aligned with a [`PosecodeTable`] of the base posecodes."""

    codes: tuple[Paircode, ...]
    posecodes: PosecodeTable
    base_index: np.ndarray  # (Q,) index into the posecode table, -1 for the heading
    thresholds: np.ndarray  # (Q, T)
    jitter: np.ndarray
    signed: np.ndarray
    eligibility: np.ndarray  # (Q, C)
    mirror_index: np.ndarray
    mirror_sign: np.ndarray
    canonical: np.ndarray
    name_index: dict

    @classmethod
    def build(cls, codes: tuple[Paircode, ...], posecodes: PosecodeTable) -> "PaircodeTable":
        kinds = [KINDS[code.kind] for code in codes]
        base_index = np.array([-1 if code.base is None else posecodes.index(code.base) for code in codes])
        position = {int(b): i for i, b in enumerate(base_index) if b >= 0}
        mirror_index = np.array(
            [i if b < 0 else position[int(posecodes.mirror_index[b])] for i, b in enumerate(base_index)]
        )
        # The heading change flips sign under the mirror; other changes follow their base code.
        mirror_sign = np.array([-1.0 if b < 0 else posecodes.mirror_sign[b] for b in base_index])
        edges = [kind.thresholds for kind in kinds]
        return cls(
            **_compiled_fields(codes, kinds, edges, mirror_index, mirror_sign),
            posecodes=posecodes,
            base_index=base_index,
        )


def _wrap_degrees(angles: np.ndarray) -> np.ndarray:
    return (angles + 180.0) % 360.0 - 180.0


def measure_paircodes(
    values_a: np.ndarray,
    values_b: np.ndarray,
    categories_a: np.ndarray,
    categories_b: np.ndarray,
    heading_a: np.ndarray,
    heading_b: np.ndarray,
    table: PaircodeTable,
) -> np.ndarray:
    """
    Measure the changes from poses A to poses B.

    Args:
        values_a, values_b (`np.ndarray` of shape `(batch, S)`): posecode values of A and B.
        categories_a, categories_b (`np.ndarray` of shape `(batch, S)`): their categories (the
            "category_change" kind compares categories, not values).
        heading_a, heading_b (`np.ndarray` of shape `(batch,)`): headings in radians.
        table (`PaircodeTable`): the pair codes.

    Returns:
        `np.ndarray` of shape `(batch, len(table))`: B minus A, with angles wrapped to `[-180, 180)`.
    """
    changes = np.empty((values_a.shape[0], len(table)))
    base = table.base_index
    has_base = base >= 0
    kinds = np.array([code.kind for code in table.codes])
    value_delta = values_b[:, base[has_base]] - values_a[:, base[has_base]]
    category_delta = (categories_b[:, base[has_base]] - categories_a[:, base[has_base]]).astype(np.float64)
    by_category = kinds[has_base] == "category_change"
    delta = np.where(by_category, category_delta, value_delta)
    is_angle = kinds[has_base] == "angle_change"
    changes[:, has_base] = np.where(is_angle, _wrap_degrees(delta), delta)
    changes[:, ~has_base] = _wrap_degrees(np.degrees(heading_b - heading_a))[:, None]
    return changes


def categorize_changes(
    changes: np.ndarray, table: PaircodeTable, offsets: Optional[np.ndarray] = None
) -> np.ndarray:
    """[`categorize`] for pair codes: `changes` `(..., Q)` -> category indices `(..., Q)`."""
    thresholds = np.broadcast_to(table.thresholds, changes.shape + table.thresholds.shape[-1:])
    if offsets is not None:
        direction = np.where(table.signed[:, None], np.sign(table.thresholds), 1.0)
        thresholds = thresholds + (offsets * table.jitter)[..., None] * direction
    return np.sum(changes[..., None] > thresholds, axis=-1)


__all__ = [
    "EPSILON",
    "HAND_REACH",
    "KINDS",
    "NEVER",
    "NUM_POINTS",
    "PAIRCODES",
    "POINT_INDEX",
    "POINT_MIRROR_INDEX",
    "POINT_NAMES",
    "POSECODES",
    "RARE",
    "SAY",
    "TOE_REACH",
    "VIRTUAL_POINTS",
    "MeasurementKind",
    "Paircode",
    "PaircodeTable",
    "Posecode",
    "PosecodeTable",
    "add_virtual_points",
    "body_axes",
    "categorize",
    "categorize_changes",
    "heading_angles",
    "measure_paircodes",
    "measure_posecodes",
    "mirror_name",
    "normalize_heading",
    "prepare_points",
    "torso_measures",
]
