"""Adapter uploads stop at the size limit while they stream in: the first upload handler counts file bytes and ends the
parse at the limit, so nothing past it is read or written to disk (Django's default handlers would spool the whole
body to a temporary file before any view code runs). The answer is 413 in DRF's shape: `{"files": ["..."]}`."""

from __future__ import annotations

from django.core.files.uploadhandler import FileUploadHandler, StopUpload
from django.http import HttpRequest
from rest_framework import status
from rest_framework.exceptions import APIException

from adapters import conf

# Multipart framing and the form's text fields on top of the files themselves: a Content-Length beyond limit + this
# can't be a valid upload and is refused before a byte of the body is read.
MULTIPART_SLACK_BYTES = 64 << 10


class UploadTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "too_large"

    def __init__(self, max_bytes: int) -> None:
        limit = f"{max_bytes >> 20} MiB" if max_bytes >= 1 << 20 else f"{max_bytes} bytes"
        super().__init__({"files": [f"The upload is larger than {limit}."]}, code=self.default_code)


class UploadSizeLimit(FileUploadHandler):
    """Goes first in the request's upload handlers; the handlers after it (memory, temporary file) only ever see the
    bytes under the limit."""

    def __init__(self, request: HttpRequest | None = None, *, max_bytes: int) -> None:
        super().__init__(request)
        self.max_bytes = max_bytes
        self.num_bytes = 0
        self.exceeded = False

    def handle_raw_input(self, input_data: object, META: dict, content_length: int, boundary: bytes,  # noqa: N803
                         encoding: str | None = None) -> None:
        if content_length > self.max_bytes + MULTIPART_SLACK_BYTES:
            raise UploadTooLarge(self.max_bytes)

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes | None:
        self.num_bytes += len(raw_data)
        if self.num_bytes > self.max_bytes:
            self.exceeded = True
            # Django closes (deletes) the partial files and, with connection_reset, reads no more of the body.
            raise StopUpload(connection_reset=True)
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None  # the next handler builds the file object

    def upload_complete(self) -> None:
        if self.exceeded:
            raise UploadTooLarge(self.max_bytes)


def limit_upload(request: HttpRequest) -> None:
    """Install the limit on a request whose body hasn't been read yet (before authentication: a session's CSRF check
    reads the form)."""
    request.upload_handlers.insert(0, UploadSizeLimit(request, max_bytes=conf.max_upload_bytes()))
