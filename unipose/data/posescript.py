"""
PoseScript and PoseFix: 3D poses from AMASS with descriptions (PoseScript) and pairs of poses with
modification instructions (PoseFix), as `datasets.Dataset`s in the schemas of `unipose.data.schema`.

Neither corpus ships pose parameters: both point into AMASS, which the user downloads separately. The
loaders read the release files below from a folder `root` (every file name is an argument; a name may also
be an absolute path) and the SMPL-H `.npz` sequences from `amass_root`.

Files of both releases:

- pose index, `ids_2_dataset_sequence_and_frame_index_100k.json`: a JSON object mapping each pose id to
  `[dataset name, path of the AMASS SMPL-H .npz relative to the dataset's root, frame index]` (a JSON list
  whose position is the pose id is accepted too). The pose is `npz["poses"][frame][:66]`: axis-angle of the
  root (global orientation) and the 21 body joints; hands are dropped. `amass_root` is the folder the paths
  are relative to, or a mapping from dataset name to such a folder (the release names a single dataset,
  `"AMASS"`).

PoseScript (`load_posescript`):

- split files `{split}_ids_100k.json`: a JSON list of the pose ids of the split (`train`, `val`, `test`);
- human captions `posescript_human_6293.json`: pose id -> a caption string or a list of captions;
- automatic captions `posescript_auto_100k.json`: pose id -> a list of captions (three per pose).

A record is a pose of the split that has captions of the requested kind(s); the split's other poses are left
out and counted in the log (the human captions cover about 6k of the 100k poses).

PoseFix (`load_posefix`):

- pairs file `pair_id_2_pose_ids.json`: a JSON list whose entry at position `pair_id` is `[pose id A,
  pose id B]` (a JSON object keyed by pair id is accepted too);
- split files `{split}_in_sequence_pair_ids.json` and `{split}_out_sequence_pair_ids.json`: JSON lists of
  the pair ids of the split whose two poses come from the same sequence (in-sequence) or not;
- modifiers, pair id -> a text or a list of texts: human `posefix_human_6157.json`, automatic
  `posefix_auto_135305.json`, paraphrases of the human ones `posefix_paraphrases_4284.json`.

Heading normalisation. AMASS's world is z-up. The heading of a root rotation `R` is the angle about z of the
body's left axis (the first column of `R`) from the world's x axis, `atan2(R[1, 0], R[0, 0])` (see
`unipose.data.amass.heading_angle`); normalising turns the root by `Rz(-heading)`, so that the heading
becomes zero while tilt and roll (and every joint's height) are kept. Joint rotations below the root never
change. PoseScript poses are normalised each on its own. For PoseFix, pose A is normalised on its own; pose B
of an in-sequence pair is turned by the same `Rz(-heading of A)`, so that the turn of the body between the two
frames survives (`R_A^T R_B` is unchanged), while pose B of an out-of-sequence pair is normalised on its own.
With `output_up_axis="y"` the normalised poses are then re-expressed in SMPL's y-up world (see
`unipose.data.amass.change_up_axis`).

Each AMASS file is read once per call, however many poses point into it. Nothing is skipped silently: a
missing file, an unknown pose id, a frame index out of range or a malformed entry raises an error that names
the file and the record.

Example:

```python
>>> from unipose.data.posescript import load_posescript, load_posefix
>>> posescript = load_posescript("~/data/posescript_release", "~/data/AMASS", split="train")  # doctest: +SKIP
>>> posescript[0]["texts"]  # doctest: +SKIP
['The person is kneeling on the left knee ...']
>>> posefix = load_posefix("~/data/posefix_release", "~/data/AMASS", split=("train", "val"))  # doctest: +SKIP
```
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple, Optional, Union

import datasets
import numpy as np
import torch
from transformers.utils import logging

from ..files import relative_path_inside
from ..rotations import axis_angle_to_matrix, elementary_rotation, matrix_to_axis_angle
from .amass import AMASS_UP_AXIS, UP_AXES, change_up_axis, heading_angle, read_amass_sequence
from .schema import POSE_PAIR_FEATURES, POSE_TEXT_FEATURES, RECORD_UP_AXIS

logger = logging.get_logger(__name__)

PathLike = Union[str, os.PathLike]

POSE_INDEX_FILE = "ids_2_dataset_sequence_and_frame_index_100k.json"
POSESCRIPT_SPLIT_FILE = "{split}_ids_100k.json"
POSESCRIPT_CAPTION_FILES = {"human": "posescript_human_6293.json", "automatic": "posescript_auto_100k.json"}
POSEFIX_PAIRS_FILE = "pair_id_2_pose_ids.json"
POSEFIX_SPLIT_FILE = "{split}_{sequence}_sequence_pair_ids.json"
POSEFIX_MODIFIER_FILES = {
    "human": "posefix_human_6157.json",
    "automatic": "posefix_auto_135305.json",
    "paraphrases": "posefix_paraphrases_4284.json",
}
POSEFIX_SEQUENCES = ("in", "out")
# The letters of the corpora's usual names (PoseScript-H, PoseFix-A, ...), used in the `source` column.
TEXT_KIND_LETTERS = {"human": "H", "automatic": "A", "paraphrases": "P"}


class PoseReference(NamedTuple):
    """Where a pose lives in AMASS: the dataset name, the `.npz` path relative to its root, and the frame."""

    dataset: str
    sequence: str
    frame: int


# ---------------------------------------------------------------------------------------------------------
# Reading and checking the release files
# ---------------------------------------------------------------------------------------------------------


def _release_file(root: PathLike, name: PathLike, what: str) -> Path:
    path = Path(root).expanduser() / Path(name).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"{what} not found: {str(path)!r}. Point `root` at the folder of the release or pass the file's "
            "name (or absolute path) through the matching argument."
        )
    return path


def _read_json(path: Path, what: str):
    try:
        with open(path, encoding="utf-8") as file:
            return json.load(file)
    except json.JSONDecodeError as error:
        raise ValueError(f"{what} {str(path)!r} is not valid JSON: {error}.") from error
    except UnicodeDecodeError as error:
        raise ValueError(
            f"{what} {str(path)!r} is not UTF-8 text (byte {error.start}: {error.object[error.start:error.start + 1]!r}); "
            "JSON files must be UTF-8: re-encode it (e.g. `iconv -f latin1 -t utf-8`)."
        ) from None
    except RecursionError:
        raise ValueError(f"{what} {str(path)!r} nests JSON too deeply to be one of the release's files.") from None


def _canonical_keys(items, where: str) -> dict:
    """`{canonical_id(key): value}`, refusing two keys of one file that name the same id (`"1"` and `"01"`)."""
    table, original = {}, {}
    for key, value in items:
        canonical = canonical_id(key, where)
        if canonical in table:
            raise ValueError(
                f"{where}: the ids {original[canonical]!r} and {key!r} are the same id ({canonical!r}); one of their "
                "entries would be lost. Remove or rename one of them."
            )
        table[canonical], original[canonical] = value, key
    return table


def canonical_id(value, where: str) -> str:
    """
    The string form of a pose or pair id: integers (and strings of digits) in decimal, other strings as given.

    Args:
        value (`int` or `str`): the id as found in a file.
        where (`str`): what holds it, for the error message.

    Returns:
        `str`.
    """
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return str(int(value))
    if isinstance(value, str) and value.strip():
        value = value.strip()
        return str(int(value)) if value.isdigit() else value
    raise ValueError(
        f"{where}: ids must be integers or non-empty strings, got {value!r} ({type(value).__name__})."
    )


def _id_table(content, path: Path, what: str) -> dict:
    """A JSON object keyed by id, or a JSON list indexed by id, as a dict with canonical string keys."""
    if isinstance(content, list):
        return {str(index): entry for index, entry in enumerate(content)}
    if isinstance(content, dict):
        return _canonical_keys(content.items(), f"{what} {str(path)!r}")
    raise ValueError(
        f"{what} {str(path)!r} must hold a JSON object keyed by id or a JSON list indexed by id, got a "
        f"{type(content).__name__}."
    )


def read_pose_index(path: PathLike) -> dict[str, object]:
    """
    Reads a pose index file (pose id -> `[dataset name, sequence path, frame index]`), unchecked: entries are
    checked by [`pose_reference`] when used, so that a bad entry outside the requested split blocks nothing.

    Returns:
        `dict` mapping canonical pose ids to their raw entries.
    """
    path = Path(path)
    return _id_table(_read_json(path, "Pose index"), path, "Pose index")


def pose_reference(index: Mapping[str, object], pose_id: str, path: PathLike) -> PoseReference:
    """
    The checked [`PoseReference`] of `pose_id` in a pose index read from `path`.

    Raises:
        `ValueError`: if the id is missing or its entry is not `[str, str, non-negative int]`.
    """
    if pose_id not in index:
        raise ValueError(f"Pose id {pose_id!r} is not in the pose index {str(path)!r} ({len(index)} poses).")
    entry = index[pose_id]
    valid = (
        isinstance(entry, (list, tuple))
        and len(entry) == 3
        and isinstance(entry[0], str)
        and isinstance(entry[1], str)
        and isinstance(entry[2], int)
        and not isinstance(entry[2], bool)
        and entry[2] >= 0
    )
    if not valid:
        raise ValueError(
            f"Pose id {pose_id!r} in {str(path)!r} has entry {entry!r}; expected [dataset name, path of the "
            "AMASS .npz relative to the dataset's root, frame index >= 0]."
        )
    return PoseReference(entry[0], entry[1], entry[2])


def read_split_ids(path: PathLike, what: str = "Split file") -> list[str]:
    """
    Reads a split file: a JSON list of ids.

    Returns:
        `list[str]`: canonical ids in the file's order.

    Raises:
        `ValueError`: if the file is not a list of ids, or lists an id twice.
    """
    path = Path(path)
    content = _read_json(path, what)
    if not isinstance(content, list):
        raise ValueError(
            f"{what} {str(path)!r} must hold a JSON list of ids, got a {type(content).__name__}."
        )
    ids = [
        canonical_id(value, f"{what} {str(path)!r}, entry {position}")
        for position, value in enumerate(content)
    ]
    if len(set(ids)) != len(ids):
        duplicates = sorted(i for i, count in Counter(ids).items() if count > 1)[:5]
        raise ValueError(f"{what} {str(path)!r} lists ids more than once, e.g. {duplicates}.")
    return ids


def read_texts(path: PathLike, what: str = "Caption file") -> dict[str, list[str]]:
    """
    Reads a caption or modifier file: id -> a text or a list of texts.

    Returns:
        `dict` mapping canonical ids to non-empty lists of non-empty strings.

    Raises:
        `ValueError`: naming the id of the first entry that is neither a non-empty string nor a non-empty
            list of them.
    """
    path = Path(path)
    content = _read_json(path, what)
    if not isinstance(content, dict):
        raise ValueError(
            f"{what} {str(path)!r} must hold a JSON object (id -> texts), got a {type(content).__name__}."
        )
    texts = {}
    for key, value in _canonical_keys(content.items(), f"{what} {str(path)!r}").items():
        entries = [value] if isinstance(value, str) else value
        if not (
            isinstance(entries, list) and entries and all(isinstance(t, str) and t.strip() for t in entries)
        ):
            raise ValueError(
                f"{what} {str(path)!r}: id {key!r} has {value!r}; expected a non-empty string or a non-empty "
                "list of non-empty strings."
            )
        texts[key] = entries
    return texts


def _text_kinds(
    value, allowed: Mapping[str, object], name: str, aliases: Optional[Mapping[str, tuple]] = None
) -> tuple[str, ...]:
    aliases = aliases or {}
    kinds = aliases.get(value, (value,)) if isinstance(value, str) else tuple(value)
    unknown = [kind for kind in kinds if kind not in allowed]
    if not kinds or unknown or len(set(kinds)) != len(kinds):
        choices = sorted(allowed) + sorted(aliases)
        raise ValueError(
            f"`{name}` must be one of {choices} or a sequence of distinct {sorted(allowed)}, got {value!r}."
        )
    return kinds


def _source_name(corpus: str, kinds: Sequence[str], split: str) -> str:
    return f"{corpus}-{'+'.join(TEXT_KIND_LETTERS[kind] for kind in kinds)}/{split}"


def _splits(split) -> tuple[tuple[str, ...], bool]:
    """The requested split names, and whether a single one was asked for (a `Dataset` rather than a dict)."""
    names = (split,) if isinstance(split, str) else tuple(split)
    if (
        not names
        or not all(isinstance(name, str) and name for name in names)
        or len(set(names)) != len(names)
    ):
        raise ValueError(
            f"`split` must be a split name such as 'train' or a sequence of distinct names, got {split!r}."
        )
    return names, isinstance(split, str)


# ---------------------------------------------------------------------------------------------------------
# Poses from AMASS
# ---------------------------------------------------------------------------------------------------------


def _amass_file(reference: PoseReference, amass_root, pose_id: str) -> Path:
    if isinstance(amass_root, Mapping):
        if reference.dataset not in amass_root:
            raise ValueError(
                f"Pose id {pose_id!r} is in dataset {reference.dataset!r}, which `amass_root` does not map "
                f"to a folder (it maps {sorted(amass_root)}); pass a single folder or add the dataset."
            )
        amass_root = amass_root[reference.dataset]
    root = Path(amass_root).expanduser()
    path = relative_path_inside(root, reference.sequence)
    if path is None:
        raise ValueError(
            f"Pose id {pose_id!r} refers to {reference.sequence!r}, which lies outside the AMASS folder "
            f"{str(root)!r}; sequence paths must be relative paths inside it."
        )
    return path


def read_amass_poses(references: Mapping[str, PoseReference], amass_root) -> dict[str, np.ndarray]:
    """
    The raw body poses (as stored: z-up, not normalised) of the referenced AMASS frames, one read per file.

    Args:
        references (`Mapping[str, PoseReference]`): pose id -> where the pose lives.
        amass_root (`str`, `os.PathLike` or `Mapping[str, str | os.PathLike]`): the folder the sequence paths
            are relative to, or dataset name -> folder.

    Returns:
        `dict` mapping each pose id to an `np.ndarray` of shape `(22, 3)`, float32 axis-angle.

    Raises:
        `FileNotFoundError`: naming the pose id and the path of a missing file.
        `ValueError`: naming the pose id, file, frame and length for a frame out of range, or a file without
            poses.
    """
    by_file: dict[Path, list[tuple[str, int]]] = {}
    for pose_id, reference in references.items():
        by_file.setdefault(_amass_file(reference, amass_root, pose_id), []).append((pose_id, reference.frame))
    for path, requests in by_file.items():
        if not path.is_file():
            raise FileNotFoundError(
                f"AMASS file for pose id {requests[0][0]!r} not found: {str(path)!r} ({len(requests)} "
                "requested poses point into it). Check `amass_root`: the pose index gives paths relative to "
                "the root of AMASS's SMPL-H release."
            )
    poses = {}
    for path, requests in logging.tqdm(by_file.items(), desc="Reading AMASS", unit="file", leave=False):
        sequence = read_amass_sequence(
            path, target_fps=None, heading_normalization=False, output_up_axis=AMASS_UP_AXIS
        )
        if sequence is None:
            raise ValueError(
                f"AMASS file {str(path)!r} of pose id {requests[0][0]!r} holds no `poses` array."
            )
        for pose_id, frame in requests:
            if frame >= len(sequence.poses):
                raise ValueError(
                    f"Pose id {pose_id!r}: frame {frame} is out of range for {str(path)!r}, which has "
                    f"{len(sequence.poses)} frames."
                )
            poses[pose_id] = sequence.poses[frame]
    return poses


def heading_corrections(root_orient: torch.Tensor, up_axis: str = AMASS_UP_AXIS) -> torch.Tensor:
    """
    The rotations about the vertical axis that zero the heading of root rotations.

    Args:
        root_orient (`torch.Tensor` of shape `(batch, 3)`): axis-angle global orientations.
        up_axis (`str`, *optional*, defaults to `"z"`): the world's vertical axis.

    Returns:
        `torch.Tensor` of shape `(batch, 3, 3)`: `R_up(-heading)`, so that `R_up(-heading) @ R` has heading 0.
    """
    return elementary_rotation(-heading_angle(axis_angle_to_matrix(root_orient), up_axis), up_axis)


def _rotate_roots(poses: np.ndarray, corrections: torch.Tensor, output_up_axis: str) -> np.ndarray:
    """`poses` `(B, 22, 3)`, each root turned by its correction `(B, 3, 3)`, in `output_up_axis`'s world."""
    body = torch.from_numpy(poses.astype(np.float64))
    root = matrix_to_axis_angle(corrections @ axis_angle_to_matrix(body[:, 0]))
    if output_up_axis != AMASS_UP_AXIS:
        root = change_up_axis(root, AMASS_UP_AXIS, output_up_axis)
    body[:, 0] = root
    return body.numpy().astype(np.float32)


