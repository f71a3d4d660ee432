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
# Single poses: phrase -> category -> ((role, predicate), ...)
# ---------------------------------------------------------------------------------------------------------

_SIDEWAYS = (
    ("part", "to the {side} of {other}"),
    ("part", "on the {side} of {other}"),
    ("part", "further to the {side} than {other}"),
    ("part", "out to the {side} of {other}"),
)
_ROLL = (
    ("person", "leaning to the {side}"),
    ("part", "tilted to the {side}"),
    ("person", "bending sideways to the {side}"),
    ("part", "leaning to the {side}"),
    ("person", "leaning over to {poss} {side}"),
)
_TWIST_FAR = (
    ("part", "strongly twisted to the {side}"),
    ("part", "turned far to the {side}"),
    ("person", "twisting {poss} torso hard to the {side}"),
    ("part", "rotated well to the {side}"),
)
_TWIST = (
    ("part", "twisted to the {side}"),
    ("part", "turned to the {side}"),
    ("person", "twisting to the {side}"),
    ("part", "rotated to the {side}"),
)
_SHOULDER_WIDTH = (
    ("part", "shoulder-width apart"),
    ("part", "about shoulder-width apart"),
    ("part", "roughly shoulder-width apart"),
    ("part", "spaced about as wide as the shoulders"),
)

