"""
Automatic captions of 3D body poses, and instructions that turn one pose into another.

A caption is written in six steps, the first three on whole batches with NumPy and the rest per caption:

1. measure every posecode of `unipose.data.posecodes` and bin it, with thresholds shifted a little at
   random per caption;
2. keep the describable categories, fire super-codes from combinations of codes ("kneeling", "hands on
   the hips"), which then stand for the codes they are made of;
3. drop common codes at random (15%), and the redundant ones: a relation that follows from two others
   ("the hand is above the hips" when it is above the head, which is above the hips) or from a simple
   rule ("the foot is off the ground" when it is higher than the other foot);
4. merge codes that say the same thing of two parts of a limb ("the hand and the elbow are above the
   head" -> "the arm is above the head") or of both sides ("both knees are bent");
5. order them by a walk over the body: whole-body posture, torso, arms, legs;
6. render each with a template drawn at random, with one determiner ("the left knee" / "their left
   knee"), one subject ("The person", "She", ...) and joining words ("while", "and", "with").

Pair instructions ([`PairCaptioner`]) measure the same codes on both poses, bin their changes
("bend more", "move closer", "turn to the left"), and render imperative phrases from pose B's point of
view, after any change of global posture ("sit down", "lie on your back").

Randomness is mirror-symmetric: a code and its mirror image share every random draw, so the caption of a
mirrored pose is the caption of the pose with "left" and "right" swapped.

Example:

```python
>>> import numpy as np
>>> from unipose.data.captioning import PoseCaptioner
>>> from unipose.body_model import pose_to_joints
>>> joints = pose_to_joints(np.zeros((1, 22, 3)))  # the T-pose
>>> PoseCaptioner(seed=0).describe(joints[0], num_captions=2)  # doctest: +SKIP
['The person is standing upright, with the arms spread out to the sides.', ...]
```
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import NamedTuple, Optional, Union

import numpy as np
from transformers.utils import logging

from ..body_model import pose_to_joints
from ..checks import check_positive_int, check_same
from .posecodes import (
    KINDS,
    NEVER,
    PAIRCODES,
    POINT_INDEX,
    POSECODES,
    RARE,
    SAY,
    PaircodeTable,
    PosecodeTable,
    _swap_sides,
    categorize,
    categorize_changes,
    measure_paircodes,
    measure_posecodes,
    prepare_points,
)
from .templates import (
    AFTER_BARE,
    AFTER_CLAUSE,
    AFTER_PERSON,
    DEFINITE_ARTICLE_SHARE,
    GENDER_WEIGHTS,
    GERUNDS,
    LIMB_OF,
    LIMB_PARTS,
    NEUTRAL_PREDICATES,
    NO_CHANGE,
    NOUNS,
    OPENERS,
    PAIR_ENTITIES,
    PAIR_JOINS,
    PAIR_OPENERS,
    PAIR_PHRASES_PER_SENTENCE,
    PAIR_TEMPLATES,
    PEOPLE,
    PHRASES_PER_SENTENCE,
    PLURALS,
    TEMPLATES,
)

logger = logging.get_logger(__name__)

SKIP_PROBABILITY = 0.15
# Posecodes said at most per caption (before merging), so that captions stay readable; rare codes and
# super-codes go first, the others in random order.
MAX_CODES_PER_CAPTION = 10
# Share of captions that describe the legs before the arms (the walk otherwise goes arms first).
LEGS_FIRST_PROBABILITY = 0.25
# A pair instruction says at most this many things about one body part, and this many in all.
MAX_PHRASES_PER_PART = 2
MAX_INSTRUCTIONS = 5
# Attempts at re-rendering a caption that repeats an earlier caption of the same pose.
DISTINCT_ATTEMPTS = 8
NUM_JOINTS = 22

SECTIONS = ("body", "torso", "arms", "legs")
_SECTION_OF_BASE = {
    "body": "body",
    "torso": "torso",
    "head": "torso",
    "pelvis": "torso",
    **dict.fromkeys(("hand", "elbow", "wrist", "shoulder", "upper_arm", "forearm", "arm"), "arms"),
    **dict.fromkeys(("knee", "foot", "hip", "thigh", "shin", "leg", "toes"), "legs"),
}


# ---------------------------------------------------------------------------------------------------------
# Super-codes and redundancy rules (written for the left side; right sides are mirrored automatically)
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SuperCode:
    """
    A fact made of several posecodes ("kneeling" = both knees on the ground and the torso upright).

    Args:
        name (`str`): identifier; a name with `left` gets a mirrored `right` twin.
        requirements (`tuple`): `(posecode name, allowed categories)` pairs that must all hold.
        consumes (`tuple[str, ...]`): posecodes no longer said once this one is said.
        eligibility (`int`): `SAY` (may be skipped) or `RARE` (always said).
        subject (`str`): the entity of its "part" templates (`"hands"`), `"body"` for the person.
        posture (`bool`): a whole-body posture, compared between the two poses of a pair.
        phrase (`str`, *optional*): template group in `unipose.data.templates`; defaults to `name`.
    """

    name: str
    requirements: tuple[tuple[str, tuple[str, ...]], ...]
    consumes: tuple[str, ...] = ()
    eligibility: int = RARE
    subject: str = "body"
    posture: bool = False
    phrase: Optional[str] = None


_UPRIGHTISH = ("upright", "tilted")
_LYING = ("ground", "low")
_SEATED_KNEE = ("mostly_bent", "square", "partly_bent")
_DEEP_KNEE = ("completely_bent", "mostly_bent")
_STRAIGHTISH_KNEE = ("partly_bent", "slightly_bent", "straight")
_LEVEL = ("slightly_below", "level", "slightly_above")

SUPERCODES: tuple[SuperCode, ...] = (
    SuperCode(
        "standing",
        (
            ("torso_tilt", ("upright",)),
            ("left_knee_angle", _STRAIGHTISH_KNEE),
            ("right_knee_angle", _STRAIGHTISH_KNEE),
            ("left_thigh_elevation", ("lowered", "down")),
            ("right_thigh_elevation", ("lowered", "down")),
            ("pelvis_height", ("raised",)),
        ),
        eligibility=SAY,
        posture=True,
    ),
    SuperCode(
        "sitting",
        (
            ("torso_tilt", _UPRIGHTISH),
            # Knees within ~0.15 m of hip height: thighs within ~20 degrees of horizontal.
            ("left_knee_vs_hip_y", _LEVEL),
            ("right_knee_vs_hip_y", _LEVEL),
            ("left_knee_angle", _SEATED_KNEE),
            ("right_knee_angle", _SEATED_KNEE),
            ("pelvis_height", ("low", "raised")),
        ),
        consumes=(
            "left_thigh_elevation",
            "right_thigh_elevation",
            "left_knee_vs_hip_y",
            "right_knee_vs_hip_y",
        ),
        posture=True,
    ),
    SuperCode(
        "sitting_ground",
        (("pelvis_height", ("ground",)), ("torso_tilt", _UPRIGHTISH)),
        consumes=("pelvis_height",),
        posture=True,
    ),
    # Legs stretched out in front with the torso upright: a posture only the floor (or a bed) allows,
    # recognised without knowing where the floor is.
    SuperCode(
        "sitting_legs_out",
        (
            ("torso_tilt", _UPRIGHTISH),
            # Knees within ~0.15 m of hip height: thighs within ~20 degrees of horizontal.
            ("left_knee_vs_hip_y", _LEVEL),
            ("right_knee_vs_hip_y", _LEVEL),
            ("left_knee_angle", ("slightly_bent", "straight")),
            ("right_knee_angle", ("slightly_bent", "straight")),
        ),
        consumes=(
            "left_thigh_elevation",
            "right_thigh_elevation",
            "left_knee_vs_hip_y",
            "right_knee_vs_hip_y",
            "left_knee_angle",
            "right_knee_angle",
        ),
        posture=True,
    ),
    SuperCode(
        "kneeling",
        (("left_knee_height", ("ground",)), ("right_knee_height", ("ground",)), ("torso_tilt", _UPRIGHTISH)),
        consumes=("left_knee_height", "right_knee_height"),
        posture=True,
    ),
    SuperCode(
        "kneeling_left",
        (
            ("left_knee_height", ("ground",)),
            ("right_knee_height", ("raised",)),
            ("torso_tilt", _UPRIGHTISH),
            ("pelvis_height", ("low", "raised")),
        ),
        consumes=("left_knee_height",),
        posture=True,
        phrase="kneeling_one",
    ),
    SuperCode(
        "squatting",
        (
            ("left_knee_angle", _DEEP_KNEE),
            ("right_knee_angle", _DEEP_KNEE),
            ("left_knee_height", ("raised",)),
            ("right_knee_height", ("raised",)),
            ("pelvis_height", ("low", "raised")),
            ("torso_tilt", _UPRIGHTISH),
        ),
        consumes=("left_knee_angle", "right_knee_angle", "left_thigh_elevation", "right_thigh_elevation"),
        posture=True,
    ),
    SuperCode(
        "lying_back",
        (("torso_tilt", ("horizontal",)), ("body_facing", ("up",)), ("pelvis_height", _LYING)),
        consumes=("torso_pitch", "torso_roll", "head_vs_pelvis_y", "head_height", "pelvis_height"),
        posture=True,
    ),
    SuperCode(
        "lying_front",
        (("torso_tilt", ("horizontal",)), ("body_facing", ("down",)), ("pelvis_height", _LYING)),
        consumes=("torso_pitch", "torso_roll", "head_vs_pelvis_y", "head_height", "pelvis_height"),
        posture=True,
    ),
    SuperCode(
        "lying_left",
        (
            ("torso_tilt", ("horizontal",)),
            ("body_facing", ("sideways",)),
            ("body_side_down", ("left",)),
            ("pelvis_height", _LYING),
        ),
        consumes=("torso_pitch", "torso_roll", "head_vs_pelvis_y", "head_height", "pelvis_height"),
        posture=True,
        phrase="lying_side",
    ),
    SuperCode(
        "lunge_left",
        (
            ("feet_z", ("front",)),
            ("left_knee_angle", ("mostly_bent", "square", "partly_bent")),
            ("right_knee_angle", ("slightly_bent", "straight")),
            ("feet_distance", ("apart", "far")),
            ("torso_tilt", _UPRIGHTISH),
        ),
        consumes=("feet_z", "feet_distance", "left_foot_vs_hip_z", "right_foot_vs_hip_z"),
        posture=True,
        phrase="lunge",
    ),
    SuperCode(
        "hands_shoulder_width",
        (("hands_distance", ("spaced",)), ("hands_y", _LEVEL)),
        consumes=("hands_distance", "hands_y"),
        eligibility=SAY,
        subject="hands",
    ),
    SuperCode(
        "feet_shoulder_width",
        (
            ("feet_distance", ("spaced",)),
            ("left_foot_height", ("ground",)),
            ("right_foot_height", ("ground",)),
        ),
        consumes=("feet_distance",),
        eligibility=SAY,
        subject="feet",
    ),
    SuperCode(
        "arms_spread",
        (
            ("left_upper_arm_elevation", ("horizontal",)),
            ("right_upper_arm_elevation", ("horizontal",)),
            ("left_elbow_angle", ("slightly_bent", "straight")),
            ("right_elbow_angle", ("slightly_bent", "straight")),
            ("hands_distance", ("far",)),
        ),
        consumes=(
            "left_upper_arm_elevation",
            "right_upper_arm_elevation",
            "left_forearm_elevation",
            "right_forearm_elevation",
            "left_elbow_angle",
            "right_elbow_angle",
            "hands_distance",
            "left_hand_vs_shoulder_x",
            "right_hand_vs_shoulder_x",
            "left_hand_vs_shoulder_y",
            "right_hand_vs_shoulder_y",
        ),
        subject="arms",
    ),
    SuperCode(
        "hands_together",
        (("hands_distance", ("close",)), ("hands_y", _LEVEL)),
        consumes=(
            "hands_distance",
            "hands_y",
            "hands_z",
            "left_hand_vs_right_elbow_distance",
            "right_hand_vs_left_elbow_distance",
        ),
        subject="hands",
    ),
    SuperCode(
        "hands_on_hips",
        (
            ("left_hand_vs_hip_distance", ("close",)),
            ("right_hand_vs_hip_distance", ("close",)),
            # The hip joints lie near the midline: hands close to them may also be close to each other.
            ("hands_distance", ("spaced", "apart")),
            ("left_elbow_angle", ("mostly_bent", "square", "partly_bent")),
            ("right_elbow_angle", ("mostly_bent", "square", "partly_bent")),
        ),
        consumes=(
            "left_hand_vs_hip_distance",
            "right_hand_vs_hip_distance",
            "left_hand_vs_pelvis_y",
            "right_hand_vs_pelvis_y",
            "left_hand_vs_torso_distance",
            "right_hand_vs_torso_distance",
        ),
        subject="hands",
    ),
)


@dataclass(frozen=True)
class Implication:
    """
    A simple rule of redundancy: `target` (in `target_categories`) is not said when `trigger` (in
    `trigger_categories`) is said, or merely holds when `when="holds"`.

    A super-code as trigger or target takes no categories. A target `"kind:<kind>"` stands for every posecode
    of that kind. Rules written for the left side apply to the right side too.
    """

    trigger: str
    trigger_categories: Optional[tuple[str, ...]]
    target: str
    target_categories: Optional[tuple[str, ...]]
    when: str = "said"


_ALL = None  # all categories of a "kind:" target; a super-code trigger or target
_LYING_SUPERS = ("lying_back", "lying_front", "lying_left")
_HEIGHTS_ABOVE_HIPS = ("slightly_below", "level", "slightly_above", "above")

# At most one whole-body posture is said: the first that holds in this order (right twins follow their left).
POSTURE_PRECEDENCE: tuple[str, ...] = (
    "lying_back",
    "lying_front",
    "lying_left",
    "kneeling",
    "kneeling_left",
    "sitting_ground",
    "sitting_legs_out",
    "squatting",
    "sitting",
    "lunge_left",
    "standing",
)


def _with_right_twins(names: tuple[str, ...]) -> tuple[str, ...]:
    """`("kneeling", "lying_left")` -> `("kneeling", "lying_left", "lying_right")`."""
    return tuple(dict.fromkeys(name for left in names for name in (left, _swap_sides(left))))


IMPLICATIONS: tuple[Implication, ...] = (
    Implication("torso_tilt", ("inverted",), "torso_pitch", KINDS["pitch"].categories),
    Implication("torso_tilt", ("inverted",), "head_vs_pelvis_y", ("below",)),
    Implication("torso_tilt", ("inverted",), "head_height", ("ground",)),
    Implication("squatting", _ALL, "pelvis_height", ("ground", "low")),
    Implication("squatting", _ALL, "left_knee_vs_hip_y", ("level",)),
    *(
        Implication(first, _ALL, second, _ALL)
        for i, first in enumerate(_with_right_twins(POSTURE_PRECEDENCE))
        for second in _with_right_twins(POSTURE_PRECEDENCE)[i + 1 :]
    ),
    Implication("sitting", _ALL, "left_knee_vs_hip_z", ("front",)),
    Implication("sitting_ground", _ALL, "left_knee_vs_hip_z", ("front",)),
    Implication("hands_on_hips", _ALL, "hands_shoulder_width", _ALL),
    Implication("hands_together", _ALL, "left_hand_vs_torso_z", ("front",)),
    # Front/behind (and, lying on the side, left/right) in the heading frame say little about a body that
    # lies flat; horizontal legs are what lying means.
    *(Implication(lying, _ALL, "kind:z", _ALL) for lying in _LYING_SUPERS),
    *(Implication(lying, _ALL, "left_thigh_elevation", ("horizontal",)) for lying in _LYING_SUPERS),
    *(Implication(lying, _ALL, "left_shin_elevation", ("horizontal",)) for lying in _LYING_SUPERS),
    Implication("lying_left", _ALL, "kind:x", _ALL),
    Implication("feet_y", ("above",), "left_foot_height", ("raised",)),
    Implication("left_foot_vs_knee_y", ("above",), "left_foot_height", ("raised",)),
    Implication("left_foot_vs_hip_y", ("above",), "left_foot_height", ("raised",)),
    Implication("left_knee_vs_hip_y", ("above",), "left_thigh_elevation", ("up", "raised")),
    Implication("left_thigh_elevation", ("horizontal",), "left_knee_vs_hip_y", ("level",)),
    Implication("feet_distance", ("apart", "far"), "left_foot_vs_hip_x", ("right",)),
    Implication("arms_crossed", ("right",), "left_hand_vs_right_shoulder_x", ("right",)),
    # Hands (feet) far apart are not crossed, even when one reaches over to the other side.
    Implication("hands_distance", ("apart", "far"), "arms_crossed", ("right",), when="holds"),
    Implication("feet_distance", ("far",), "legs_crossed", ("right",), when="holds"),
    Implication("left_foot_vs_hip_y", ("above",), "left_foot_vs_knee_y", ("above",)),
    Implication("left_foot_vs_hip_y", ("above",), "left_foot_vs_right_knee_y", ("above",)),
    Implication("left_hand_vs_head_y", ("above",), "left_hand_vs_shoulder_y", ("above",)),
    Implication("left_hand_vs_head_y", ("above",), "left_elbow_vs_shoulder_y", ("above",)),
    Implication("left_upper_arm_elevation", ("up",), "left_elbow_vs_shoulder_y", ("above",)),
    # A hand at shoulder height or higher is obviously above the hips.
    Implication(
        "left_hand_vs_shoulder_y", _HEIGHTS_ABOVE_HIPS, "left_hand_vs_pelvis_y", ("above",), when="holds"
    ),
    Implication("left_hand_vs_foot_distance", ("close",), "left_hand_vs_knee_y", ("below",)),
    Implication("left_hand_height", ("ground",), "left_hand_vs_knee_y", ("below",)),
    Implication("left_hand_height", ("ground",), "left_hand_vs_pelvis_y", ("below", "level")),
    Implication("left_knee_height", ("ground",), "left_knee_angle", ("square",)),
)


class Statement(NamedTuple):
    """
    One thing a caption says, before wording.

    Args:
        code (`str`): the posecode, pair code or super-code (several joined by `+` when merged).
        category (`str`): its category (`"yes"` for super-codes; a change category for pair codes).
        subject (`str`): the entity it is about (`"left_knee"`, `"hands"`, `"left_arm"`, `"body"`).
        other (`str`, *optional*): the entity it is compared with.
    """

    code: str
    category: str
    subject: str
    other: Optional[str] = None


# ---------------------------------------------------------------------------------------------------------
# Entities and phrases
# ---------------------------------------------------------------------------------------------------------


def _entity(name: Optional[str]) -> Optional[tuple[Optional[str], str, bool]]:
    """
    `(side, base, plural)` of an entity name: `"left_hand"` -> `("left", "hand", False)`, `"hands"` ->
    `(None, "hand", True)`, `"head"` -> `(None, "head", False)`.
    """
    if name is None:
        return None
    for side in ("left", "right"):
        if name.startswith(side + "_"):
            return side, name[len(side) + 1 :], False
    if name in PAIR_ENTITIES:
        return None, PAIR_ENTITIES[name], True
    return None, name, False


def _entity_name(entity) -> Optional[str]:
    if entity is None:
        return None
    side, base, plural = entity
    if plural:
        noun = PLURALS[base].replace(" ", "_")
        return f"opposite_{noun}" if side == "opposite" else noun
    return f"{side}_{base}" if side else base


def _category_side(category: str) -> Optional[str]:
    tokens = category.split("_")
    return "left" if "left" in tokens else "right" if "right" in tokens else None


class _Phrase:
    """
    One statement ready for wording: its templates, entities (`(side, base, plural)` tuples), the side for
    `{side}`, and its place in the walk over the body (`section`, `rank`, `order`).
    """

    __slots__ = (
        "code",
        "category",
        "phrase",
        "templates",
        "subject",
        "other",
        "side",
        "section",
        "rank",
        "order",
    )

    def __init__(self, code, category, phrase, templates, subject, other, side, section, rank, order):
        self.code, self.category, self.phrase, self.templates = code, category, phrase, templates
        self.subject, self.other, self.side = subject, other, side
        self.section, self.rank, self.order = section, rank, order

    def replace(self, **changes) -> "_Phrase":
        new = object.__new__(type(self))
        for cls in type(self).__mro__:
            for name in getattr(cls, "__slots__", ()):
                setattr(new, name, changes[name] if name in changes else getattr(self, name))
        return new

    def statement(self) -> Statement:
        return Statement(self.code, self.category, _entity_name(self.subject), _entity_name(self.other))

    def symmetry_key(self):
        """Equal for a phrase and its mirror image (which then merge into one about both sides). Their wording
        is part of it: a change that reached the end of its range on one side only ("all the way") is said for
        each side, since one merged phrase would take the wording of whichever side came first."""
        if self.subject is None or self.subject[0] is None or self.subject[2]:
            return None
        other = self.other
        relation = (
            None
            if other is None
            else ("mid" if other[0] is None else "same" if other[0] == self.subject[0] else "opposite")
        )
        return (
            self.phrase,
            self.rank,
            self.order,
            self.subject[1],
            None if other is None else other[1],
            relation,
            self.templates,
        )


def _merge_limb_parts(phrases: list[_Phrase]) -> list[_Phrase]:
    """Merge "the left hand and the left elbow are above the head" into "the left arm is above the head"."""
    groups: dict = {}
    for phrase in phrases:
        subject = phrase.subject
        if subject is not None and subject[0] is not None and not subject[2]:
            key = (phrase.phrase, phrase.category, phrase.order, subject[0], phrase.other, phrase.side)
            groups.setdefault(key, []).append(phrase)
    merged_away = set()
    replacement = {}
    for members in groups.values():
        if len(members) != 2:
            continue
        limb = LIMB_PARTS.get(frozenset((members[0].subject[1], members[1].subject[1])))
        if limb is None:
            continue
        first, second = sorted(members, key=lambda p: p.rank)
        replacement[id(first)] = first.replace(
            code=f"{first.code}+{second.code}", subject=(first.subject[0], limb, False)
        )
        merged_away.add(id(second))
    if not replacement:
        return phrases
    return [replacement.get(id(p), p) for p in phrases if id(p) not in merged_away]


def _merge_sides(phrases: list[_Phrase], both_sides_templates) -> list[_Phrase]:
    """Merge a phrase and its mirror image into one about both sides ("both knees are bent")."""
    keys = [phrase.symmetry_key() for phrase in phrases]
    seen: dict = {}
    for index, key in enumerate(keys):
        if key is not None:
            seen.setdefault(key, []).append(index)
    pairs = {tuple(indices) for indices in seen.values() if len(indices) == 2}
    if not pairs:
        return phrases
    drop, replacement = set(), {}
    for first, second in pairs:
        a = phrases[first]
        other = a.other
        if other is not None and other[0] is not None:
            other = ("opposite" if other[0] != a.subject[0] else None, other[1], True)
        replacement[first] = a.replace(
            code=f"{a.code}+{phrases[second].code}",
            templates=both_sides_templates(a),
            subject=(None, a.subject[1], True),
            other=other,
            side=None,
        )
        drop.add(second)
    return [replacement.get(i, p) for i, p in enumerate(phrases) if i not in drop]


def _sort_key(phrase: _Phrase, section_order: dict) -> tuple:
    # Every field is the same for a phrase and its mirror image, so mirrored poses are walked identically; the
    # wording orders the two sides of a change said once for each (see `_Phrase.symmetry_key`) by what they say.
    subject = phrase.subject
    return (
        section_order[phrase.section],
        phrase.rank,
        phrase.order,
        "" if subject is None else subject[1],
        subject is not None and subject[2],
        phrase.templates,
    )


def _noun_phrase(entity, determiner: str, rng: random.Random, allow_both: bool = True) -> tuple[str, bool]:
    side, base, plural = entity
    if plural:
        noun = PLURALS[base]
        if side == "opposite":
            return f"{determiner} opposite {noun}", True
        if allow_both and rng.random() < 0.5:
            return f"both {noun}", True
        return f"{determiner} {noun}", True
    options = NOUNS[base]
    noun, noun_plural = options[0] if len(options) == 1 else rng.choice(options)
    return (f"{determiner} {side} {noun}" if side else f"{determiner} {noun}"), noun_plural


def _capitalize(text: str) -> str:
    return text[:1].upper() + text[1:]


# ---------------------------------------------------------------------------------------------------------
# Compiled tables
# ---------------------------------------------------------------------------------------------------------


def _category_mask(num_categories: int, names: tuple[str, ...], allowed) -> np.ndarray:
    unknown = [name for name in allowed if name not in names]
    if unknown:
        raise ValueError(f"Unknown categories {unknown}; expected some of {names}.")
    mask = np.zeros(num_categories, dtype=bool)
    mask[[names.index(name) for name in allowed]] = True
    return mask


def _mirror_categories(table: PosecodeTable, index: int, allowed: tuple[str, ...]) -> tuple[str, ...]:
    """The categories of the mirror code that correspond to `allowed` on code `index`."""
    names = table.codes[index].category_names
    if allowed is None or table.mirror_sign[index] > 0:
        return allowed
    return tuple(names[len(names) - 1 - names.index(name)] for name in allowed)


def _mirror_supercode(table: PosecodeTable, code: SuperCode) -> SuperCode:
    requirements = []
    for name, allowed in code.requirements:
        index = table.index(name)
        requirements.append(
            (table.codes[table.mirror_index[index]].name, _mirror_categories(table, index, allowed))
        )
    consumes = tuple(table.codes[table.mirror_index[table.index(name)]].name for name in code.consumes)
    return SuperCode(
        _swap_sides(code.name),
        tuple(requirements),
        consumes,
        code.eligibility,
        _swap_sides(code.subject),
        code.posture,
        code.phrase,
    )


class _PoseGrammar:
    """Everything the pose captioner needs, compiled once: arrays for the batched selection and phrases."""

    def __init__(self):
        table = PosecodeTable.build(POSECODES)
        self.table = table
        num_codes = len(table)
        # ---- super-codes, mirrored ----
        supers: list[SuperCode] = []
        for code in SUPERCODES:
            supers.append(code)
            if "left" in code.name.split("_"):
                supers.append(_mirror_supercode(table, code))
        self.supers = tuple(supers)
        super_index = {code.name: num_codes + i for i, code in enumerate(supers)}
        self.super_index = super_index
        self.size = num_codes + len(supers)
        self.num_codes = num_codes
        super_mirror = [super_index[_swap_sides(code.name)] for code in supers]
        self.mirror_index = np.concatenate([table.mirror_index, super_mirror])
        self.canonical = np.minimum(np.arange(self.size), self.mirror_index)
        self.super_eligibility = np.array([code.eligibility for code in supers], dtype=np.int8)
        # Requirements, flattened and grouped by super-code for `logical_and.reduceat`.
        num_categories = table.eligibility.shape[1]
        req_code, req_mask, starts = [], [], []
        for code in supers:
            starts.append(len(req_code))
            for name, allowed in code.requirements:
                index = table.index(name)
                req_code.append(index)
                req_mask.append(_category_mask(num_categories, table.codes[index].category_names, allowed))
        self.req_code, self.req_mask, self.req_starts = (
            np.array(req_code),
            np.array(req_mask),
            np.array(starts),
        )
        consume = np.zeros((len(supers), self.size), dtype=np.float32)
        for i, code in enumerate(supers):
            consume[i, [table.index(name) for name in code.consumes]] = 1.0
        self.consume = consume
        self._build_implications()
        self._build_transitive()
        self._build_phrases()

    def _lookup(self, name: str, allowed) -> tuple[int, np.ndarray]:
        """Index and category mask of a posecode or super-code (whose category 1 is "fired")."""
        width = self.table.eligibility.shape[1]
        if name in self.super_index:
            mask = np.zeros(width, dtype=bool)
            mask[1] = True
            return self.super_index[name], mask
        index = self.table.index(name)
        return index, _category_mask(width, self.table.codes[index].category_names, allowed)

    def _expand(self, name: str, allowed, mirrored: bool) -> list[tuple[int, np.ndarray]]:
        """Indices and category masks of a rule's trigger or target, on the left side or mirrored."""
        table = self.table
        if name.startswith("kind:"):
            kind = name[len("kind:") :]
            width = table.eligibility.shape[1]
            return [
                (i, np.ones(width, dtype=bool)) for i, code in enumerate(table.codes) if code.kind == kind
            ]
        if mirrored:
            if name in self.super_index or _swap_sides(name) in self.super_index:
                name = _swap_sides(name)
            else:
                index = table.index(name)
                allowed = _mirror_categories(table, index, allowed)
                name = table.codes[table.mirror_index[index]].name
        if name not in self.super_index and name not in table.name_index:
            raise ValueError(f"{name!r} in IMPLICATIONS is neither a posecode nor a super-code.")
        return [self._lookup(name, allowed or ())]

    def _build_implications(self):
        rules = set()
        for rule in IMPLICATIONS:
            if rule.when not in ("said", "holds"):
                raise ValueError(f"Implication `when` must be 'said' or 'holds', got {rule.when!r}.")
            for mirrored in (False, True):
                for t_index, t_mask in self._expand(rule.trigger, rule.trigger_categories, mirrored):
                    for g_index, g_mask in self._expand(rule.target, rule.target_categories, mirrored):
                        rules.add((t_index, tuple(t_mask), g_index, tuple(g_mask), rule.when == "said"))
        rules = sorted(rules)
        self.imp_trigger = np.array([r[0] for r in rules])
        self.imp_trigger_mask = np.array([r[1] for r in rules])
        self.imp_target = np.array([r[2] for r in rules])
        self.imp_target_mask = np.array([r[3] for r in rules])
        self.imp_when_said = np.array([r[4] for r in rules])
        self.imp_incidence = _incidence(self.imp_target, self.size)

    def _build_transitive(self):
        """Rules "a beyond b, b beyond c => drop a beyond c" for the relative-position codes."""
        table = self.table
        rules = []
        for kind in ("x", "y", "z"):
            beyond: dict = {}
            for index, code in enumerate(table.codes):
                if code.kind != kind:
                    continue
                a, b = code.points
                if (a, b) in beyond:
                    raise ValueError(f"Two {kind!r} posecodes compare {a} and {b}; keep one.")
                top = len(code.category_names) - 1
                beyond[(a, b)], beyond[(b, a)] = (index, top), (index, 0)
            for (a, b), first in beyond.items():
                for (b2, c), second in beyond.items():
                    if b2 == b and c != a and (a, c) in beyond:
                        rules.append(first + second + beyond[(a, c)])
        rules = np.array(rules, dtype=np.int64).reshape(-1, 6)
        self.transitive = rules
        self.transitive_incidence = _incidence(rules[:, 4], self.size)

    def _build_phrases(self):
        table = self.table
        rank = [int(index) for index in self.canonical]
        self.phrases: dict[tuple[int, int], _Phrase] = {}
        for index, code in enumerate(table.codes):
            names = code.category_names
            top = len(names) - 1
            for category in range(len(names)):
                if code.eligibility[category] == NEVER:
                    continue
                subject, other = _entity(code.subject), _entity(code.other)
                # Order-invariant wording of a left/right comparison: always "X is above Y", never "Y is
                # below X", so that a mirrored pose reads the same with the sides swapped.
                shown = category
                if (
                    code.other is not None
                    and table.mirror_index[index] == index
                    and table.mirror_sign[index] < 0
                    and category < top / 2
                ):
                    subject, other, shown = other, subject, top - category
                phrase = code.phrase or code.kind
                templates = TEMPLATES[phrase][names[shown]]
                # Mirror codes rank and order alike; a "signed" mirror's category is read in its twin's frame.
                order = (
                    top - shown
                    if (table.mirror_sign[index] < 0 and index != table.canonical[index])
                    else shown
                )
                self.phrases[(index, category)] = _Phrase(
                    code.name,
                    names[shown],
                    phrase,
                    templates,
                    subject,
                    other,
                    _category_side(names[shown]),
                    _SECTION_OF_BASE[subject[1]],
                    rank[index],
                    order,
                )
        for i, code in enumerate(self.supers):
            index = self.num_codes + i
            phrase = code.phrase or code.name
            subject = _entity(code.subject)
            section = "body" if code.subject == "body" else _SECTION_OF_BASE[subject[1]]
            self.phrases[(index, 1)] = _Phrase(
                code.name,
                "yes",
                phrase,
                TEMPLATES[phrase]["yes"],
                subject,
                None,
                _category_side(code.name),
                section,
                rank[index],
                1,
            )

    @staticmethod
    def both_sides_templates(phrase: _Phrase):
        if phrase.phrase != "x":
            return phrase.templates
        group = TEMPLATES["x_both"]
        if phrase.other is not None and phrase.other[0] is not None and phrase.other[0] != phrase.subject[0]:
            return group["across"]
        return group["outward" if phrase.side == phrase.subject[0] else "inward"]


