import ast
from pathlib import Path

import pytest

from unipose import skeleton
from unipose.skeleton import (
    BODY_JOINT_NAMES,
    BODY_MIRROR_INDEX,
    BODY_PARENTS,
    JOINT_INDEX,
    NUM_BODY_JOINTS,
    SMPLH_JOINT_NAMES,
    SMPLH_MIRROR_INDEX,
    SMPLH_PARENTS,
)


FINGERS = ("index", "middle", "pinky", "ring", "thumb")


def test_sizes_and_body_prefix():
    assert NUM_BODY_JOINTS == 22
    assert len(SMPLH_JOINT_NAMES) == len(SMPLH_PARENTS) == len(SMPLH_MIRROR_INDEX) == 52
    assert len(BODY_JOINT_NAMES) == len(BODY_PARENTS) == len(BODY_MIRROR_INDEX) == 22
    assert SMPLH_JOINT_NAMES[:22] == BODY_JOINT_NAMES
    assert SMPLH_PARENTS[:22] == BODY_PARENTS
    assert len(set(SMPLH_JOINT_NAMES)) == 52


def test_body_joint_order():
    expected = (
        "pelvis left_hip right_hip spine1 left_knee right_knee spine2 left_ankle right_ankle spine3 "
        "left_foot right_foot neck left_collar right_collar head left_shoulder right_shoulder left_elbow "
        "right_elbow left_wrist right_wrist"
    ).split()
    assert BODY_JOINT_NAMES == tuple(expected)


def test_hand_joint_order_and_parents():
    for side, start in (("left", 22), ("right", 37)):
        names = [f"{side}_{finger}{k}" for finger in FINGERS for k in (1, 2, 3)]
        assert SMPLH_JOINT_NAMES[start : start + 15] == tuple(names)
        wrist = JOINT_INDEX[f"{side}_wrist"]
        for index in range(start, start + 15):
            segment = int(SMPLH_JOINT_NAMES[index][-1])
            assert SMPLH_PARENTS[index] == (wrist if segment == 1 else index - 1)


@pytest.mark.parametrize("parents", [SMPLH_PARENTS, BODY_PARENTS])
def test_parents_form_a_tree_rooted_at_zero(parents):
    assert parents[0] == -1
    assert all(0 <= parent < child for child, parent in enumerate(parents) if child > 0)
    for joint in range(len(parents)):  # every chain ends at the root
        seen = 0
        while joint != 0:
            joint = parents[joint]
            seen += 1
            assert seen <= len(parents)


def test_body_parents_match_known_limbs():
    parent_name = {name: BODY_JOINT_NAMES[p] for name, p in zip(BODY_JOINT_NAMES, BODY_PARENTS) if p >= 0}
    assert parent_name["left_wrist"] == "left_elbow"
    assert parent_name["left_elbow"] == "left_shoulder"
    assert parent_name["left_shoulder"] == "left_collar"
    assert parent_name["left_collar"] == "spine3"
    assert parent_name["head"] == "neck"
    assert parent_name["right_foot"] == "right_ankle"
    assert parent_name["right_hip"] == "pelvis"


@pytest.mark.parametrize(
    "names, mirror, parents",
    [
        (SMPLH_JOINT_NAMES, SMPLH_MIRROR_INDEX, SMPLH_PARENTS),
        (BODY_JOINT_NAMES, BODY_MIRROR_INDEX, BODY_PARENTS),
    ],
)
def test_mirror_map(names, mirror, parents):
    assert all(mirror[mirror[j]] == j for j in range(len(names)))
    for j, name in enumerate(names):
        if name.startswith("left_"):
            assert names[mirror[j]] == "right_" + name[len("left_") :]
        elif name.startswith("right_"):
            assert names[mirror[j]] == "left_" + name[len("right_") :]
        else:
            assert mirror[j] == j
        # Mirroring preserves the tree.
        if parents[j] >= 0:
            assert parents[mirror[j]] == mirror[parents[j]]
    assert sum(name.startswith("left_") for name in names) == sum(name.startswith("right_") for name in names)


def test_joint_index():
    assert len(JOINT_INDEX) == 52
    assert all(SMPLH_JOINT_NAMES[index] == name for name, index in JOINT_INDEX.items())


def test_skeleton_imports_nothing():
    # The file ships with remote code, so it must stand alone.
    tree = ast.parse(Path(skeleton.__file__).read_text())
    assert not [node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))]
