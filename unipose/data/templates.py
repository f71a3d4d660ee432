"""
The wording of automatic captions, as data: nouns for body parts and people, predicates for every posecode
category, imperative phrases for every change between two poses, and the words that join them.

Conventions used by `unipose.data.captioning`:

- A single-pose template is a pair `(role, predicate)`. The role names the grammatical subject: `"part"`
  (the code's body part: "the left knee"), `"limb"` (for joint angles, the whole limb: "the left leg") or
  `"person"` ("The person"). The predicate must read both after "is" ("the left knee is bent at ninety
  degrees") and after "with" ("with the left knee bent at ninety degrees"), so it is an adjective or a
  participle phrase, never a finite verb, and it never refers to the subject with a pronoun.
- Placeholders: `{other}` the compared body part with its determiner, `{det}` the caption's determiner for
  body parts ("the", or "their"/"his"/"her"), `{poss}` the person's possessive, `{side}` "left" or "right"
  for categories that carry a side, `{joint}` / `{limb}` / `{joint_word}` for angle changes.
- Pair templates are imperative phrases that start with a verb listed in `GERUNDS` (so they can follow
  "while"). Their body parts come with "your" (or "both") already attached: "bend {joint} more".
- The words "left" and "right" appear only through `{side}` or the body parts: a caption of a mirrored pose
  is exactly the caption with the two words swapped, so no template may use them in another sense.
"""

from __future__ import annotations

import json
from pathlib import Path

# ---------------------------------------------------------------------------------------------------------
# Nouns
# ---------------------------------------------------------------------------------------------------------

# base entity -> options of (noun, grammatically plural)
NOUNS: dict[str, tuple[tuple[str, bool], ...]] = {
    "hand": (("hand", False),),
    "elbow": (("elbow", False),),
    "wrist": (("wrist", False),),
    "shoulder": (("shoulder", False),),
    "upper_arm": (("upper arm", False),),
    "forearm": (("forearm", False),),
    "arm": (("arm", False),),
    "knee": (("knee", False),),
    "foot": (("foot", False),),
    "hip": (("hip", False),),
    "thigh": (("thigh", False),),
    "shin": (("shin", False), ("lower leg", False)),
    "leg": (("leg", False),),
    "head": (("head", False),),
    "torso": (("torso", False), ("upper body", False), ("body", False)),
    "pelvis": (("hips", True), ("pelvis", False)),
    "body": (("body", False),),
}

# base entity -> noun for both sides at once
PLURALS: dict[str, str] = {
    "hand": "hands",
    "elbow": "elbows",
    "wrist": "wrists",
    "shoulder": "shoulders",
    "upper_arm": "upper arms",
    "forearm": "forearms",
    "arm": "arms",
    "knee": "knees",
    "foot": "feet",
    "hip": "hips",
    "thigh": "thighs",
    "shin": "shins",
    "leg": "legs",
}

# Entities that name both sides at once, as used by posecodes on a left/right pair.
PAIR_ENTITIES: dict[str, str] = {plural.replace(" ", "_"): base for base, plural in PLURALS.items()}

# The limb whose bend a joint angle measures.
LIMB_OF: dict[str, str] = {"elbow": "arm", "knee": "leg"}

# Two parts of one limb that say the same thing merge into the limb.
LIMB_PARTS: dict[frozenset, str] = {
    frozenset(("hand", "elbow")): "arm",
    frozenset(("upper_arm", "forearm")): "arm",
    frozenset(("knee", "foot")): "leg",
    frozenset(("thigh", "shin")): "leg",
}

# gender -> (subject nouns, pronoun, possessive, pronoun takes a plural verb)
PEOPLE: dict[str, tuple[tuple[str, ...], str, str, bool]] = {
    "neutral": (
        ("the person", "someone", "this person", "the figure", "the individual"),
        "they",
        "their",
        True,
    ),
    "male": (("the man", "this man", "a man"), "he", "his", False),
    "female": (("the woman", "this woman", "a woman"), "she", "her", False),
}
GENDER_WEIGHTS: dict[str, float] = {"neutral": 0.5, "male": 0.25, "female": 0.25}

# Share of captions that say "the left knee" rather than "their left knee".
DEFINITE_ARTICLE_SHARE = 0.5


# ---------------------------------------------------------------------------------------------------------
# Single poses and pairs: the predicates and imperatives, kept in `templates.json`
# ---------------------------------------------------------------------------------------------------------


def _read_templates() -> tuple[dict, dict]:
    """
    `templates.json`: `"templates"`, phrase -> category -> `[role, predicate]` rows (a string `"@name"` in
    place of the rows stands for the rows of `"shared"` under that name); `"pair_templates"`, phrase -> change
    category -> imperatives, a category followed by `"+reached"` being used when pose B ends in the extreme
    category (straight, above the other part, ...). Read as tuples.

    Notes on the wording there: `"x_both"` speaks of both sides at once, `"outward"` being away from the
    midline and `"across"` reaching the other side's part; `"x_change_both"` moves both hands (feet) sideways
    at once, away from the midline or towards it. The phrases after `"standing"` are the super-codes, with
    the one category `"yes"`. Sideways changes (`"roll_change"`, `"twist_change"`, ...) are keyed by their
    size, the direction coming in through `{side}`; a turn `"around"` (more than ~150 degrees) says no side,
    so that either way reads the same. `"posture"` changes enter the global posture of pose B.
    """
    data = json.loads(Path(__file__).with_name("templates.json").read_text(encoding="utf-8"))
    shared = {name: tuple(map(tuple, rows)) for name, rows in data["shared"].items()}
    templates = {
        phrase: {
            category: shared[rows[1:]] if isinstance(rows, str) else tuple(map(tuple, rows))
            for category, rows in categories.items()
        }
        for phrase, categories in data["templates"].items()
    }
    pair_templates = {
        phrase: {category: tuple(phrases) for category, phrases in categories.items()}
        for phrase, categories in data["pair_templates"].items()
    }
    return templates, pair_templates


