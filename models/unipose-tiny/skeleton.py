"""The SMPL-H kinematic tree: joint names, parents and left/right mirror maps.

Axis convention (SMPL's, in the rest pose): x points to the body's left, y up, z forward.
"""

NUM_BODY_JOINTS = 22
NUM_HAND_JOINTS = 15

BODY_JOINT_NAMES = (
    "pelvis",
    "left_hip",
    "right_hip",
    "spine1",
    "left_knee",
    "right_knee",
    "spine2",
    "left_ankle",
    "right_ankle",
    "spine3",
    "left_foot",
    "right_foot",
    "neck",
    "left_collar",
    "right_collar",
    "head",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
)
BODY_PARENTS = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19)

# SMPL-H orders each hand finger by finger (index, middle, pinky, ring, thumb), three joints per finger
# from the knuckle outwards; the first joint of every finger hangs off the wrist.
_FINGERS = ("index", "middle", "pinky", "ring", "thumb")
_JOINTS_PER_FINGER = 3


def _hand(side: str, first_index: int, wrist_index: int) -> tuple[tuple[str, ...], tuple[int, ...]]:
    names, parents = [], []
    for finger in _FINGERS:
        for segment in range(1, _JOINTS_PER_FINGER + 1):
            names.append(f"{side}_{finger}{segment}")
            parents.append(wrist_index if segment == 1 else first_index + len(names) - 2)
    return tuple(names), tuple(parents)


_LEFT_HAND_NAMES, _LEFT_HAND_PARENTS = _hand("left", NUM_BODY_JOINTS, BODY_JOINT_NAMES.index("left_wrist"))
_RIGHT_HAND_NAMES, _RIGHT_HAND_PARENTS = _hand(
    "right", NUM_BODY_JOINTS + NUM_HAND_JOINTS, BODY_JOINT_NAMES.index("right_wrist")
)

SMPLH_JOINT_NAMES = BODY_JOINT_NAMES + _LEFT_HAND_NAMES + _RIGHT_HAND_NAMES
SMPLH_PARENTS = BODY_PARENTS + _LEFT_HAND_PARENTS + _RIGHT_HAND_PARENTS
NUM_SMPLH_JOINTS = len(SMPLH_JOINT_NAMES)  # 52

JOINT_INDEX = {name: index for index, name in enumerate(SMPLH_JOINT_NAMES)}


def _mirror_index(names: tuple[str, ...]) -> tuple[int, ...]:
    """Index of each joint's left/right counterpart (itself for joints on the midline)."""
    lookup = {name: index for index, name in enumerate(names)}

    def counterpart(name: str) -> str:
        if name.startswith("left_"):
            return "right_" + name[len("left_") :]
        if name.startswith("right_"):
            return "left_" + name[len("right_") :]
        return name

    return tuple(lookup[counterpart(name)] for name in names)


SMPLH_MIRROR_INDEX = _mirror_index(SMPLH_JOINT_NAMES)
BODY_MIRROR_INDEX = _mirror_index(BODY_JOINT_NAMES)

__all__ = [
    "BODY_JOINT_NAMES",
    "BODY_MIRROR_INDEX",
    "BODY_PARENTS",
    "JOINT_INDEX",
    "NUM_BODY_JOINTS",
    "NUM_HAND_JOINTS",
    "NUM_SMPLH_JOINTS",
    "SMPLH_JOINT_NAMES",
    "SMPLH_MIRROR_INDEX",
    "SMPLH_PARENTS",
]
