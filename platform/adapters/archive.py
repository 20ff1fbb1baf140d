"""Read a PEFT adapter out of an upload safely: one .zip / .tar.gz archive, or the loose files.

Archives come from strangers, so nothing here trusts a header: member names are checked (no absolute paths, no
`..`, no links or devices), the member count is bounded, and every byte is counted as it is decompressed (a zip
bomb stops at the bound, whatever its headers claim). Bounds come before the parsers' own work: a zip's central
directory (entry count and size, from its end record) before zipfile reads it, a tar's GNU long-name / pax header
sizes before tarfile reads them into memory, and the sizes of the tar members it would decompress to skip. Nothing is
ever written to disk and nothing is unpickled.
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
# A long name or a pax record set needs a few KiB at most; tarfile reads the whole claimed size into memory.
MAX_TAR_HEADER_BYTES = 64 << 10
# Central directory: 46 bytes + name + extra + comment per entry; an adapter archive's is well under this.
MAX_ZIP_DIRECTORY_BYTES = 1 << 20
_SNIFF_BYTES = 16
# Extended headers before one member: a long name, a long link name and a pax set or two are all a real one has.
MAX_TAR_HEADER_CHAIN = 8


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


def refusal_for(filename: str, head: bytes) -> str:
    """Why a file with a pickle-style name (.bin, .pt, ...) is refused, from what its first bytes say it is."""
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):  # pickle protocol 2-5 opcode
        return pickle_refusal(filename)
    if head[:4] == b"PK\x03\x04":  # torch.save's format: a zip holding data.pkl
        return pickle_refusal(filename)
    if len(head) >= 9 and int.from_bytes(head[:8], "little") < 100 << 20 and head[8:9] == b"{":
        return f"'{filename}' looks like a safetensors file; name it {WEIGHTS_NAME} and upload it with {CONFIG_NAME}."
    return (
        f"'{filename}' is not a recognised archive or safetensors file. Upload {CONFIG_NAME} and {WEIGHTS_NAME}, or "
        "one .zip / .tar.gz of the adapter folder."
    )


def sniff(stream: IO[bytes]) -> bytes:
    """The first bytes of an upload, leaving the stream where it was."""
    head = stream.read(_SNIFF_BYTES)
    stream.seek(0)
    return head


class _Budget:
    def __init__(self, max_bytes: int, max_members: int) -> None:
        self.bytes_left = max_bytes
        self.declared_left = max_bytes
        self.members_left = max_members
        self.max_bytes = max_bytes
        self.max_members = max_members

    def member(self) -> None:
        self.members_left -= 1
        if self.members_left < 0:
            raise AdapterFileError(f"The archive has more than {self.max_members} members; upload just the adapter.")

    def declared(self, size: int) -> None:
        """A tar member's size from its header: tarfile decompresses that much to reach the next header, read or not."""
        self.declared_left -= size
        if self.declared_left < 0:
            raise self._too_big()

    def _too_big(self) -> AdapterFileError:
        return AdapterFileError(
            f"The archive unpacks to more than {self.max_bytes // (1 << 20)} MiB; that is more than an "
            "adapter needs (is it a zip bomb, or does it hold the base model?)."
        )

    def read(self, stream: IO[bytes]) -> bytes:
        parts: list[bytes] = []
        while chunk := stream.read(min(_CHUNK, self.bytes_left + 1)):
            self.bytes_left -= len(chunk)
            if self.bytes_left < 0:
                raise self._too_big()
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


def _check_zip_directory(stream: IO[bytes], budget: _Budget) -> None:
    """The end record's entry count and directory size, before zipfile reads (and keeps) every entry."""
    try:
        end = zipfile._EndRecData(stream)  # what ZipFile itself reads first (zip64 aware); private, stable since 2.x
    except OSError as exc:
        raise AdapterFileError(f"The .zip archive can't be read: {exc}.") from None
    finally:
        stream.seek(0)
    if end is None:
        raise AdapterFileError("The .zip archive can't be read: it has no end-of-directory record.")
    entries, directory_bytes = end[zipfile._ECD_ENTRIES_TOTAL], end[zipfile._ECD_SIZE]
    if entries > budget.max_members:
        raise AdapterFileError(f"The archive has {entries} members, more than {budget.max_members}; upload just the "
                               "adapter.")
    if directory_bytes > MAX_ZIP_DIRECTORY_BYTES:
        raise AdapterFileError(f"The .zip archive's directory is {directory_bytes} bytes, more than an adapter's "
                               f"needs ({MAX_ZIP_DIRECTORY_BYTES}).")


def _zip_members(stream: IO[bytes], budget: _Budget) -> Iterator[tuple[PurePosixPath, IO[bytes] | None]]:
    _check_zip_directory(stream, budget)
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


class _BoundedTarInfo(tarfile.TarInfo):
    """Refuses a GNU long-name/long-link or pax header claiming more than MAX_TAR_HEADER_BYTES (tarfile would read it
    whole into memory), sparse members (their extension headers chain without end), and a member preceded by more
    than MAX_TAR_HEADER_CHAIN extended headers (tarfile parses the chain by recursion)."""

    def _proc_member(self, archive: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type in _EXTENDED:
            if self.size > MAX_TAR_HEADER_BYTES:
                raise AdapterFileError(f"The archive has a {self.size}-byte extended header (long name or pax); "
                                       f"more than {MAX_TAR_HEADER_BYTES} bytes is not an adapter archive.")
            depth = archive.__dict__.get("_hearth_chain", 0) + 1  # kept on the archive being read
            if depth > MAX_TAR_HEADER_CHAIN:
                raise AdapterFileError(f"An archive member has more than {MAX_TAR_HEADER_CHAIN} extended headers; "
                                       "refusing it.")
            archive.__dict__["_hearth_chain"] = depth
            try:
                return super()._proc_member(archive)
            finally:
                archive.__dict__["_hearth_chain"] = depth - 1
        if self.type == tarfile.GNUTYPE_SPARSE:
            raise AdapterFileError(f"The archive member '{self.name}' is a sparse file; refusing it.")
        return super()._proc_member(archive)


_EXTENDED = (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE, tarfile.XGLTYPE,
             tarfile.SOLARIS_XHDTYPE)


def _tar_members(stream: IO[bytes], budget: _Budget) -> Iterator[tuple[PurePosixPath, IO[bytes] | None]]:
    try:
        archive = tarfile.open(fileobj=stream, mode="r:*", tarinfo=_BoundedTarInfo)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise AdapterFileError(f"The tar archive can't be read: {exc}.") from None
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
                budget.declared(info.size)  # decompressed to reach the next header, whether read or not
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
            head = member.read(_SNIFF_BYTES) if member is not None else b""
            raise AdapterFileError(refusal_for(path.name, head))
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
    for name, f in files.items():
        if is_pickle(name):
            raise AdapterFileError(refusal_for(name, sniff(f)))
    missing = [n for n in (CONFIG_NAME, WEIGHTS_NAME) if n not in files]
    if missing:
        raise AdapterFileError(f"The upload lacks {' and '.join(missing)}.")
    budget = _Budget(max_bytes, len(files))
    return AdapterFiles(config=budget.read(files[CONFIG_NAME]), weights=budget.read(files[WEIGHTS_NAME]))
