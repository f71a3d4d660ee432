"""Reading and writing files without losing them: atomic writes with the user's permissions, archives read with
errors that name the file.

Every file the project writes goes through [`atomic_path`]: the content is written to a temporary file beside the
target and renamed over it when complete, so a crash never leaves a truncated file, and the file gets the
permissions of a plainly created one (`0o666` less the umask) instead of `mkstemp`'s private `0o600`. Folders
are written in a staging folder first: [`staged_directory`] puts a whole new folder in place of the old one,
[`staged_files`] moves finished files into a folder that already holds others.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np


def current_umask() -> int:
    """The process's umask (read by setting it and putting it back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside `path`; renamed to `path` when the block ends without an error, removed otherwise.

    Example:

    ```python
    >>> with atomic_path("render.png") as temporary:
    ...     image.save(temporary, format="PNG")
    ```
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        os.chmod(temporary, 0o666 & ~current_umask())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_text_atomically(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8")


def publish_files(source: Path, target: Path, last: tuple[str, ...] = ("config.json",)):
    """Move every file of `source` into `target` with `os.replace` (each file appears whole), the files of
    `last` at the end so that a reader who finds them finds the rest too; then remove `source`."""
    target.mkdir(parents=True, exist_ok=True)
    files = sorted(path for path in source.rglob("*") if path.is_file())
    files.sort(key=lambda path: path.name in last)
    for path in files:
        destination = target / path.relative_to(source)
        destination.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, destination)
    shutil.rmtree(source, ignore_errors=True)


