"""Procedural SMPL body poses: plausible, varied and reproducible, with no motion-capture data.

Every pose is built from joint angles. A category (standing, walking, sitting, lying on the back, ...) is
a table of angle ranges per joint; the sampler draws uniformly inside the ranges, adds a little jitter,
clips to anatomical joint limits and turns the angles into SMPL axis-angle. Arms that a category leaves
free take one of a few arm styles (by the sides, hands on hips, raised, ...). The heading (the turn about
the vertical axis) is always uniform at random; lying categories tilt the root so the body is horizontal.

Conventions (all tables are in degrees):

- SMPL axes in the rest pose (a T-pose): x points to the body's left, y up, z forward. Joint rotations are
  local, relative to the parent joint, and in the rest pose every joint frame is aligned with these axes.
- A joint's angles `(x, y, z)` are intrinsic Euler angles composed in the joint's `order`: order `"xzy"`
  means `R = R_x(x) @ R_z(z) @ R_y(y)`. Each order puts the bone's own axis last (the twist), so that the
  first two angles swing the bone: the legs, spine and head use `"xzy"`, the collars and shoulders
  `"zyx"` and the elbows and wrists `"yzx"`.
- Angles of right-side joints are written in mirrored coordinates: the same numbers on `left_knee` and
  `right_knee` describe mirror images of each other. (The sampler negates their y and z angles, which is
  the mirror `M R M` with `M = diag(-1, 1, 1)`.) In these coordinates, for either side:

  =========  ===========================================================================================
  joint      meaning of a positive angle
  =========  ===========================================================================================
  hip        x: extension (thigh backwards; flexion is negative), y: outward twist, z: abduction
  knee       x: flexion
  ankle      x: plantar flexion (toes down)
  spine*     x: forward bend, y: turn towards the body's left, z: side bend towards the body's right
  neck/head  as the spine (x: look down)
  collar     y: retraction (protraction is negative), z: elevation (shrug)
  shoulder   z: elevation of the arm (-90 down by the side, 0 sideways, 90 overhead); y: swing backwards
             (-90 points the arm forwards); x: twist (positive turns the elbow's bend downwards)
  elbow      y: extension (flexion is negative)
  wrist      z: extension (back of the hand up in the T-pose)
  =========  ===========================================================================================

Example:

```python
>>> from unipose.pose_sampler import PoseSampler
>>> sample = PoseSampler(seed=0).sample(4)
>>> sample.poses.shape, sample.poses.dtype
((4, 22, 3), dtype('float32'))
```
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple, Optional

import numpy as np
import torch

from .files import atomic_path
from .rotations import (
    axis_angle_to_matrix,
    elementary_rotation,
    euler_angles_to_matrix,
    matrix_to_axis_angle,
    matrix_to_euler_angles,
)
from .skeleton import BODY_JOINT_NAMES, BODY_MIRROR_INDEX, JOINT_INDEX, NUM_BODY_JOINTS

AxisRange = tuple[float, float]
# Ranges of one joint per Euler axis; an axis left out keeps the joint's neutral range.
JointRanges = Mapping[str, AxisRange]

_AXES = "xyz"
_SIDES = ("left", "right")
_ARM_PARTS = ("collar", "shoulder", "elbow", "wrist")
_HIP_JOINTS = ("left_hip", "right_hip")


class JointLimit(NamedTuple):
    """Euler order and anatomical range of motion of one joint, in degrees (mirrored coordinates)."""

    order: str
    x: AxisRange
    y: AxisRange
    z: AxisRange


# Range of motion per body part, both sides alike (mirrored coordinates). Values follow the usual clinical
# ranges of motion, a little generous where several SMPL joints share one anatomical motion (three spine
# joints share the trunk's bend; collar and shoulder share the arm's elevation).
_PART_LIMITS: dict[str, JointLimit] = {
    #                      order     x              y              z
    "hip": JointLimit("xzy", (-140.0, 35.0), (-45.0, 50.0), (-35.0, 75.0)),
    "knee": JointLimit("xzy", (-5.0, 150.0), (-25.0, 25.0), (-5.0, 5.0)),
    "ankle": JointLimit("xzy", (-40.0, 55.0), (-20.0, 20.0), (-25.0, 25.0)),
    "foot": JointLimit("xzy", (-30.0, 40.0), (-5.0, 5.0), (-5.0, 5.0)),
    "spine1": JointLimit("xzy", (-30.0, 50.0), (-30.0, 30.0), (-25.0, 25.0)),
    "spine2": JointLimit("xzy", (-20.0, 40.0), (-30.0, 30.0), (-25.0, 25.0)),
    "spine3": JointLimit("xzy", (-20.0, 35.0), (-30.0, 30.0), (-25.0, 25.0)),
    "neck": JointLimit("xzy", (-45.0, 50.0), (-45.0, 45.0), (-35.0, 35.0)),
    "head": JointLimit("xzy", (-40.0, 40.0), (-45.0, 45.0), (-30.0, 30.0)),
    "collar": JointLimit("zyx", (-15.0, 15.0), (-30.0, 20.0), (-20.0, 35.0)),
    "shoulder": JointLimit("zyx", (-95.0, 95.0), (-88.0, 60.0), (-95.0, 95.0)),
    "elbow": JointLimit("yzx", (-90.0, 90.0), (-150.0, 5.0), (-15.0, 15.0)),
    "wrist": JointLimit("yzx", (-30.0, 30.0), (-35.0, 35.0), (-80.0, 80.0)),
}


def _part(joint_name: str) -> str:
    for side in _SIDES:
        if joint_name.startswith(side + "_"):
            return joint_name[len(side) + 1 :]
    return joint_name


# The table per joint (the root, `pelvis`, is the global orientation and has no limit).
JOINT_LIMITS_DEG: dict[str, JointLimit] = {name: _PART_LIMITS[_part(name)] for name in BODY_JOINT_NAMES[1:]}

# Intrinsic Euler order of the global orientation before the heading: pitch, then roll, then yaw.
ROOT_EULER_ORDER = "xzy"

# Standard deviation of the per-joint jitter added on top of a category's ranges, degrees per axis (x, y, z).
_PART_JITTER_DEG: dict[str, tuple[float, float, float]] = {
    "pelvis": (2.0, 2.0, 2.0),
    "hip": (3.0, 3.0, 2.0),
    "knee": (3.0, 2.0, 0.5),
    "ankle": (3.0, 2.0, 2.0),
    "foot": (2.0, 0.5, 0.5),
    "spine1": (2.0, 2.0, 1.5),
    "spine2": (2.0, 2.0, 1.5),
    "spine3": (2.0, 2.0, 1.5),
    "neck": (3.0, 4.0, 2.0),
    "head": (3.0, 4.0, 2.0),
    "collar": (1.5, 2.0, 2.0),
    "shoulder": (4.0, 4.0, 4.0),
    "elbow": (4.0, 4.0, 2.0),
    "wrist": (4.0, 4.0, 5.0),
}

# What a joint does when a category says nothing about it: a relaxed, near-rest position.
_NEUTRAL: dict[str, JointRanges] = {
    "pelvis": {"x": (-4.0, 4.0), "y": (-5.0, 5.0), "z": (-3.0, 3.0)},
    "hip": {"x": (-6.0, 4.0), "y": (-5.0, 12.0), "z": (-2.0, 8.0)},
    "knee": {"x": (0.0, 8.0), "y": (-3.0, 3.0), "z": (0.0, 0.0)},
    "ankle": {"x": (-5.0, 8.0), "y": (-5.0, 5.0), "z": (-4.0, 4.0)},
    "foot": {"x": (-5.0, 5.0), "y": (0.0, 0.0), "z": (0.0, 0.0)},
    "spine1": {"x": (-3.0, 6.0), "y": (-5.0, 5.0), "z": (-3.0, 3.0)},
    "spine2": {"x": (-2.0, 5.0), "y": (-4.0, 4.0), "z": (-3.0, 3.0)},
    "spine3": {"x": (-2.0, 5.0), "y": (-4.0, 4.0), "z": (-3.0, 3.0)},
    "neck": {"x": (-5.0, 10.0), "y": (-10.0, 10.0), "z": (-5.0, 5.0)},
    "head": {"x": (-8.0, 10.0), "y": (-12.0, 12.0), "z": (-5.0, 5.0)},
    # Arms relaxed by the sides, elbows slightly bent.
    "collar": {"x": (-3.0, 3.0), "y": (-5.0, 5.0), "z": (-8.0, 2.0)},
    "shoulder": {"x": (-10.0, 20.0), "y": (-12.0, 12.0), "z": (-82.0, -70.0)},
    "elbow": {"x": (-5.0, 5.0), "y": (-25.0, -5.0), "z": (-5.0, 5.0)},
    "wrist": {"x": (-10.0, 10.0), "y": (-10.0, 10.0), "z": (-15.0, 10.0)},
}

# One arm's position, for the arms a category leaves free. Parts left out keep their neutral ranges.
ARM_STYLES: dict[str, dict[str, JointRanges]] = {
    "down": {},
    "hip": {  # hand on the hip: arm out and back, elbow bent, the bend turned inwards
        "shoulder": {"x": (55.0, 75.0), "y": (8.0, 22.0), "z": (-65.0, -55.0)},
        "elbow": {"y": (-95.0, -85.0)},
    },
    "side": {  # arm out to the side
        "collar": {"z": (0.0, 10.0)},
        "shoulder": {"x": (-10.0, 10.0), "y": (-20.0, 5.0), "z": (-25.0, 15.0)},
        "elbow": {"y": (-30.0, 0.0)},
    },
    "raised": {  # arm up over the head
        "collar": {"z": (10.0, 25.0)},
        "shoulder": {"x": (-20.0, 10.0), "y": (-30.0, 5.0), "z": (65.0, 85.0)},
        "elbow": {"y": (-30.0, 0.0)},
    },
    "forward": {  # arm stretched out in front
        "collar": {"y": (-15.0, 0.0)},
        "shoulder": {"x": (-10.0, 10.0), "y": (-88.0, -62.0), "z": (-25.0, 15.0)},
        "elbow": {"y": (-30.0, 0.0)},
    },
    "bent_up": {  # upper arm out to the side, forearm pointing up
        "collar": {"z": (0.0, 10.0)},
        "shoulder": {"x": (-90.0, -70.0), "y": (-20.0, 0.0), "z": (-10.0, 15.0)},
        "elbow": {"y": (-100.0, -80.0)},
    },
    "chest": {  # forearm across the chest
        "shoulder": {"x": (70.0, 90.0), "y": (-55.0, -35.0), "z": (-85.0, -70.0)},
        "elbow": {"y": (-120.0, -100.0)},
    },
    "face": {  # hand up near the face
        "shoulder": {"x": (-15.0, 10.0), "y": (-88.0, -70.0), "z": (-40.0, -10.0)},
        "elbow": {"y": (-145.0, -130.0)},
    },
    "lap": {  # hand resting on the thigh or knee
        "shoulder": {"x": (-10.0, 10.0), "y": (-45.0, -25.0), "z": (-75.0, -60.0)},
        "elbow": {"y": (-60.0, -35.0)},
    },
    "behind": {  # arm reaching back and down, as when leaning on the hands
        "shoulder": {"x": (-10.0, 10.0), "y": (30.0, 50.0), "z": (-75.0, -60.0)},
        "elbow": {"y": (-10.0, 0.0)},
    },
    "hang": {  # arm hanging towards the ground from a bent-over trunk
        "shoulder": {"x": (-10.0, 10.0), "y": (-88.0, -60.0), "z": (-85.0, -70.0)},
        "elbow": {"y": (-25.0, 0.0)},
    },
}


@dataclasses.dataclass(frozen=True)
class PoseCategory:
    """
    The parameter ranges of one kind of pose.

    Args:
        name (`str`): identifier, e.g. `"lying_back"`.
        description (`str`): a short phrase for captions.
        joints (`Mapping[str, JointRanges]`): angle ranges (degrees) that differ from the neutral pose, keyed
            by body part (`"hip"` means both hips) or by joint name (`"left_hip"`, which wins over its
            part). Right-side joints are in mirrored coordinates. `"pelvis"` holds the root's orientation
            before the heading, in `ROOT_EULER_ORDER`.
        lean (`Mapping[str, AxisRange]`): a forward pitch (`"x"`) and a roll towards the body's right (`"z"`)
            of the pelvis, in degrees, that the hips undo: the trunk leans while the legs keep their angles
            to the ground, as in a forward bend.
        arm_styles (`Mapping[str, float]`): relative weights of `ARM_STYLES` for the free arms.
        free_arms (`tuple[str, ...]`): the sides (`"left"`, `"right"`) whose arm comes from `arm_styles`;
            the others follow `joints`.
        symmetric_arms (`float`): probability that both free arms take the same style.
        mirror (`bool`): whether half of the poses are mirrored (left and right swapped), so that a table
            written for the left leg leading also gives the right leg leading.
        jitter (`float`): scale of the per-joint jitter; below 1 for poses held by contact with the floor,
            where a few degrees at the hip move a knee or a foot by centimetres.
        weight (`float`): relative frequency of the category.
    """

    name: str
    description: str
    joints: Mapping[str, JointRanges] = dataclasses.field(default_factory=dict)
    lean: Mapping[str, AxisRange] = dataclasses.field(default_factory=dict)
    arm_styles: Mapping[str, float] = dataclasses.field(default_factory=lambda: {"down": 1.0})
    free_arms: tuple[str, ...] = _SIDES
    symmetric_arms: float = 0.5
    mirror: bool = True
    jitter: float = 1.0
    weight: float = 1.0


_EVERYDAY_ARMS = {"down": 4.0, "hip": 2.0, "chest": 1.5, "face": 1.0, "side": 0.5, "bent_up": 0.5}

# Every table is written with the left leg (or arm) leading; mirroring gives the right-leading half.
CATEGORY_TABLE: tuple[PoseCategory, ...] = (
    PoseCategory(
        "standing",
        "standing",
        joints={"left_hip": {"z": (0.0, 12.0)}, "left_knee": {"x": (0.0, 15.0)}},
        arm_styles=_EVERYDAY_ARMS,
        weight=1.5,
    ),
    PoseCategory(
        "walking",
        "walking",
        joints={
            "left_hip": {"x": (-32.0, -15.0)},
            "left_knee": {"x": (0.0, 15.0)},
            "left_ankle": {"x": (-15.0, 0.0)},
            "right_hip": {"x": (5.0, 20.0)},
            "right_knee": {"x": (10.0, 45.0)},
            "right_ankle": {"x": (5.0, 25.0)},
            # Arms swing against the legs.
            "left_shoulder": {"y": (10.0, 30.0), "z": (-78.0, -66.0)},
            "right_shoulder": {"y": (-30.0, -10.0), "z": (-78.0, -66.0)},
            "left_elbow": {"y": (-25.0, -10.0)},
            "right_elbow": {"y": (-45.0, -20.0)},
        },
        lean={"x": (0.0, 5.0)},
        free_arms=(),
    ),
    PoseCategory(
        "running",
        "running",
        joints={
            "left_hip": {"x": (-70.0, -45.0)},
            "left_knee": {"x": (40.0, 90.0)},
            "left_ankle": {"x": (-10.0, 15.0)},
            "right_hip": {"x": (5.0, 25.0)},
            "right_knee": {"x": (70.0, 120.0)},
            "right_ankle": {"x": (15.0, 40.0)},
            "head": {"x": (-10.0, 0.0)},
            "left_shoulder": {"y": (25.0, 50.0), "z": (-70.0, -55.0)},
            "right_shoulder": {"y": (-60.0, -35.0), "z": (-70.0, -55.0)},
            "left_elbow": {"y": (-100.0, -75.0)},
            "right_elbow": {"y": (-110.0, -80.0)},
        },
        lean={"x": (5.0, 15.0)},
        free_arms=(),
    ),
    PoseCategory(
        "sitting",
        "sitting on a chair",
        joints={
            "hip": {"x": (-100.0, -80.0), "y": (-10.0, 15.0), "z": (0.0, 15.0)},
            "knee": {"x": (75.0, 105.0)},
            "ankle": {"x": (-15.0, 10.0)},
            "spine1": {"x": (-10.0, 5.0)},
        },
        arm_styles={"lap": 4.0, "down": 1.0, "chest": 1.5, "face": 1.0, "forward": 0.5, "hip": 0.5},
    ),
    PoseCategory(
        "sitting_floor",
        "sitting on the floor with the legs stretched out",
        joints={
            "hip": {"x": (-95.0, -80.0), "z": (0.0, 15.0)},
            "knee": {"x": (0.0, 30.0)},
            "ankle": {"x": (0.0, 25.0)},
            "spine1": {"x": (0.0, 12.0)},
        },
        arm_styles={"behind": 3.0, "lap": 2.0, "chest": 1.0},
    ),
    PoseCategory(
        "kneeling",
        "kneeling on both knees",
        joints={
            # Thighs upright, shins flat on the floor, insteps down.
            "pelvis": {"x": (-2.0, 2.0), "z": (-2.0, 2.0)},
            "hip": {"x": (-6.0, 4.0), "y": (-4.0, 4.0), "z": (0.0, 6.0)},
            "knee": {"x": (90.0, 97.0)},
            "ankle": {"x": (40.0, 55.0)},
        },
        arm_styles={"down": 3.0, "hip": 1.0, "chest": 1.0, "raised": 1.0, "face": 0.5, "forward": 0.5},
        jitter=0.5,
    ),
    PoseCategory(
        "kneeling_one_knee",
        "kneeling on one knee",
        joints={
            # The front thigh level and its shin upright; the back thigh upright, its shin rising a little
            # to the ankle and the toes tucked under.
            "pelvis": {"x": (-2.0, 2.0), "z": (-2.0, 2.0)},
            "left_hip": {"x": (-98.0, -86.0), "z": (0.0, 15.0)},
            "left_knee": {"x": (86.0, 98.0)},
            "left_ankle": {"x": (-15.0, 5.0)},
            "right_hip": {"x": (-6.0, 4.0), "y": (-4.0, 4.0), "z": (0.0, 6.0)},
            "right_knee": {"x": (100.0, 108.0)},
            "right_ankle": {"x": (-10.0, 0.0)},
        },
        arm_styles={"down": 2.0, "lap": 2.0, "hip": 1.0, "chest": 1.0, "raised": 0.5},
        jitter=0.5,
    ),
    PoseCategory(
        "crouching",
        "crouching",
        joints={
            "hip": {"x": (-105.0, -85.0), "y": (5.0, 20.0), "z": (10.0, 25.0)},
            "knee": {"x": (115.0, 140.0)},
            "ankle": {"x": (-30.0, -10.0)},
            "spine1": {"x": (0.0, 10.0)},
            "spine2": {"x": (0.0, 8.0)},
            "neck": {"x": (-25.0, -10.0)},
        },
        # The trunk leans forwards over the feet, for balance.
        lean={"x": (20.0, 35.0)},
        arm_styles={"forward": 1.0, "lap": 2.0, "chest": 1.0},
    ),
    PoseCategory(
        "lying_back",
        "lying on the back",
        joints={
            "pelvis": {"x": (-95.0, -85.0), "z": (-5.0, 5.0)},
            "hip": {"x": (-15.0, 5.0)},
            "knee": {"x": (0.0, 15.0)},
            "ankle": {"x": (10.0, 30.0)},
        },
        arm_styles={"down": 2.0, "side": 2.0, "raised": 2.0, "bent_up": 1.0},
    ),
    PoseCategory(
        "lying_front",
        "lying on the front",
        joints={
            "pelvis": {"x": (86.0, 92.0), "z": (-5.0, 5.0)},
            "hip": {"x": (-8.0, 2.0)},
            "knee": {"x": (0.0, 15.0)},
            "ankle": {"x": (20.0, 45.0)},
            "neck": {"x": (-30.0, -10.0)},
        },
        arm_styles={"raised": 2.0, "bent_up": 2.0, "down": 1.0},
    ),
    PoseCategory(
        "lying_side",
        "lying on the side",
        joints={
            "pelvis": {"z": (-95.0, -85.0)},
            "hip": {"x": (-50.0, -20.0)},
            "knee": {"x": (30.0, 80.0)},
            # The lower arm lies on the floor in front of the body; the upper one is free.
            "left_shoulder": {"x": (-10.0, 10.0), "y": (-88.0, -60.0), "z": (-20.0, 20.0)},
            "left_elbow": {"y": (-60.0, 0.0)},
        },
        arm_styles={"down": 2.0, "forward": 1.0, "chest": 1.0},
        free_arms=("right",),
    ),
    PoseCategory(
        "lunging",
        "lunging forwards",
        joints={
            "left_hip": {"x": (-100.0, -75.0), "z": (0.0, 10.0)},
            "left_knee": {"x": (80.0, 105.0)},
            "left_ankle": {"x": (-20.0, 0.0)},
            "right_hip": {"x": (15.0, 30.0)},
            "right_knee": {"x": (0.0, 30.0)},
            "right_ankle": {"x": (-20.0, 10.0)},
        },
        lean={"x": (0.0, 10.0)},
        arm_styles={"hip": 2.0, "down": 1.0, "raised": 1.0, "side": 1.0, "forward": 1.0},
    ),
    PoseCategory(
        "reaching",
        "reaching out with one arm",
        joints={
            "spine1": {"x": (0.0, 12.0), "y": (-12.0, 0.0)},
            "spine2": {"y": (-10.0, 0.0)},
            "left_collar": {"y": (-20.0, -5.0), "z": (0.0, 15.0)},
            "left_shoulder": {"x": (-20.0, 20.0), "y": (-88.0, -45.0), "z": (-20.0, 60.0)},
            "left_elbow": {"y": (-20.0, 0.0)},
        },
        arm_styles={"down": 3.0, "hip": 1.0, "side": 1.0},
        free_arms=("right",),
    ),
    PoseCategory(
        "arms_raised",
        "raising the arms",
        arm_styles={"raised": 3.0, "side": 2.0, "bent_up": 1.0, "forward": 1.0},
        symmetric_arms=0.7,
    ),
    PoseCategory(
        "kicking",
        "kicking forwards",
        joints={
            "left_hip": {"x": (-95.0, -50.0), "z": (0.0, 10.0)},
            "left_knee": {"x": (0.0, 40.0)},
            "left_ankle": {"x": (0.0, 35.0)},
            "right_hip": {"x": (-5.0, 10.0)},
            "right_knee": {"x": (0.0, 15.0)},
            "spine1": {"x": (-10.0, 0.0)},
        },
        lean={"x": (-10.0, 0.0)},
        arm_styles={"side": 2.0, "forward": 1.0, "chest": 2.0},
    ),
    PoseCategory(
        "kicking_side",
        "kicking to the side",
        joints={
            "left_hip": {"x": (-20.0, 0.0), "y": (-20.0, 0.0), "z": (40.0, 70.0)},
            "left_knee": {"x": (0.0, 25.0)},
            "left_ankle": {"x": (0.0, 20.0)},
            "right_hip": {"x": (-5.0, 5.0), "z": (-3.0, 3.0)},
        },
        lean={"z": (5.0, 20.0)},
        arm_styles={"side": 2.0, "chest": 2.0, "bent_up": 1.0},
    ),
    PoseCategory(
        "bending",
        "bending forwards",
        joints={
            "knee": {"x": (0.0, 20.0)},
            "spine1": {"x": (10.0, 25.0)},
            "spine2": {"x": (5.0, 20.0)},
            "spine3": {"x": (0.0, 15.0)},
            "neck": {"x": (-25.0, 0.0)},
        },
        lean={"x": (45.0, 80.0)},
        arm_styles={"hang": 3.0, "lap": 2.0},
        symmetric_arms=0.7,
    ),
    PoseCategory(
        "twisting",
        "twisting the upper body",
        joints={
            "spine1": {"y": (10.0, 22.0)},
            "spine2": {"y": (10.0, 22.0)},
            "spine3": {"y": (8.0, 20.0)},
            "neck": {"y": (0.0, 20.0)},
        },
        arm_styles={"chest": 2.0, "side": 1.0, "bent_up": 1.0, "hip": 1.0},
    ),
    PoseCategory(
        "side_bend",
        "bending sideways",
        joints={
            "spine1": {"z": (-18.0, -8.0)},
            "spine2": {"z": (-18.0, -8.0)},
            "spine3": {"z": (-15.0, -5.0)},
            "right_collar": {"z": (10.0, 25.0)},
            "right_shoulder": {"x": (-20.0, 10.0), "y": (-20.0, 5.0), "z": (70.0, 90.0)},
            "right_elbow": {"y": (-40.0, -5.0)},
        },
        arm_styles={"hip": 1.0, "down": 2.0},
        free_arms=("left",),
    ),
    PoseCategory(
        "jumping",
        "jumping with the arms and legs spread",
        joints={
            "hip": {"x": (-10.0, 5.0), "z": (20.0, 40.0)},
            "knee": {"x": (0.0, 15.0)},
            "ankle": {"x": (20.0, 45.0)},
        },
        arm_styles={"raised": 1.0, "side": 1.0},
        symmetric_arms=0.9,
    ),
)

POSE_CATEGORIES: tuple[str, ...] = tuple(category.name for category in CATEGORY_TABLE)


@dataclasses.dataclass
class PoseSample:
    """
    Poses drawn by [`PoseSampler`].

    Args:
        poses (`np.ndarray` of shape `(num_poses, 22, 3)`, float32):
            SMPL axis-angle: the global orientation followed by the 21 body joints.
        categories (`list[str]`):
            The category of each pose, one of `POSE_CATEGORIES`.
    """

    poses: np.ndarray
    categories: list[str]


# ---------------------------------------------------------------------------------------------------------
# Compiled tables: arrays that the vectorised sampler indexes with a category per pose.
# ---------------------------------------------------------------------------------------------------------

_PARTS = tuple(_part(name) for name in BODY_JOINT_NAMES)
_RIGHT = np.array([name.startswith("right_") for name in BODY_JOINT_NAMES])
_CENTRE = np.array([_part(name) == name for name in BODY_JOINT_NAMES])
_EULER_ORDERS = (ROOT_EULER_ORDER,) + tuple(JOINT_LIMITS_DEG[name].order for name in BODY_JOINT_NAMES[1:])
_ARM_JOINTS = {side: np.array([JOINT_INDEX[f"{side}_{part}"] for part in _ARM_PARTS]) for side in _SIDES}
_HIPS = np.array([JOINT_INDEX[name] for name in _HIP_JOINTS])
_ARM_STYLE_NAMES = tuple(ARM_STYLES)


def _fill(low: np.ndarray, high: np.ndarray, ranges: JointRanges, where: str) -> None:
    """Write the `(low, high)` ranges of some axes of one joint into its rows `low`, `high` `(3,)`."""
    for axis, (lower, upper) in ranges.items():
        if axis not in _AXES or not lower <= upper:
            raise ValueError(
                f"{where}: expected ranges (low, high) with low <= high on the axes 'x', 'y', 'z', got "
                f"{axis!r}: ({lower}, {upper})."
            )
        low[_AXES.index(axis)], high[_AXES.index(axis)] = lower, upper


def _neutral_arrays() -> tuple[np.ndarray, np.ndarray]:
    low = np.zeros((NUM_BODY_JOINTS, 3))
    high = np.zeros((NUM_BODY_JOINTS, 3))
    for joint, part in enumerate(_PARTS):
        _fill(low[joint], high[joint], _NEUTRAL[part], f"neutral range of {part!r}")
    return low, high


def _category_arrays(category: PoseCategory) -> tuple[np.ndarray, np.ndarray]:
    """Low and high angles `(22, 3)` of a category: neutral, then its parts, then its named joints."""
    low, high = _neutral_arrays()
    keys = sorted(category.joints, key=lambda key: key in JOINT_INDEX and key != _part(key))
    for key in keys:
        targets = [j for j, name in enumerate(BODY_JOINT_NAMES) if key in (name, _PARTS[j])]
        if not targets:
            raise ValueError(f"Category {category.name!r} names an unknown joint or part {key!r}.")
        for joint in targets:
            _fill(low[joint], high[joint], category.joints[key], f"category {category.name!r}, {key!r}")
    return low, high


def _style_arrays() -> tuple[np.ndarray, np.ndarray]:
    """Low and high angles `(num_styles, 4, 3)` of each arm style for collar, shoulder, elbow, wrist."""
    low = np.zeros((len(ARM_STYLES), len(_ARM_PARTS), 3))
    high = np.zeros_like(low)
    for style, parts in enumerate(ARM_STYLES.values()):
        for index, part in enumerate(_ARM_PARTS):
            _fill(low[style, index], high[style, index], _NEUTRAL[part], part)
            _fill(low[style, index], high[style, index], parts.get(part, {}), f"arm style {part!r}")
    return low, high


def _compile_categories(categories: Sequence[PoseCategory]) -> dict[str, np.ndarray]:
    arrays = [_category_arrays(category) for category in categories]
    style_weights = np.zeros((len(categories), len(ARM_STYLES)))
    lean = np.zeros((len(categories), 2, 2))  # (category, pitch/roll, low/high)
    for index, category in enumerate(categories):
        for style, weight in category.arm_styles.items():
            if style not in ARM_STYLES:
                raise ValueError(f"Category {category.name!r} uses an unknown arm style {style!r}.")
            style_weights[index, _ARM_STYLE_NAMES.index(style)] = weight
        for axis, bounds in category.lean.items():
            if axis not in ("x", "z"):
                raise ValueError(
                    f"Category {category.name!r}: `lean` takes the axes 'x' and 'z', not {axis!r}."
                )
            lean[index, ("x", "z").index(axis)] = bounds
    style_cdf = np.cumsum(style_weights, axis=1)
    return {
        "low": np.stack([low for low, _ in arrays]),  # (C, 22, 3)
        "high": np.stack([high for _, high in arrays]),
        "lean": lean,
        "style_cdf": style_cdf / style_cdf[:, -1:],  # (C, S)
        "free_arms": np.array([[side in category.free_arms for side in _SIDES] for category in categories]),
        "symmetric_arms": np.array([category.symmetric_arms for category in categories]),
        "mirror": np.array([category.mirror for category in categories]),
        "jitter": np.array([category.jitter for category in categories]),
        "weight": np.array([category.weight for category in categories], dtype=np.float64),
    }


def _limit_arrays() -> tuple[np.ndarray, np.ndarray]:
    """Low and high limits `(22, 3)`; the root is unbounded."""
    limits = [(limit.x, limit.y, limit.z) for limit in JOINT_LIMITS_DEG.values()]
    low = np.array([[-np.inf] * 3] + [[axis[0] for axis in joint] for joint in limits])
    high = np.array([[np.inf] * 3] + [[axis[1] for axis in joint] for joint in limits])
    return low, high


_STYLE_LOW, _STYLE_HIGH = _style_arrays()
_LIMIT_LOW, _LIMIT_HIGH = _limit_arrays()
_JITTER = np.array([_PART_JITTER_DEG[part] for part in _PARTS])  # (22, 3)


# ---------------------------------------------------------------------------------------------------------
# From joint angles to rotations and back
# ---------------------------------------------------------------------------------------------------------


class _OrderGroup(NamedTuple):
    """The joints that share one Euler order, and how their angles (indexed x, y, z) map to that order's."""

    order: str
    joints: list[int]
    to_order: list[int]  # angles[..., to_order]: x, y, z -> the order's sequence
    to_xyz: list[int]  # the inverse permutation


