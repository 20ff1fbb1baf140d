"""Read a PEFT adapter out of an upload safely: one .zip / .tar.gz archive, or the loose files.

Archives come from strangers, so nothing here trusts a header: member names are checked (no absolute paths, no
`..`, no links or devices), the member count is bounded, and every byte is counted as it is decompressed (a zip
bomb stops at the bound, whatever its headers claim). Nothing is ever written to disk and nothing is unpickled.
"""

from __future__ import annotations

import stat
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import IO

CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
ARCHIVE_SUFFIXES = (".zip", ".tar.gz", ".tgz", ".tar")
_CHUNK = 1 << 20


class AdapterFileError(ValueError):
    """The upload can't be read as a PEFT adapter; the message is meant for the person who uploaded it."""


@dataclass(slots=True)
class AdapterFiles:
    config: bytes
    weights: bytes


def is_archive(filename: str) -> bool:
    return filename.lower().endswith(ARCHIVE_SUFFIXES)


def is_pickle(filename: str) -> bool:
    return filename.lower().endswith(PICKLE_SUFFIXES)


def pickle_refusal(filename: str) -> str:
    return (
        f"'{filename}' is a pickled PyTorch file. Hearth never loads pickles (they can run arbitrary code); "
        f"save the adapter with safetensors (peft's save_pretrained does by default) and upload {WEIGHTS_NAME}."
    )


class _Budget:
    def __init__(self, max_bytes: int, max_members: int) -> None:
        self.bytes_left = max_bytes
        self.members_left = max_members
        self.max_bytes = max_bytes
        self.max_members = max_members

    def member(self) -> None:
        self.members_left -= 1
        if self.members_left < 0:
            raise AdapterFileError(f"The archive has more than {self.max_members} members; upload just the adapter.")

    def read(self, stream: IO[bytes]) -> bytes:
        parts: list[bytes] = []
        while chunk := stream.read(min(_CHUNK, self.bytes_left + 1)):
            self.bytes_left -= len(chunk)
            if self.bytes_left < 0:
                raise AdapterFileError(
                    f"The archive unpacks to more than {self.max_bytes // (1 << 20)} MiB; that is more than an "
                    "adapter needs (is it a zip bomb, or does it hold the base model?)."
                )
            parts.append(chunk)
        return b"".join(parts)


def _safe_name(name: str) -> PurePosixPath:
    if "\\" in name or "\x00" in name:
        raise AdapterFileError(f"The archive member '{name}' has an invalid name.")
    path = PurePosixPath(name)
    if path.is_absolute() or name.startswith("/"):
        raise AdapterFileError(f"The archive member '{name}' has an absolute path; archives must hold relative paths.")
    if ".." in path.parts:
        raise AdapterFileError(f"The archive member '{name}' points outside the archive ('..'); refusing it.")
    return path


def _zip_members(stream: IO[bytes], budget: _Budget) -> Iterator[tuple[PurePosixPath, IO[bytes] | None]]:
    try:
        archive = zipfile.ZipFile(stream)
    except (zipfile.BadZipFile, OSError) as exc:
        raise AdapterFileError(f"The .zip archive can't be read: {exc}.") from None
    with archive:
        for info in archive.infolist():
            budget.member()
            path = _safe_name(info.filename)
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise AdapterFileError(f"The archive member '{info.filename}' is a symbolic link; links are refused.")
            if info.is_dir():
                continue
            try:
                with archive.open(info) as member:
                    yield path, member
            except (zipfile.BadZipFile, NotImplementedError, RuntimeError) as exc:
                raise AdapterFileError(f"The archive member '{info.filename}' can't be read: {exc}.") from None


def _tar_members(stream: IO[bytes], budget: _Budget) -> Iterator[tuple[PurePosixPath, IO[bytes] | None]]:
    try:
        archive = tarfile.open(fileobj=stream, mode="r:*")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise AdapterFileError(f"The .tar.gz archive can't be read: {exc}.") from None
    with archive:
        try:
            while (info := archive.next()) is not None:
                budget.member()
                path = _safe_name(info.name)
                if info.issym() or info.islnk():
                    raise AdapterFileError(f"The archive member '{info.name}' is a link; links are refused.")
                if info.isdir():
                    continue
                if not info.isfile():
                    raise AdapterFileError(f"The archive member '{info.name}' is not a regular file; refusing it.")
                yield path, archive.extractfile(info)
        except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
            raise AdapterFileError(f"The archive can't be read: {exc}.") from None


def read_archive(filename: str, stream: IO[bytes], *, max_bytes: int, max_members: int) -> AdapterFiles:
    """The adapter's config and weights from an archive, found at its root or in one folder inside it."""
    budget = _Budget(max_bytes, max_members)
    members = _zip_members(stream, budget) if filename.lower().endswith(".zip") else _tar_members(stream, budget)
    found: dict[str, dict[PurePosixPath, bytes]] = {CONFIG_NAME: {}, WEIGHTS_NAME: {}}
    for path, member in members:
        if is_pickle(path.name):
            raise AdapterFileError(pickle_refusal(path.name))
        if path.name in found and member is not None:
            found[path.name][path.parent] = budget.read(member)
    return _pick(found)


def _pick(found: dict[str, dict[PurePosixPath, bytes]]) -> AdapterFiles:
    configs = found[CONFIG_NAME]
    if not configs:
        raise AdapterFileError(f"The archive has no {CONFIG_NAME}; upload a folder saved by peft's save_pretrained.")
    if len(configs) > 1:
        raise AdapterFileError(f"The archive has {len(configs)} copies of {CONFIG_NAME}; upload one adapter at a time.")
    folder, config = next(iter(configs.items()))
    weights = found[WEIGHTS_NAME].get(folder)
    if weights is None:
        raise AdapterFileError(f"The archive has no {WEIGHTS_NAME} next to {CONFIG_NAME}.")
    return AdapterFiles(config=config, weights=weights)


def read_loose_files(files: dict[str, IO[bytes]], *, max_bytes: int) -> AdapterFiles:
    """The two files uploaded side by side (already size-checked at upload; counted again here)."""
    for name in files:
        if is_pickle(name):
            raise AdapterFileError(pickle_refusal(name))
    missing = [n for n in (CONFIG_NAME, WEIGHTS_NAME) if n not in files]
    if missing:
        raise AdapterFileError(f"The upload lacks {' and '.join(missing)}.")
    budget = _Budget(max_bytes, len(files))
    return AdapterFiles(config=budget.read(files[CONFIG_NAME]), weights=budget.read(files[WEIGHTS_NAME]))