def normalize_pose_headings(poses: np.ndarray, output_up_axis: str = AMASS_UP_AXIS) -> np.ndarray:
    """
    Zero the heading of each AMASS pose on its own (see the module docstring).

    Args:
        poses (`np.ndarray` of shape `(batch, 22, 3)`): axis-angle body poses in AMASS's z-up world.
        output_up_axis (`str`, *optional*, defaults to `"z"`): vertical axis of the returned poses' world.

    Returns:
        `np.ndarray` of shape `(batch, 22, 3)`, float32.
    """
    corrections = heading_corrections(torch.from_numpy(poses[:, 0].astype(np.float64)))
    return _rotate_roots(poses, corrections, output_up_axis)


def normalize_pair_headings(
    poses_a: np.ndarray, poses_b: np.ndarray, in_sequence: np.ndarray, output_up_axis: str = AMASS_UP_AXIS
) -> tuple[np.ndarray, np.ndarray]:
    """
    Zero the heading of poses A; poses B of in-sequence pairs get A's correction, the others their own.

    Args:
        poses_a, poses_b (`np.ndarray` of shape `(batch, 22, 3)`):
            Axis-angle body poses in AMASS's z-up world.
        in_sequence (`np.ndarray` of shape `(batch,)`, bool):
            Whether both poses of a pair come from one sequence.
        output_up_axis (`str`, *optional*, defaults to `"z"`): vertical axis of the returned poses' world.

    Returns:
        `tuple` of two `np.ndarray` of shape `(batch, 22, 3)`, float32. For in-sequence pairs the relative
        rotation `R_A^T R_B` of the roots is that of the input.
    """
    correction_a = heading_corrections(torch.from_numpy(poses_a[:, 0].astype(np.float64)))
    correction_b = heading_corrections(torch.from_numpy(poses_b[:, 0].astype(np.float64)))
    shared = torch.from_numpy(np.asarray(in_sequence, dtype=bool))[:, None, None]
    correction_b = torch.where(shared, correction_a, correction_b)
    return _rotate_roots(poses_a, correction_a, output_up_axis), _rotate_roots(
        poses_b, correction_b, output_up_axis
    )