_ORDER_GROUPS = tuple(
    _OrderGroup(
        order,
        [j for j, joint_order in enumerate(_EULER_ORDERS) if joint_order == order],
        [_AXES.index(axis) for axis in order],
        [order.index(axis) for axis in _AXES],
    )
    for order in sorted(set(_EULER_ORDERS))
)


def _joint_angles_to_matrix(angles: np.ndarray) -> torch.Tensor:
    """Rotation matrices `(..., 22, 3, 3)` (float64) from joint angles `(..., 22, 3)` in degrees and mirrored
    coordinates."""
    angles = angles.copy()
    angles[..., _RIGHT, 1:] *= -1.0  # from mirrored coordinates to SMPL's
    radians = torch.from_numpy(np.radians(angles))
    matrices = torch.empty(angles.shape + (3,), dtype=torch.float64)
    for group in _ORDER_GROUPS:
        in_order = radians[..., group.joints, :][..., group.to_order]
        matrices[..., group.joints, :, :] = euler_angles_to_matrix(in_order, group.order)
    return matrices


def joint_angles_to_pose(angles: np.ndarray) -> np.ndarray:
    """
    SMPL axis-angle from joint angles in the convention of `JOINT_LIMITS_DEG` (what the sampler composes).

    Args:
        angles (`np.ndarray` of shape `(..., 22, 3)`): degrees about x, y and z per joint, in each joint's
            Euler order, right-side joints in mirrored coordinates; row 0 is the global orientation in
            `ROOT_EULER_ORDER`.

    Returns:
        `np.ndarray` of shape `(..., 22, 3)`, float64 axis-angle.

    Example:

    ```python
    >>> angles = np.zeros((22, 3))
    >>> angles[JOINT_INDEX["left_knee"], 0] = 90.0  # bend the left knee
    >>> joint_angles_to_pose(angles)[JOINT_INDEX["left_knee"]].round(4)
    array([1.5708, 0.    , 0.    ])
    ```
    """
    angles = np.asarray(angles, dtype=np.float64)
    if angles.ndim < 2 or angles.shape[-2:] != (NUM_BODY_JOINTS, 3):
        raise ValueError(f"`angles` must have shape (..., {NUM_BODY_JOINTS}, 3), got {angles.shape}.")
    if not np.isfinite(angles).all():
        raise ValueError("`angles` contains NaN or infinite values.")
    return matrix_to_axis_angle(_joint_angles_to_matrix(angles)).numpy()