# Single poses: phrase -> category -> ((role, predicate), ...); pairs: phrase -> change category ->
# (imperative, ...).
TEMPLATES: dict[str, dict[str, tuple[tuple[str, str], ...]]]
PAIR_TEMPLATES: dict[str, dict[str, tuple[str, ...]]]
TEMPLATES, PAIR_TEMPLATES = _read_templates()

# How a sentence starts when its first phrase is about a body part: `"clause"` ("The left knee is bent"),
# or a person subject followed by the bare phrase ("The person has the left knee bent").
OPENERS: tuple[tuple[str, str], ...] = (
    ("", "clause"),
    ("", "clause"),
    ("", "clause"),
    ("{subject} {has} ", "bare"),
    ("{subject} {has} ", "bare"),
    ("{subject} {is} posed with ", "bare"),
    ("{subject} {is} shown with ", "bare"),
)
# Joining a phrase to the previous one in a sentence: (separator, form), by the form of the previous phrase.
AFTER_CLAUSE: tuple[tuple[str, str], ...] = (
    (", while ", "clause"),
    (" and ", "clause"),
    (", with ", "bare"),
    (", and ", "clause"),
)
AFTER_BARE: tuple[tuple[str, str], ...] = ((" and ", "bare"), (", ", "bare"), (", while ", "clause"))
AFTER_PERSON: tuple[tuple[str, str], ...] = (
    (", with ", "bare"),
    (" with ", "bare"),
    (" and ", "clause"),
    (", while ", "clause"),
)
# How many phrases a sentence takes, drawn uniformly.
PHRASES_PER_SENTENCE: tuple[int, ...] = (1, 2, 2, 3, 3)
# Used when no posecode is left to say.
NEUTRAL_PREDICATES: tuple[str, ...] = (
    "standing in a relaxed pose",
    "holding a neutral pose",
    "in a plain, relaxed posture",
)


# ---------------------------------------------------------------------------------------------------------
# Pairs: how instructions start and join
# ---------------------------------------------------------------------------------------------------------

# Opening words of an instruction (the first is the most common by repetition).
PAIR_OPENERS: tuple[str, ...] = ("", "", "", "", "now ", "you should ", "please ", "try to ")
# Joining an instruction to the previous one: (separator, form); "gerund" turns "raise" into "raising".
PAIR_JOINS: tuple[tuple[str, str], ...] = (
    (" and ", "imperative"),
    (", then ", "imperative"),
    (", and ", "imperative"),
    (" while ", "gerund"),
    (". ", "sentence"),
)
PAIR_PHRASES_PER_SENTENCE: tuple[int, ...] = (1, 2, 2, 3)
NO_CHANGE: tuple[str, ...] = ("Keep the same pose.", "Stay as you are.", "Hold the pose as it is.")

GERUNDS: dict[str, str] = {
    "bend": "bending",
    "bring": "bringing",
    "come": "coming",
    "crouch": "crouching",
    "drop": "dropping",
    "extend": "extending",
    "face": "facing",
    "flex": "flexing",
    "fold": "folding",
    "fully": "fully",
    "get": "getting",
    "go": "going",
    "kneel": "kneeling",
    "lean": "leaning",
    "lie": "lying",
    "lift": "lifting",
    "lower": "lowering",
    "lunge": "lunging",
    "move": "moving",
    "open": "opening",
    "place": "placing",
    "pull": "pulling",
    "push": "pushing",
    "put": "putting",
    "raise": "raising",
    "rest": "resting",
    "rise": "rising",
    "roll": "rolling",
    "rotate": "rotating",
    "shift": "shifting",
    "sit": "sitting",
    "spread": "spreading",
    "squat": "squatting",
    "stand": "standing",
    "step": "stepping",
    "straighten": "straightening",
    "take": "taking",
    "tilt": "tilting",
    "turn": "turning",
    "twist": "twisting",
    "unbend": "unbending",
}

__all__ = [
    "AFTER_BARE",
    "AFTER_CLAUSE",
    "AFTER_PERSON",
    "DEFINITE_ARTICLE_SHARE",
    "GENDER_WEIGHTS",
    "GERUNDS",
    "LIMB_OF",
    "LIMB_PARTS",
    "NEUTRAL_PREDICATES",
    "NOUNS",
    "NO_CHANGE",
    "OPENERS",
    "PAIR_ENTITIES",
    "PAIR_JOINS",
    "PAIR_OPENERS",
    "PAIR_PHRASES_PER_SENTENCE",
    "PAIR_TEMPLATES",
    "PEOPLE",
    "PHRASES_PER_SENTENCE",
    "PLURALS",
    "TEMPLATES",
]