def _incidence(targets: np.ndarray, size: int) -> np.ndarray:
    incidence = np.zeros((len(targets), size), dtype=np.float32)
    if len(targets):
        incidence[np.arange(len(targets)), targets] = 1.0
    return incidence


_POSE_GRAMMAR: Optional[_PoseGrammar] = None
_PAIR_GRAMMAR = None


def _pose_grammar() -> _PoseGrammar:
    global _POSE_GRAMMAR
    if _POSE_GRAMMAR is None:
        _POSE_GRAMMAR = _PoseGrammar()
    return _POSE_GRAMMAR


# ---------------------------------------------------------------------------------------------------------
# Batched selection
# ---------------------------------------------------------------------------------------------------------


def _as_joints(joints, name: str) -> tuple[np.ndarray, bool]:
    """Check joint positions `(22, 3)` or `(batch, 22, 3)`; return float64 `(batch, 22, 3)`, "was single"."""
    if hasattr(joints, "detach"):
        joints = joints.detach().cpu().numpy()
    try:
        array = np.asarray(joints, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise TypeError(
            f"`{name}` must be an array of joint positions, got {type(joints).__name__}."
        ) from error
    if array.ndim == 2:
        array, single = array[None], True
    else:
        single = False
    if array.ndim != 3 or array.shape[1:] != (NUM_JOINTS, 3):
        raise ValueError(
            f"`{name}` must have shape ({NUM_JOINTS}, 3) or (batch, {NUM_JOINTS}, 3) (SMPL body joints in "
            f"metres, y up), got {tuple(np.shape(joints))}."
        )
    if array.shape[0] == 0:
        raise ValueError(f"`{name}` holds no pose (shape {tuple(np.shape(joints))}).")
    if not np.isfinite(array).all():
        bad = np.argwhere(~np.isfinite(array).all(axis=(1, 2))).ravel().tolist()
        raise ValueError(f"`{name}` contains NaN or infinite values (poses {bad[:10]}).")
    return array, single


def _check_seed(seed, name: str = "seed") -> None:
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
        raise ValueError(f"`{name}` must be a non-negative integer or None, got {seed!r}.")


def _fire_supercodes(grammar: _PoseGrammar, categories: np.ndarray) -> np.ndarray:
    """`categories` `(..., S)` -> fired super-codes `(..., U)` bool."""
    ok = grammar.req_mask[np.arange(len(grammar.req_code)), categories[..., grammar.req_code]]
    return np.logical_and.reduceat(ok, grammar.req_starts, axis=-1)


def _select_posecodes(grammar: _PoseGrammar, values: np.ndarray, num_captions: int, rng: np.random.Generator):
    """
    Steps 1-3 for a batch: categories, eligibility, super-codes, random skipping and redundancy.

    Args:
        values (`np.ndarray` of shape `(batch, S)`): posecode values.

    Returns:
        `tuple`: `active` `(num_captions, batch, S + U)` bool and `categories` `(num_captions, batch, S + U)`.
    """
    table = grammar.table
    shape = (num_captions, values.shape[0])
    offsets = rng.uniform(-1.0, 1.0, shape + (len(table),))[..., table.canonical]
    categories = categorize(values[None], table, offsets)
    eligibility = table.eligibility[np.arange(len(table)), categories]
    fired = _fire_supercodes(grammar, categories)
    all_categories = np.concatenate([categories, fired.astype(np.int64)], axis=-1)
    all_eligibility = np.concatenate(
        [eligibility, np.where(fired, grammar.super_eligibility, NEVER)], axis=-1
    )
    skip_draws = rng.random(shape + (grammar.size,))[..., grammar.canonical]
    skip = skip_draws < SKIP_PROBABILITY
    eligible = all_eligibility > NEVER
    active = eligible & ~((all_eligibility == SAY) & skip)
    # A super-code that is said stands for the codes it is made of.
    consumed = (active[..., grammar.num_codes :].astype(np.float32) @ grammar.consume) > 0
    active &= ~consumed
    active &= ~_redundant(grammar, active, all_categories)
    # Never leave a caption empty because of the random skipping alone.
    empty = ~active.any(axis=-1, keepdims=True)
    if empty.any():
        fallback = eligible & ~consumed
        fallback &= ~_redundant(grammar, fallback, all_categories)
        active = np.where(empty, fallback, active)
    priority = np.where(all_eligibility == RARE, -1.0, skip_draws)
    return _cap(grammar, active, priority, MAX_CODES_PER_CAPTION), all_categories


def _cap(grammar: _PoseGrammar, active: np.ndarray, priority: np.ndarray, limit: int) -> np.ndarray:
    """
    Keep at most `limit` active codes per row, lowest `priority` first. A code and its mirror image count
    as one group, kept or dropped together, so that mirrored poses keep mirrored codes.

    Args:
        active (`np.ndarray` of shape `(..., S + U)`): codes to say.
        priority (`np.ndarray` of shape `(..., S + U)`): lower is kept first; equal for mirror codes unless
            one of them is rare.

    Returns:
        `np.ndarray` of shape `(..., S + U)`: the kept codes.
    """
    if limit <= 0 or (active.sum(axis=-1) <= limit).all():
        return active
    mirror = grammar.mirror_index
    masked = np.where(active, priority, np.inf)
    group_priority = np.minimum(masked, masked[..., mirror])
    # Sort by (group priority, group id) so that the members of a group sit next to each other.
    key = np.where(active, (group_priority + 2.0) * (2 * grammar.size) + grammar.canonical, np.inf)
    order = np.argsort(key, axis=-1, kind="stable")
    running = np.cumsum(np.take_along_axis(active, order, axis=-1), axis=-1)
    count = np.empty_like(running)
    np.put_along_axis(count, order, running, axis=-1)
    group_count = np.where(active[..., mirror], np.maximum(count, count[..., mirror]), count)
    return active & (group_count <= limit)


def _redundant(grammar: _PoseGrammar, active: np.ndarray, categories: np.ndarray) -> np.ndarray:
    """Codes implied by others that are said: `(..., S + U)` bool."""
    rules = grammar.imp_trigger
    trigger = (active[..., rules] | ~grammar.imp_when_said) & grammar.imp_trigger_mask[
        np.arange(len(rules)), categories[..., rules]
    ]
    target = grammar.imp_target_mask[np.arange(len(rules)), categories[..., grammar.imp_target]]
    drop = ((trigger & target).astype(np.float32) @ grammar.imp_incidence) > 0
    t = grammar.transitive
    if len(t):
        first = categories[..., t[:, 0]] == t[:, 1]
        second = categories[..., t[:, 2]] == t[:, 3]
        third = (categories[..., t[:, 4]] == t[:, 5]) & active[..., t[:, 4]]
        # The chain is readable when one of its two links is said and the other holds.
        said = (first & active[..., t[:, 0]]) & second | first & (second & active[..., t[:, 2]])
        drop |= ((said & third).astype(np.float32) @ grammar.transitive_incidence) > 0
    return drop


# ---------------------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------------------


class _Person:
    """The subject of one caption: a noun on first mention, then the pronoun or the noun again."""

    def __init__(self, rng: random.Random):
        genders = tuple(GENDER_WEIGHTS)
        gender = rng.choices(genders, weights=[GENDER_WEIGHTS[g] for g in genders])[0]
        nouns, self.pronoun, self.possessive, self.pronoun_plural = PEOPLE[gender]
        self.noun = rng.choice(nouns)
        self.mentioned = False
        self.rng = rng

    def mention(self) -> tuple[str, bool]:
        if not self.mentioned:
            self.mentioned = True
            return self.noun, False
        # "someone" and "a man" read badly twice: later mentions use the pronoun or "the man".
        if self.noun == "someone" or self.rng.random() < 0.6:
            return self.pronoun, self.pronoun_plural
        return ("the " + self.noun[2:] if self.noun.startswith("a ") else self.noun), False


def _render_caption(phrases: list[_Phrase], rng: random.Random) -> str:
    person = _Person(rng)
    determiner = "the" if rng.random() < DEFINITE_ARTICLE_SHARE else person.possessive
    if not phrases:
        subject, plural = person.mention()
        return _capitalize(f"{subject} {'are' if plural else 'is'} {rng.choice(NEUTRAL_PREDICATES)}.")
    sentences = []
    position = 0
    while position < len(phrases):
        count = rng.choice(PHRASES_PER_SENTENCE)
        group, position = phrases[position : position + count], position + count
        pieces, previous = [], None
        for phrase in group:
            role, template = rng.choice(phrase.templates)
            fill = {"det": determiner, "poss": person.possessive, "side": phrase.side}
            if "{other}" in template:
                fill["other"] = _noun_phrase(phrase.other, determiner, rng, allow_both=False)[0]
            if role == "person":
                predicate = template.format(**fill)
                if previous is None:
                    subject, plural = person.mention()
                    pieces.append(f"{subject} {'are' if plural else 'is'} {predicate}")
                elif previous == "person":
                    pieces.append(f" and {predicate}")
                else:
                    subject, plural = person.mention()
                    pieces.append(f", and {subject} {'are' if plural else 'is'} {predicate}")
                previous = "person"
                continue
            entity = phrase.subject
            if role == "limb":
                entity = (entity[0], LIMB_OF[entity[1]], entity[2])
            fill["joint_word"] = PLURALS[phrase.subject[1]] if phrase.subject[2] else phrase.subject[1]
            predicate = template.format(**fill)
            noun, plural = _noun_phrase(entity, determiner, rng)
            be = "are" if plural else "is"
            if previous is None:
                opener, form = rng.choice(OPENERS)
                if form == "clause":
                    pieces.append(f"{noun} {be} {predicate}")
                else:
                    subject, subject_plural = person.mention()
                    verbs = {
                        "subject": subject,
                        "has": "have" if subject_plural else "has",
                        "is": "are" if subject_plural else "is",
                    }
                    pieces.append(opener.format(**verbs) + f"{noun} {predicate}")
            else:
                joins = (
                    AFTER_PERSON
                    if previous == "person"
                    else AFTER_BARE
                    if previous == "bare"
                    else AFTER_CLAUSE
                )
                separator, form = rng.choice(joins)
                # "with ... with" and "while ... while" read badly in one sentence.
                sentence = "".join(pieces)
                if any(f"{word} " in separator and f" {word} " in sentence for word in ("with", "while")):
                    separator, form = next(
                        join
                        for join in joins
                        if not any(f"{w} " in join[0] and f" {w} " in sentence for w in ("with", "while"))
                    )
                pieces.append(
                    separator + (f"{noun} {be} {predicate}" if form == "clause" else f"{noun} {predicate}")
                )
            previous = form
        sentences.append(_capitalize("".join(pieces)) + ".")
    return " ".join(sentences)


def _worded(plans: list, seeds: np.ndarray, single: bool, render) -> list:
    """
    The captions of each item (pose or pair), one per plan, `render(plan, rng)` wording plan `k` with the seed
    `seeds[k, item]`; a caption that repeats an earlier one of its item is worded again with derived seeds.
    A single item's list alone when `single`.
    """
    result = []
    for item, item_plans in enumerate(plans):
        captions: list[str] = []
        for k, plan in enumerate(item_plans):
            seed = int(seeds[k, item])
            caption = render(plan, random.Random(seed))
            attempt = 1
            while caption in captions and attempt <= DISTINCT_ATTEMPTS:
                caption = render(plan, random.Random(seed * (DISTINCT_ATTEMPTS + 1) + attempt))
                attempt += 1
            if caption in captions:
                logger.warning_once(
                    f"A pose has too few describable features for {len(item_plans)} distinct captions; some "
                    "repeat."
                )
            captions.append(caption)
        result.append(captions)
    return result[0] if single else result


def _statements(plans: list, single: bool) -> list:
    """What each plan of each item says, before wording ([`Statement`]s); a single item's list alone."""
    result = [[[phrase.statement() for phrase in plan] for plan in item_plans] for item_plans in plans]
    return result[0] if single else result


# ---------------------------------------------------------------------------------------------------------
# Pose captioner
# ---------------------------------------------------------------------------------------------------------


class PoseCaptioner:
    """
    Writes descriptions of body poses from their joint positions.

    Successive calls continue one random stream, so a captioner built with the same seed and given the same
    calls writes the same captions; pass `seed=` to a call to make it independent of earlier calls.

    Args:
        seed (`int`, *optional*, defaults to 0): seed of the random stream.

    Example:

    ```python
    >>> import numpy as np
    >>> from unipose.body_model import pose_to_joints
    >>> captioner = PoseCaptioner(seed=0)
    >>> joints = pose_to_joints(np.zeros((2, 22, 3)))  # (2, 22, 3)
    >>> captions = captioner.describe(joints, num_captions=3)  # two lists of three captions
    ```
    """

    def __init__(self, seed: int = 0):
        _check_seed(seed)
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        self._grammar = _pose_grammar()

    def _plan(self, joints, num_captions: int, seed: Optional[int], name: str = "joints"):
        joints, single = _as_joints(joints, name)
        num_captions = check_positive_int(num_captions, "num_captions")
        _check_seed(seed)
        rng = self._rng if seed is None else np.random.default_rng(seed)
        grammar = self._grammar
        points, _ = prepare_points(joints)
        values = measure_posecodes(points, grammar.table)
        active, categories = _select_posecodes(grammar, values, num_captions, rng)
        render_seeds = rng.integers(0, 2**31 - 1, size=(num_captions, len(joints)))
        legs_first = rng.random((num_captions, len(joints))) < LEGS_FIRST_PROBABILITY
        plans = [[None] * num_captions for _ in range(len(joints))]
        rows, columns = np.nonzero(active.reshape(-1, grammar.size))
        splits = np.searchsorted(rows, np.arange(1, active.shape[0] * active.shape[1]))
        flat_categories = categories.reshape(-1, grammar.size)
        for row, codes in enumerate(np.split(columns, splits)):
            k, b = divmod(row, len(joints))
            phrases = [grammar.phrases[(int(c), int(flat_categories[row, c]))] for c in codes]
            phrases = _merge_sides(_merge_limb_parts(phrases), grammar.both_sides_templates)
            order = _ARMS_FIRST if not legs_first[k, b] else _LEGS_FIRST
            phrases.sort(key=lambda p: _sort_key(p, order))
            plans[b][k] = phrases
        return plans, render_seeds, single

    def describe(
        self, joints, num_captions: int = 1, seed: Optional[int] = None
    ) -> Union[list[str], list[list[str]]]:
        """
        Describe poses in words.

        Args:
            joints (`np.ndarray` or `torch.Tensor` of shape `(22, 3)` or `(batch, 22, 3)`):
                SMPL body joint positions in metres, in a y-up world (x is the body's left and z its front
                in the rest pose; any global orientation).
            num_captions (`int`, *optional*, defaults to 1): captions per pose, distinct from each other.
            seed (`int`, *optional*): draw this call's randomness from a fresh generator with this seed.

        Returns:
            `list[str]` of `num_captions` captions for a single pose, or one such list per pose.
        """
        return _worded(*self._plan(joints, num_captions, seed), _render_caption)

    def statements(self, joints, num_captions: int = 1, seed: Optional[int] = None) -> list:
        """
        What [`~PoseCaptioner.describe`] would say, before wording: the same draws as `describe` with the
        same seed.

        Returns:
            `list[list[Statement]]` (one list per caption) for a single pose, or one such list per pose.
        """
        plans, _, single = self._plan(joints, num_captions, seed)
        return _statements(plans, single)


_ARMS_FIRST = {name: i for i, name in enumerate(SECTIONS)}
_LEGS_FIRST = {"body": 0, "torso": 1, "legs": 2, "arms": 3}


# ---------------------------------------------------------------------------------------------------------
# Pair captioner
# ---------------------------------------------------------------------------------------------------------

_MAGNITUDE = {
    "slightly_less": "slight",
    "slightly_more": "slight",
    "less": "normal",
    "more": "normal",
    "much_less": "much",
    "much_more": "much",
}
_SIZE = {"slight": 0, "normal": 1, "much": 2}
_HEADING = {"around": "around", "back": "much", "slightly": "slight"}
_CHANGE_PHRASE = {
    "angle": "angle_change",
    "pitch": "pitch_change",
    "roll": "roll_change",
    "twist": "twist_change",
    "x": "x_change",
    "y": "y_change",
    "z": "z_change",
    "height": "height_change",
}
# Which single-pose categories count as "reached" when a change goes down (less) or up (more).
_GOALS = {
    "angle": (("completely_bent",), ("straight",)),
    "pitch": (("upright",), ("upright",)),
    "distance": (("close",), ("far",)),
    "x": (("right",), ("left",)),
    "y": (("below",), ("above",)),
    "z": (("behind",), ("front",)),
}
# Postures left for "get up" when pose B has no posture of its own.
_GROUND_POSTURES = (
    "sitting_ground",
    "sitting_legs_out",
    "kneeling",
    "kneeling_left",
    "kneeling_right",
    "squatting",
    "lying_back",
    "lying_front",
    "lying_left",
    "lying_right",
)
_LYING_POSTURES = ("lying_back", "lying_front", "lying_left", "lying_right")


class _PairPhrase(_Phrase):
    """A `_Phrase` of an instruction, with how clear it is (`priority`) and what it moves where (`group`)."""

    __slots__ = ("priority", "group")

    def __init__(
        self, code, category, phrase, templates, subject, other, side, section, rank, order, priority, group
    ):
        super().__init__(code, category, phrase, templates, subject, other, side, section, rank, order)
        self.priority, self.group = priority, group


class _PairGrammar:
    """Compiled pair codes: arrays for the batched selection and one phrase per (code, category, ...)."""

    def __init__(self, pose: _PoseGrammar):
        self.pose = pose
        table = PaircodeTable.build(PAIRCODES, pose.table)
        self.table = table
        posecodes = pose.table
        width = posecodes.eligibility.shape[1]
        num = len(table)
        self.points = np.zeros((num, 2), dtype=np.int64)
        self.two_points = np.zeros(num, dtype=bool)
        self.both_sides = np.zeros(num, dtype=bool)
        self.goal_less = np.zeros((num, width), dtype=bool)
        self.goal_more = np.zeros((num, width), dtype=bool)
        for q, code in enumerate(table.codes):
            if code.base is None:
                continue
            base = posecodes.codes[posecodes.index(code.base)]
            if base.kind in ("distance", "x", "y", "z"):
                self.points[q] = [POINT_INDEX[p] for p in base.points]
                self.two_points[q] = base.phrase != "distance_pair"
                self.both_sides[q] = base.phrase == "distance_pair"
            if base.kind in _GOALS:
                less, more = _GOALS[base.kind]
                self.goal_less[q] = _category_mask(width, base.category_names, less)
                self.goal_more[q] = _category_mask(width, base.category_names, more)
        # Postures in order of precedence (see POSTURE_PRECEDENCE); a pose takes the first that holds.
        precedence = _with_right_twins(POSTURE_PRECEDENCE)
        names = [code.name for code in pose.supers]
        missing = [code.name for code in pose.supers if code.posture and code.name not in precedence]
        if missing:
            raise ValueError(f"Postures {missing} are missing from POSTURE_PRECEDENCE.")
        self.posture_supers = [names.index(name) for name in precedence]
        base_kinds = [
            "heading" if c.base is None else posecodes.codes[posecodes.index(c.base)].kind
            for c in table.codes
        ]
        bases = [None if c.base is None else posecodes.codes[posecodes.index(c.base)] for c in table.codes]
        # Changes measured against the world's vertical or in the heading frame lose their meaning when the
        # body turns from upright to lying (or back): only bends and distances survive such a change.
        self.frame_dependent = np.array(
            [kind in ("heading", "x", "y", "z", "pitch", "roll", "twist", "height") for kind in base_kinds]
        )

        # A change of posture says what the legs and the torso do.
        def in_legs(base, attribution):
            if base is None:
                return False
            if base.kind in ("pitch", "height"):
                return True
            subject, _ = _attributed_entities(base, attribution)
            return _SECTION_OF_BASE.get(subject[1]) == "legs"

        self.legs = np.array([[in_legs(base, a) for a in _ATTRIBUTIONS] for base in bases])
        # Distances between two parts are only worth saying when they touch (nearly) in one of the poses.
        self.needs_contact = np.array(
            [b is not None and b.kind == "distance" and b.phrase != "distance_pair" for b in bases]
        )
        self._build_phrases()

    def _build_phrases(self):
        table, posecodes = self.table, self.pose.table
        self.phrases: dict = {}
        for q, code in enumerate(table.codes):
            kind = KINDS[code.kind]
            names = kind.categories
            mid = len(names) // 2
            base = None if code.base is None else posecodes.codes[posecodes.index(code.base)]
            rank = int(table.canonical[q])
            if self.two_points[q]:
                attributions = (_AS_IS, _SWAPPED)
            elif self.both_sides[q]:
                attributions = (_AS_IS, _FIRST_ONLY, _SECOND_ONLY)
            else:
                attributions = (_AS_IS,)
            for category in range(len(names)):
                if code.eligibility[category] == NEVER:
                    continue
                for reached in (False, True):
                    for attribution in attributions:
                        phrase = self._make(q, code, base, names, category, mid, reached, attribution, rank)
                        if phrase is not None:
                            self.phrases[(q, category, reached, attribution)] = phrase

    def _make(self, q, code, base, names, category, mid, reached, attribution, rank):
        table = self.table
        shown = category
        if attribution == _SWAPPED and base.kind in ("x", "y", "z"):
            shown = len(names) - 1 - category
        name = names[shown]
        direction = "less" if shown < mid else "more"
        order = shown if (table.mirror_sign[q] > 0 or q == table.canonical[q]) else len(names) - 1 - shown
        if base is None:  # the heading: "around_left" -> "around", "back_left" -> "much", "left" -> "normal"
            key = _HEADING.get(name.split("_")[0], "normal")
            side = None if key == "around" else _category_side(name)
            # Turning is said before anything about the limbs.
            return _PairPhrase(
                code.name,
                name,
                "heading_change",
                PAIR_TEMPLATES["heading_change"][key],
                None,
                None,
                side,
                "body",
                rank,
                order,
                5,
                ("heading", "heading_change", key),
            )
        subject, other = _attributed_entities(base, attribution)
        if base.kind == "distance":
            phrase = "distance_pair_change" if other is None else "distance_change"
        else:
            phrase = _CHANGE_PHRASE[base.kind]
        group_templates = PAIR_TEMPLATES[phrase]
        side = None
        if phrase in ("roll_change", "twist_change", "x_change"):
            key = _MAGNITUDE[name] if name in _MAGNITUDE else name
            side = "left" if direction == "more" else "right"
        else:
            key = name
        if reached:
            reached_key = f"{key}+reached" if phrase == "x_change" else f"{direction}+reached"
            if reached_key not in group_templates:
                return None
            key = reached_key
        if key not in group_templates:
            return None
        size = _SIZE[_MAGNITUDE.get(name, "normal")] + (2 if reached else 0)
        section = _SECTION_OF_BASE[subject[1]] if subject is not None else "torso"
        if base.kind in ("pitch", "roll", "twist"):
            section = "torso"
        group = (_entity_name(subject), phrase, direction)
        return _PairPhrase(
            code.name,
            name,
            phrase,
            group_templates[key],
            subject,
            other,
            side,
            section,
            rank,
            order,
            size,
            group,
        )

    @staticmethod
    def both_sides_templates(phrase):
        if phrase.phrase != "x_change":
            return phrase.templates
        return PAIR_TEMPLATES["x_change_both"]["outward" if phrase.side == phrase.subject[0] else "inward"]


# Who moves in a change between two parts: the first part, the second ("swapped"), or for a pair of
# left/right parts, both (as is) or only one side.
_AS_IS, _SWAPPED, _FIRST_ONLY, _SECOND_ONLY = 0, 1, 2, 3
_ATTRIBUTIONS = (_AS_IS, _SWAPPED, _FIRST_ONLY, _SECOND_ONLY)
# For a left/right pair, one side alone moved when it moved this many times more than the other.
ONE_SIDED_RATIO = 2.0


def _attributed_entities(base, attribution: int):
    """The (subject, other) entities of a change of posecode `base`, given who moved."""
    if base.phrase == "distance_pair" and attribution in (_FIRST_ONLY, _SECOND_ONLY):
        first, second = (_entity(point) for point in base.points)
        return (first, second) if attribution == _FIRST_ONLY else (second, first)
    subject, other = _entity(base.subject), _entity(base.other)
    return (other, subject) if attribution == _SWAPPED and other is not None else (subject, other)


def _one_posture(fired: np.ndarray, precedence: list[int]) -> np.ndarray:
    """Keep only the first fired posture in order of `precedence` (super-code indices): `(..., U)` bool."""
    postures = fired[..., precedence]
    first = postures & (np.cumsum(postures, axis=-1) == 1)
    result = fired.copy()
    result[..., precedence] = first
    return result


def _pair_grammar() -> _PairGrammar:
    global _PAIR_GRAMMAR
    if _PAIR_GRAMMAR is None:
        _PAIR_GRAMMAR = _PairGrammar(_pose_grammar())
    return _PAIR_GRAMMAR


def _your(entity, rng: random.Random, allow_both: bool = True) -> str:
    return _noun_phrase(entity, "your", rng, allow_both)[0]


def _render_instruction(phrase, rng: random.Random) -> str:
    template = rng.choice(phrase.templates)
    fill = {"side": phrase.side}
    if phrase.subject is not None:
        subject = phrase.subject
        fill["subject"] = _your(subject, rng)
        if phrase.phrase == "angle_change":
            fill["joint"] = fill["subject"]
            fill["limb"] = _your((subject[0], LIMB_OF[subject[1]], subject[2]), rng)
            fill["joint_word"] = PLURALS[subject[1]] if subject[2] else subject[1]
    if "{other}" in template:
        fill["other"] = _your(phrase.other, rng, allow_both=False)
    return template.format(**fill)


def _gerund(text: str) -> str:
    verb, _, rest = text.partition(" ")
    return f"{GERUNDS.get(verb, verb)} {rest}".strip()


def _render_instructions(phrases: list, rng: random.Random) -> str:
    if not phrases:
        return rng.choice(NO_CHANGE)
    sentences, position = [], 0
    while position < len(phrases):
        count = rng.choice(PAIR_PHRASES_PER_SENTENCE)
        group, position = phrases[position : position + count], position + count
        text = rng.choice(PAIR_OPENERS) + _render_instruction(group[0], rng)
        used = set()
        for phrase in group[1:]:
            separator, form = rng.choice(
                [join for join in PAIR_JOINS if join[0] not in used or join[1] == "sentence"]
            )
            used.add(separator)
            instruction = _render_instruction(phrase, rng)
            if form == "sentence":
                sentences.append(_capitalize(text) + ".")
                text = instruction
            else:
                text += separator + (_gerund(instruction) if form == "gerund" else instruction)
        sentences.append(_capitalize(text) + ".")
    return " ".join(sentences)


class PairCaptioner:
    """
    Writes instructions that turn pose A into pose B, from B's point of view ("Raise your left arm above
    your head and turn to your right.").

    Args:
        seed (`int`, *optional*, defaults to 0): seed of the random stream (see [`PoseCaptioner`]).

    Example:

    ```python
    >>> captioner = PairCaptioner(seed=0)
    >>> captioner.describe(joints_a, joints_b, num_captions=2)  # doctest: +SKIP
    ['Bend your left knee more and turn slightly to your left.', ...]
    ```
    """

    def __init__(self, seed: int = 0):
        _check_seed(seed)
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        self._grammar = _pair_grammar()

    def _plan(self, joints_a, joints_b, num_captions: int, seed: Optional[int]):
        joints_a, single_a = _as_joints(joints_a, "joints_a")
        joints_b, single_b = _as_joints(joints_b, "joints_b")
        check_same(tuple(joints_a.shape), tuple(joints_b.shape), ("joints_a", "joints_b"), "shape")
        num_captions = check_positive_int(num_captions, "num_captions")
        _check_seed(seed)
        rng = self._rng if seed is None else np.random.default_rng(seed)
        grammar, pose = self._grammar, self._grammar.pose
        posecodes, table = pose.table, grammar.table
        batch = len(joints_a)
        shape = (num_captions, batch)
        points_a, heading_a = prepare_points(joints_a)
        points_b, heading_b = prepare_points(joints_b)
        values_a, values_b = measure_posecodes(points_a, posecodes), measure_posecodes(points_b, posecodes)
        # One set of threshold shifts per caption, shared by both poses so that equal values compare equal.
        offsets = rng.uniform(-1.0, 1.0, shape + (len(posecodes),))[..., posecodes.canonical]
        categories_a = categorize(values_a[None], posecodes, offsets)
        categories_b = categorize(values_b[None], posecodes, offsets)
        fired_a, fired_b = _fire_supercodes(pose, categories_a), _fire_supercodes(pose, categories_b)
        fired_a, fired_b = (
            _one_posture(fired_a, grammar.posture_supers),
            _one_posture(fired_b, grammar.posture_supers),
        )
        changes = measure_paircodes(
            np.repeat(values_a[None], num_captions, 0).reshape(-1, len(posecodes)),
            np.repeat(values_b[None], num_captions, 0).reshape(-1, len(posecodes)),
            categories_a.reshape(-1, len(posecodes)),
            categories_b.reshape(-1, len(posecodes)),
            np.tile(heading_a, num_captions),
            np.tile(heading_b, num_captions),
            table,
        ).reshape(shape + (len(table),))
        pair_offsets = rng.uniform(-1.0, 1.0, shape + (len(table),))[..., table.canonical]
        change_categories = categorize_changes(changes, table, pair_offsets)
        eligibility = table.eligibility[np.arange(len(table)), change_categories]
        # "Reached": B ends in the extreme category in the direction of the change and A was not there yet.
        has_base = table.base_index >= 0
        base = np.where(has_base, table.base_index, 0)
        q = np.arange(len(table))
        kind_mid = np.array([len(KINDS[c.kind].categories) // 2 for c in table.codes])
        going_down, going_up = change_categories < kind_mid, change_categories > kind_mid
        cat_a, cat_b = categories_a[..., base], categories_b[..., base]
        reached = np.where(
            going_down,
            grammar.goal_less[q, cat_b] & ~grammar.goal_less[q, cat_a],
            going_up & grammar.goal_more[q, cat_b] & ~grammar.goal_more[q, cat_a],
        )
        # The part that moved more (in each pose's own frame) is the one the instruction moves.
        moved = np.linalg.norm(points_b - points_a, axis=-1)  # (batch, P)
        first, second = moved[:, grammar.points[:, 0]], moved[:, grammar.points[:, 1]]
        attribution = np.full(first.shape, _AS_IS)
        attribution[grammar.two_points & (second > first)] = _SWAPPED
        attribution[grammar.both_sides & (first > ONE_SIDED_RATIO * second)] = _FIRST_ONLY
        attribution[grammar.both_sides & (second > ONE_SIDED_RATIO * first)] = _SECOND_ONLY
        attribution = np.broadcast_to(attribution, shape + (len(table),))
        skip = rng.random(shape + (len(table),))[..., table.canonical] < SKIP_PROBABILITY
        active = (eligibility > NEVER) & ~((eligibility == SAY) & skip)
        close = 0  # the first distance category
        active &= ~grammar.needs_contact | (cat_a == close) | (cat_b == close)
        # Changes of whole-body posture come first and make most leg and torso changes redundant.
        supers = pose.supers
        postures = np.array(grammar.posture_supers)
        entering = fired_b[..., postures] & ~fired_a[..., postures]
        tilt = posecodes.index("torso_tilt")
        inverted = posecodes.codes[tilt].category_names.index("inverted")
        inverted_a, inverted_b = categories_a[..., tilt] == inverted, categories_b[..., tilt] == inverted
        entering_inverted = inverted_b & ~inverted_a
        ground = np.array([i for i, c in enumerate(supers) if c.name in _GROUND_POSTURES])
        lying = np.array([i for i, c in enumerate(supers) if c.name in _LYING_POSTURES])
        pelvis = posecodes.index("pelvis_height")
        pelvis_raised_b = categories_b[..., pelvis] == posecodes.codes[pelvis].category_names.index("raised")
        getting_up = (
            fired_a[..., ground].any(-1) & ~fired_b[..., postures].any(-1) & ~inverted_b & pelvis_raised_b
        )
        posture_change = entering.any(-1) | entering_inverted | getting_up
        world_change = (fired_a[..., lying].any(-1) != fired_b[..., lying].any(-1)) | (
            inverted_a != inverted_b
        )
        legs = grammar.legs[np.arange(len(table)), attribution]
        active &= ~(posture_change[..., None] & legs)
        active &= ~(world_change[..., None] & grammar.frame_dependent)
        render_seeds = rng.integers(0, 2**31 - 1, size=shape)
        legs_first = rng.random(shape) < LEGS_FIRST_PROBABILITY
        plans = [[None] * num_captions for _ in range(batch)]
        posture_names = [supers[i] for i in grammar.posture_supers]
        for k in range(num_captions):
            for b in range(batch):
                phrases = []
                for u in np.flatnonzero(entering[k, b]):
                    phrases.append(self._posture_phrase(posture_names[u]))
                if entering_inverted[k, b]:
                    phrases.append(self._posture_phrase(None, "inverted"))
                elif getting_up[k, b]:
                    phrases.append(self._posture_phrase(None, "get_up"))
                for code in np.flatnonzero(active[k, b]):
                    key = (
                        int(code),
                        int(change_categories[k, b, code]),
                        bool(reached[k, b, code]),
                        int(attribution[k, b, code]),
                    )
                    phrase = grammar.phrases.get(key) or grammar.phrases.get(key[:2] + (False, key[3]))
                    if phrase is not None:
                        phrases.append(phrase)
                phrases = _merge_sides(
                    _merge_limb_parts(_prune_pair_phrases(phrases)), grammar.both_sides_templates
                )
                if len(phrases) > MAX_INSTRUCTIONS:
                    # The clearest first; every key is the same for a phrase and its mirror image.
                    phrases.sort(key=lambda p: (-p.priority, _sort_key(p, _ARMS_FIRST)))
                    phrases = phrases[:MAX_INSTRUCTIONS]
                order = _ARMS_FIRST if not legs_first[k, b] else _LEGS_FIRST
                phrases.sort(key=lambda p: _sort_key(p, order))
                plans[b][k] = phrases
        return plans, render_seeds, single_a and single_b

    @staticmethod
    def _posture_phrase(code: Optional[SuperCode], name: Optional[str] = None) -> _PairPhrase:
        if code is not None:
            name = code.phrase or code.name
            side = _category_side(code.name)
            label = code.name
        else:
            side, label = None, name
        return _PairPhrase(
            label,
            "enter",
            "posture",
            PAIR_TEMPLATES["posture"][name],
            None,
            None,
            side,
            "body",
            -1,
            0,
            9,
            ("posture", "posture", label),
        )

    def describe(
        self, joints_a, joints_b, num_captions: int = 1, seed: Optional[int] = None
    ) -> Union[list[str], list[list[str]]]:
        """
        Write instructions that turn poses A into poses B.

        Args:
            joints_a, joints_b (`np.ndarray` or `torch.Tensor` of shape `(22, 3)` or `(batch, 22, 3)`):
                joint positions of the start and target poses (see [`PoseCaptioner.describe`]).
            num_captions (`int`, *optional*, defaults to 1): instructions per pair, distinct from each other.
            seed (`int`, *optional*): draw this call's randomness from a fresh generator with this seed.

        Returns:
            `list[str]` for a single pair, or one such list per pair.
        """
        return _worded(*self._plan(joints_a, joints_b, num_captions, seed), _render_instructions)

    def statements(self, joints_a, joints_b, num_captions: int = 1, seed: Optional[int] = None) -> list:
        """What [`~PairCaptioner.describe`] would say with the same seed, before wording ([`Statement`]s)."""
        plans, _, single = self._plan(joints_a, joints_b, num_captions, seed)
        return _statements(plans, single)


def _prune_pair_phrases(phrases: list) -> list:
    """
    Keep the clearest instruction per body part and direction ("raise your left hand above your head" over
    "raise your left hand" and "move your left hand above your shoulder"), and at most
    `MAX_PHRASES_PER_PART` per part; for a hand and its elbow (a foot and its knee) moving the same way,
    keep the one that moves more.
    """
    best: dict = {}
    for phrase in phrases:
        current = best.get(phrase.group)
        if current is None or (phrase.priority, -phrase.rank) > (current.priority, -current.rank):
            best[phrase.group] = phrase
    kept = [p for p in phrases if best.get(p.group) is p]
    per_part: dict = {}
    for phrase in sorted(kept, key=lambda p: (-p.priority, p.rank)):
        per_part.setdefault(phrase.group[0], []).append(phrase)
    allowed = set()
    for part, members in per_part.items():
        allowed.update(id(p) for p in members[: MAX_PHRASES_PER_PART if part is not None else len(members)])
    kept = [p for p in kept if id(p) in allowed]
    # A hand and its elbow (a foot and its knee) moving the same way: say it once.
    by_group = {p.group: p for p in kept}
    drop = set()
    for (_, phrase_name, direction), phrase in by_group.items():
        if phrase.subject is None or phrase.subject[0] is None or phrase.subject[2]:
            continue
        side, base = phrase.subject[0], phrase.subject[1]
        partner = {"elbow": "hand", "knee": "foot"}.get(base)
        if partner is None:
            continue
        twin = by_group.get((f"{side}_{partner}", phrase_name, direction))
        if twin is None or (
            twin.other == phrase.other
            and twin.category == phrase.category
            and twin.templates is phrase.templates
        ):
            continue
        drop.add(id(phrase) if (twin.priority, base == "knee") >= (phrase.priority, True) else id(twin))
    return [p for p in kept if id(p) not in drop]


# ---------------------------------------------------------------------------------------------------------
# Convenience: from SMPL poses
# ---------------------------------------------------------------------------------------------------------


def caption_poses(poses, num_captions: int = 1, seed: int = 0, body=None) -> list[list[str]]:
    """
    Describe SMPL poses: forward kinematics with `unipose.body_model.pose_to_joints`, then
    [`PoseCaptioner.describe`].

    Args:
        poses: any pose format `unipose.rotations.to_rotation_6d` accepts (axis-angle `(B, 22, 3)` or
            `(B, 66)`, rotation matrices, 6D; a single pose without the batch axis), root in a y-up world.
        num_captions (`int`, *optional*, defaults to 1): captions per pose.
        seed (`int`, *optional*, defaults to 0): seed of the captioner.
        body (*optional*): the `BodyJoints` module to use (the generated body by default).

    Returns:
        `list[list[str]]`: `num_captions` captions for each pose (a single pose gives a list of one list).
    """
    joints = _joints_numpy(pose_to_joints(poses, body=body))
    return PoseCaptioner(seed=seed).describe(joints, num_captions=num_captions)


def caption_pairs(poses_a, poses_b, num_captions: int = 1, seed: int = 0, body=None) -> list[list[str]]:
    """
    Instructions from SMPL poses A to poses B (see [`caption_poses`] for the formats).

    Returns:
        `list[list[str]]`: `num_captions` instructions for each pair.
    """
    joints_a = _joints_numpy(pose_to_joints(poses_a, body=body))
    joints_b = _joints_numpy(pose_to_joints(poses_b, body=body))
    return PairCaptioner(seed=seed).describe(joints_a, joints_b, num_captions=num_captions)


def _joints_numpy(joints) -> np.ndarray:
    if hasattr(joints, "detach"):
        joints = joints.detach().cpu().numpy()
    return np.asarray(joints, dtype=np.float64).reshape(-1, NUM_JOINTS, 3)


__all__ = [
    "IMPLICATIONS",
    "SKIP_PROBABILITY",
    "SUPERCODES",
    "PairCaptioner",
    "PoseCaptioner",
    "Statement",
    "SuperCode",
    "caption_pairs",
    "caption_poses",
]