def pose_to_joint_angles(poses: np.ndarray) -> np.ndarray:
    """
    Joint angles of SMPL poses in the convention of `JOINT_LIMITS_DEG` (the inverse of the sampler).

    Args:
        poses (`np.ndarray` of shape `(batch, 22, 3)`, `(batch, 66)`, `(22, 3)` or `(66,)`): SMPL axis-angle.

    Returns:
        `np.ndarray` of shape `(batch, 22, 3)`: degrees about x, y and z per joint, in each joint's Euler
        order, right-side joints in mirrored coordinates. Row 0 is the global orientation in
        `ROOT_EULER_ORDER`.
    """
    poses = np.asarray(poses, dtype=np.float64)
    size = NUM_BODY_JOINTS * 3
    if poses.shape[-1:] == (size,) and poses.ndim <= 2:
        poses = poses.reshape(-1, NUM_BODY_JOINTS, 3)
    elif poses.shape == (NUM_BODY_JOINTS, 3):
        poses = poses[None]
    if poses.ndim != 3 or poses.shape[1:] != (NUM_BODY_JOINTS, 3):
        raise ValueError(
            f"`poses` must be SMPL axis-angle of shape (batch, {NUM_BODY_JOINTS}, 3), (batch, {size}), "
            f"({NUM_BODY_JOINTS}, 3) or ({size},), got shape {poses.shape}."
        )
    if not np.isfinite(poses).all():
        raise ValueError("`poses` contains NaN or infinite values.")
    poses = poses.copy()
    poses[:, _RIGHT, 1:] *= -1.0  # into mirrored coordinates
    matrices = axis_angle_to_matrix(torch.from_numpy(poses))
    angles = np.empty(poses.shape)
    for group in _ORDER_GROUPS:
        in_order = matrix_to_euler_angles(matrices[:, group.joints], group.order).numpy()
        angles[:, group.joints] = in_order[..., group.to_xyz]
    return np.degrees(angles)


