"""Kubernetes service-account inventory (SPEC §5).

A refused ``AssumeRoleWithWebIdentity`` names the pod's identity only as
``system:serviceaccount:NS:NAME``; whether that service account exists, which role
its ``eks.amazonaws.com/role-arn`` annotation asks for and which audience its token
carries are in the cluster.  They come from one of two places:

* a file the user saved: ``kubectl get serviceaccounts -A -o json`` (or ``-o yaml``),
  a single ServiceAccount, or a multi-document YAML stream of manifests;
* the user's own ``kubectl``, run live against a kubeconfig context.

Either way the result is a list of :class:`ServiceAccount`.  Anything unreadable
raises :class:`~trailscan.errors.InputError` with a one-line message naming the
file (or kubectl context) and what is wrong.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from trailscan.documents import parse_json, parse_yaml
from trailscan.errors import InputError

ROLE_ARN_ANNOTATION = "eks.amazonaws.com/role-arn"
AUDIENCE_ANNOTATION = "eks.amazonaws.com/audience"
DEFAULT_AUDIENCE = "sts.amazonaws.com"

#: A manifest without ``metadata.namespace`` lands in ``default`` when applied
#: without ``-n``, so that is where we place it too.
DEFAULT_NAMESPACE = "default"

_KUBECTL_HINT = "check that `kubectl get serviceaccounts -A` works, or pass --service-accounts FILE"

# ``aws eks update-kubeconfig`` names contexts after the cluster ARN.
_EKS_CLUSTER_ARN = re.compile(r"^arn:aws[a-z-]*:eks:[a-z0-9-]+:\d{12}:cluster/(?P<name>[^/]+)$")

# klog's prefix, e.g. ``E1128 22:42:12.966990    3814 memcache.go:265] ...``.
_KLOG_LINE = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+\s+\d+ \S+:\d+\] ")


@dataclass(frozen=True)
class ServiceAccount:
    """One Kubernetes service account and what IRSA reads from it.

    ``role_arn`` is the ``eks.amazonaws.com/role-arn`` annotation (None when the
    account has none: pods using it get no web-identity credentials), and
    ``audience`` the ``eks.amazonaws.com/audience`` annotation, the ``aud`` of the
    projected token (``sts.amazonaws.com`` unless overridden).
    """

    cluster: str
    namespace: str
    name: str
    role_arn: str | None = None
    audience: str = DEFAULT_AUDIENCE
    annotations: Mapping[str, str] = field(default_factory=dict, hash=False)

    @property
    def subject(self) -> str:
        """The token's ``sub`` claim, and CloudTrail's ``userName`` for this account."""
        return f"system:serviceaccount:{self.namespace}:{self.name}"


def load_service_accounts(path: str | os.PathLike[str], cluster: str = "") -> list[ServiceAccount]:
    """Read service accounts from a file saved from kubectl, or from manifests.

    Accepted shapes, in JSON or YAML: a ``List``/``ServiceAccountList`` with ``items``
    (``kubectl get serviceaccounts -A -o json|yaml``, or the raw API response), a
    JSON array of ServiceAccounts, a single ServiceAccount, and a multi-document
    YAML stream.  Objects of other kinds in a stream (the Deployment kept next to
    its ServiceAccount) are skipped; a file holding none but other kinds is an error.
    ``cluster`` labels every account, since the file does not say where it came from.
    """
    name = os.fspath(path)
    try:
        data = Path(name).read_bytes()
    except OSError as exc:
        raise InputError(f"{name}: cannot read service accounts: {exc.strerror or exc}") from exc
    return parse_service_accounts(_decode(data, name), name, cluster)


def fetch_service_accounts(
    context: str | None = None,
    *,
    kubectl: str = "kubectl",
    cluster: str = "",
    timeout: float = 30,
) -> list[ServiceAccount]:
    """List every service account of a cluster through the user's own ``kubectl``.

    Runs ``kubectl [--context CONTEXT] get serviceaccounts -A -o json`` so that the
    user's kubeconfig, credentials and exec plugins (``aws eks get-token``) apply
    unchanged.  ``cluster`` defaults to the context's name (the current context when
    ``context`` is None); a context named after an EKS cluster ARN, as
    ``aws eks update-kubeconfig`` writes it, gives the cluster's name.

    kubectl missing, failing or exceeding ``timeout`` seconds raises
    :class:`InputError` naming the context and kubectl's own error line.
    """
    source = f"kubectl context {context}" if context else "kubectl current context"
    program = shutil.which(kubectl)
    if program is None:
        raise InputError(
            f"{source}: cannot list service accounts: {kubectl} not found on PATH",
            hint="install kubectl, or pass --service-accounts FILE",
        )
    if context is None:
        context = _run_kubectl(program, ["config", "current-context"], source, timeout).strip()
        if not context:
            raise InputError(f"{source}: kubectl has no current context", hint="pass --kube-context NAME")
        source = f"kubectl context {context}"
    output = _run_kubectl(
        program,
        ["--context", context, "get", "serviceaccounts", "--all-namespaces", "-o", "json"],
        source,
        timeout,
    )
    return parse_service_accounts(output, source, cluster or cluster_name_of_context(context))


def cluster_name_of_context(context: str) -> str:
    """The cluster name a kubeconfig context stands for.

    ``arn:aws:eks:eu-west-1:111122223333:cluster/prod`` gives ``prod``; any other
    context name is taken as the cluster name itself.
    """
    match = _EKS_CLUSTER_ARN.match(context)
    return match.group("name") if match else context


def parse_service_accounts(text: str, source: str, cluster: str = "") -> list[ServiceAccount]:
    """Parse JSON or YAML text holding service accounts; ``source`` names it in errors."""
    documents = _parse_documents(text, source)
    accounts: list[ServiceAccount] = []
    other_kinds: list[str] = []
    seen_object = False
    for where, obj in _objects(documents, source):
        seen_object = True
        kind = obj.get("kind")
        if kind not in (None, "ServiceAccount"):
            if str(kind) not in other_kinds:
                other_kinds.append(str(kind))
            continue
        accounts.append(_service_account(obj, where, source, cluster))
    if not accounts and other_kinds:
        raise InputError(
            f"{source}: not a service-account list: it holds {', '.join(other_kinds)}, no ServiceAccount",
            hint="save `kubectl get serviceaccounts -A -o json`",
        )
    if not seen_object and not _has_empty_list(documents):
        raise InputError(f"{source}: no service accounts: the document is empty")
    return accounts


# -- reading -----------------------------------------------------------------------


def _decode(data: bytes, source: str) -> str:
    # PowerShell's `>` writes UTF-16 with a byte-order mark: a common way to save
    # kubectl output on Windows.
    encoding = "utf-16" if data.startswith((b"\xff\xfe", b"\xfe\xff")) else "utf-8-sig"
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{source}: not JSON or YAML: not {encoding.upper().removesuffix('-SIG')} text (byte {exc.start})"
        ) from exc


#: What a service-account file is called in messages about its shape.
_WHAT = "the service-account list"


def _parse_documents(text: str, source: str) -> list[Any]:
    """The documents of a JSON or YAML text, empty YAML documents left out.

    Nesting and YAML alias expansion are bounded (:mod:`trailscan.documents`): an
    alias bomb or a list nested thousands deep is one :class:`InputError`, at once.
    """
    stripped = text.lstrip()
    if not stripped:
        raise InputError(f"{source}: no service accounts: the file is empty")
    if stripped[0] in "{[":
        try:
            return [parse_json(text, source, _WHAT)]
        except json.JSONDecodeError as exc:
            # JSON-looking YAML (flow style, comments) still parses below;
            # otherwise JSON's own message points at the real mistake.
            try:
                return parse_yaml(text, source, _WHAT)
            except yaml.YAMLError:
                raise InputError(
                    f"{source}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
                ) from None
    try:
        return parse_yaml(text, source, _WHAT)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        at = f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        raise InputError(f"{source}: not JSON or YAML: {problem}{at}") from None


def _objects(documents: list[Any], source: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Every Kubernetes object of the documents, with where it sits (for messages)."""
    several = len(documents) > 1
    for number, doc in enumerate(documents, start=1):
        prefix = f"document {number}, " if several else ""
        if isinstance(doc, list):
            items: Any = doc
        elif isinstance(doc, Mapping) and "items" in doc and doc.get("kind") != "ServiceAccount":
            items = doc["items"]
            if items is None:  # `items: null` is how an empty list sometimes serialises
                continue
            if not isinstance(items, list):
                raise InputError(
                    f"{source}: not a service-account list: {prefix}items is {_kind_of(items)}, not a list"
                )
        elif isinstance(doc, Mapping):
            where = f"document {number}" if several else "the document"
            if "kind" not in doc and "metadata" not in doc:
                raise InputError(f"{source}: not a service-account list: {where} has neither kind nor items")
            yield where, doc
            continue
        else:
            raise InputError(f"{source}: not a service-account list: {prefix}the document is {_kind_of(doc)}")
        for index, item in enumerate(items):
            where = f"{prefix}items[{index}]"
            if not isinstance(item, Mapping):
                raise InputError(f"{source}: {where} is {_kind_of(item)}, not an object")
            yield where, item


