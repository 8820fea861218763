"""The one way trailscan makes a ``boto3.Session`` from standard AWS configuration."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from trailscan.errors import UsageError

if TYPE_CHECKING:  # pragma: no cover
    import boto3


def default_session() -> "boto3.Session":
    """A session from standard AWS configuration (``AWS_PROFILE``, ``AWS_ENDPOINT_URL`` …).

    boto3 reads the region from ``AWS_DEFAULT_REGION`` and the profile, not from
    ``AWS_REGION`` — the variable the other AWS SDKs and EKS (with IRSA, in every pod)
    set — so ``AWS_REGION`` is honoured here, ahead of the others as those SDKs do.
    A broken configuration (an unknown ``AWS_PROFILE``, say) is a :class:`UsageError`.
    """
    import boto3
    from botocore.exceptions import BotoCoreError

    try:
        return boto3.Session(region_name=os.environ.get("AWS_REGION") or None)
    except BotoCoreError as error:
        raise UsageError(f"AWS configuration: {error}", "check AWS_PROFILE and ~/.aws/config") from None


def has_credentials(session: "boto3.Session") -> bool:
    """Whether standard AWS configuration yields credentials (never raises: a broken
    profile means "none", not a crash)."""
    from botocore.exceptions import BotoCoreError

    try:
        return session.get_credentials() is not None
    except (BotoCoreError, OSError, ValueError):
        return False