# ---------------------------------------------------------------------------------------------------------
# The sampler
# ---------------------------------------------------------------------------------------------------------


class PoseSampler:
    """
    Draws plausible SMPL body poses from the categories of `CATEGORY_TABLE`, reproducibly from a seed.

    Successive calls to [`~PoseSampler.sample`] continue the same random stream, so
    `PoseSampler(s).sample(a)` followed by `.sample(b)` is reproducible too.

    Args:
        seed (`int`, *optional*, defaults to 0):
            Seed of the random generator.
        categories (sequence of `str`, *optional*):
            Names from `POSE_CATEGORIES` to draw from (all by default), with their table weights.

    Example:

    ```python
    >>> sampler = PoseSampler(seed=1, categories=("sitting", "lying_back"))
    >>> sample = sampler.sample(3)
    >>> sample.poses.shape, set(sample.categories) <= {"sitting", "lying_back"}
    ((3, 22, 3), True)
    ```
    """

    def __init__(self, seed: int = 0, categories: Optional[Sequence[str]] = None):
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"`seed` must be a non-negative integer, got {seed!r}.")
        if categories is None:
            categories = POSE_CATEGORIES
        if isinstance(categories, str):
            raise TypeError(f"`categories` must be a sequence of names, got the string {categories!r}.")
        unknown = [name for name in categories if name not in POSE_CATEGORIES]
        if unknown or not categories:
            raise ValueError(
                f"`categories` must be a non-empty selection of {POSE_CATEGORIES}, got {tuple(categories)!r}."
            )
        self.categories = tuple(dict.fromkeys(categories))
        table = {category.name: category for category in CATEGORY_TABLE}
        self._tables = _compile_categories([table[name] for name in self.categories])
        self._rng = np.random.default_rng(seed)

    def sample(self, num_poses: int) -> PoseSample:
        """
        Draw poses.

        Args:
            num_poses (`int`): how many poses (0 gives empty arrays).

        Returns:
            [`PoseSample`] with `poses` of shape `(num_poses, 22, 3)` (float32 axis-angle) and the category
            of each pose.
        """
        if isinstance(num_poses, bool) or not isinstance(num_poses, (int, np.integer)) or num_poses < 0:
            raise ValueError(f"`num_poses` must be a non-negative integer, got {num_poses!r}.")
        rng, tables, n = self._rng, self._tables, int(num_poses)

        weight = tables["weight"] / tables["weight"].sum()
        category = rng.choice(len(weight), size=n, p=weight)

        # 1. Angle ranges of each pose (n, 22, 3): the category's, with the free arms' styles swapped in.
        low, high = tables["low"][category], tables["high"][category]
        style_cdf = tables["style_cdf"][category]  # (n, S)
        style = (rng.random((n, 2, 1)) > style_cdf[:, None, :]).sum(-1)  # (n, 2): left, right
        style[:, 1] = np.where(rng.random(n) < tables["symmetric_arms"][category], style[:, 0], style[:, 1])
        for side_index, side in enumerate(_SIDES):
            free = np.flatnonzero(tables["free_arms"][category, side_index])
            arm = _ARM_JOINTS[side]
            low[free[:, None], arm] = _STYLE_LOW[style[free, side_index]]
            high[free[:, None], arm] = _STYLE_HIGH[style[free, side_index]]

        # 2. Uniform angles inside the ranges, jittered; a leaning pelvis carries the trunk while the hips
        # undo the lean for the legs.
        jitter = rng.normal(size=low.shape) * _JITTER * tables["jitter"][category, None, None]
        angles = low + rng.random(low.shape) * (high - low) + jitter
        lean_range = tables["lean"][category]  # (n, 2, 2)
        lean = lean_range[..., 0] + rng.random((n, 2)) * (lean_range[..., 1] - lean_range[..., 0])
        angles[:, 0, ::2] += lean  # pelvis x (pitch) and z (roll)
        angles[:, _HIPS, 0] -= lean[:, None, 0]
        # In mirrored coordinates the roll is undone by opposite signs on the two sides.
        angles[:, _HIPS, 2] -= lean[:, None, 1] * np.array([1.0, -1.0])

        # 3. Mirror half of the poses: swap sides (the tables are in mirrored coordinates) and reflect the
        # midline joints.
        mirror = tables["mirror"][category] & (rng.random(n) < 0.5)
        angles[mirror] = angles[mirror][:, BODY_MIRROR_INDEX]
        angles[np.ix_(mirror, _CENTRE, [1, 2])] *= -1.0

        # 4. Joint limits, then rotations; the heading turns the whole body about the vertical axis.
        matrices = _joint_angles_to_matrix(np.clip(angles, _LIMIT_LOW, _LIMIT_HIGH))
        heading = elementary_rotation(torch.from_numpy(rng.uniform(-math.pi, math.pi, size=n)), "y")
        matrices[:, 0] = heading @ matrices[:, 0]
        poses = matrix_to_axis_angle(matrices).numpy().astype(np.float32)
        names = np.array(self.categories)[category].tolist()
        return PoseSample(poses=poses, categories=names)


