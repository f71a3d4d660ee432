# Copyright 2025 The UniPose contributors. Licensed under the Apache License, Version 2.0.
"""
Finding the records of training and evaluation: corpora given as paths, grouped by record kind.

A data path is a Hub dataset folder (`unipose.data.hub`: a configuration per record kind, the layout of the
synthetic corpus), a dataset saved with `save_to_disk` (a `Dataset` or a `DatasetDict` of splits) in one of the
record schemas of `unipose.data.schema`, or a folder holding such datasets one level down (the layout of the
corpus loaders: `OUT/pose_text/`, `OUT/pose_pair/`, ...). The record kind of
each dataset is read from its features, so paths may be given in any order and mixed.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from datasets import Dataset, DatasetDict, concatenate_datasets, load_dataset, load_from_disk

from .hub import hub_dataset_configs, is_hub_dataset_folder, load_corpus
from .schema import FEATURES, record_kind

PathLike = str | os.PathLike


def _is_saved_dataset(path: Path) -> bool:
    return (path / "dataset_dict.json").is_file() or (path / "dataset_info.json").is_file()


def _is_dataset(path: Path) -> bool:
    """A `save_to_disk` folder, or a folder of parquet shards named by split (`train-00000-of-00001.parquet`)."""
    return path.is_dir() and (_is_saved_dataset(path) or any(path.glob("*.parquet")))


def _kind_of(dataset: Dataset | DatasetDict) -> str | None:
    features = next(iter(dataset.values())).features if isinstance(dataset, DatasetDict) else dataset.features
    try:
        return record_kind(features)
    except ValueError:
        return None


def discover_datasets(paths: Sequence[PathLike]) -> dict[str, list[tuple[Path, Dataset | DatasetDict]]]:
    """
    The saved datasets under `paths`, grouped by record kind.

    Args:
        paths (`Sequence[str | os.PathLike]`): saved datasets or folders of saved datasets.

    Returns:
        `dict[str, list[tuple[Path, Dataset | DatasetDict]]]`: kind -> the datasets of that kind, in the order
        found.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    found: dict[str, list] = {}
    for raw in paths:
        path = Path(raw).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"Data path {str(path)!r} does not exist.")
        if not path.is_dir():
            raise NotADirectoryError(
                f"Data path {str(path)!r} is a file; give a corpus folder (the output of `unipose data synth "
                "--out DIR`), a dataset saved with `save_to_disk`, or a folder of parquet shards."
            )
        if is_hub_dataset_folder(path):
            for config in hub_dataset_configs(path):
                dataset = load_corpus(path, config)
                kind = _kind_of(dataset)
                if kind is not None:
                    found.setdefault(kind, []).append((path / config, dataset))
            continue
        candidates = (
            [path] if _is_dataset(path) else sorted(p for p in path.iterdir() if _is_dataset(p))
        )
        if not candidates:
            raise FileNotFoundError(
                f"{str(path)!r} is neither a corpus (e.g. the output of `unipose data synth --out DIR`), nor a "
                "dataset saved with `save_to_disk` or a folder of parquet shards, nor a folder of such datasets."
            )
        recognised = 0
        for candidate in candidates:
            # Parquet shards (a kind's folder of a corpus) are read through the `datasets` cache.
            dataset = load_from_disk(str(candidate)) if _is_saved_dataset(candidate) else load_dataset(str(candidate))
            kind = _kind_of(dataset)
            if kind is not None:
                found.setdefault(kind, []).append((candidate, dataset))
                recognised += 1
        if recognised == 0:
            raise ValueError(
                f"No dataset under {str(path)!r} follows a UniPose record schema ({sorted(FEATURES)}); build "
                "records with the loaders of `unipose.data`."
            )
    return found


def load_split(paths: Sequence[PathLike], kind: str, split: str) -> Dataset:
    """
    The records of one kind and split found under `paths`, concatenated in the order found. A dataset saved
    as a single `Dataset` (not a `DatasetDict`) counts as the requested split.

    Args:
        paths (`Sequence[str | os.PathLike]`): saved datasets or folders of saved datasets.
        kind (`str`): `"pose_text"`, `"pose_pair"`, `"image_pose"` or `"image_pair"`.
        split (`str`): e.g. `"test"`.

    Returns:
        `datasets.Dataset`
    """
    if kind not in FEATURES:
        raise ValueError(f"`kind` must be one of {sorted(FEATURES)}, got {kind!r}.")
    sources = discover_datasets(paths).get(kind, [])
    if not sources:
        raise FileNotFoundError(f"No `{kind}` records under {[str(p) for p in paths]}.")
    parts = []
    for _, dataset in sources:
        if isinstance(dataset, Dataset):
            parts.append(dataset)
        elif split in dataset:
            parts.append(dataset[split])
    if not parts:
        available = sorted(
            {name for _, dataset in sources if isinstance(dataset, DatasetDict) for name in dataset}
        )
        raise ValueError(f"No `{split}` split among the `{kind}` datasets; they have {available}.")
    return parts[0] if len(parts) == 1 else concatenate_datasets(parts)


__all__ = ["discover_datasets", "load_split"]