def _check_up_axis(output_up_axis: str) -> None:
    if output_up_axis not in UP_AXES:
        raise ValueError(
            f"`output_up_axis` must be one of {list(UP_AXES)} ('z': AMASS's world, 'y': SMPL's), got "
            f"{output_up_axis!r}."
        )


# ---------------------------------------------------------------------------------------------------------
# PoseScript
# ---------------------------------------------------------------------------------------------------------


def _check_texted(kept: int, listed: int, items: str, where: str, texts: str, hint: str) -> None:
    """Refuses a split none of whose `listed` items has the requested texts; logs how many were left out."""
    if not kept:
        raise ValueError(f"None of the {listed} {items} of {where} has {texts}; check {hint}.")
    if kept < listed:
        logger.info(f"{where}: {listed - kept} of {listed} {items} have no {texts} and are left out.")


def load_posescript(
    root: PathLike,
    amass_root,
    split: Union[str, Sequence[str]] = "train",
    captions: Union[str, Sequence[str]] = "human",
    pose_index_file: PathLike = POSE_INDEX_FILE,
    split_file: str = POSESCRIPT_SPLIT_FILE,
    caption_files: Optional[Mapping[str, PathLike]] = None,
    output_up_axis: str = RECORD_UP_AXIS,
):
    """
    Loads PoseScript poses with their descriptions.

    Args:
        root (`str` or `os.PathLike`):
            Folder of the PoseScript release (see the module docstring for its files).
        amass_root (`str`, `os.PathLike` or `Mapping[str, str | os.PathLike]`):
            Root of AMASS's SMPL-H release, or dataset name -> root.
        split (`str` or `Sequence[str]`, *optional*, defaults to `"train"`):
            A split name (`"train"`, `"val"`, `"test"`) or several.
        captions (`str` or `Sequence[str]`, *optional*, defaults to `"human"`):
            `"human"` (PoseScript-H), `"automatic"` (PoseScript-A), `"both"`, or a sequence of kinds; with
            several kinds a record's texts are those of each kind in turn.
        pose_index_file (`str` or `os.PathLike`, *optional*):
            Name of the pose index under `root`; defaults to `POSE_INDEX_FILE`,
            `"ids_2_dataset_sequence_and_frame_index_100k.json"`.
        split_file (`str`, *optional*, defaults to `"{split}_ids_100k.json"`):
            Name of the split files, with `{split}` in place of the split's name.
        caption_files (`Mapping[str, str | os.PathLike]`, *optional*):
            Caption kind -> file name, replacing the defaults `posescript_human_6293.json` and
            `posescript_auto_100k.json`.
        output_up_axis (`str`, *optional*, defaults to `"y"`):
            Vertical axis of the returned poses' world: `"y"` (SMPL's, the project's records) or `"z"` (AMASS's,
            PoseScript's).

    Returns:
        `datasets.Dataset` of `pose_text` records (`id` the pose id, `pose` `(22, 3)` float32
        heading-normalised axis-angle, `texts`, `source` such as `"posescript-H/train"`) for a single split,
        or a `datasets.DatasetDict` keyed by split for several.

    Raises:
        `FileNotFoundError`: for a missing release file or AMASS sequence (naming the pose id).
        `ValueError`: for a malformed file or entry, an unknown pose id, a frame out of range, or a split with
            no pose that has captions of the requested kind.
    """
    _check_up_axis(output_up_axis)
    kinds = _text_kinds(captions, POSESCRIPT_CAPTION_FILES, "captions", {"both": ("human", "automatic")})
    names, single = _splits(split)
    files = {**POSESCRIPT_CAPTION_FILES, **(caption_files or {})}
    texts = {
        kind: read_texts(
            _release_file(root, files[kind], f"PoseScript {kind} caption file"),
            f"PoseScript {kind} caption file",
        )
        for kind in kinds
    }
    index_path = _release_file(root, pose_index_file, "PoseScript pose index")
    index = read_pose_index(index_path)
    result = {}
    for name in names:
        split_path = _release_file(
            root, split_file.format(split=name), f"PoseScript split file for split {name!r}"
        )
        split_ids = read_split_ids(split_path, f"PoseScript split file for split {name!r}")
        ids = [pose_id for pose_id in split_ids if any(pose_id in texts[kind] for kind in kinds)]
        where = f"PoseScript split {name!r} ({str(split_path)!r})"
        captions = f"{'/'.join(kinds)} captions"
        _check_texted(len(ids), len(split_ids), "poses", where, captions, "`split` and `captions`")
        references = {pose_id: pose_reference(index, pose_id, index_path) for pose_id in ids}
        raw = read_amass_poses(references, amass_root)
        poses = normalize_pose_headings(np.stack([raw[pose_id] for pose_id in ids]), output_up_axis)
        records = {
            "id": ids,
            "pose": poses,
            "texts": [[text for kind in kinds for text in texts[kind].get(pose_id, ())] for pose_id in ids],
            "source": [_source_name("posescript", kinds, name)] * len(ids),
        }
        result[name] = datasets.Dataset.from_dict(records, features=POSE_TEXT_FEATURES)
    return result[names[0]] if single else datasets.DatasetDict(result)


