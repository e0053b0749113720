"""Pluggable CA clients behind one small interface; knows nothing of Key Vault or Functions."""

from .base import (
    CAClient,
    CAError,
    CertificateIdentity,
    ClientContext,
    IssuancePending,
    IssuedChain,
    PermanentCAError,
    RenewalInfo,
    RenewalInfoProvider,
    SecretResolver,
    SignRequest,
    TransientCAError,
)

__all__ = [
    "CAClient",
    "CAError",
    "CertificateIdentity",
    "ClientContext",
    "IssuancePending",
    "IssuedChain",
    "PermanentCAError",
    "RenewalInfo",
    "RenewalInfoProvider",
    "SecretResolver",
    "SignRequest",
    "TransientCAError",
]
