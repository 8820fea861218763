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
        session = boto3.Session(region_name=os.environ.get("AWS_REGION") or None)
    except BotoCoreError as error:
        raise UsageError(f"AWS configuration: {error}", "check AWS_PROFILE and ~/.aws/config") from None
    _quick_metadata_probe(session)
    return session


#: Where no machine says it is EC2, one attempt this long (seconds) at the instance
#: metadata service: it answers in milliseconds where it exists; botocore's default (1 s,
#: then again for IMDSv1) cost every run ~3 s off EC2 without credentials.
METADATA_TIMEOUT = 0.3
_DMI = "/sys/devices/virtual/dmi/id/"


def on_ec2() -> bool | None:
    """Whether this machine is an EC2 instance, as its firmware says: True (``Amazon EC2``,
    or a Xen guest whose hypervisor UUID starts with ``ec2``), False (another vendor), or
    None when nothing can be read (a container without /sys, a locked-down host)."""
    vendor = _read(_DMI + "sys_vendor") or _read(_DMI + "board_vendor")
    if vendor is None:
        return None
    if "amazon" in vendor.lower():
        return True
    if "xen" in vendor.lower():
        uuid = _read("/sys/hypervisor/uuid") or _read(_DMI + "product_uuid")
        return None if uuid is None else uuid.lower().startswith("ec2")
    return False


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as handle:
            return handle.read().strip() or None
    except OSError:
        return None


def _quick_metadata_probe(session: "boto3.Session") -> None:
    """Off EC2, no metadata probe at all; where it cannot be told, one short attempt; on
    EC2, botocore's own settings.  Settings the user made (AWS_METADATA_SERVICE_TIMEOUT,
    AWS_METADATA_SERVICE_NUM_ATTEMPTS, AWS_EC2_METADATA_DISABLED, the config file) win."""
    core = session._session  # the botocore session boto3 wraps (boto3 has no public accessor)
    if os.environ.get("AWS_EC2_METADATA_DISABLED") or os.environ.get("AWS_METADATA_SERVICE_TIMEOUT"):
        return
    try:
        configured = core.get_scoped_config()
    except Exception:  # a broken profile is reported when credentials are read
        configured = {}
    if "metadata_service_timeout" in configured or "metadata_service_num_attempts" in configured:
        return
    ec2 = on_ec2()
    if ec2 is True:
        return
    if ec2 is False:
        resolver = core.get_component("credential_provider")
        if any(provider.METHOD == "iam-role" for provider in resolver.providers):
            resolver.remove("iam-role")
        return
    from botocore.credentials import InstanceMetadataProvider
    from botocore.utils import InstanceMetadataFetcher

    resolver = core.get_component("credential_provider")
    for index, provider in enumerate(resolver.providers):
        if provider.METHOD == InstanceMetadataProvider.METHOD:
            settings = ("ec2_metadata_service_endpoint", "ec2_metadata_service_endpoint_mode", "ec2_metadata_v1_disabled")
            fetcher = InstanceMetadataFetcher(
                timeout=METADATA_TIMEOUT, num_attempts=1, user_agent=core.user_agent(),
                config={name: core.get_config_variable(name) for name in settings},
            )
            resolver.providers[index] = InstanceMetadataProvider(iam_role_fetcher=fetcher)


def has_credentials(session: "boto3.Session") -> bool:
    """Whether standard AWS configuration yields credentials (never raises: a broken
    profile means "none", not a crash)."""
    from botocore.exceptions import BotoCoreError

    try:
        return session.get_credentials() is not None
    except (BotoCoreError, OSError, ValueError):
        return False
