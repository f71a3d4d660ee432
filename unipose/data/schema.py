"""The record schemas every UniPose corpus is written in.

One `datasets.Features` per record kind; every loader (PoseScript, PoseFix, PoseEst, ImageScript,
ImageDiff, AMASS, the synthetic corpus) produces them, and the training and evaluation code consume them.

Poses are stored in one canonical format: SMPL-H body axis-angle, `(22, 3)` float32 (the root orientation
first, then the 21 body joints in SMPL order), so that a record can be read and checked by eye and fed to
`smplx` directly, in one world frame: SMPL's own, y up (`RECORD_UP_AXIS`), the frame in which the body
model's rest pose stands upright. Every loader writes that frame by default (AMASS is z-up and camera fits
are y-down: the loaders turn them); pose-only corpora have their heading zeroed, image corpora keep the
orientation the camera sees. Images are `datasets.Image` (encoded PNG/JPEG bytes, decoded to PIL on access).

| kind         | columns                                                        | tasks                              |
| ------------ | -------------------------------------------------------------- | ---------------------------------- |
| `pose_text`  | id, pose, texts, source                                        | Pose-to-Text, Text-to-Pose         |
| `pose_pair`  | id, pose_a, pose_b, texts, source                              | Pose-Diff, Pose Editing            |
| `image_pose` | id, image, pose, texts, source                                 | Pose Estimation, Image-to-Text     |
| `image_pair` | id, image_a, image_b, pose_a, pose_b, texts, source            | Image-Diff                         |

`texts` holds every reference caption (descriptions, or modification instructions from pose A to pose B);
it may be empty for `image_pose` records used only for pose estimation. `source` names the corpus and
split a record comes from (e.g. `"posescript-H/train"`), so that mixtures stay traceable.
"""

from __future__ import annotations

from datasets import Array2D, Features, Image, Sequence, Value

from ..skeleton import NUM_BODY_JOINTS

POSE_SHAPE = (NUM_BODY_JOINTS, 3)
RECORD_UP_AXIS = "y"


def _features(**columns) -> Features:
    """A record's columns: its id, the given image and pose columns, its texts and its source."""
    return Features(
        {"id": Value("string"), **columns, "texts": Sequence(Value("string")), "source": Value("string")}
    )


_POSE = Array2D(shape=POSE_SHAPE, dtype="float32")
POSE_TEXT_FEATURES = _features(pose=_POSE)
POSE_PAIR_FEATURES = _features(pose_a=_POSE, pose_b=_POSE)
IMAGE_POSE_FEATURES = _features(image=Image(), pose=_POSE)
IMAGE_PAIR_FEATURES = _features(image_a=Image(), image_b=Image(), pose_a=_POSE, pose_b=_POSE)

FEATURES = {
    "pose_text": POSE_TEXT_FEATURES,
    "pose_pair": POSE_PAIR_FEATURES,
    "image_pose": IMAGE_POSE_FEATURES,
    "image_pair": IMAGE_PAIR_FEATURES,
}


def record_kind(features: Features) -> str:
    """The kind (`"pose_text"`, ...) whose schema `features` follows exactly; `ValueError` otherwise."""
    for kind, expected in FEATURES.items():
        if features == expected:
            return kind
    raise ValueError(
        f"`features` {dict(features)} match none of the UniPose record schemas {sorted(FEATURES)}; build records "
        "with the loaders of `unipose.data` or cast them to `unipose.data.schema.FEATURES[kind]`."
    )