def sample_poses(num_poses: int, seed: int = 0, categories: Optional[Sequence[str]] = None) -> np.ndarray:
    """
    Draw `num_poses` poses with a fresh [`PoseSampler`].

    Returns:
        `np.ndarray` of shape `(num_poses, 22, 3)`, float32 SMPL axis-angle.
    """
    return PoseSampler(seed=seed, categories=categories).sample(num_poses).poses


# ---------------------------------------------------------------------------------------------------------
# Command line: `unipose sample-poses`
# ---------------------------------------------------------------------------------------------------------


def save_poses(path: os.PathLike, sample: PoseSample) -> Path:
    """
    Write a [`PoseSample`] to an `.npz` file atomically, with arrays `poses` `(N, 22, 3)` float32 and
    `categories` `(N,)` str.
    """
    path = Path(path)
    with atomic_path(path) as temporary, open(temporary, "wb") as file:
        np.savez(file, poses=sample.poses, categories=np.array(sample.categories, dtype=str))
    return path


__all__ = [
    "ARM_STYLES",
    "CATEGORY_TABLE",
    "JOINT_LIMITS_DEG",
    "POSE_CATEGORIES",
    "ROOT_EULER_ORDER",
    "JointLimit",
    "PoseCategory",
    "PoseSample",
    "PoseSampler",
    "joint_angles_to_pose",
    "pose_to_joint_angles",
    "sample_poses",
]