@contextmanager
def staged_files(directory: str | os.PathLike, last: tuple[str, ...] = ("config.json",)) -> Iterator[Path]:
    """A new, empty folder inside `directory` to write files into. When the block ends without an error, its
    files move into `directory` through [`publish_files`] (each appears whole, those of `last` at the end);
    otherwise it is removed and `directory` keeps what it had. For a folder that gains files, such as a
    training run's output folder beside its checkpoints."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=directory, prefix=".staging-", suffix=".tmp"))
    try:
        yield staging
        publish_files(staging, directory, last)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@contextmanager
def staged_directory(path: str | os.PathLike) -> Iterator[Path]:
    """A new, empty folder beside `path` to write a whole folder into. When the block ends without an error, it
    takes the place of `path`: a folder already there is moved aside, then removed once the new one is in
    place (and put back if the new one cannot be). On an error the new folder is removed and `path` is left as
    it was. The folder gets the permissions of a plainly created one, not `mkdtemp`'s private `0o700`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        yield staging
        staging.chmod(0o777 & ~current_umask())
        if not path.exists():
            os.replace(staging, path)
            return
        aside = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".old"))
        os.replace(path, aside / path.name)
        try:
            os.replace(staging, path)
        except BaseException:
            os.replace(aside / path.name, path)
            aside.rmdir()
            raise
        shutil.rmtree(aside, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def write_json_atomically(path: str | os.PathLike, payload: Any, sort_keys: bool = True) -> None:
    """`payload` as indented JSON (UTF-8, keys sorted unless `sort_keys=False`) at `path`, atomically."""
    write_text_atomically(path, json.dumps(payload, indent=2, sort_keys=sort_keys, ensure_ascii=False) + "\n")


@contextmanager
def open_npz(path: str | os.PathLike, what: str = "file", allow_pickle: bool = False) -> Iterator[Any]:
    """`np.load` of an `.npz` archive whose errors name the file: a missing file, a file that is not a readable
    archive (truncated, corrupt, not a zip) or a member that cannot be read raise an error that says which file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"The {what} {path} does not exist.")
    try:
        archive = np.load(path, allow_pickle=allow_pickle)
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as error:
        if tarfile.is_tarfile(path):  # numpy reads it as a pickle and asks for `allow_pickle`, which would not help
            raise ValueError(
                f"The {what} {path} is a tar archive (e.g. a webdataset shard), not an .npz archive of named arrays."
            ) from None
        raise ValueError(f"The {what} {path} is not a readable .npz archive ({type(error).__name__}: {error}).") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(f"The {what} {path} holds a single array, not an .npz archive of named arrays.")
    with archive:
        yield _NamedArchive(archive, path, what)


def relative_path_inside(root: str | os.PathLike, name: str | os.PathLike) -> Path | None:
    """`root / name` when `name` is a relative path that stays inside `root` as written, else `None`.

    The check reads the path, not the disk: `..` that climbs out of `root` and absolute names are refused,
    while a folder linked into `root` (`AMASS/CMU -> /disk/CMU`) is inside it, as its user laid it out.
    """
    parts = Path(os.path.normpath(os.fspath(name))).parts
    if not parts or Path(os.fspath(name)).is_absolute() or parts[0] == os.pardir or parts == (os.curdir,):
        return None
    return Path(root) / Path(*parts)


def files_under(folder: str | os.PathLike, suffix: str) -> Iterator[Path]:
    """The files with `suffix` in `folder` and its sub-folders, linked sub-folders included (each real folder
    is read once, so a link back up the tree ends the walk there)."""
    seen = set()
    for directory, subdirectories, names in os.walk(folder, followlinks=True):
        real = os.path.realpath(directory)
        if real in seen:
            subdirectories.clear()
            continue
        seen.add(real)
        yield from (Path(directory) / name for name in names if name.endswith(suffix))


def files_fingerprint(path: str | os.PathLike, recursive: bool = True) -> str | None:
    """A digest of the names, sizes and modification times of the files of `path` (a file, or a folder: its
    files, those of its sub-folders too when `recursive`), which changes when any of them is written again;
    `None` when `path` is not on disk (a Hub id). Cheap for weights of many gigabytes: nothing is read."""
    root = Path(path)
    if not root.exists():
        return None
    if root.is_file():
        files = [root]
    else:
        files = sorted(file for file in (root.rglob("*") if recursive else root.iterdir()) if file.is_file())
    digest = hashlib.sha256()
    for file in files:
        stat = file.stat()
        name = file.name if file == root else file.relative_to(root).as_posix()
        digest.update(f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


# A Hub model id (`owner/name`), as opposed to a local folder.
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def resolve_model_path(name_or_path: str | os.PathLike, argument: str = "--model") -> str:
    """A local checkpoint folder (with `config.json`) or a Hub model id (`owner/name`), as `from_pretrained`
    takes it. Anything else -- a missing folder written as a path (`./out`, `/data/run`, `~/run`), a folder
    without `config.json`, a name that is no Hub id -- raises a `FileNotFoundError` that names `argument`,
    instead of reaching the Hub as a model id."""
    text = os.fspath(name_or_path)
    path = Path(text).expanduser()
    if (path / "config.json").is_file():
        return str(path)
    if path.exists() or not _HUB_ID.fullmatch(text):
        reason = "has no config.json" if path.is_dir() else "is not a folder" if path.exists() else "does not exist"
        raise FileNotFoundError(
            f"`{argument}` {text!r} {reason}: expected a checkpoint folder with config.json (written by "
            "`save_pretrained`) or a Hub model id such as `owner/unipose`."
        )
    return text


class _NamedArchive:
    """An open `NpzFile` whose member reads name the archive and the member when they fail."""

    def __init__(self, archive, path: Path, what: str):
        self._archive, self._path, self._what = archive, path, what

    def __contains__(self, key: str) -> bool:
        return key in self._archive.files

    @property
    def files(self) -> list[str]:
        return self._archive.files

    def __getitem__(self, key: str) -> np.ndarray:
        if key not in self._archive.files:
            raise KeyError(f"The {self._what} {self._path} has no array `{key}`; it holds {sorted(self._archive.files)}.")
        try:
            return self._archive[key]
        except (zipfile.BadZipFile, EOFError, OSError, ValueError) as error:
            raise ValueError(
                f"Array `{key}` of the {self._what} {self._path} cannot be read ({type(error).__name__}: {error})."
            ) from None

    def get(self, key: str, default=None):
        return self[key] if key in self else default


__all__ = [
    "atomic_path",
    "current_umask",
    "files_fingerprint",
    "files_under",
    "open_npz",
    "publish_files",
    "relative_path_inside",
    "resolve_model_path",
    "staged_directory",
    "staged_files",
    "write_json_atomically",
    "write_text_atomically",
]