def _has_empty_list(documents: list[Any]) -> bool:
    return any(doc == [] or (isinstance(doc, Mapping) and not doc.get("items")) for doc in documents)


def _service_account(obj: Mapping[str, Any], where: str, source: str, cluster: str) -> ServiceAccount:
    metadata = obj.get("metadata")
    if not isinstance(metadata, Mapping):
        raise InputError(f"{source}: {where} has no metadata")
    name = metadata.get("name")
    if not isinstance(name, str) or not name:
        raise InputError(f"{source}: {where} has no metadata.name")
    namespace = metadata.get("namespace") or DEFAULT_NAMESPACE
    if not isinstance(namespace, str):
        raise InputError(f"{source}: {where} ({name}) has a metadata.namespace that is not a string")
    raw = metadata.get("annotations") or {}
    if not isinstance(raw, Mapping):
        raise InputError(
            f"{source}: {where} ({namespace}/{name}) has metadata.annotations that is not a mapping"
        )
    annotations: dict[str, str] = {}
    for key, value in raw.items():
        if not isinstance(value, str):
            # The API server rejects these too: annotation values are strings.
            raise InputError(
                f"{source}: {where} ({namespace}/{name}) annotation {key} is {_kind_of(value)}, not a string"
            )
        annotations[str(key)] = value
    role_arn = annotations.get(ROLE_ARN_ANNOTATION, "").strip() or None
    audience = annotations.get(AUDIENCE_ANNOTATION, "").strip() or DEFAULT_AUDIENCE
    return ServiceAccount(
        cluster=cluster,
        namespace=namespace,
        name=name,
        role_arn=role_arn,
        audience=audience,
        annotations=annotations,
    )


