"""Hostile archives are bounded before the parsers do the work: a tar header claiming a multi-GB GNU long name or pax
record set, a tar member that would be decompressed (to be skipped) past the unpacked bound, a zip whose end record
lists millions of entries or whose directory is huge. Every archive is built in the test and is a few KB. Plus the
reasons that say what an upload really is, and the Celery time limit on validation."""

from __future__ import annotations

import io
import os
import struct
import tarfile
import zipfile
from pathlib import Path

import pytest
from adapter_builders import adapter_files, tar_gz_bytes
from celery.exceptions import SoftTimeLimitExceeded
from django.core.files.uploadedfile import SimpleUploadedFile
from safetensors.torch import save as save_safetensors

from adapters import conf, services, tasks
from adapters.archive import AdapterFileError, read_archive
from adapters.models import Adapter

BOUNDS = dict(max_bytes=4 << 20, max_members=64)


class GuardedStream(io.BytesIO):
    """An upload that fails the test if the parser asks for a huge read at once (tarfile reads a long-name header's
    whole claimed size in one call; a 4 GiB read would allocate 4 GiB)."""

    def read(self, size: int | None = -1) -> bytes:
        assert size is None or size < 0 or size <= 16 << 20, f"the parser asked for {size} bytes at once"
        return super().read(size)


def _tar_header(name: bytes, typeflag: bytes, size: int) -> bytes:
    """A ustar header block as tarfile writes it, with any size (octal, 11 digits: up to 8 GiB)."""
    fields = [name.ljust(100, b"\0"), b"0000644\0", b"0000000\0", b"0000000\0", b"%011o\0" % size,
              b"00000000000\0", b" " * 8, typeflag, b"\0" * 100, b"ustar\x0000", b"\0" * 32, b"\0" * 32,
              b"0000000\0", b"0000000\0", b"\0" * 155]
    block = b"".join(fields).ljust(512, b"\0")
    checksum = b"%06o\0 " % sum(block)
    return block[:148] + checksum + block[156:]


@pytest.mark.parametrize(("typeflag", "kind"), [(b"L", "GNU long name"), (b"K", "GNU long link"),
                                                (b"x", "pax"), (b"g", "pax global")])
def test_a_tar_extended_header_claiming_gigabytes_is_refused_before_it_is_read(typeflag, kind):
    hostile = _tar_header(b"././@LongLink", typeflag, 4 << 30) + b"\0" * 1024  # 2.5 KB on disk, claims 4 GiB
    with pytest.raises(AdapterFileError, match="extended header") as info:
        read_archive("a.tar", GuardedStream(hostile), **BOUNDS)
    assert str(4 << 30) in str(info.value), kind


def test_a_tar_member_skipped_without_reading_still_counts(tmp_path: Path):
    # 64 MiB of zeros compress to ~64 KB; tarfile would decompress all of it just to reach the adapter's files.
    members = {"junk.dat": bytes(64 << 20), **adapter_files()}
    with pytest.raises(AdapterFileError, match="unpacks to more than 4 MiB"):
        read_archive("a.tar.gz", io.BytesIO(tar_gz_bytes(members)), **BOUNDS)


def _zip64_end_records(entries: int, directory_bytes: int) -> bytes:
    """Only a zip64 end record + locator + end record: what zipfile reads first to find the central directory."""
    end64 = struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, entries, entries, directory_bytes, 0)
    locator = struct.pack("<4sLQL", b"PK\x06\x07", 0, 0, 1)
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    return end64 + locator + end


def test_a_zip_listing_millions_of_entries_is_refused_from_its_end_record():
    with pytest.raises(AdapterFileError, match="has 5000000 members, more than 64"):
        read_archive("a.zip", GuardedStream(_zip64_end_records(5_000_000, 46 * 5_000_000)), **BOUNDS)


def test_a_zip_with_a_huge_directory_is_refused_from_its_end_record():
    with pytest.raises(AdapterFileError, match="directory is 3000000000 bytes"):
        read_archive("a.zip", GuardedStream(_zip64_end_records(3, 3_000_000_000)), **BOUNDS)


