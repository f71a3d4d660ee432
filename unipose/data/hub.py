"""Corpora as Hugging Face Hub datasets: one folder (or Hub repository) with a configuration per record kind.

```
OUT/
  README.md                         dataset card; its `configs:` map each kind to its parquet files per split
  pose_text/train-00000-of-00001.parquet   pose_text/validation-...   pose_text/test-...
  pose_pair/...   image_pose/...   image_pair/...
```

`datasets.load_dataset("owner/name", "pose_text")` reads a kind's splits once the folder is pushed to the Hub, and
[`load_corpus`] is the one reader of the project's training and evaluation: it takes such a folder or Hub id, and
also the `save_to_disk` folders of earlier versions. It reads a local folder's shards by their absolute paths:
`load_dataset(OUT, ...)` caches a local folder's records under its name and configuration alone. Reading through
`load_dataset` keeps every cache file (`Dataset.map`'s included) in the `datasets` cache, never inside the corpus
folder.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import yaml
from datasets import Dataset, DatasetDict, load_dataset, load_from_disk
from datasets.info import DatasetInfo, DatasetInfosDict
from huggingface_hub import DatasetCard, DatasetCardData

from ..files import write_text_atomically
from .schema import FEATURES

PathLike = str | os.PathLike
CARD_FILE = "README.md"
MAX_SHARD_BYTES = 256 * 2**20  # the Hub's viewer reads parquet shards of a few hundred MB best


def write_hub_dataset(
    out_dir: PathLike, corpus: dict[str, DatasetDict], pretty_name: str, description: str, license: str = "apache-2.0"
) -> Path:
    """
    Write `corpus` (record kind -> its splits) as a Hub dataset folder: parquet shards per kind and split and a
    dataset card whose `configs:` name them, with the features of each kind in `dataset_info`.

    Args:
        out_dir (`str` or `os.PathLike`): an existing, empty folder (the caller publishes it atomically).
        corpus (`dict[str, DatasetDict]`): kinds of `unipose.data.schema.FEATURES` -> splits.
        pretty_name (`str`), description (`str`): the card's title and body (Markdown).
        license (`str`, *optional*, defaults to `"apache-2.0"`): the card's licence identifier.
    Returns:
        `Path` of the folder.
    """
    out_dir = Path(out_dir)
    configs, infos = [], {}
    for kind, splits in corpus.items():
        if kind not in FEATURES:
            raise ValueError(f"`corpus` has a kind {kind!r} that is not one of {sorted(FEATURES)}.")
        data_files = []
        for split, data in splits.items():
            if len(data) == 0:
                continue  # `load_dataset` refuses a declared split without rows
            num_shards = max(1, math.ceil(data.data.nbytes / MAX_SHARD_BYTES))
            (out_dir / kind).mkdir(parents=True, exist_ok=True)
            for index in range(num_shards):
                shard = data.shard(num_shards, index, contiguous=True)
                shard.to_parquet(str(out_dir / kind / f"{split}-{index:05d}-of-{num_shards:05d}.parquet"))
            data_files.append({"split": split, "path": f"{kind}/{split}-*.parquet"})
        configs.append({"config_name": kind, "data_files": data_files, **({} if configs else {"default": True})})
        infos[kind] = DatasetInfo(features=FEATURES[kind], config_name=kind)
    card_data = DatasetCardData(
        license=license,
        pretty_name=pretty_name,
        task_categories=["image-text-to-text", "text-generation"],
        tags=["unipose", "3d-human-pose", "smpl", "synthetic"],
        configs=configs,
    )
    DatasetInfosDict(infos).to_dataset_card_data(card_data)
    card = f"---\n{yaml.safe_dump(card_data.to_dict(), sort_keys=False)}---\n\n{description.strip()}\n"
    write_text_atomically(out_dir / CARD_FILE, card)
    return out_dir


def is_hub_dataset_folder(path: PathLike) -> bool:
    """Whether `path` is a folder whose dataset card declares `configs:` (the layout of [`write_hub_dataset`])."""
    card = Path(path) / CARD_FILE
    if not card.is_file():
        return False
    return bool(DatasetCard.load(card).data.to_dict().get("configs"))


def hub_dataset_configs(path: PathLike) -> list[str]:
    """The configuration names a Hub dataset folder declares, in the card's order."""
    data = DatasetCard.load(Path(path) / CARD_FILE).data.to_dict()
    return [config["config_name"] for config in data.get("configs", [])]