def _kind_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


# -- running kubectl ---------------------------------------------------------------


def _run_kubectl(program: str, args: list[str], source: str, timeout: float) -> str:
    """Run kubectl and return its stdout; any failure is an InputError naming ``source``."""
    # Its own process group, so that a timeout also ends whatever a wrapper
    # (asdf shim, gcloud's version dispatcher, exec credential plugin) started.
    try:
        child = subprocess.Popen(
            [program, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
            process_group=0 if os.name == "posix" else None,
        )
    except OSError as exc:
        raise InputError(f"{source}: cannot run kubectl ({program}): {exc.strerror or exc}") from exc
    with child:
        try:
            stdout, stderr = child.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill(child)
            raise InputError(
                f"{source}: kubectl {' '.join(args)} timed out after {timeout:g} s",
                hint=_KUBECTL_HINT,
            ) from None
        except BaseException:  # Ctrl-C: do not leave kubectl behind
            _kill(child)
            raise
    if child.returncode != 0:
        # kubectl may print a partial (even empty) list before failing: never trust
        # stdout of a failed run, or a refused `list` would read as "no accounts".
        raise InputError(
            f"{source}: kubectl failed: {_error_line(stderr, child.returncode)}",
            hint=_KUBECTL_HINT,
        )
    return stdout


def _kill(child: subprocess.Popen[str]) -> None:
    try:
        if os.name == "posix":
            os.killpg(child.pid, signal.SIGKILL)
        else:
            child.kill()
    except (ProcessLookupError, PermissionError):
        pass  # already gone
    child.communicate()


def _error_line(stderr: str, returncode: int) -> str:
    """kubectl's own one-line error.

    Newer kubectl logs klog lines (``E1128 12:00:00.000000 1 memcache.go:265] ...``)
    before the sentence meant for people ("The connection to the server ... was
    refused"), so the first line that is not klog's is the one to show.
    """
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in lines:
        if not _KLOG_LINE.match(line):
            return line
    if lines:
        return _KLOG_LINE.sub("", lines[0])
    return f"exit status {returncode}, no message"


# -- which cluster a list of service accounts describes -----------------------------


@dataclass(frozen=True)
class ServiceAccountSet:
    """The service accounts of one source (a file, or a kubectl context), and which cluster
    they describe as far as the source itself says.

    A service-account list speaks only for its own cluster: ``tag`` is the cluster the user
    named for a file (``--service-accounts CLUSTER=FILE``: a cluster name or an OIDC
    issuer), ``issuer`` the OIDC issuer the API server announced (``--kube-context``).
    An untagged file says neither; the explainer then attributes it to a cluster only
    when CloudTrail agrees (see :class:`trailscan.explain.workload.Evidence`).
    """

    source: str
    accounts: tuple[ServiceAccount, ...]
    tag: str = ""
    issuer: str | None = None


def split_service_accounts_option(value: str) -> tuple[str, str]:
    """``CLUSTER=FILE`` → ``(CLUSTER, FILE)``; a plain ``FILE`` (or an existing file whose
    name holds ``=``) → ``("", FILE)``."""
    tag, sep, path = value.partition("=")
    if not sep or os.path.exists(value) or not tag.strip() or not path:
        return "", value
    return tag.strip(), path


def load_service_account_set(value: str) -> ServiceAccountSet:
    """Read a ``--service-accounts [CLUSTER=]FILE`` value."""
    tag, path = split_service_accounts_option(value)
    return ServiceAccountSet(path, tuple(load_service_accounts(path, cluster=tag)), tag=tag)


def fetch_service_account_set(context: str | None = None, *, kubectl: str = "kubectl", timeout: float = 30) -> ServiceAccountSet:
    """The service accounts of a kubectl context, with the cluster's OIDC issuer as its API
    server announces it (``/.well-known/openid-configuration``; None when it does not)."""
    accounts = fetch_service_accounts(context, kubectl=kubectl, timeout=timeout)
    source = f"kubectl context {context}" if context else "kubectl current context"
    return ServiceAccountSet(source, tuple(accounts), issuer=fetch_issuer(context, kubectl=kubectl, timeout=timeout))


def fetch_issuer(context: str | None = None, *, kubectl: str = "kubectl", timeout: float = 30) -> str | None:
    """The service-account token issuer a cluster's API server announces, or None.

    ``kubectl get --raw /.well-known/openid-configuration`` answers with the ``issuer``
    that signs projected tokens — for EKS, ``https://oidc.eks.REGION.amazonaws.com/id/ID``,
    the issuer IAM's OIDC provider and trust policies name.  A server that refuses or
    lacks the document leaves the issuer unknown (None): never an error.
    """
    program = shutil.which(kubectl)
    if program is None:
        return None
    args = ["get", "--raw", "/.well-known/openid-configuration"]
    if context:
        args = ["--context", context, *args]
    try:
        text = _run_kubectl(program, args, f"kubectl context {context or '(current)'}", timeout)
        issuer = json.loads(text).get("issuer")
    except (InputError, ValueError, AttributeError):
        return None
    return issuer if isinstance(issuer, str) and issuer.strip() else None