def test_a_real_zip_over_the_member_count_is_refused_before_zipfile_reads_its_directory(monkeypatch):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for i in range(1000):  # 1000 empty entries: ~100 KB
            z.writestr(f"{i}", b"")
    opened: list[object] = []
    real_init = zipfile.ZipFile.__init__

    def spy(self, *args, **kwargs):
        opened.append(args)
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "__init__", spy)
    with pytest.raises(AdapterFileError, match="has 1000 members, more than 64"):
        read_archive("a.zip", io.BytesIO(buf.getvalue()), **BOUNDS)
    assert opened == []  # zipfile never parsed the 1000-entry directory


def test_a_tar_with_endless_headers_is_refused():
    # Each GNU long-name header is small; a chain of them is one member to tarfile, parsed by recursion (a few
    # hundred would end in RecursionError, an "internal error" to the uploader).
    chain = b"".join(_tar_header(b"././@LongLink", b"L", 8) + b"longname".ljust(512, b"\0") for _ in range(2000))
    with pytest.raises(AdapterFileError, match="more than 8 extended headers"):
        read_archive("a.tar", io.BytesIO(chain + b"\0" * 1024), **BOUNDS)


# -- what the upload really is ----------------------------------------------------------------------------------------


def _post(client, files: dict[str, bytes]):
    body = {"name": "bot", "base_model": "smollm2-135m-instruct",
            "files": [SimpleUploadedFile(n, d) for n, d in files.items()]}
    return client.post("/api/v1/adapters", body, format="multipart")


def test_random_bytes_named_bin_are_not_called_a_pickle(session_client):
    client, _ = session_client()
    response = _post(client, {"adapter_config.json": adapter_files()["adapter_config.json"],
                              "x.bin": os.urandom(4096)})
    assert response.status_code == 400
    reason = response.json()["files"][0]
    assert "'x.bin' is not a recognised archive or safetensors file" in reason and "pickle" not in reason


def test_safetensors_named_bin_is_called_safetensors(session_client):
    import torch

    client, _ = session_client()
    response = _post(client, {"x.bin": save_safetensors({"w": torch.zeros(2)})})
    assert response.status_code == 400
    assert "'x.bin' looks like a safetensors file" in response.json()["files"][0]


def test_random_bytes_named_bin_inside_an_archive(session_client, adapter_store: Path):
    client, _ = session_client()
    members = {**adapter_files(), "x.bin": os.urandom(4096)}
    response = _post(client, {"a.tar.gz": tar_gz_bytes(members)})
    adapter = services.adapter_validate(adapter_id=Adapter.dangerously_unscoped.get(uid=response.json()["uid"]).pk)
    assert adapter.status == "failed" and "not a recognised archive or safetensors file" in adapter.failure_reason


def test_a_tar_bomb_upload_fails_with_the_header_reason(session_client, adapter_store: Path):
    client, _ = session_client()
    response = _post(client, {"a.tar": _tar_header(b"././@LongLink", b"L", 6 << 30) + b"\0" * 1024})
    adapter = services.adapter_validate(adapter_id=Adapter.dangerously_unscoped.get(uid=response.json()["uid"]).pk)
    assert adapter.status == "failed" and "extended header" in adapter.failure_reason
    assert not (adapter_store / adapter.uid).exists()


# -- the time limit ---------------------------------------------------------------------------------------------------


def test_validation_has_a_celery_time_limit():
    assert tasks.adapter_validate_task.soft_time_limit == conf.validation_time_limit_s()
    assert tasks.adapter_validate_task.time_limit > tasks.adapter_validate_task.soft_time_limit


def test_a_validation_past_its_soft_limit_fails_with_a_reason(session_client, adapter_store: Path, monkeypatch):
    client, _ = session_client()
    uid = _post(client, adapter_files()).json()["uid"]

    def too_slow(*args, **kwargs):  # what Celery's pool raises inside the task when the soft limit passes
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr(services, "validate", too_slow)
    assert tasks.adapter_validate_task(Adapter.dangerously_unscoped.get(uid=uid).pk) == "failed"
    shown = client.get(f"/api/v1/adapters/{uid}").json()
    assert shown["status"] == "failed" and f"longer than {conf.validation_time_limit_s()} s" in shown["failure_reason"]
    assert not (adapter_store / uid).exists()


def test_tarfile_really_parses_our_header():
    # The hand-built header is one tarfile accepts: a small claim reads back as a long name.
    data = _tar_header(b"././@LongLink", b"L", 12) + b"a-long-name\0".ljust(512, b"\0")
    info = tarfile.TarInfo("x")
    info.size = 0
    data += info.tobuf() + b"\0" * 1024
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        assert t.getnames() == ["a-long-name"]
