"""The service's error shape: ``{"error": {"code", "message", "innererror"?}}`` with a 4xx/5xx status."""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    def __init__(self, status: int, code: str, message: str, inner: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.inner = inner

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.inner:
            error["innererror"] = {"code": self.inner}
        return {"error": error}


def bad_parameter(message: str) -> ServiceError:
    return ServiceError(400, "BadParameter", message)


def not_found(name: str) -> ServiceError:
    return ServiceError(404, "CertificateNotFound", f"Certificate not found: {name}")


def deleted_not_found(name: str) -> ServiceError:
    return ServiceError(404, "CertificateNotFound", f"Deleted Certificate not found: {name}")


def pending_not_found(name: str) -> ServiceError:
    return ServiceError(404, "PendingCertificateNotFound", f"Pending certificate not found: {name}")


PENDING_IN_PROGRESS = (
    "A new key vault certificate can not be created or imported while a pending key vault "
    "certificate's status is inProgress."
)

KEY_MISMATCH = (
    "The public key of the end-entity certificate in the specified X.509 certificate content does not match "
    "the public part of the specified private key. Please check if certificate is valid"
)

THROTTLED = "Request was not processed because too many requests were received. Reason: VaultRequestTypeLimitReached"