TEMPLATES: dict[str, dict[str, tuple[tuple[str, str], ...]]] = {
    "angle": {
        "completely_bent": (
            ("part", "completely bent"),
            ("part", "fully bent"),
            ("part", "bent all the way"),
            ("part", "bent as far as possible"),
            ("limb", "folded up tightly"),
            ("limb", "fully folded"),
        ),
        "mostly_bent": (
            ("part", "sharply bent"),
            ("part", "deeply bent"),
            ("part", "bent well past ninety degrees"),
            ("part", "strongly bent"),
            ("limb", "bent sharply at the {joint_word}"),
        ),
        "square": (
            ("part", "bent at a ninety-degree angle"),
            ("part", "bent at about ninety degrees"),
            ("part", "bent at roughly ninety degrees"),
            ("part", "forming an L shape"),
            ("limb", "bent at ninety degrees at the {joint_word}"),
            ("part", "bent at a square angle"),
        ),
        "partly_bent": (
            ("part", "partially bent"),
            ("part", "somewhat bent"),
            ("part", "half bent"),
            ("part", "moderately bent"),
            ("limb", "partly bent at the {joint_word}"),
        ),
        "straight": (
            ("limb", "straight"),
            ("limb", "fully extended"),
            ("limb", "stretched out"),
            ("limb", "held straight"),
            ("part", "straight"),
            ("part", "unbent"),
        ),
    },
    "distance": {
        "close": (
            ("part", "close to {other}"),
            ("part", "near {other}"),
            ("part", "next to {other}"),
            ("part", "held close to {other}"),
            ("part", "near to {other}"),
            ("part", "just by {other}"),
        ),
    },
    "distance_pair": {
        "close": (
            ("part", "close together"),
            ("part", "close to each other"),
            ("part", "near each other"),
            ("part", "near one another"),
            ("part", "held close together"),
        ),
        "apart": (
            ("part", "apart"),
            ("part", "spread apart"),
            ("part", "held apart"),
            ("part", "away from each other"),
        ),
        "far": (
            ("part", "wide apart"),
            ("part", "far apart"),
            ("part", "spread wide apart"),
            ("part", "far from each other"),
            ("part", "spread far apart"),
        ),
    },
    "crossed": {
        "right": (
            ("part", "crossed"),
            ("part", "crossed over each other"),
            ("part", "crossing each other"),
            ("part", "crossed over"),
        ),
    },
    "y": {
        "above": (
            ("part", "above {other}"),
            ("part", "higher than {other}"),
            ("part", "raised above {other}"),
            ("part", "up above {other}"),
            ("part", "held above {other}"),
            ("part", "over {other}"),
        ),
        "level": (
            ("part", "at the height of {other}"),
            ("part", "level with {other}"),
            ("part", "at the same height as {other}"),
            ("part", "at about the height of {other}"),
        ),
        "below": (
            ("part", "below {other}"),
            ("part", "lower than {other}"),
            ("part", "beneath {other}"),
            ("part", "under {other}"),
            ("part", "down below {other}"),
        ),
    },
    "z": {
        "front": (
            ("part", "in front of {other}"),
            ("part", "ahead of {other}"),
            ("part", "forward of {other}"),
            ("part", "held in front of {other}"),
        ),
        "behind": (
            ("part", "behind {other}"),
            ("part", "further back than {other}"),
            ("part", "back behind {other}"),
            ("part", "held behind {other}"),
        ),
    },
    "x": {"left": _SIDEWAYS, "right": _SIDEWAYS},
    # Both sides at once: "outward" is away from the midline, "across" reaches the other side's part.
    "x_both": {
        "outward": (
            ("part", "out beyond {other}"),
            ("part", "wider than {other}"),
            ("part", "outside {other}"),
            ("part", "held out wider than {other}"),
        ),
        "inward": (
            ("part", "inside {other}"),
            ("part", "closer to the middle than {other}"),
            ("part", "tucked in from {other}"),
        ),
        "across": (
            ("part", "reaching across the body"),
            ("part", "across the body"),
            ("part", "crossed over to the other side"),
        ),
    },
    "elevation": {
        "up": (
            ("part", "pointing straight up"),
            ("part", "pointing upwards"),
            ("part", "vertical, pointing up"),
            ("part", "raised straight up"),
        ),
        "raised": (
            ("part", "raised"),
            ("part", "lifted"),
            ("part", "pointing upwards at an angle"),
        ),
        "horizontal": (
            ("part", "horizontal"),
            ("part", "parallel to the ground"),
            ("part", "held horizontally"),
            ("part", "level with the ground"),
        ),
    },
    "height": {
        "ground": (
            ("part", "on the ground"),
            ("part", "touching the ground"),
            ("part", "resting on the ground"),
            ("part", "on the floor"),
            ("part", "against the floor"),
        ),
        "raised": (
            ("part", "off the ground"),
            ("part", "raised off the ground"),
            ("part", "lifted off the ground"),
            ("part", "in the air"),
            ("part", "lifted from the floor"),
        ),
    },
    "pitch": {
        "back_far": (
            ("person", "leaning far back"),
            ("person", "arching backwards"),
            ("part", "tilted far backwards"),
            ("part", "leaning far back"),
        ),
        "back": (
            ("person", "leaning back"),
            ("part", "tilted backwards"),
            ("part", "leaning back"),
            ("person", "reclining slightly"),
        ),
        "forward": (
            ("person", "leaning forward"),
            ("part", "tilted forward"),
            ("part", "leaning forward"),
            ("person", "bending forward slightly"),
        ),
        "bent": (
            ("person", "bent forward"),
            ("person", "bending forward"),
            ("part", "bent forward"),
            ("person", "leaning far forward"),
            ("part", "inclined well forward"),
        ),
        "bent_over": (
            ("person", "bent over"),
            ("person", "bending over"),
            ("part", "folded forward"),
            ("person", "bent double"),
            ("part", "bent forward past horizontal"),
        ),
    },
    "roll": {"left": _ROLL, "right": _ROLL},
    "twist": {"left_far": _TWIST_FAR, "right_far": _TWIST_FAR, "left": _TWIST, "right": _TWIST},
    "tilt": {
        "inverted": (
            ("person", "upside down"),
            ("person", "inverted"),
            ("person", "turned upside down"),
        ),
    },
    # ---- super-codes: one category, "yes" ----
    "standing": {
        "yes": (
            ("person", "standing"),
            ("person", "standing up"),
            ("person", "standing upright"),
            ("person", "on {poss} feet"),
        )
    },
    "sitting": {
        "yes": (
            ("person", "sitting"),
            ("person", "seated"),
            ("person", "sitting down"),
            ("person", "sitting as if on a chair"),
            ("person", "in a seated position"),
        )
    },
    "sitting_ground": {
        "yes": (
            ("person", "sitting on the ground"),
            ("person", "seated on the floor"),
            ("person", "sitting on the floor"),
            ("person", "sitting down on the ground"),
        )
    },
    "sitting_legs_out": {
        "yes": (
            ("person", "sitting with {poss} legs stretched out in front"),
            ("person", "seated with {poss} legs extended forward"),
            ("person", "sitting with straight legs out in front"),
            ("person", "sitting on the floor with {poss} legs out straight"),
        )
    },
    "kneeling": {
        "yes": (
            ("person", "kneeling"),
            ("person", "kneeling on both knees"),
            ("person", "on {poss} knees"),
            ("person", "kneeling down"),
        )
    },
    "kneeling_one": {
        "yes": (
            ("person", "kneeling on {poss} {side} knee"),
            ("person", "down on {poss} {side} knee"),
            ("person", "resting on {poss} {side} knee"),
        )
    },
    "squatting": {
        "yes": (
            ("person", "squatting"),
            ("person", "crouching"),
            ("person", "in a squat"),
            ("person", "squatting down"),
            ("person", "crouching down low"),
        )
    },
    "lying_back": {
        "yes": (
            ("person", "lying on {poss} back"),
            ("person", "lying face up"),
            ("person", "lying down on {poss} back"),
            ("person", "stretched out on {poss} back"),
        )
    },
    "lying_front": {
        "yes": (
            ("person", "lying on {poss} stomach"),
            ("person", "lying face down"),
            ("person", "lying prone"),
            ("person", "lying on {poss} front"),
        )
    },
    "lying_side": {
        "yes": (
            ("person", "lying on {poss} {side} side"),
            ("person", "lying down on {poss} {side} side"),
            ("person", "resting on {poss} {side} side"),
        )
    },
    "lunge": {
        "yes": (
            ("person", "lunging forward on {poss} {side} leg"),
            ("person", "in a lunge with {poss} {side} leg forward"),
            ("person", "stepping into a lunge with the {side} leg"),
        )
    },
    "hands_shoulder_width": {"yes": _SHOULDER_WIDTH},
    "feet_shoulder_width": {"yes": _SHOULDER_WIDTH},
    "arms_spread": {
        "yes": (
            ("part", "spread out to the sides"),
            ("part", "stretched out sideways"),
            ("part", "extended to the sides"),
            ("part", "spread wide open"),
            ("part", "held out to the sides"),
            ("person", "holding {poss} arms out wide"),
        )
    },
    "hands_together": {
        "yes": (
            ("part", "together"),
            ("part", "joined"),
            ("part", "held together"),
            ("part", "brought together"),
            ("part", "touching each other"),
        )
    },
    "hands_on_hips": {
        "yes": (
            ("part", "on {det} hips"),
            ("part", "resting on {det} hips"),
            ("part", "placed on {det} hips"),
        )
    },
}

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
# Pairs: phrase -> change category -> (imperative, ...); a category followed by "+reached" is used when
# pose B ends in the extreme category (straight, above the other part, ...).
# ---------------------------------------------------------------------------------------------------------