def load_corpus(path_or_id: PathLike, kind: str, split: str | None = None) -> Dataset | DatasetDict:
    """
    The records of one kind of a corpus: a Hub dataset folder or Hub id (read with `load_dataset(path, kind)`), one
    kind's folder of parquet shards, or a `save_to_disk` folder (`OUT/kind` of earlier versions, or the kind's
    folder itself).

    Args:
        path_or_id (`str` or `os.PathLike`): a local folder, or a Hub dataset id.
        kind (`str`): one of `unipose.data.schema.FEATURES` (`"pose_text"`, ...).
        split (`str`, *optional*): one split; all splits (a `DatasetDict`) when omitted.
    """
    if kind not in FEATURES:
        raise ValueError(f"`kind` must be one of {sorted(FEATURES)}, got {kind!r}.")
    path = Path(path_or_id).expanduser()
    if path.is_dir() and not is_hub_dataset_folder(path):
        folder = path / kind if (path / kind).is_dir() else path
        if any(folder.glob("*.parquet")):  # one kind's folder of a corpus: shards named by split
            return load_dataset(str(folder), split=split)
        if not ((folder / "dataset_dict.json").is_file() or (folder / "dataset_info.json").is_file()):
            raise FileNotFoundError(
                f"{str(path)!r} is neither a Hub dataset folder (a README.md with `configs:`) nor a `save_to_disk` "
                f"folder of `{kind}` records; write a corpus with `unipose data synth --out DIR`."
            )
        data = load_from_disk(str(folder))
        return data[split] if split is not None and isinstance(data, DatasetDict) else data
    if path.is_dir() and kind not in hub_dataset_configs(path):
        raise ValueError(f"The corpus at {str(path)!r} has no `{kind}` configuration; it has {hub_dataset_configs(path)}.")
    if path.is_dir():
        # The shards by their absolute paths: `load_dataset(folder, kind)` caches a folder's records under its name
        # and configuration alone, so that another corpus in a folder of the same name would read them.
        return load_dataset("parquet", data_files=_local_data_files(path, kind), split=split)
    return load_dataset(str(path_or_id), kind, split=split)


def _local_data_files(path: Path, kind: str) -> dict[str, list[str]]:
    """The parquet shards of configuration `kind` of the Hub dataset folder `path`, split -> absolute paths."""
    data = DatasetCard.load(path / CARD_FILE).data.to_dict()
    config = next(config for config in data["configs"] if config["config_name"] == kind)
    entries = config.get("data_files", [])
    if isinstance(entries, (str, dict)):
        entries = [entries]
    files: dict[str, list[str]] = {}
    for entry in entries:
        split, patterns = ("train", entry) if isinstance(entry, str) else (entry["split"], entry["path"])
        for pattern in [patterns] if isinstance(patterns, str) else patterns:
            files.setdefault(split, []).extend(str(file) for file in sorted(path.glob(pattern)))
    empty = sorted(split for split, found in files.items() if not found)
    if not files or empty:
        raise FileNotFoundError(
            f"The corpus at {str(path)!r} declares `{kind}` shards that are not there (splits {empty or 'all'}); "
            "write it again with `unipose data synth --out DIR`."
        )
    return files


__all__ = ["hub_dataset_configs", "is_hub_dataset_folder", "load_corpus", "write_hub_dataset"]
