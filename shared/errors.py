"""Domain errors: every service's pure core raises these; the web layer maps them to problem+json."""

from __future__ import annotations


class DomainError(Exception):
    status = 400
    title = "Bad request"


class NotFound(DomainError):
    status = 404
    title = "Not found"


class Conflict(DomainError):
    status = 409
    title = "Conflict"


class Forbidden(DomainError):
    status = 403
    title = "Forbidden"
