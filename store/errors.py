"""Domain errors that carry their HTTP status; one API handler renders them as {"detail": ...}."""

from __future__ import annotations


class DomainError(Exception):
    status_code = 400

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class BadRequest(DomainError):
    status_code = 400


class Forbidden(DomainError):
    status_code = 403


class NotFound(DomainError):
    status_code = 404


class Conflict(DomainError):
    status_code = 409


class TooLarge(DomainError):
    status_code = 413


class UnsupportedImage(DomainError):
    status_code = 415


class Invalid(DomainError):
    status_code = 422