# ---------------------------------------------------------------------------------------------------------
# PoseFix
# ---------------------------------------------------------------------------------------------------------


def _pair_pose_ids(pairs: Mapping[str, object], pair_id: str, path: Path) -> tuple[str, str]:
    if pair_id not in pairs:
        raise ValueError(f"Pair id {pair_id!r} is not in the pairs file {str(path)!r} ({len(pairs)} pairs).")
    entry = pairs[pair_id]
    if not (isinstance(entry, (list, tuple)) and len(entry) == 2):
        raise ValueError(
            f"Pair id {pair_id!r} in {str(path)!r} has entry {entry!r}; expected [pose id A, pose id B]."
        )
    where = f"Pair id {pair_id!r} in {str(path)!r}"
    return canonical_id(entry[0], where), canonical_id(entry[1], where)


def load_posefix(
    root: PathLike,
    amass_root,
    split: Union[str, Sequence[str]] = "train",
    modifiers: Union[str, Sequence[str]] = "human",
    sequence: str = "both",
    pose_index_file: PathLike = POSE_INDEX_FILE,
    pairs_file: PathLike = POSEFIX_PAIRS_FILE,
    split_file: str = POSEFIX_SPLIT_FILE,
    modifier_files: Optional[Mapping[str, PathLike]] = None,
    output_up_axis: str = RECORD_UP_AXIS,
):
    """
    Loads PoseFix pairs of poses with the instructions that turn pose A into pose B.

    Args:
        root (`str` or `os.PathLike`):
            Folder of the PoseFix release (see the module docstring for its files).
        amass_root, split, pose_index_file, output_up_axis:
            As in [`load_posescript`].
        modifiers (`str` or `Sequence[str]`, *optional*, defaults to `"human"`):
            `"human"` (PoseFix-H), `"automatic"` (PoseFix-A), `"paraphrases"`, or a sequence of these; with
            several kinds a record's texts are those of each kind in turn.
        sequence (`str`, *optional*, defaults to `"both"`):
            Which pairs: `"in"` (both poses from one sequence), `"out"`, or `"both"` (in-sequence ones first).
        pairs_file (`str` or `os.PathLike`, *optional*, defaults to `"pair_id_2_pose_ids.json"`):
            Name of the pairs file.
        split_file (`str`, *optional*, defaults to `"{split}_{sequence}_sequence_pair_ids.json"`):
            Name of the split files, with `{split}` and `{sequence}` (`in` / `out`) in place.
        modifier_files (`Mapping[str, str | os.PathLike]`, *optional*):
            Modifier kind -> file name, replacing the defaults of `POSEFIX_MODIFIER_FILES`.

    Returns:
        `datasets.Dataset` of `pose_pair` records (`id` the pair id, `pose_a`, `pose_b` `(22, 3)` float32
        axis-angle normalised as the module docstring says, `texts`, `source` such as `"posefix-H/train"`)
        for a single split, or a `datasets.DatasetDict` keyed by split for several.

    Raises:
        `FileNotFoundError`: for a missing release file or AMASS sequence (naming the pose id).
        `ValueError`: for a malformed file or entry, an unknown pair or pose id, a pair listed both in and out
            of sequence, a frame out of range, or a split with no pair that has modifiers of the requested
            kind(s).
    """
    _check_up_axis(output_up_axis)
    kinds = _text_kinds(modifiers, POSEFIX_MODIFIER_FILES, "modifiers")
    if sequence not in ("in", "out", "both"):
        raise ValueError(f"`sequence` must be 'in', 'out' or 'both', got {sequence!r}.")
    sequences = POSEFIX_SEQUENCES if sequence == "both" else (sequence,)
    names, single = _splits(split)
    files = {**POSEFIX_MODIFIER_FILES, **(modifier_files or {})}
    texts = {
        kind: read_texts(
            _release_file(root, files[kind], f"PoseFix {kind} modifier file"), f"PoseFix {kind} modifier file"
        )
        for kind in kinds
    }
    pairs_path = _release_file(root, pairs_file, "PoseFix pairs file")
    pairs = _id_table(_read_json(pairs_path, "PoseFix pairs file"), pairs_path, "PoseFix pairs file")
    index_path = _release_file(root, pose_index_file, "PoseFix pose index")
    index = read_pose_index(index_path)
    result = {}
    for name in names:
        pair_ids, in_sequence, listed = [], [], {}
        for kind in sequences:
            what = f"PoseFix {kind}-sequence split file for split {name!r}"
            path = _release_file(root, split_file.format(split=name, sequence=kind), what)
            for pair_id in read_split_ids(path, what):
                if pair_id in listed:
                    raise ValueError(
                        f"Pair id {pair_id!r} is listed both in {str(listed[pair_id])!r} and {str(path)!r}; "
                        "a pair is either in-sequence or out-of-sequence."
                    )
                listed[pair_id] = path
                if any(pair_id in texts[k] for k in kinds):
                    pair_ids.append(pair_id)
                    in_sequence.append(kind == "in")
        where = f"PoseFix split {name!r} ({'/'.join(sequences)}-sequence)"
        modifiers = f"{'/'.join(kinds)} modifiers"
        hint = "`split`, `sequence` and `modifiers`"
        _check_texted(len(pair_ids), len(listed), "pairs", where, modifiers, hint)
        pose_ids = [_pair_pose_ids(pairs, pair_id, pairs_path) for pair_id in pair_ids]
        references = {
            pose_id: pose_reference(index, pose_id, index_path) for pair in pose_ids for pose_id in pair
        }
        raw = read_amass_poses(references, amass_root)
        poses_a, poses_b = normalize_pair_headings(
            np.stack([raw[a] for a, _ in pose_ids]),
            np.stack([raw[b] for _, b in pose_ids]),
            np.array(in_sequence),
            output_up_axis,
        )
        records = {
            "id": pair_ids,
            "pose_a": poses_a,
            "pose_b": poses_b,
            "texts": [
                [text for kind in kinds for text in texts[kind].get(pair_id, ())] for pair_id in pair_ids
            ],
            "source": [_source_name("posefix", kinds, name)] * len(pair_ids),
        }
        result[name] = datasets.Dataset.from_dict(records, features=POSE_PAIR_FEATURES)
    return result[names[0]] if single else datasets.DatasetDict(result)


__all__ = [
    "POSEFIX_MODIFIER_FILES",
    "POSEFIX_PAIRS_FILE",
    "POSEFIX_SPLIT_FILE",
    "POSESCRIPT_CAPTION_FILES",
    "POSESCRIPT_SPLIT_FILE",
    "POSE_INDEX_FILE",
    "PoseReference",
    "canonical_id",
    "heading_corrections",
    "load_posefix",
    "load_posescript",
    "normalize_pair_headings",
    "normalize_pose_headings",
    "pose_reference",
    "read_amass_poses",
    "read_pose_index",
    "read_split_ids",
    "read_texts",
]