PAIR_TEMPLATES: dict[str, dict[str, tuple[str, ...]]] = {
    "angle_change": {
        "much_less": ("bend {joint} a lot more", "bend {limb} much more", "flex {joint} a lot more"),
        "less": (
            "bend {joint} more",
            "bend {limb} further",
            "flex {joint} more",
            "bend {limb} more at the {joint_word}",
        ),
        "slightly_less": (
            "bend {joint} a little more",
            "bend {limb} slightly more",
            "flex {joint} a bit more",
        ),
        "slightly_more": ("straighten {limb} a little", "extend {joint} a bit", "unbend {limb} slightly"),
        "more": ("straighten {limb}", "extend {limb} more", "unbend {joint}", "open up {joint}"),
        "much_more": ("straighten {limb} much more", "extend {limb} a lot", "unbend {joint} a lot"),
        "less+reached": ("bend {limb} completely", "fold {limb} fully", "bend {joint} all the way"),
        "more+reached": (
            "straighten {limb} completely",
            "straighten {limb} fully",
            "extend {limb} all the way",
        ),
    },
    "pitch_change": {
        "much_less": ("lean much further back", "lean back a lot", "tilt your torso far back"),
        "less": ("lean back", "lean your torso backwards", "tilt your upper body back"),
        "slightly_less": ("lean back a little", "tilt your torso slightly backwards"),
        "slightly_more": ("lean forward a little", "tilt your torso slightly forward", "bend forward a bit"),
        "more": ("lean forward", "bend forward", "tilt your torso forward", "lean your upper body forward"),
        "much_more": ("bend far forward", "lean much further forward", "bend forward a lot"),
        "less+reached": ("straighten your back", "bring your torso upright", "straighten up your upper body"),
        "more+reached": ("straighten your back", "bring your torso upright", "straighten up your upper body"),
    },
    # Sideways changes are keyed by their size; the direction comes in through {side}.
    "roll_change": {
        "slight": ("lean slightly to your {side}", "tilt your torso a little to the {side}"),
        "normal": ("lean to your {side}", "tilt your torso to the {side}", "bend sideways to your {side}"),
        "much": ("lean far to your {side}", "bend sideways a lot to your {side}"),
    },
    "twist_change": {
        "slight": ("twist slightly to your {side}", "turn your shoulders a little to the {side}"),
        "normal": (
            "twist your torso to the {side}",
            "turn your shoulders to the {side}",
            "rotate your upper body to your {side}",
        ),
        "much": ("twist your torso far to the {side}", "rotate your upper body a lot to your {side}"),
    },
    "heading_change": {
        # "around" (more than ~150 degrees) says no side, so that either way reads the same.
        "around": (
            "turn around",
            "turn to face the other way",
            "turn all the way around",
            "face the opposite direction",
        ),
        "much": (
            "turn far to your {side}",
            "turn almost all the way around to your {side}",
            "rotate your whole body far to the {side}",
        ),
        "normal": (
            "turn to your {side}",
            "turn your body to the {side}",
            "rotate to your {side}",
            "face to your {side}",
        ),
        "slight": (
            "turn slightly to your {side}",
            "rotate a little to your {side}",
            "turn your body a bit to the {side}",
        ),
    },
    "distance_change": {
        "much_less": ("bring {subject} much closer to {other}", "move {subject} a lot closer to {other}"),
        "less": (
            "move {subject} closer to {other}",
            "bring {subject} nearer to {other}",
            "bring {subject} towards {other}",
        ),
        "more": (
            "move {subject} away from {other}",
            "move {subject} further from {other}",
            "take {subject} away from {other}",
        ),
        "much_more": ("move {subject} far away from {other}", "move {subject} much further from {other}"),
        "less+reached": (
            "bring {subject} close to {other}",
            "put {subject} next to {other}",
            "move {subject} near {other}",
        ),
    },
    "distance_pair_change": {
        "much_less": ("bring {subject} much closer together", "move {subject} a lot closer to each other"),
        "less": ("bring {subject} closer together", "move {subject} closer to each other"),
        "more": (
            "spread {subject} apart",
            "move {subject} further apart",
            "move {subject} away from each other",
        ),
        "much_more": ("spread {subject} wide apart", "move {subject} much further apart"),
        "less+reached": (
            "bring {subject} together",
            "put {subject} together",
            "move {subject} close together",
        ),
        "more+reached": ("spread {subject} wide apart", "open {subject} wide apart"),
    },
    "y_change": {
        "much_more": ("raise {subject} high", "lift {subject} a lot", "move {subject} way up"),
        "more": ("raise {subject}", "lift {subject}", "move {subject} up", "bring {subject} higher"),
        "less": ("lower {subject}", "move {subject} down", "bring {subject} down", "drop {subject} lower"),
        "much_less": ("lower {subject} a lot", "bring {subject} far down", "drop {subject} much lower"),
        "more+reached": (
            "raise {subject} above {other}",
            "lift {subject} above {other}",
            "bring {subject} up over {other}",
            "move {subject} higher than {other}",
        ),
        "less+reached": (
            "lower {subject} below {other}",
            "bring {subject} down below {other}",
            "move {subject} lower than {other}",
        ),
    },
    "z_change": {
        "much_more": ("move {subject} far forward", "bring {subject} well forward"),
        "more": ("move {subject} forward", "bring {subject} forward", "push {subject} forward"),
        "less": ("move {subject} back", "pull {subject} back", "bring {subject} backwards"),
        "much_less": ("move {subject} far back", "pull {subject} well back"),
        "more+reached": (
            "bring {subject} in front of {other}",
            "move {subject} ahead of {other}",
            "put {subject} in front of {other}",
        ),
        "less+reached": (
            "move {subject} behind {other}",
            "bring {subject} behind {other}",
            "put {subject} behind {other}",
        ),
    },
    "x_change": {
        "much": ("move {subject} far to the {side}", "shift {subject} a lot to your {side}"),
        "normal": (
            "move {subject} to the {side}",
            "shift {subject} to your {side}",
            "bring {subject} over to the {side}",
        ),
        "normal+reached": (
            "move {subject} to the {side} of {other}",
            "bring {subject} over to the {side} of {other}",
        ),
    },
    # Both hands (feet) moving sideways at once: away from the midline or towards it.
    "x_change_both": {
        "outward": (
            "move {subject} outwards",
            "spread {subject} out to the sides",
            "move {subject} further out to the sides",
        ),
        "inward": (
            "bring {subject} inwards",
            "move {subject} towards the middle",
            "bring {subject} in towards your body",
        ),
    },
    "height_change": {
        "more": (
            "lift {subject} off the ground",
            "raise {subject} from the ground",
            "take {subject} off the floor",
        ),
        "less": (
            "put {subject} on the ground",
            "place {subject} on the floor",
            "lower {subject} to the ground",
            "rest {subject} on the ground",
        ),
    },
    # ---- changes of global posture: enter the posture of pose B ----
    "posture": {
        "standing": ("stand up", "get up on your feet", "rise to a standing position", "stand upright"),
        "sitting": ("sit down", "sit down as if on a chair", "lower yourself into a seated position"),
        "sitting_ground": (
            "sit down on the ground",
            "sit on the floor",
            "lower yourself to sit on the ground",
        ),
        "sitting_legs_out": (
            "sit down with your legs stretched out in front",
            "sit with your legs extended forward",
        ),
        "kneeling": ("kneel down", "get down on your knees", "kneel on both knees"),
        "kneeling_one": (
            "kneel on your {side} knee",
            "go down on your {side} knee",
            "drop onto your {side} knee",
        ),
        "squatting": ("squat down", "crouch down", "go into a squat", "lower yourself into a squat"),
        "lying_back": ("lie down on your back", "lie on your back", "lie down face up"),
        "lying_front": ("lie face down", "lie on your stomach", "lie down on your front"),
        "lying_side": (
            "lie on your {side} side",
            "lie down on your {side} side",
            "roll onto your {side} side",
        ),
        "lunge": ("step into a lunge with your {side} leg forward", "lunge forward on your {side} leg"),
        "inverted": ("turn upside down", "go upside down", "get into a handstand"),
        "get_up": ("get up", "get up off the ground", "come up from the ground"),
    },
}

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
