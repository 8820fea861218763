"""Service-account tokens as the kubelet projects them: RS256 JWTs with the claims Kubernetes
writes (``iss``, ``sub``, ``aud``, ``exp``, ``iat``, ``nbf`` and ``kubernetes.io``), signed
with a key of the test's own.  Nothing in trailscan verifies them (the doctor decodes, STS
verifies), so the key only makes them real tokens, not trusted ones."""

from __future__ import annotations

import base64
import json
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

ISSUER = "https://oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@lru_cache(maxsize=1)
def _key():
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def mint(
    namespace: str = "payments",
    service_account: str = "api",
    *,
    audience: str | list[str] = "sts.amazonaws.com",
    issuer: str = ISSUER,
    lifetime: int = 86400,
    issued_ago: int = 60,
    pod: str = "api-7d9f8b6c5-x2x9q",
    node: str = "ip-10-0-1-23.eu-west-1.compute.internal",
    subject: str | None = None,
) -> str:
    """A signed token for ``system:serviceaccount:NAMESPACE:SERVICE_ACCOUNT`` (or *subject*),
    issued *issued_ago* seconds ago and valid *lifetime* seconds from then."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    now = int(time.time())
    iat = now - issued_ago
    claims: dict[str, Any] = {
        "aud": [audience] if isinstance(audience, str) else audience,
        "exp": iat + lifetime,
        "iat": iat,
        "nbf": iat,
        "iss": issuer,
        "sub": subject or f"system:serviceaccount:{namespace}:{service_account}",
        "kubernetes.io": {
            "namespace": namespace,
            "node": {"name": node, "uid": "5c8a1c3e-0000-4000-8000-000000000001"},
            "pod": {"name": pod, "uid": "5c8a1c3e-0000-4000-8000-000000000002"},
            "serviceaccount": {"name": service_account, "uid": "5c8a1c3e-0000-4000-8000-000000000003"},
        },
    }
    header = {"alg": "RS256", "kid": "test-key"}
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    signature = _key().sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{_b64(signature)}"


def write_token(path: Path, token: str, mode: int = 0o644) -> Path:
    """Write *token* where the kubelet would (parents created), with *mode*."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(token, encoding="utf-8")
    path.chmod(mode)
    return path
