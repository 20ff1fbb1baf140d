"""Typed errors that services raise for bad input from outside; the API maps them to DRF's 400 shape."""

from __future__ import annotations


class ApplicationError(Exception):
    """A request that can't be carried out as asked; `message` is meant for a person, `field` names the input."""

    def __init__(self, message: str, *, field: str | None = None, code: str = "invalid") -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.code = code


class ConflictError(ApplicationError):
    """The request clashes with what exists (an e-mail already registered, a member already added)."""


class ForbiddenError(ApplicationError):
    """The caller's role doesn't allow this (an API 403)."""
