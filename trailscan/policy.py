"""IAM policy shapes, owned in one place.

Every other stage asks this module what a policy *says*: which statements
apply to an action, whether a trust policy admits a pod's web identity, what a
refusal message from AWS means.  Everything here is a pure function over plain
data: no boto3, no I/O, no printing.

Shapes understood (each has a test in ``tests/test_policy.py``):

* a policy document as a ``dict``, a JSON string, or URL-encoded JSON
  (``%7B%22Version%22…``, as in ``get-account-authorization-details``);
* ``Statement`` as one object or a list of objects;
* ``Action``/``NotAction``, ``Resource``/``NotResource`` as a string or a list;
* ``Principal``/``NotPrincipal`` in every form IAM accepts (see
  :func:`principals`);
* ``Condition`` blocks with every operator family, the ``ForAnyValue:`` /
  ``ForAllValues:`` qualifiers and the ``…IfExists`` suffix (see
  :func:`check_condition`).

The evaluation follows the IAM documentation: an explicit ``Deny`` beats any
``Allow``; without an applicable ``Allow`` the request is implicitly denied.
:func:`evaluate` judges one set of policies with every context key known;
:func:`authorize` judges a request against every layer AWS reads — SCPs and
RCPs by level, VPC endpoint, resource, identity, boundary and session policies
— same-account, cross-account and KMS rules included, and three-valued: a key
the request does not show is unknown, and the decision may be
``undetermined``, naming the keys that would settle it.

Every wildcard is matched by :class:`Glob`, which never backtracks.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any, Union, cast
from urllib.parse import unquote

from trailscan.documents import check_depth, parse_json
from trailscan.errors import InputError

__all__ = [
    "ALLOW",
    "EXPLICIT_DENY",
    "IMPLICIT_DENY",
    "LAYERS",
    "PRINCIPAL_MATCHES",
    "PRINCIPAL_TYPES",
    "UNDETERMINED",
    "UNKNOWN_RESOURCE",
    "AuthDecision",
    "AuthRequest",
    "ConditionFailure",
    "ConditionResult",
    "ContextValue",
    "Decision",
    "Denial",
    "Glob",
    "LayerResult",
    "NamedPolicy",
    "PolicyLike",
    "PolicySet",
    "RequestPrincipal",
    "StatementRef",
    "TrustVerdict",
    "action_matches",
    "analyze_pod_identity_trust",
    "analyze_web_identity_trust",
    "authorize",
    "check_condition",
    "condition_matches",
    "evaluate",
    "glob_matches",
    "iam_action_for",
    "irsa_trust_policy",
    "load_policy",
    "merge_irsa_statement",
    "oidc_issuer_of",
    "parse_denial_message",
    "pod_identity_trust_policy",
    "principal_matches",
    "principals",
    "resource_matches",
    "statement_matches_action",
    "statement_matches_resource",
    "statements",
]

#: A value in a request context: one string, several (a multivalued key such as
#: ``aws:TagKeys``), a boolean, or ``None`` for "the key is not in the request".
ContextValue = Union[str, list[str], bool, int, float, None]

POLICY_VERSION = "2012-10-17"
WEB_IDENTITY_ACTION = "sts:AssumeRoleWithWebIdentity"
DEFAULT_AUDIENCE = "sts.amazonaws.com"
POD_IDENTITY_SERVICE = "pods.eks.amazonaws.com"
POD_IDENTITY_ACTIONS = ("sts:AssumeRole", "sts:TagSession")
SERVICE_ACCOUNT_SUBJECT_PREFIX = "system:serviceaccount:"

# --------------------------------------------------------------------------
# Loading documents
# --------------------------------------------------------------------------


def load_policy(doc: Any, *, name: str = "policy document") -> dict[str, Any]:
    """Return a policy document as a fresh ``dict``, whatever form it came in.

    Accepted forms:

    * a ``dict`` (as boto3 returns ``AssumeRolePolicyDocument``) — deep-copied,
      so callers may change the result freely;
    * a JSON string or ``bytes``;
    * a URL-encoded JSON string (starting ``%7B``), as IAM returns documents in
      ``get-account-authorization-details`` and some other APIs.

    The element shapes inside (``Statement`` as object or list, string or list
    values) are kept as written; use :func:`statements` to iterate.

    Raises :class:`~trailscan.errors.InputError`, naming *name*, for anything
    that is not a JSON object with a ``Statement`` of objects, or that is nested
    more than :data:`~trailscan.documents.MAX_DEPTH` levels deep (a real policy
    is about six).
    """
    hint = "expected an IAM policy document: a JSON object with a Statement"
    if isinstance(doc, Mapping):
        check_depth(doc, name, "the policy document")  # before deepcopy recurses into it
        policy: Any = copy.deepcopy(dict(doc))
    else:
        if isinstance(doc, (bytes, bytearray)):
            try:
                doc = bytes(doc).decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InputError(f"{name} is not UTF-8 text ({exc.reason})", hint) from None
        if not isinstance(doc, str):
            raise InputError(f"{name} is a {type(doc).__name__}, not a policy document", hint)
        text = doc.strip()
        if not text:
            raise InputError(f"{name} is empty", hint)
        if text[:3].upper() == "%7B":
            text = unquote(text)
        try:
            policy = parse_json(text, name, "the policy document")
        except json.JSONDecodeError as exc:
            raise InputError(
                f"{name} is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})",
                hint,
            ) from None
        if not isinstance(policy, dict):
            raise InputError(f"{name} is a JSON {type(policy).__name__}, not an object", hint)
    if "Statement" not in policy:
        raise InputError(f"{name} has no Statement", hint)
    for index, statement in enumerate(_statement_list(policy["Statement"], name)):
        effect = statement.get("Effect")
        if not isinstance(effect, str) or effect.strip().lower() not in ("allow", "deny"):
            raise InputError(
                f"{name} statement #{index} has Effect {effect!r}; expected \"Allow\" or \"Deny\"",
                hint,
            )
    return policy


def statements(doc: Any, *, name: str = "policy document") -> list[dict[str, Any]]:
    """The statements of a policy (any form :func:`load_policy` accepts), as a list."""
    return _statement_list(load_policy(doc, name=name)["Statement"], name)


def _statement_list(value: Any, name: str) -> list[dict[str, Any]]:
    items = [value] if isinstance(value, Mapping) else value
    if not isinstance(items, list):
        raise InputError(
            f"{name} has a Statement of type {type(value).__name__}; expected an object or a list"
        )
    for index, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise InputError(
                f"{name} statement #{index} is a {type(item).__name__}, not an object"
            )
    return [dict(item) for item in items]


def _strings(value: Any) -> list[str]:
    """A string-or-list element as a list of strings (``None`` → empty)."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [_scalar_text(item) for item in value]
    return [_scalar_text(value)]


def _scalar_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else str(value)


# --------------------------------------------------------------------------
# Wildcards, actions, resources
# --------------------------------------------------------------------------

#: One piece of a pattern: (text, wildcards active).  Text from a policy is
#: active; text substituted for a policy variable, or written as ``${*}``,
#: ``${?}`` or ``${$}``, is literal.
Token = tuple[str, bool]


def _fold(text: str) -> str:
    """Lower-case *text* one character for one character (``str.lower`` may lengthen a few)."""
    if text.isascii():
        return text.lower()
    return "".join(low if len(low := ch.lower()) == 1 else ch for ch in text)


class _Piece:
    """A run of pattern characters between two ``*``: literal text and ``?`` positions."""

    __slots__ = ("anchor", "length", "runs", "text")

    def __init__(self, chars: list[str | None]) -> None:
        self.length = len(chars)
        # Maximal literal runs as (offset, text); ``None`` in *chars* is a ``?``.
        runs: list[tuple[int, str]] = []
        start = 0
        while start < len(chars):
            if chars[start] is None:
                start += 1
                continue
            end = start
            while end < len(chars) and chars[end] is not None:
                end += 1
            runs.append((start, "".join(c for c in chars[start:end] if c is not None)))
            start = end
        self.runs = tuple(runs)
        # A piece without ``?`` is found with one ``str.find``.
        self.text = runs[0][1] if len(runs) == 1 and len(runs[0][1]) == self.length else None
        self.anchor = max(runs, key=lambda run: len(run[1])) if runs else None

    def at(self, text: str, start: int) -> bool:
        """Does the piece match *text* at *start* (whose room was checked by the caller)?"""
        return all(text.startswith(run, start + offset) for offset, run in self.runs)

    def find(self, text: str, start: int, end: int) -> int:
        """The leftmost place ≥ *start* where the piece matches within ``text[:end]``, or -1."""
        last = end - self.length
        if last < start:
            return -1
        if self.text is not None:
            return text.find(self.text, start, end)
        if self.anchor is None:  # only ``?``: any place with room will do
            return start
        offset, run = self.anchor
        while start <= last:
            found = text.find(run, start + offset, last + offset + len(run))
            if found < 0:
                return -1
            start = found - offset
            if self.at(text, start):
                return start
            start += 1
        return -1


class Glob:
    """An IAM wildcard pattern, compiled: ``*`` matches any run (the empty one too),
    ``?`` exactly one character; everything else, ``/`` and ``:`` included, itself.

    Matching never backtracks.  The pattern is split at its ``*`` into pieces; the
    first piece must match at the start of the text, the last at its end, and each
    piece between is placed at its leftmost match after the previous one.  Leftmost
    is always safe — the ``*`` after a piece can absorb anything a later placement
    would have skipped — so no choice is ever revisited: at most
    O(len(text) × len(pattern)) character comparisons, in practice one ``str.find``
    per piece.  (The regular expression this replaces took 28 seconds for
    ``logs-*/*/*/*.json`` against a 1,000-character S3 key, and minutes for a
    21-wildcard ``StringLike``.)
    """

    __slots__ = ("ignore_case", "min_length", "pieces")

    def __init__(self, tokens: Iterable[Token], ignore_case: bool = False) -> None:
        self.ignore_case = ignore_case
        pieces: list[list[str | None]] = [[]]
        for text, wild in tokens:
            if ignore_case:
                text = _fold(text)
            for ch in text:
                if wild and ch == "*":
                    pieces.append([])
                elif wild and ch == "?":
                    pieces[-1].append(None)
                else:
                    pieces[-1].append(ch)
        self.pieces = tuple(_Piece(chars) for chars in pieces)
        self.min_length = sum(piece.length for piece in self.pieces)

    @property
    def is_star(self) -> bool:
        """Does the pattern match every text (``*``, ``**``…)?"""
        return self.min_length == 0 and len(self.pieces) > 1

    def match(self, text: str) -> bool:
        """Does the whole of *text* match the pattern?"""
        if self.ignore_case:
            text = _fold(text)
        pieces = self.pieces
        if len(pieces) == 1:
            return len(text) == pieces[0].length and pieces[0].at(text, 0)
        if len(text) < self.min_length:
            return False
        first, last = pieces[0], pieces[-1]
        end = len(text) - last.length
        if not first.at(text, 0) or not last.at(text, end):
            return False
        position = first.length
        for piece in pieces[1:-1]:
            found = piece.find(text, position, end)
            if found < 0:
                return False
            position = found + piece.length
        return True


@lru_cache(maxsize=4096)
def _glob(pattern: str, ignore_case: bool) -> Glob:
    return Glob([(pattern, True)], ignore_case)


@lru_cache(maxsize=4096)
def _glob_of(tokens: tuple[Token, ...]) -> Glob:
    return Glob(tokens)


def glob_matches(pattern: str, text: str, *, ignore_case: bool = False) -> bool:
    """Whether *text* matches the IAM wildcard *pattern* as a whole (see :class:`Glob`)."""
    return _glob(pattern, ignore_case).match(text)


def _split_tokens(tokens: Iterable[Token], parts: int) -> list[list[Token]]:
    """Split *tokens* at ``:`` into at most *parts* segments, the last keeping any further ``:``."""
    segments: list[list[Token]] = [[]]
    for text, wild in tokens:
        while len(segments) < parts and ":" in text:
            head, text = text.split(":", 1)
            segments[-1].append((head, wild))
            segments.append([])
        segments[-1].append((text, wild))
    return segments


def _arn_segments_match(tokens: list[Token], value: str, *, pad: bool) -> bool:
    """An ARN pattern against an ARN, one ``:``-separated segment at a time.

    A wildcard never crosses a ``:`` between partition, service, region,
    account and resource; within the resource (everything after the fifth
    ``:``) it may.  A pattern with fewer than six segments is padded with ``*``
    segments when *pad* (``arn:aws:s3:*`` in a ``Resource``), and otherwise
    matches nothing (``ArnLike`` needs every segment).
    """
    wanted = _split_tokens(tokens, 6)
    got = value.split(":", 5)
    if len(got) != 6:
        return False
    if len(wanted) < 6:
        if not pad:
            return False
        wanted += [[("*", True)]] * (6 - len(wanted))
    return all(_glob_of(tuple(w)).match(g) for w, g in zip(wanted, got))


def _resource_tokens_match(tokens: list[Token], resource: str) -> bool:
    text = "".join(t for t, _ in tokens)
    if all(wild for _, wild in tokens) and _glob(text, False).is_star:
        return True
    if text.startswith("arn:") and resource.startswith("arn:"):
        if "*" not in text and "?" not in text and text.count(":") < 5:
            return text == resource  # a short ARN without wildcards is itself, not a prefix
        return _arn_segments_match(tokens, resource, pad=True)
    return _glob_of(tuple(tokens)).match(resource)


def action_matches(pattern: str, action: str) -> bool:
    """Whether an ``Action`` pattern covers *action*.

    Case-insensitive (IAM action names are), ``*`` matches any run of
    characters and ``?`` exactly one: ``s3:Get*`` covers ``s3:GetObject``,
    ``*`` covers everything.  Nothing is trimmed: ``"s3:GetObject "`` (with a
    space) covers no action, as in AWS.
    """
    return _glob(pattern, True).match(action)


def resource_matches(pattern: str, arn: str) -> bool:
    """Whether a ``Resource`` pattern covers *arn*.

    Case-sensitive, ``*`` any run of characters (the empty one too) and ``?``
    exactly one.  ARNs are compared a segment at a time: a wildcard in the
    partition, service, region or account stays there, while in the resource
    part (after the fifth ``:``) it spans ``/`` and ``:`` —
    ``arn:aws:s3:::logs-*/*.json`` covers ``arn:aws:s3:::logs-a/b/c.json``.  A
    pattern with fewer segments is padded with ``*`` (``arn:aws:s3:*``).  A
    request without a specific resource is represented by ``"*"``, which only
    the pattern ``"*"`` covers — so a statement limited to
    ``arn:aws:ec2:…:instance/*`` does not allow ``ec2:DescribeInstances``, as
    in AWS.
    """
    return _resource_tokens_match([(pattern, True)], arn)


def statement_matches_action(statement: Mapping[str, Any], action: str) -> bool:
    """``Action`` (any listed pattern covers *action*) or ``NotAction`` (none does)."""
    if "Action" in statement:
        return any(action_matches(p, action) for p in _strings(statement["Action"]))
    if "NotAction" in statement:
        return not any(action_matches(p, action) for p in _strings(statement["NotAction"]))
    return False


def statement_matches_resource(statement: Mapping[str, Any], resource: str | None) -> bool:
    """``Resource`` / ``NotResource`` against *resource*.

    ``resource=None`` means "not known": the element is not checked.  A
    statement with neither element (trust and most resource-based policies)
    applies to the resource the policy is attached to.
    """
    if resource is None:
        return True
    if "Resource" in statement:
        return any(resource_matches(p, resource) for p in _strings(statement["Resource"]))
    if "NotResource" in statement:
        return not any(resource_matches(p, resource) for p in _strings(statement["NotResource"]))
    return True


# --------------------------------------------------------------------------
# Principals
# --------------------------------------------------------------------------

_PRINCIPAL_KINDS = {k.lower(): k for k in ("AWS", "Federated", "Service", "CanonicalUser")}
_ACCOUNT_ID = re.compile(r"\d{12}")
_ROOT_ARN = re.compile(r"arn:([\w-]+):iam::(\d{12}):root")


def principals(principal: Any) -> dict[str, list[str]]:
    """Normalise a ``Principal`` (or ``NotPrincipal``) element.

    Every shape IAM accepts, and what it becomes:

    ============================================== =====================================
    ``"*"``                                        ``{"AWS": ["*"]}`` (everyone)
    ``{"AWS": "*"}``                               ``{"AWS": ["*"]}``
    ``{"AWS": "arn:aws:iam::111122223333:root"}``  ``{"AWS": ["arn:…:root"]}``
    ``{"AWS": "111122223333"}`` (account id)       ``{"AWS": ["111122223333"]}``
    ``{"AWS": ["arn:…:role/a", "arn:…:user/b"]}``  ``{"AWS": ["arn:…:role/a", …]}``
    ``{"Federated": "arn:…:oidc-provider/…"}``     ``{"Federated": ["arn:…"]}``
    ``{"Federated": "cognito-identity.amazonaws.com"}`` likewise
    ``{"Service": "ec2.amazonaws.com"}`` or a list ``{"Service": [...]}``
    ``{"CanonicalUser": "79a59df9…"}``             ``{"CanonicalUser": ["79a5…"]}``
    several kinds in one object                    one entry per kind
    ``None`` (element absent)                      ``{}``
    ============================================== =====================================

    Kind names are returned in IAM's spelling whatever their case; unknown
    kinds are kept as written.  Raises :class:`InputError` for a string other
    than ``"*"`` (IAM rejects a bare ARN) or for values that are not strings.
    """
    if principal is None:
        return {}
    if isinstance(principal, str):
        if principal.strip() == "*":
            return {"AWS": ["*"]}
        raise InputError(
            f"Principal {principal!r} is not valid: a string Principal must be \"*\"",
            'write {"AWS": "<arn>"}, {"Federated": "<provider arn>"} or {"Service": "<name>"}',
        )
    if not isinstance(principal, Mapping):
        raise InputError(f"Principal is a {type(principal).__name__}, not \"*\" or an object")
    result: dict[str, list[str]] = {}
    for kind, value in principal.items():
        canonical = _PRINCIPAL_KINDS.get(str(kind).lower(), str(kind))
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
            raise InputError(f"Principal {kind!r} holds {value!r}; expected a string or a list of strings")
        result.setdefault(canonical, []).extend(v.strip() for v in items)
    return result


def principal_matches(principal: Any, kind: str, value: str) -> bool:
    """Whether a ``Principal`` element names the caller ``(kind, value)``.

    *kind* is ``AWS``, ``Federated``, ``Service`` or ``CanonicalUser`` (any
    case); *value* the caller's ARN, provider ARN, service name or canonical id.

    * ``"*"`` and ``{"AWS": "*"}`` match every caller; ``{kind: "*"}`` every
      caller of that kind.
    * ``AWS``: equal ARNs; an account id or ``arn:…:iam::ACCOUNT:root`` matches
      any principal of that account; a role ARN matches the role and its
      sessions (``arn:…:sts::ACCOUNT:assumed-role/NAME/SESSION``).  Role names
      compare case-insensitively, as IAM keeps them unique regardless of case.
    * ``Federated``: the provider ARN or name, compared exactly.
    * ``Service``: the service name, case-insensitively.
    * ``CanonicalUser``: exactly.
    """
    return _principal_match(principals(principal), kind, value) is not None


#: How a ``Principal`` names the caller, strongest first: the caller itself
#: (its ARN, a session's own ARN, ``*``), the role a session belongs to, or
#: the caller's account (which delegates the decision to IAM policies).
PRINCIPAL_MATCHES = ("direct", "role", "account")


def _principal_match(normal: Mapping[str, list[str]], kind: str, value: str) -> str | None:
    """The strongest way a normalised ``Principal`` names the caller, or None."""
    kind = _PRINCIPAL_KINDS.get(kind.lower(), kind)
    value = value.strip()
    if "*" in normal.get("AWS", []):
        return "direct"
    found: set[str] = set()
    for entry in normal.get(kind, []):
        if entry == "*":
            found.add("direct")
        elif kind == "AWS":
            match = _aws_principal_match(entry, value)
            if match:
                found.add(match)
        elif kind == "Service" and entry.lower() == value.lower():
            found.add("direct")
        elif kind in ("Federated", "CanonicalUser") and entry == value:
            found.add("direct")
    return next((match for match in PRINCIPAL_MATCHES if match in found), None)


def _arn_parts(value: str) -> list[str] | None:
    """``arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE`` → its six parts, or None."""
    parts = value.split(":", 5)
    return parts if len(parts) == 6 and parts[0] == "arn" else None


def _account_of(value: str) -> str | None:
    if _ACCOUNT_ID.fullmatch(value):
        return value
    parts = _arn_parts(value)
    return parts[4] if parts and _ACCOUNT_ID.fullmatch(parts[4]) else None


def _role_identity(arn: str) -> tuple[str, str, str] | None:
    """(partition, account, lower-cased role name) of a role ARN or a role session ARN."""
    parts = _arn_parts(arn)
    if parts is None:
        return None
    _, partition, service, _region, account, resource = parts
    if service == "iam" and resource.startswith("role/"):
        name = resource.rsplit("/", 1)[1]
    elif service == "sts" and resource.startswith("assumed-role/") and resource.count("/") >= 2:
        name = resource.split("/")[1]
    else:
        return None
    return (partition, account, name.lower()) if name else None


def _aws_principal_match(entry: str, caller: str) -> str | None:
    if _ACCOUNT_ID.fullmatch(entry) or _ROOT_ARN.fullmatch(entry):
        if _account_of(caller) != _account_of(entry):
            return None
        return "direct" if _ROOT_ARN.fullmatch(caller) else "account"
    entry_role = _role_identity(entry)
    caller_role = _role_identity(caller)
    if entry_role and caller_role and entry_role == caller_role:
        # A role ARN names the role and every session of it; a session ARN names that session.
        if entry.split(":", 5)[2] == "iam":
            return "role"
        same_session = entry.rsplit("/", 1)[1] == caller.rsplit("/", 1)[1]
        return "direct" if caller.split(":", 5)[2] == "sts" and same_session else None
    return "direct" if entry == caller else None


def _principal_applies(statement: Mapping[str, Any], caller: tuple[str, str] | None) -> bool:
    """Principal/NotPrincipal against *caller*; ``None`` (identity policy) skips the check."""
    if caller is None:
        return True
    if "Principal" in statement:
        return principal_matches(statement["Principal"], *caller)
    if "NotPrincipal" in statement:
        return not _exempted(principals(statement["NotPrincipal"]), *caller)
    return True


def _exempted(not_principal: Mapping[str, list[str]], kind: str, value: str) -> bool:
    """Does a ``NotPrincipal`` spare the caller?  Only by naming it (or, for a session, its role).

    Naming the caller's account does not spare everyone in it: the NotPrincipal
    page's own example lists a user *and* its account, and denies the account's
    other users.
    """
    return _principal_match(not_principal, kind, value) in ("direct", "role")


# --------------------------------------------------------------------------
# Conditions
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class ConditionFailure:
    """One condition entry (operator + key) that did not hold."""

    operator: str
    key: str
    expected: tuple[str, ...]
    actual: str | tuple[str, ...] | None
    reason: str
    hint: str = ""

    def describe(self) -> str:
        text = f"{self.operator} on {self.key}: {self.reason}" if self.key else self.reason
        return f"{text} ({self.hint})" if self.hint else text


@dataclass(frozen=True)
class ConditionResult:
    """The outcome of a ``Condition`` block: matched, and if not, why."""

    matched: bool
    failures: tuple[ConditionFailure, ...] = ()
    notes: tuple[str, ...] = ()



# base operator (lower-case) -> (IAM spelling, comparison family, negated)
_OPERATORS: dict[str, tuple[str, str, bool]] = {
    name.lower(): (name, family, negated)
    for name, family, negated in (
        ("StringEquals", "str_eq", False),
        ("StringNotEquals", "str_eq", True),
        ("StringEqualsIgnoreCase", "str_eq_ic", False),
        ("StringNotEqualsIgnoreCase", "str_eq_ic", True),
        ("StringLike", "str_like", False),
        ("StringNotLike", "str_like", True),
        ("NumericEquals", "num_eq", False),
        ("NumericNotEquals", "num_eq", True),
        ("NumericLessThan", "num_lt", False),
        ("NumericLessThanEquals", "num_le", False),
        ("NumericGreaterThan", "num_gt", False),
        ("NumericGreaterThanEquals", "num_ge", False),
        ("DateEquals", "date_eq", False),
        ("DateNotEquals", "date_eq", True),
        ("DateLessThan", "date_lt", False),
        ("DateLessThanEquals", "date_le", False),
        ("DateGreaterThan", "date_gt", False),
        ("DateGreaterThanEquals", "date_ge", False),
        ("Bool", "bool", False),
        ("BinaryEquals", "binary", False),
        ("IpAddress", "ip", False),
        ("NotIpAddress", "ip", True),
        ("ArnEquals", "arn", False),
        ("ArnLike", "arn", False),
        ("ArnNotEquals", "arn", True),
        ("ArnNotLike", "arn", True),
        ("Null", "null", False),
    )
}

_VARIABLE = re.compile(r"\$\{([^}]*)\}")

# -- three-valued truth ------------------------------------------------------
#
# A request context may not tell everything: a key can be present (with
# values), known to be absent, or unknown.  Matching therefore yields one of
# four values.  ``INVALID`` is AWS's "the statement is invalid": a policy
# variable whose key is known to be absent can match nothing, and — unlike a
# plain non-match — it is never turned into a match by a negation
# (``NotResource``, ``StringNotEquals``, ``ForAllValues:…Not…``).  A statement
# that ends ``INVALID`` does not apply, whatever its effect.

YES, NO, MAYBE, INVALID = "yes", "no", "maybe", "invalid"


def _any3(values: Iterable[str]) -> str:
    """OR: yes if any is; else maybe if any is; else invalid if any is; else no."""
    seen = set(values)
    for truth in (YES, MAYBE, INVALID):
        if truth in seen:
            return truth
    return NO


def _all3(values: Iterable[str]) -> str:
    """AND: no if any is no or invalid; else maybe if any is; else yes."""
    seen = set(values)
    if NO in seen or INVALID in seen:
        return NO
    return MAYBE if MAYBE in seen else YES


def _not3(truth: str) -> str:
    return {YES: NO, NO: YES}.get(truth, truth)


class _Context:
    """A request context as matching sees it: every key present, absent or unknown.

    Keys compare case-insensitively.  A key given with ``None`` or an empty list
    is absent; so is any key in *absent*, any key starting with one of
    *absent_prefixes*, and — when *closed* — any key not given at all.
    Otherwise a key not given is unknown.
    """

    UNKNOWN: Any = object()

    def __init__(
        self,
        values: Mapping[str, ContextValue] | None,
        *,
        absent: Iterable[str] = (),
        absent_prefixes: Iterable[str] = (),
        closed: bool = True,
    ) -> None:
        self.values: dict[str, list[str]] = {}
        self.absent = {key.lower() for key in absent}
        for key, raw in (values or {}).items():
            got = _request_values(raw)
            if got is None:
                self.absent.add(str(key).lower())
            else:
                self.values[str(key).lower()] = got
        self.absent_prefixes = tuple(prefix.lower() for prefix in absent_prefixes)
        self.closed = closed

    def get(self, key: str) -> Any:
        """The key's values (a non-empty list), ``None`` when absent, or :attr:`UNKNOWN`."""
        lowered = key.lower()
        if lowered in self.values:
            return self.values[lowered]
        if self.closed or lowered in self.absent or lowered.startswith(self.absent_prefixes):
            return None
        return self.UNKNOWN


def _request_values(raw: Any) -> list[str] | None:
    """Context value → list of strings, or ``None`` when the key is missing."""
    if raw is None:
        return None
    if isinstance(raw, (list, tuple, set, frozenset)):
        values = [_scalar_text(v) for v in raw if v is not None]
        return values or None
    return [_scalar_text(raw)]


def _variable_name(inner: str) -> tuple[str, str | None]:
    """``aws:username, 'nobody'`` → (``aws:username``, ``nobody``); no default → None."""
    name, comma, rest = inner.partition(",")
    rest = rest.strip()
    if comma and len(rest) >= 2 and rest[0] == rest[-1] == "'" and "'" not in rest[1:-1]:
        return name.strip(), rest[1:-1]
    return inner.strip(), None


def _expand(value: str, ctx: _Context, missing: set[str] | None = None) -> list[Token] | str:
    """Substitute the policy variables of *value*.

    Returns the tokens (policy text keeps its wildcards, substituted text is
    literal), or ``INVALID`` when a variable's key is absent (or multivalued:
    AWS substitutes single values only) and has no default, or ``MAYBE`` when a
    variable's key is unknown — its name then goes into *missing*.  ``${*}``,
    ``${?}`` and ``${$}`` stand for the literal characters.
    """
    if "${" not in value:
        return [(value, True)]
    tokens: list[Token] = []
    position = 0
    outcome = YES
    for match in _VARIABLE.finditer(value):
        tokens.append((value[position : match.start()], True))
        position = match.end()
        inner = match.group(1).strip()
        if inner in ("*", "?", "$"):
            tokens.append((inner, False))
            continue
        name, default = _variable_name(inner)
        got = ctx.get(name)
        if got is _Context.UNKNOWN:
            if missing is not None:
                missing.add(name)
            outcome = outcome if outcome == INVALID else MAYBE
        elif got is not None and len(got) == 1:
            tokens.append((got[0], False))
        elif default is not None:
            tokens.append((default, False))
        else:
            outcome = INVALID
    tokens.append((value[position:], True))
    return tokens if outcome == YES else outcome


def _literal(tokens: list[Token]) -> str:
    return "".join(text for text, _ in tokens)


def _number(text: str) -> float | None:
    try:
        return float(text.strip())
    except ValueError:
        return None


def _date(text: str) -> float | None:
    text = text.strip()
    number = _number(text)
    if number is not None:
        return number
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def _ip_in(network: str, address: str) -> bool:
    try:
        return ipaddress.ip_address(address.strip()) in ipaddress.ip_network(network.strip(), strict=False)
    except ValueError:
        return False


_ORDER = {
    "eq": lambda a, b: a == b,
    "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b,
    "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b,
}

#: Operator families whose policy values may hold policy variables (string and ARN).
_VARIABLE_FAMILIES = frozenset({"str_eq", "str_eq_ic", "str_like", "arn"})


def _compare(
    family: str, pattern: str, value: str, ctx: _Context, missing: set[str] | None = None, variables: bool = True
) -> str:
    """Does request *value* satisfy the positive form of *family* against *pattern*? (yes/no/maybe/invalid)"""
    if family in _VARIABLE_FAMILIES:
        tokens = _expand(pattern, ctx, missing) if variables else [(pattern, True)]
        if isinstance(tokens, str):
            return tokens
        if family == "str_eq":
            hit = _literal(tokens) == value
        elif family == "str_eq_ic":
            hit = _literal(tokens).casefold() == value.casefold()
        elif family == "str_like":
            hit = _glob_of(tuple(tokens)).match(value)
        else:  # ArnEquals and ArnLike alike: both take wildcards, per segment
            hit = _arn_segments_match(tokens, value, pad=False)
        return YES if hit else NO
    if family == "bool":
        hit = pattern.strip().lower() == value.strip().lower()
    elif family == "binary":
        hit = pattern.strip() == value.strip()
    elif family == "ip":
        hit = _ip_in(pattern, value)
    else:
        kind, _, relation = family.partition("_")
        parse = _number if kind == "num" else _date
        wanted, got = parse(pattern), parse(value)
        hit = wanted is not None and got is not None and bool(_ORDER[relation](got, wanted))
    return YES if hit else NO


@dataclass(frozen=True)
class _Entry:
    """One condition entry's outcome: truth, why it failed, which keys it lacked."""

    truth: str
    failure: ConditionFailure | None = None
    missing: frozenset[str] = frozenset()


def _evaluate_entry(
    operator: str,
    parsed: tuple[str | None, str, str, bool, bool],
    key: str,
    raw_expected: Any,
    ctx: _Context,
    variables: bool = True,
) -> _Entry:
    qualifier, _name, family, negated, if_exists = parsed
    if isinstance(raw_expected, (Mapping, type(None))):
        return _Entry(NO, ConditionFailure(operator, key, (), None, f"policy value {raw_expected!r} is not a string or list"))
    expected = tuple(_strings(raw_expected))
    actual = ctx.get(key)
    if actual is _Context.UNKNOWN:
        # Whatever the operator — Null, …IfExists, a negated one — the answer depends on the key.
        return _Entry(MAYBE, missing=frozenset({key}))
    shown: str | tuple[str, ...] | None = (
        None if actual is None else (actual[0] if len(actual) == 1 else tuple(actual))
    )

    if family == "null":
        want_missing = [v.strip().lower() for v in expected]
        if ("true" in want_missing and actual is None) or ("false" in want_missing and actual is not None):
            return _Entry(YES)
        state = "missing from" if actual is None else "present in"
        return _Entry(NO, ConditionFailure(operator, key, expected, shown, f"the key is {state} the request"))

    if actual is None:
        if if_exists or qualifier == "all" or (qualifier is None and negated):
            return _Entry(YES)
        return _Entry(
            NO,
            ConditionFailure(operator, key, expected, None, f"the key is not in the request (expected {_listing(expected)})"),
        )

    missing: set[str] = set()

    def hit(value: str) -> str:
        return _any3(_compare(family, pattern, value, ctx, missing, variables) for pattern in expected)

    if qualifier == "all":
        truth = _all3(_not3(hit(v)) if negated else hit(v) for v in actual)
    elif qualifier == "any":
        truth = _any3(_not3(hit(v)) if negated else hit(v) for v in actual)
    else:
        any_hit = _any3(hit(v) for v in actual)
        truth = _not3(any_hit) if negated else any_hit
    if truth == YES:
        return _Entry(YES)
    if truth == MAYBE:
        return _Entry(MAYBE, missing=frozenset(missing))
    if truth == INVALID or (truth == NO and _unresolvable(expected, ctx, variables, family)):
        names = ", ".join(sorted(_unresolvable(expected, ctx, variables, family)))
        return _Entry(
            truth,
            ConditionFailure(
                operator, key, expected, shown,
                f"the policy variable {names} is not in the request, so the statement does not apply",
            ),
        )
    hint = ""
    if negated:
        reason = f"the request value {_listing(actual)} is excluded by {_listing(expected)}"
    else:
        reason = f"the request value {_listing(actual)} does not match {_listing(expected)}"
        if family == "str_eq" and any(("*" in p or "?" in p) for p in expected) and any(
            _compare("str_like", p, v, ctx, None, variables) == YES for p in expected for v in actual
        ):
            hint = f"{operator} does not expand wildcards; StringLike would match"
    return _Entry(truth, ConditionFailure(operator, key, expected, shown, reason, hint))


def _unresolvable(expected: Iterable[str], ctx: _Context, variables: bool, family: str) -> set[str]:
    """``${…}`` names in *expected* that cannot be substituted (their keys absent, no default)."""
    if not variables or family not in _VARIABLE_FAMILIES:
        return set()
    names = set()
    for value in expected:
        for match in _VARIABLE.finditer(value):
            inner = match.group(1).strip()
            if inner in ("*", "?", "$"):
                continue
            name, default = _variable_name(inner)
            got = ctx.get(name)
            if default is None and got is not _Context.UNKNOWN and (got is None or len(got) != 1):
                names.add("${" + name + "}")
    return names


def _listing(values: Iterable[str]) -> str:
    items = [f"'{v}'" for v in values]
    return items[0] if len(items) == 1 else "[" + ", ".join(items) + "]"


@dataclass(frozen=True)
class _ConditionOutcome:
    truth: str
    failures: tuple[ConditionFailure, ...] = ()
    notes: tuple[str, ...] = ()
    missing: frozenset[str] = frozenset()


def _evaluate_condition(condition: Any, ctx: _Context, variables: bool = True) -> _ConditionOutcome:
    """A ``Condition`` block, three-valued: every entry must hold (AND)."""
    if not condition:
        return _ConditionOutcome(YES)
    if not isinstance(condition, Mapping):
        note = f"Condition is a {type(condition).__name__}, not an object: treated as not matching"
        return _ConditionOutcome(NO, (ConditionFailure("", "", (), None, note),), (note,))
    failures: list[ConditionFailure] = []
    notes: list[str] = []
    truths: list[str] = []
    missing: set[str] = set()
    for operator, block in condition.items():
        operator = str(operator)
        parsed = _parse_operator(operator)
        if parsed is None:
            note = f"unknown condition operator {operator!r}: treated as not matching"
            notes.append(note)
            failures.append(ConditionFailure(operator, "", (), None, note))
            truths.append(NO)
            continue
        if not isinstance(block, Mapping):
            note = f"condition operator {operator!r} holds a {type(block).__name__}, not an object"
            notes.append(note)
            failures.append(ConditionFailure(operator, "", (), None, note))
            truths.append(NO)
            continue
        for key, raw_expected in block.items():
            entry = _evaluate_entry(operator, parsed, str(key), raw_expected, ctx, variables)
            truths.append(entry.truth)
            missing |= entry.missing
            if entry.failure is not None:
                failures.append(entry.failure)
    truth = _all3(truths)
    return _ConditionOutcome(truth, tuple(failures), tuple(notes), frozenset(missing) if truth == MAYBE else frozenset())


def condition_matches(condition: Mapping[str, Any] | None, context: Mapping[str, ContextValue] | None) -> bool:
    """Whether a ``Condition`` block holds for a request *context*.

    Shorthand for ``check_condition(condition, context).matched``.
    """
    return check_condition(condition, context).matched


def check_condition(
    condition: Mapping[str, Any] | None, context: Mapping[str, ContextValue] | None
) -> ConditionResult:
    """Evaluate a ``Condition`` block, explaining every entry that fails.

    Two-valued: a key not in *context* counts as absent from the request.
    :func:`authorize` applies the same rules three-valued, where a key may
    also be unknown.

    The block maps operators to ``{key: value-or-values}``.  Semantics, as in
    the IAM documentation ("Condition operators", "Single-valued vs.
    multivalued context keys"):

    * several operators, and several keys under one operator: all must hold
      (AND); several values for one key: any may match (OR); a negated
      operator (``StringNotEquals``, ``StringNotLike``, ``ArnNotLike``,
      ``NumericNotEquals``, ``DateNotEquals``, ``NotIpAddress``…) holds when
      the request value matches *none* of the values;
    * condition keys compare case-insensitively with the context's keys;
      values are compared as each operator says (``StringEquals``
      case-sensitively, ``StringEqualsIgnoreCase`` not, ``StringLike`` and
      ``ArnLike`` with ``*``/``?``, ``ArnEquals``/``ArnLike`` per ``:``-separated
      ARN component, ``Bool`` on ``true``/``false``, numbers, ISO 8601 or
      epoch dates, CIDR ranges);
    * a key missing from the request (absent, ``None`` or an empty list) makes
      a positive operator false and a negated one true; ``…IfExists`` makes
      any operator true when the key is missing; ``Null`` with ``"true"``
      holds when the key is missing, with ``"false"`` when present;
    * ``ForAnyValue:`` holds if at least one request value satisfies the
      operator (false when the key is missing); ``ForAllValues:`` if every
      request value does (true when the key is missing or empty).  A list
      given for a key without a qualifier is treated like ``ForAnyValue``;
    * policy variables ``${aws:username}``, ``${key, 'default'}`` and the
      escapes ``${*}``, ``${?}``, ``${$}`` are substituted in string and ARN
      values; a variable whose key is missing (without a default) makes the
      statement invalid — the entry fails, and no negation turns that into a
      match (a ``StringNotEquals`` on ``${aws:PrincipalTag/team}`` without the
      tag does not hold);
    * an unknown operator, or a malformed block, never raises: it counts as
      not matching and is reported in ``notes`` and ``failures``.
    """
    outcome = _evaluate_condition(condition, _Context(context, closed=True))
    return ConditionResult(outcome.truth == YES, outcome.failures, outcome.notes)


def _parse_operator(operator: str) -> tuple[str | None, str, str, bool, bool] | None:
    """``ForAnyValue:StringLikeIfExists`` → (qualifier, name, family, negated, if_exists)."""
    base = operator.strip()
    qualifier: str | None = None
    if ":" in base:
        prefix, base = base.split(":", 1)
        qualifier = {"forallvalues": "all", "foranyvalue": "any"}.get(prefix.strip().lower())
        if qualifier is None:
            return None
    if_exists = base.lower().endswith("ifexists")
    if if_exists:
        base = base[: -len("IfExists")]
    known = _OPERATORS.get(base.lower())
    if known is None or (known[1] == "null" and if_exists):
        return None
    name, family, negated = known
    return qualifier, name, family, negated, if_exists


# --------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class StatementRef:
    """Where a statement lives: policy name, index in its Statement list, Sid."""

    policy: str
    index: int
    sid: str | None
    effect: str
    statement: Mapping[str, Any] = field(compare=False, repr=False)

    def describe(self) -> str:
        sid = f" (Sid {self.sid!r})" if self.sid else ""
        return f"{self.policy} statement #{self.index}{sid}"


def _refs(name: str, doc: Any) -> list[StatementRef]:
    refs = []
    for index, statement in enumerate(statements(doc, name=name)):
        sid = statement.get("Sid")
        effect = "Deny" if str(statement.get("Effect", "")).strip().lower() == "deny" else "Allow"
        refs.append(StatementRef(name, index, sid if isinstance(sid, str) and sid else None, effect, statement))
    return refs


@dataclass(frozen=True)
class Decision:
    """What a set of policies decides for one request.

    ``effect`` is ``"allow"``, ``"explicit_deny"`` or ``"implicit_deny"``;
    ``matched`` holds the statements that decided it (the applicable Deny
    statements for an explicit deny, the applicable Allow statements for an
    allow, nothing for an implicit deny).  ``conditional`` lists statements
    that matched action, resource and principal but whose ``Condition`` did
    not hold — usually what an explanation needs to name.  ``notes`` carries
    anything unusual (unknown operators, malformed principals).
    """

    effect: str
    action: str
    resource: str | None
    matched: tuple[StatementRef, ...] = ()
    allows: tuple[StatementRef, ...] = ()
    denies: tuple[StatementRef, ...] = ()
    conditional: tuple[tuple[StatementRef, ConditionResult], ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def allowed(self) -> bool:
        return self.effect == "allow"


def evaluate(
    policies: Iterable[tuple[str, Any]],
    action: str,
    resource: str | None = "*",
    context: Mapping[str, ContextValue] | None = None,
    *,
    principal: tuple[str, str] | None = None,
) -> Decision:
    """Evaluate *action* on *resource* against named policies.

    *policies* is a list of ``(name, document)`` pairs, each document in any
    form :func:`load_policy` accepts.  *resource* is the request's ARN;
    ``"*"`` (default) is a request on no specific resource, and ``None``
    means "unknown" — ``Resource``/``NotResource`` are then not checked.
    *principal*, as ``(kind, value)``, is checked against ``Principal`` /
    ``NotPrincipal`` (resource-based and trust policies); ``None`` skips that
    check (identity policies have no principal element).

    Every context key not in *context* counts as absent; policy variables in
    ``Resource`` and conditions resolve from it (one whose key is absent makes
    the statement not apply).  An applicable Deny beats any Allow.  Raises
    :class:`InputError` when a document cannot be read (naming the policy);
    conditions never raise.  :func:`authorize` evaluates every policy layer of
    a request, with unknown keys.
    """
    allows: list[StatementRef] = []
    denies: list[StatementRef] = []
    conditional: list[tuple[StatementRef, ConditionResult]] = []
    notes: list[str] = []
    known = _Context(context, closed=True)
    for pair in policies:
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise InputError(f"expected (name, document) pairs, got {type(pair).__name__}")
        name, doc = pair
        for ref in _refs(str(name), doc):
            statement = ref.statement
            if not statement_matches_action(statement, action):
                continue
            if resource is not None and _resource_truth(statement, resource, known, set(), True) != YES:
                continue  # (policy variables in Resource resolve from the context)
            try:
                if not _principal_applies(statement, principal):
                    continue
            except InputError as exc:
                notes.append(f"{ref.describe()}: {exc.message}; statement skipped")
                continue
            result = check_condition(statement.get("Condition"), context)
            notes.extend(f"{ref.describe()}: {note}" for note in result.notes)
            if not result.matched:
                conditional.append((ref, result))
                continue
            (denies if ref.effect == "Deny" else allows).append(ref)
    if denies:
        effect, matched = "explicit_deny", denies
    elif allows:
        effect, matched = "allow", allows
    else:
        effect, matched = "implicit_deny", []
    return Decision(
        effect, action, resource, tuple(matched), tuple(allows), tuple(denies), tuple(conditional), tuple(notes)
    )


# --------------------------------------------------------------------------
# authorize: every policy layer, three-valued
# --------------------------------------------------------------------------

ALLOW, EXPLICIT_DENY, IMPLICIT_DENY, UNDETERMINED = "allow", "explicit_deny", "implicit_deny", "undetermined"

#: The policy layers :func:`authorize` evaluates, in the order AWS's enforcement
#: code reads them (and so the order in which a deciding layer is named).
LAYERS = ("rcp", "scp", "vpc_endpoint", "resource", "identity", "boundary", "session")

#: Principal types, as ``aws:PrincipalType`` spells those it has.
PRINCIPAL_TYPES = ("AssumedRole", "Role", "User", "FederatedUser", "Account", "WebIdentity", "Service", "Anonymous")
_AWS_TYPES = frozenset({"AssumedRole", "Role", "User", "FederatedUser", "Account"})

#: Pseudo context key naming the request's resource when it is not known.
UNKNOWN_RESOURCE = "(the request's resource)"


@dataclass(frozen=True)
class NamedPolicy:
    """A policy document with the name (or ARN) statements are reported under."""

    name: str
    document: Any


#: A policy as :class:`PolicySet` takes it: a :class:`NamedPolicy`, a ``(name,
#: document)`` pair, or a bare document (any form :func:`load_policy` reads).
PolicyLike = Union[NamedPolicy, tuple[str, Any], Mapping[str, Any], str, bytes]


def _principal_type(arn: str) -> str:
    """``aws:PrincipalType``-style type of a caller, from its ARN (or service name)."""
    value = arn.strip()
    if value in ("*", "anonymous", ""):
        return "Anonymous"
    parts = _arn_parts(value)
    if parts is None:
        if value.endswith((".amazonaws.com", ".amazonaws.com.cn")):
            return "Service"
        raise InputError(f"principal {arn!r} is neither an ARN nor a service principal")
    service, resource = parts[2], parts[5]
    if service == "iam":
        if resource == "root":
            return "Account"
        for prefix, kind in (("user/", "User"), ("role/", "Role"), ("oidc-provider/", "WebIdentity"),
                             ("saml-provider/", "WebIdentity")):
            if resource.startswith(prefix):
                return kind
    if service == "sts":
        if resource.startswith("assumed-role/"):
            return "AssumedRole"
        if resource.startswith("federated-user/"):
            return "FederatedUser"
    raise InputError(f"principal {arn!r} is not a user, role, session, account, provider or service")


@dataclass(frozen=True)
class RequestPrincipal:
    """Who sends the request.

    ``arn``: a role session (``arn:aws:sts::A:assumed-role/ROLE/SESSION``), user,
    role, federated user, account root, OIDC/SAML provider (a web identity
    assuming a role) or a service name (``pods.eks.amazonaws.com``).
    ``account`` and ``type`` (one of :data:`PRINCIPAL_TYPES`) are read from the
    ARN unless given.  ``tags`` are the principal's tags — the role's and the
    session's (``aws:PrincipalTag/…``); with ``tags_complete`` every other tag
    is known to be absent, otherwise unknown.  ``role_arn`` is a session's role
    with its path, for ``aws:PrincipalArn`` (without it that key is unknown for
    a session).
    """

    arn: str
    account: str | None = None
    type: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    tags_complete: bool = False
    role_arn: str | None = None

    def __post_init__(self) -> None:
        kind = self.type
        if kind is None:
            kind = _principal_type(self.arn)
        else:
            kind = next((t for t in PRINCIPAL_TYPES if t.lower() == str(kind).lower()), None)
            if kind is None:
                raise InputError(f"principal type {self.type!r} is not one of {', '.join(PRINCIPAL_TYPES)}")
        object.__setattr__(self, "type", kind)
        if self.account is None:
            object.__setattr__(self, "account", _account_of(self.arn.strip()))

    @property
    def kind(self) -> str:
        """The ``Principal`` element kind that names this caller: AWS, Federated or Service."""
        return {"WebIdentity": "Federated", "Service": "Service"}.get(str(self.type), "AWS")


@dataclass(frozen=True)
class AuthRequest:
    """One request to AWS, as :func:`authorize` judges it.

    ``resource`` is the ARN acted on, ``"*"`` for an action on no specific
    resource, or ``None`` when not known.  ``resource_account`` defaults to the
    ARN's account field, then (S3 ARNs have none) to the principal's account.
    ``context`` maps condition keys to values (a string, a list for multivalued
    keys, a bool or number; ``None`` means the key is known to be absent).  A key
    not in ``context`` is *unknown* — unless it is in ``absent``, or
    ``context_complete`` says the context holds every key the request has.
    Keys about the principal (``aws:PrincipalAccount``, ``aws:PrincipalType``,
    ``aws:PrincipalArn``, ``aws:username``, ``aws:PrincipalTag/…``) and
    ``aws:ResourceAccount`` are filled in from ``principal`` and the resource
    when ``context`` does not give them.
    """

    principal: RequestPrincipal | str
    action: str
    resource: str | None = "*"
    resource_account: str | None = None
    context: Mapping[str, ContextValue] = field(default_factory=dict)
    absent: frozenset[str] = frozenset()
    context_complete: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.principal, str):
            object.__setattr__(self, "principal", RequestPrincipal(self.principal))
        object.__setattr__(self, "absent", frozenset(self.absent))

    @property
    def caller(self) -> RequestPrincipal:
        """The principal, as a :class:`RequestPrincipal` (a string given is read into one)."""
        return cast(RequestPrincipal, self.principal)


@dataclass(frozen=True)
class PolicySet:
    """Every policy that may bear on a request, by layer.

    ``identity``: the principal's identity-based policies (inline and managed).
    ``permissions_boundary``: its boundary, if it has one.  ``session``: the
    session policies passed when the session was created (together one layer).
    ``scps`` and ``rcps``: AWS Organizations policies as levels, root → OUs →
    account; each level must allow (one Allow among the policies attached
    there), and a Deny anywhere denies.  ``resource``: the resource-based policy
    (bucket policy, key policy, a role's trust policy…).  ``vpc_endpoint``: the
    policy of the endpoint the request came through.

    ``resource_policy_required``: whether the resource's own policy must allow
    (KMS keys and IAM roles: identity policies count only when the key or trust
    policy allows or delegates to the account); ``None`` infers it from the
    request — a ``kms`` ``key/…`` ARN, or ``sts:AssumeRole*``/``sts:TagSession``
    on a role.  ``incomplete``: layers (names from :data:`LAYERS`) whose
    documents are only partly known — what the given documents say counts, and
    what they leave open is unknown rather than absent.
    """

    identity: Sequence[PolicyLike] = ()
    permissions_boundary: PolicyLike | None = None
    session: Sequence[PolicyLike] = ()
    scps: Sequence[Sequence[PolicyLike]] = ()
    rcps: Sequence[Sequence[PolicyLike]] = ()
    resource: PolicyLike | None = None
    vpc_endpoint: PolicyLike | None = None
    resource_policy_required: bool | None = None
    incomplete: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        unknown = set(self.incomplete) - set(LAYERS)
        if unknown:
            raise InputError(f"incomplete names unknown layers {sorted(unknown)}; expected some of {', '.join(LAYERS)}")
        object.__setattr__(self, "incomplete", frozenset(self.incomplete))


@dataclass(frozen=True)
class LayerResult:
    """What one policy layer (one level, for SCPs and RCPs) says about a request.

    ``allows``/``denies``: ``True``, ``False``, or ``None`` when it depends on
    context keys the request does not show (``missing_keys``).  ``allowing``
    and ``denying`` are the statements that apply; ``undecided`` those that
    may.  For the resource layer, ``allows_by_match`` splits ``allows`` by how
    the Allow names the caller (see :data:`PRINCIPAL_MATCHES`).
    """

    layer: str
    level: int | None = None
    allows: bool | None = False
    denies: bool | None = False
    allowing: tuple[StatementRef, ...] = ()
    denying: tuple[StatementRef, ...] = ()
    undecided: tuple[StatementRef, ...] = ()
    missing_keys: tuple[str, ...] = ()
    allows_by_match: Mapping[str, bool | None] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return self.layer if self.level is None else f"{self.layer}[{self.level}]"


@dataclass(frozen=True)
class AuthDecision:
    """What AWS's policy evaluation decides for a request, as far as it can be known.

    ``decision``: ``allow``, ``explicit_deny``, ``implicit_deny``, or
    ``undetermined`` when the answer depends on context keys the request does
    not show — ``outcomes`` then holds the decisions still possible and
    ``missing_keys`` the keys that would settle it.  ``layer`` is the deciding
    layer (one of :data:`LAYERS`): the one whose Deny applies, the first whose
    missing Allow refuses, the one that grants, or the first whose unknowns
    matter.  ``statements`` are the deciding statements (the denying ones, the
    granting ones, or the undecided ones; none for an implicit deny).
    ``layers`` has every layer's own result.
    """

    decision: str
    layer: str | None
    statements: tuple[StatementRef, ...]
    missing_keys: tuple[str, ...]
    outcomes: frozenset[str]
    layers: tuple[LayerResult, ...]
    cross_account: bool
    notes: tuple[str, ...] = ()

    @property
    def allowed(self) -> bool | None:
        """``True`` when allowed, ``False`` when refused (explicitly or not), ``None`` when unknown."""
        if self.outcomes == {ALLOW}:
            return True
        return None if ALLOW in self.outcomes else False

    def describe(self) -> str:
        """One sentence: the decision, the layer, the statements or the keys it needs."""
        if self.decision == UNDETERMINED:
            keys = ", ".join(self.missing_keys) or "unknown policies"
            possible = " or ".join(sorted(self.outcomes))
            return f"undetermined ({possible}) at the {self.layer} layer: depends on {keys}"
        refs = "; ".join(ref.describe() for ref in self.statements)
        text = f"{self.decision} at the {self.layer} layer"
        return f"{text}: {refs}" if refs else text


def _and(*values: bool | None) -> bool | None:
    if any(v is False for v in values):
        return False
    return None if any(v is None for v in values) else True


def _or(*values: bool | None) -> bool | None:
    if any(v is True for v in values):
        return True
    return None if any(v is None for v in values) else False


def _truth_value(truth: str) -> bool | None:
    return {YES: True, MAYBE: None}.get(truth, False)


def _named(item: PolicyLike, default: str) -> tuple[str, Any]:
    if isinstance(item, NamedPolicy):
        return item.name, item.document
    if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str):
        return item
    return default, item


def authorize(request: AuthRequest, policies: PolicySet) -> AuthDecision:
    """Evaluate *request* against every policy layer, as AWS's enforcement code does.

    The rules, and the AWS documentation each follows:

    * An applicable ``Deny`` in any layer decides: explicit deny ("Policy
      evaluation logic", deny evaluation).
    * SCPs (the principal's account), each level root → OU → account, must
      each have an applicable ``Allow``; they bind the account's users, roles
      and root user, not anonymous, service or web-identity callers ("SCP
      evaluation").  RCPs only deny: ``RCPFullAWSAccess`` is attached at every
      level and cannot be detached ("Resource control policies").  A VPC
      endpoint policy, when the request came through one, must allow.
    * ``sts:GetCallerIdentity`` needs no permission and cannot be denied (STS
      API reference).  The root user needs no identity policy in its own
      account (its SCPs still bind it).
    * Same account ("Policy evaluation for requests within a single account"):
      the identity policies allow — and then the permissions boundary and the
      session policies must allow too — or the resource policy allows the
      caller.  A resource policy naming the caller itself (a user, the role
      session's own ARN, a federated user session, ``*``) is not limited by
      identity policies, boundary or session policies; one naming the role is
      limited by boundary and session policies; one naming only the account
      delegates to IAM and grants nothing by itself.
    * KMS key policies and role trust policies must allow the caller or
      delegate to the account (``arn:aws:iam::ACCOUNT:root``); only then do
      identity policies count ("Key policies in AWS KMS", "Permissions policies
      in AWS KMS": without that, even an identity policy that allows is an
      implicit deny).
    * Cross account ("Cross-account policy evaluation logic"): the identity
      side (identity policies ∩ boundary ∩ session policies) and the resource
      policy must both allow.
    * A web identity or service principal has no identity policies: the
      resource policy (a trust policy) alone grants.
    * Statements: ``Action``/``NotAction`` compared case-insensitively,
      untrimmed; ``Resource``/``NotResource`` per ARN segment; ``Principal``/
      ``NotPrincipal`` in resource, endpoint, RCP policies (a resource-policy
      statement without either never applies; a ``NotPrincipal`` spares only
      the principals it names — a session by its own ARN or its role's — and
      naming their account spares no one else in it, as the NotPrincipal page's
      examples show); conditions three-valued, as
      :func:`check_condition` describes, where a key the request does not show
      is unknown unless the request says it is absent — a statement whose match
      depends on one is undecided, and so may be the decision.
    * Policy variables (``${aws:PrincipalTag/…}``, ``${aws:username}``,
      ``${*}``, ``${?}``, ``${$}``, ``${key, 'default'}``) are substituted in
      ``Resource`` and string/ARN condition values of policies with
      ``"Version": "2012-10-17"`` (older or no version: literal text, as AWS
      does); a variable whose key is absent makes the statement not apply,
      whether it allows or denies.

    Raises :class:`InputError` for a document that cannot be read (naming it).
    """
    caller = request.caller
    ctx, notes = _request_context(request)
    resource_account = request.resource_account or _account_of(request.resource or "") or caller.account
    aws_caller = caller.type in _AWS_TYPES
    cross_account = bool(aws_caller and caller.account and resource_account and caller.account != resource_account)
    if aws_caller and not request.resource_account and _arn_parts(request.resource or "") and not _account_of(
        request.resource or ""
    ):
        notes.append(f"the resource's account is not known: taken to be the principal's ({caller.account})")
    required = policies.resource_policy_required
    if required is None:
        required = _resource_policy_required(request)

    layers: list[LayerResult] = []
    incomplete = policies.incomplete

    def add(layer: str, items: Sequence[PolicyLike], level: int | None = None) -> None:
        layers.append(_evaluate_layer(layer, level, items, request, ctx, layer in incomplete))

    for level, items in enumerate(policies.rcps or ([()] if "rcp" in incomplete else [])):
        add("rcp", items, level)
    if aws_caller:
        for level, items in enumerate(policies.scps or ([()] if "scp" in incomplete else [])):
            add("scp", items, level)
    elif policies.scps:
        notes.append(f"SCPs do not apply: a {caller.type.lower()} principal is not managed by an account")
    if policies.vpc_endpoint is not None or "vpc_endpoint" in incomplete:
        add("vpc_endpoint", [policies.vpc_endpoint] if policies.vpc_endpoint is not None else [])
    if policies.resource is not None or "resource" in incomplete:
        add("resource", [policies.resource] if policies.resource is not None else [])
    if aws_caller and caller.type != "Account":
        add("identity", list(policies.identity))
    if policies.permissions_boundary is not None or "boundary" in incomplete:
        add("boundary", [policies.permissions_boundary] if policies.permissions_boundary is not None else [])
    if policies.session or "session" in incomplete:
        add("session", list(policies.session))

    if aws_caller and request.action.lower() == "sts:getcalleridentity":
        # "No permissions are required to perform this operation", even against an explicit deny (STS API reference).
        notes.append("sts:GetCallerIdentity needs no permission: every authenticated caller may call it")
        return AuthDecision(ALLOW, None, (), (), frozenset({ALLOW}), tuple(layers), cross_account, tuple(notes))
    shape = _Shape(cross_account, required, aws_caller, caller.type == "Account")
    allowed, denied = _access(layers, shape)
    outcomes = _outcomes(allowed, denied)
    for layer in layers:
        notes.extend(f"{layer.label}: {note}" for note in layer.notes)
    if len(outcomes) == 1:
        (decision,) = outcomes
        if decision == EXPLICIT_DENY:
            deciding = [layer for layer in layers if layer.denies is True]
            return AuthDecision(
                decision, deciding[0].layer, tuple(ref for layer in deciding for ref in layer.denying), (),
                outcomes, tuple(layers), cross_account, tuple(notes),
            )
        if decision == ALLOW:
            name, refs = _granting(layers, shape)
            return AuthDecision(decision, name, refs, (), outcomes, tuple(layers), cross_account, tuple(notes))
        return AuthDecision(
            decision, _refusing(layers, shape), (), (), outcomes, tuple(layers), cross_account, tuple(notes)
        )
    mattering = [layer for layer in layers if _matters(layer, layers, shape)]
    keys = sorted({key for layer in mattering for key in layer.missing_keys}, key=str.lower)
    refs = tuple(ref for layer in mattering for ref in layer.undecided)
    return AuthDecision(
        UNDETERMINED, mattering[0].layer if mattering else None, refs, tuple(keys), outcomes, tuple(layers),
        cross_account, tuple(notes),
    )


@dataclass(frozen=True)
class _Shape:
    """What decides how layers combine: account boundary, resource policy need, caller kind."""

    cross_account: bool
    required: bool
    aws_caller: bool
    root: bool


def _of(layers: Sequence[LayerResult], name: str) -> list[LayerResult]:
    return [layer for layer in layers if layer.layer == name]


def _access(layers: Sequence[LayerResult], shape: _Shape) -> tuple[bool | None, bool | None]:
    """(allowed, explicitly denied), each three-valued, from the layers' own results."""
    denied = _or(*(layer.denies for layer in layers))
    # RCPs only ever deny: RCPFullAWSAccess, attached at every level, cannot be detached.
    guardrails = _and(*(layer.allows for layer in layers if layer.layer in ("scp", "vpc_endpoint")))
    identity = _of(layers, "identity")
    identity_allows = True if shape.root else (identity[0].allows if identity else False)
    limits = _and(*(layer.allows for layer in layers if layer.layer in ("boundary", "session")))
    identity_side = _and(identity_allows, limits)
    resource = _of(layers, "resource")
    by_match = resource[0].allows_by_match if resource else {}
    direct, role, account = (by_match.get(match, False) for match in PRINCIPAL_MATCHES)
    if not shape.aws_caller:
        core = direct
    elif shape.cross_account:
        core = _and(identity_side, _or(direct, role, account))
    else:
        granted = _or(direct, _and(role, limits))
        core = _or(granted, _and(account, identity_side)) if shape.required else _or(granted, identity_side)
    return _and(guardrails, core), denied


def _outcomes(allowed: bool | None, denied: bool | None) -> frozenset[str]:
    if denied is True:
        return frozenset({EXPLICIT_DENY})
    possible = {EXPLICIT_DENY} if denied is None else set()
    if allowed is not False:
        possible.add(ALLOW)
    if allowed is not True:
        possible.add(IMPLICIT_DENY)
    return frozenset(possible)


def _matters(layer: LayerResult, layers: Sequence[LayerResult], shape: _Shape) -> bool:
    """Would settling this layer's unknowns change what is possible?"""
    if layer.allows is not None and layer.denies is not None and None not in layer.allows_by_match.values():
        return False
    seen = set()
    for allows in (True, False):
        for denies in (True, False):
            by_match = {k: (allows if v is None else v) for k, v in layer.allows_by_match.items()}
            settled = replace(
                layer,
                allows=allows if layer.allows is None else layer.allows,
                denies=denies if layer.denies is None else layer.denies,
                allows_by_match=by_match,
            )
            seen.add(_outcomes(*_access([settled if other is layer else other for other in layers], shape)))
    return len(seen) > 1


def _granting(layers: Sequence[LayerResult], shape: _Shape) -> tuple[str, tuple[StatementRef, ...]]:
    resource = _of(layers, "resource")
    identity = _of(layers, "identity")
    by_match = resource[0].allows_by_match if resource else {}
    resource_refs = resource[0].allowing if resource else ()
    identity_refs = identity[0].allowing if identity and identity[0].allows else ()
    if not shape.aws_caller:
        return "resource", resource_refs
    if shape.root and not shape.required:
        return "identity", ()  # the root user has full access in its own account
    if shape.cross_account or (shape.required and not (by_match.get("direct") or by_match.get("role"))):
        return "identity", identity_refs + resource_refs
    if identity_refs:
        return "identity", identity_refs
    return "resource", resource_refs


def _refusing(layers: Sequence[LayerResult], shape: _Shape) -> str:
    """The first layer, in AWS's order, whose missing Allow refuses the request."""
    for name in ("scp", "vpc_endpoint"):
        if any(layer.allows is False for layer in _of(layers, name)):
            return name
    resource = _of(layers, "resource")
    by_match = resource[0].allows_by_match if resource else {}
    direct, role, account = (by_match.get(match, False) for match in PRINCIPAL_MATCHES)
    if not shape.aws_caller:
        return "resource"
    if (shape.cross_account or shape.required) and _or(direct, role, account) is False:
        return "resource"
    needed = ["boundary", "session"] if _or(direct, role) is True else ["identity", "boundary", "session"]
    for name in needed:
        if name == "identity" and shape.root:
            continue
        found = _of(layers, name)
        if (not found and name == "identity") or any(layer.allows is False for layer in found):
            return name
    return "identity"


def _resource_policy_required(request: AuthRequest) -> bool:
    parts = _arn_parts(request.resource or "")
    if parts is None:
        return False
    service, resource = parts[2], parts[5]
    if service == "kms" and resource.startswith("key/"):
        return True
    action = request.action.lower()
    trust_actions = ("sts:assumerole", "sts:tagsession", "sts:setsourceidentity", "sts:setcontext")
    return service == "iam" and resource.startswith("role/") and action.startswith(trust_actions)


def _request_context(request: AuthRequest) -> tuple[_Context, list[str]]:
    """The request's context keys, with those the principal and resource imply filled in."""
    caller = request.caller
    values: dict[str, ContextValue] = dict(request.context)
    given = {str(key).lower() for key in values} | {key.lower() for key in request.absent}
    derived: dict[str, ContextValue] = {}
    if caller.type in _AWS_TYPES:
        derived["aws:PrincipalAccount"] = caller.account
        derived["aws:PrincipalIsAWSService"] = "false"
        if caller.type != "Role":
            derived["aws:PrincipalType"] = caller.type
        if caller.type == "AssumedRole":
            if caller.role_arn:
                derived["aws:PrincipalArn"] = caller.role_arn
        else:
            derived["aws:PrincipalArn"] = caller.arn
        # aws:username is "not present" for anything but an IAM user (IAM policy variables docs).
        derived["aws:username"] = caller.arn.rsplit("/", 1)[1] if caller.type == "User" else None
    elif caller.type == "Service":
        derived["aws:PrincipalIsAWSService"] = "true"
    for key, value in caller.tags.items():
        derived[f"aws:PrincipalTag/{key}"] = value
    resource_account = request.resource_account or _account_of(request.resource or "")
    if resource_account:
        derived["aws:ResourceAccount"] = resource_account
    for key, value in derived.items():
        if key.lower() not in given:
            values[key] = value
    prefixes = ("aws:PrincipalTag/",) if caller.tags_complete else ()
    context = _Context(values, absent=request.absent, absent_prefixes=prefixes, closed=request.context_complete)
    return context, []


def _evaluate_layer(
    layer: str, level: int | None, items: Sequence[PolicyLike], request: AuthRequest, ctx: _Context, incomplete: bool
) -> LayerResult:
    caller = request.caller
    principal_element = layer in ("resource", "vpc_endpoint", "rcp", "scp")
    allows: list[str] = []
    denies: list[str] = []
    allowing: list[StatementRef] = []
    denying: list[StatementRef] = []
    undecided: list[StatementRef] = []
    missing: set[str] = set()
    notes: list[str] = []
    by_match: dict[str, list[str]] = {match: [] for match in PRINCIPAL_MATCHES}
    for position, item in enumerate(items):
        label = f"{layer} policy" if len(items) == 1 else f"{layer} policy #{position}"
        name, document = _named(item, label)
        policy = load_policy(document, name=name)
        variables = str(policy.get("Version", "")).strip() == POLICY_VERSION
        for ref in _refs(name, policy):
            truth, match, wanted, note = _statement_truth(
                ref.statement, request, ctx, caller, principal_element, layer == "resource", variables
            )
            if note:
                notes.append(f"{ref.describe()}: {note}")
            if truth == NO:
                continue
            if truth == MAYBE:
                undecided.append(ref)
                missing |= wanted
            if ref.effect == "Deny":
                denies.append(truth)
                if truth == YES:
                    denying.append(ref)
            else:
                allows.append(truth)
                by_match[match or "direct"].append(truth)
                if truth == YES:
                    allowing.append(ref)
    allow_truth, deny_truth = _any3(allows), _any3(denies)
    if incomplete:
        # What the known documents say stands; what they leave open is unknown.
        allow_truth = YES if allow_truth == YES else MAYBE
        deny_truth = YES if deny_truth == YES else MAYBE
        by_match = {match: truths if YES in truths else [*truths, MAYBE] for match, truths in by_match.items()}
        notes.append("its policies are only partly known")
    return LayerResult(
        layer,
        level,
        _truth_value(allow_truth),
        _truth_value(deny_truth),
        tuple(allowing),
        tuple(denying),
        tuple(undecided),
        tuple(sorted(missing, key=str.lower)),
        {match: _truth_value(_any3(truths)) for match, truths in by_match.items()} if layer == "resource" else {},
        tuple(notes),
    )


def _statement_truth(
    statement: Mapping[str, Any],
    request: AuthRequest,
    ctx: _Context,
    caller: RequestPrincipal,
    principal_element: bool,
    principal_required: bool,
    variables: bool,
) -> tuple[str, str | None, set[str], str]:
    """(truth, how its Principal names the caller, keys it lacked, a note) for one statement."""
    if not statement_matches_action(statement, request.action):
        return NO, None, set(), ""
    match: str | None = None
    if principal_element:
        try:
            if "Principal" in statement:
                match = _principal_match(_lenient_principals(statement["Principal"]), caller.kind, caller.arn)
                if match is None:
                    return NO, None, set(), ""
            elif "NotPrincipal" in statement:
                if _exempted(_lenient_principals(statement["NotPrincipal"]), caller.kind, caller.arn):
                    return NO, None, set(), ""
                match = "direct"
            elif principal_required:
                return NO, None, set(), "no Principal: a resource-based policy statement without one never applies"
        except InputError as exc:
            return NO, None, set(), f"{exc.message}; statement skipped"
    missing: set[str] = set()
    resource_truth = _resource_truth(statement, request.resource, ctx, missing, variables)
    condition = _evaluate_condition(statement.get("Condition"), ctx, variables)
    truth = _all3([resource_truth, condition.truth])
    wanted = (missing | set(condition.missing)) if truth == MAYBE else set()
    return truth, match, wanted, "; ".join(condition.notes)


def _lenient_principals(principal: Any) -> dict[str, list[str]]:
    """:func:`principals`, reading a bare ARN or account id (which IAM's grammar rejects) as ``{"AWS": …}``."""
    if isinstance(principal, str) and principal.strip() != "*":
        return {"AWS": [principal.strip()]}
    return principals(principal)


def _resource_truth(
    statement: Mapping[str, Any], resource: str | None, ctx: _Context, missing: set[str], variables: bool
) -> str:
    if "Resource" in statement:
        return _any3(_resource_pattern(p, resource, ctx, missing, variables) for p in _strings(statement["Resource"]))
    if "NotResource" in statement:
        return _not3(_any3(_resource_pattern(p, resource, ctx, missing, variables) for p in _strings(statement["NotResource"])))
    return YES


def _resource_pattern(pattern: str, resource: str | None, ctx: _Context, missing: set[str], variables: bool) -> str:
    tokens = _expand(pattern, ctx, missing) if variables else [(pattern, True)]
    if isinstance(tokens, str):
        return tokens
    if all(wild for _, wild in tokens) and _glob(_literal(tokens), False).is_star:
        return YES
    if resource is None:
        missing.add(UNKNOWN_RESOURCE)
        return MAYBE
    return YES if _resource_tokens_match(tokens, resource) else NO



# --------------------------------------------------------------------------
# IRSA trust (web identity)
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class TrustVerdict:
    """Whether a role's trust policy admits a caller, and if not, why.

    ``cause`` is ``None`` when the trust admits the caller, else a SPEC §7
    cause (``TRUST_PROVIDER_MISMATCH``, ``TRUST_ACTION_MISSING``,
    ``TRUST_SUBJECT_MISMATCH``, ``TRUST_AUDIENCE_MISMATCH``,
    ``POD_IDENTITY_TRUST``, or ``UNEXPLAINED`` when a condition on some other
    key refuses).  ``detail`` names the statement, key and value;
    ``candidates`` are the statements that came closest; ``explicit_deny`` is
    true when a Deny statement refuses; ``warnings`` flags risky but working
    trust (e.g. no ``:sub`` condition).
    """

    cause: str | None
    detail: str
    candidates: tuple[StatementRef, ...] = ()
    explicit_deny: bool = False
    warnings: tuple[str, ...] = ()

    @property
    def admitted(self) -> bool:
        return self.cause is None


def oidc_issuer_of(provider_arn: str) -> str:
    """The issuer host/path of an OIDC provider ARN, as used in condition keys.

    ``arn:aws:iam::111122223333:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/ABC``
    → ``oidc.eks.eu-west-1.amazonaws.com/id/ABC``.  Raises :class:`InputError`
    for an ARN that is not an OIDC provider's.
    """
    marker = ":oidc-provider/"
    if not provider_arn.startswith("arn:") or marker not in provider_arn:
        raise InputError(
            f"{provider_arn!r} is not an OIDC provider ARN",
            "expected arn:aws:iam::ACCOUNT:oidc-provider/ISSUER-HOST/PATH",
        )
    issuer = provider_arn.split(marker, 1)[1].strip("/")
    if not issuer:
        raise InputError(f"{provider_arn!r} names no issuer")
    return issuer


def _key_suffix(key: str) -> str | None:
    lowered = key.lower()
    for suffix in (":sub", ":aud"):
        if lowered.endswith(suffix):
            return suffix
    return None


def _condition_values_for(statement: Mapping[str, Any], suffix: str) -> list[tuple[str, str, list[str]]]:
    """(operator, key, values) for every condition key ending in *suffix*."""
    found = []
    condition = statement.get("Condition")
    if isinstance(condition, Mapping):
        for operator, block in condition.items():
            if isinstance(block, Mapping):
                for key, values in block.items():
                    if _key_suffix(str(key)) == suffix and not isinstance(values, (Mapping, type(None))):
                        found.append((str(operator), str(key), _strings(values)))
    return found


def analyze_web_identity_trust(
    trust_policy: Any,
    *,
    provider_arn: str,
    subject: str,
    audience: str = DEFAULT_AUDIENCE,
    context: Mapping[str, ContextValue] | None = None,
) -> TrustVerdict:
    """Does *trust_policy* let a pod's web-identity token assume the role (IRSA)?

    The token is from the OIDC provider *provider_arn*, for *subject*
    (``system:serviceaccount:NS:SA``) and *audience*.  The request context
    holds ``<issuer>:sub`` and ``<issuer>:aud`` (the issuer is the provider
    ARN's path after ``oidc-provider/``), plus any extra *context*.

    Causes, in the order SPEC §7 gives them (the first that holds wins):

    * ``TRUST_PROVIDER_MISMATCH`` — no Allow statement's ``Principal.Federated``
      is this provider ARN (compared exactly: a recreated cluster has a new id);
    * ``TRUST_ACTION_MISSING`` — statements federate the provider but none
      allows ``sts:AssumeRoleWithWebIdentity``;
    * ``TRUST_SUBJECT_MISMATCH`` — a ``…:sub`` condition excludes *subject*
      (wrong namespace or name, ``StringEquals`` with a wildcard, keys naming
      another cluster's issuer), or an explicit Deny refuses it;
    * ``TRUST_AUDIENCE_MISMATCH`` — the ``…:aud`` condition does not admit
      *audience*, or holds a ``system:serviceaccount:`` subject (a copy-paste
      of the ``:sub`` line), or an explicit Deny conditioned only on ``:aud``;
    * ``UNEXPLAINED`` — the only failing conditions are on other keys.
    """
    issuer = oidc_issuer_of(provider_arn)
    refs = _refs("trust policy", trust_policy)
    ctx: dict[str, ContextValue] = {f"{issuer}:sub": subject, f"{issuer}:aud": audience}
    ctx.update(context or {})
    caller = ("Federated", provider_arn)
    sub_key = f"{issuer}:sub"

    def applies(ref: StatementRef) -> bool:
        try:
            return _principal_applies(ref.statement, caller)
        except InputError:
            return False

    denies = [
        ref
        for ref in refs
        if ref.effect == "Deny"
        and applies(ref)
        and statement_matches_action(ref.statement, WEB_IDENTITY_ACTION)
        and condition_matches(ref.statement.get("Condition"), ctx)
    ]
    deny_note = ""
    if denies:
        deny_note = " Also, " + "; ".join(r.describe() for r in denies) + " explicitly denies it."

    federating = [ref for ref in refs if ref.effect == "Allow" and "Principal" in ref.statement and applies(ref)]
    if not federating:
        named = sorted(
            {
                arn
                for ref in refs
                if ref.effect == "Allow"
                for arn in _federated_of(ref.statement)
            }
        )
        if named:
            detail = (
                f"The trust policy federates {', '.join(named)}, not this cluster's OIDC provider "
                f"{provider_arn}."
            )
            if any(n.lower() == provider_arn.lower() for n in named):
                detail += " The ARNs differ only in letter case; IAM compares them exactly."
            else:
                detail += " Was the cluster recreated, or the trust copied from another cluster?"
        else:
            detail = f"No Allow statement of the trust policy federates the OIDC provider {provider_arn}."
        web = tuple(r for r in refs if statement_matches_action(r.statement, WEB_IDENTITY_ACTION))
        return TrustVerdict("TRUST_PROVIDER_MISMATCH", detail + deny_note, web, bool(denies))

    with_action = [ref for ref in federating if statement_matches_action(ref.statement, WEB_IDENTITY_ACTION)]
    if not with_action:
        parts = []
        for ref in federating:
            allowed = _strings(ref.statement.get("Action")) or [
                "everything except " + ", ".join(_strings(ref.statement.get("NotAction")))
            ]
            parts.append(f"{ref.describe()} allows {', '.join(allowed)}")
        detail = (
            f"{'; '.join(parts)} for {provider_arn}, but not {WEB_IDENTITY_ACTION}, the action a pod's "
            "web-identity token needs."
        )
        detail = detail[0].upper() + detail[1:]
        return TrustVerdict("TRUST_ACTION_MISSING", detail + deny_note, tuple(federating), bool(denies))

    results = [(ref, check_condition(ref.statement.get("Condition"), ctx)) for ref in with_action]
    admitting = [ref for ref, result in results if result.matched]
    if admitting:
        warnings = tuple(
            f"{ref.describe()} has no {sub_key} condition: every service account of the cluster "
            "may assume this role."
            for ref in admitting
            if not any(key.lower() == sub_key.lower() for _, key, _v in _condition_values_for(ref.statement, ":sub"))
        )
        if not denies:
            detail = f"{admitting[0].describe()} admits {subject}."
            return TrustVerdict(None, detail[0].upper() + detail[1:], tuple(admitting), False, warnings)
        deny_keys = {_key_suffix(key) for ref in denies for key in _condition_keys(ref.statement)}
        cause = "TRUST_AUDIENCE_MISMATCH" if deny_keys == {":aud"} else "TRUST_SUBJECT_MISMATCH"
        detail = (
            f"{admitting[0].describe()} admits {subject}, but "
            + "; ".join(r.describe() for r in denies)
            + " explicitly denies it, and an explicit Deny always wins."
        )
        return TrustVerdict(cause, detail[0].upper() + detail[1:], tuple(denies), True, warnings)

    # Every candidate statement has a failing condition: find the root cause.
    ranked: list[tuple[int, StatementRef, ConditionResult, str]] = []
    for ref, result in results:
        sub_failed = any(_key_suffix(f.key) == ":sub" for f in result.failures)
        aud_failed = any(_key_suffix(f.key) == ":aud" for f in result.failures)
        aud_holds_subject = any(
            v.startswith(SERVICE_ACCOUNT_SUBJECT_PREFIX)
            for _op, _key, values in _condition_values_for(ref.statement, ":aud")
            for v in values
        )
        if aud_failed and (not sub_failed or aud_holds_subject):
            ranked.append((0, ref, result, "TRUST_AUDIENCE_MISMATCH"))
        elif sub_failed:
            ranked.append((1, ref, result, "TRUST_SUBJECT_MISMATCH"))
        elif aud_failed:
            ranked.append((2, ref, result, "TRUST_AUDIENCE_MISMATCH"))
        else:
            ranked.append((3, ref, result, "UNEXPLAINED"))
    ranked.sort(key=lambda item: (item[0], item[1].index))
    _rank, best, best_result, cause = ranked[0]
    stale = [f for f in best_result.failures if _key_issuer(f.key) not in (None, issuer.lower())]
    reasons = [
        _describe_trust_failure(f, subject, audience, issuer) for f in best_result.failures if f not in stale
    ]
    if stale:
        names = sorted({f.key.rsplit(":", 1)[0] for f in stale})
        reasons.append(
            f"its condition keys {_listing(f.key for f in stale)} name issuer {' and '.join(names)}, but this "
            f"cluster's issuer is {issuer}, so those keys are never in the request"
        )
    detail = f"{best.describe()} federates {provider_arn} but its condition refuses the token: " + "; ".join(reasons)
    detail = detail[0].upper() + detail[1:]
    if not detail.endswith("."):
        detail += "."
    others = len(results) - 1
    if others:
        detail += f" {others} other statement(s) for this provider refuse it too."
    ordered = tuple(item[1] for item in ranked)
    return TrustVerdict(cause, detail + deny_note, ordered, bool(denies))


def _condition_keys(statement: Mapping[str, Any]) -> list[str]:
    """Every condition key of a statement; ``[""]`` for a statement without conditions."""
    condition = statement.get("Condition")
    if not isinstance(condition, Mapping):
        return [""]
    keys = [str(k) for block in condition.values() if isinstance(block, Mapping) for k in block]
    return keys or [""]


def _federated_of(statement: Mapping[str, Any]) -> list[str]:
    try:
        return principals(statement.get("Principal")).get("Federated", [])
    except InputError:
        return []


def _key_issuer(key: str) -> str | None:
    """The issuer part of an ``<issuer>:sub``/``<issuer>:aud`` key, lower-cased; None for other keys."""
    suffix = _key_suffix(key)
    return key[: -len(suffix)].lower() if suffix else None


def _describe_trust_failure(failure: ConditionFailure, subject: str, audience: str, issuer: str) -> str:
    suffix = _key_suffix(failure.key)
    if suffix == ":aud" and any(v.startswith(SERVICE_ACCOUNT_SUBJECT_PREFIX) for v in failure.expected):
        return (
            f"{failure.operator} on {failure.key} holds the service-account subject "
            f"{_listing(failure.expected)}; a subject belongs under {issuer}:sub, and :aud should be "
            f"'{audience}'"
        )
    if suffix == ":sub":
        text = f"{failure.operator} on {failure.key} admits {_listing(failure.expected)}, not '{subject}'"
        return f"{text} ({failure.hint})" if failure.hint else text
    if suffix == ":aud":
        return (
            f"{failure.operator} on {failure.key} admits {_listing(failure.expected)}, "
            f"not the token's audience '{audience}'"
        )
    return failure.describe()


def irsa_trust_policy(
    provider_arn: str, namespace: str, service_account: str, audience: str = DEFAULT_AUDIENCE
) -> dict[str, Any]:
    """The IRSA trust policy as the EKS guide writes it, for one service account.

    One Allow statement: ``Principal.Federated`` is the provider ARN, action
    ``sts:AssumeRoleWithWebIdentity``, and ``StringEquals`` on both
    ``<issuer>:aud`` (the audience) and ``<issuer>:sub``
    (``system:serviceaccount:NAMESPACE:SERVICE_ACCOUNT``).
    """
    return {"Version": POLICY_VERSION, "Statement": [_irsa_statement(provider_arn, namespace, service_account, audience)]}


def _irsa_statement(provider_arn: str, namespace: str, service_account: str, audience: str) -> dict[str, Any]:
    issuer = oidc_issuer_of(provider_arn)
    return {
        "Effect": "Allow",
        "Principal": {"Federated": provider_arn},
        "Action": WEB_IDENTITY_ACTION,
        "Condition": {
            "StringEquals": {
                f"{issuer}:aud": audience,
                f"{issuer}:sub": f"{SERVICE_ACCOUNT_SUBJECT_PREFIX}{namespace}:{service_account}",
            }
        },
    }


def merge_irsa_statement(
    existing_policy: Any,
    provider_arn: str,
    namespace: str,
    service_account: str,
    audience: str = DEFAULT_AUDIENCE,
) -> dict[str, Any]:
    """The existing trust policy, corrected so it admits the service account.

    Nothing is dropped: other statements are kept as written.

    * already admitted → returned unchanged (as a fresh dict);
    * empty or absent (``None``, ``""``, ``{}``) → :func:`irsa_trust_policy`;
    * the statement for this provider — the Allow statement that federates only
      this provider and names exactly this service account, else the only Allow
      statement that federates only this provider, when it names service accounts
      one by one (a namespace-wide pattern serves its own purpose) — is corrected in place, the
      least change that admits the token: the action gains
      ``sts:AssumeRoleWithWebIdentity``; a ``:sub`` that does not admit the
      subject gains it beside the values it has (the service accounts it already
      admits keep working); an ``:aud`` that does not admit the audience is set to
      it, and a service-account subject pasted under ``:aud`` (or an audience under
      ``:sub``) is moved out; a negated operator excluding them loses those
      values.  If that still does not admit the token, its ``:sub``/``:aud``
      entries are replaced by ``StringEquals`` on both;
    * with no such statement (another provider federated: a recreated cluster,
      whose old statement may still serve the old one), the statement of
      :func:`irsa_trust_policy` is appended.

    Explicit Deny statements are not edited: if one refuses the service
    account, the result still does, and :func:`analyze_web_identity_trust`
    on it says so.
    """
    if existing_policy is None or (isinstance(existing_policy, (str, Mapping)) and not existing_policy):
        return irsa_trust_policy(provider_arn, namespace, service_account, audience)
    subject = f"{SERVICE_ACCOUNT_SUBJECT_PREFIX}{namespace}:{service_account}"
    policy = load_policy(existing_policy, name="trust policy")
    verdict = analyze_web_identity_trust(policy, provider_arn=provider_arn, subject=subject, audience=audience)
    if verdict.admitted:
        return policy
    stmts = _statement_list(policy["Statement"], "trust policy")
    wanted = _irsa_statement(provider_arn, namespace, service_account, audience)
    policy.setdefault("Version", POLICY_VERSION)
    federating = [i for i, statement in enumerate(stmts) if _federates_only(statement, provider_arn)]
    exact = [i for i in federating if _is_statement_for(stmts[i], provider_arn, subject)]
    # A statement that names service accounts one by one is the list this one belongs on;
    # a namespace-wide pattern (system:serviceaccount:orders:*) serves its own purpose.
    listing = [i for i in federating if not any(
        "*" in value or "?" in value for _op, _key, values in _condition_values_for(stmts[i], ":sub") for value in values
    )]
    target = exact[0] if exact else (listing[0] if len(federating) == 1 and listing else None)
    if target is None:
        policy["Statement"] = [*stmts, wanted]
        return policy
    for correct in (_correct_statement, _fix_statement):
        fixed = correct(stmts[target], wanted) if correct is _fix_statement else correct(
            stmts[target], oidc_issuer_of(provider_arn), subject, audience)
        candidate = {**policy, "Statement": [*stmts[:target], fixed, *stmts[target + 1:]]}
        # Admitted, or refused for nothing of the provider, action, subject or audience (a
        # condition on another key, which the trust policy's author set on purpose).
        verdict = analyze_web_identity_trust(candidate, provider_arn=provider_arn, subject=subject, audience=audience)
        if verdict.cause in (None, "UNEXPLAINED"):
            return candidate
    policy["Statement"] = [*stmts, wanted]
    return policy


def _federates_only(statement: Mapping[str, Any], provider_arn: str) -> bool:
    if str(statement.get("Effect", "")).strip().lower() != "allow" or "NotAction" in statement:
        return False
    try:
        return principals(statement.get("Principal")) == {"Federated": [provider_arn]}
    except InputError:
        return False


_NEGATED = ("stringnotequals", "stringnotlike", "stringnotequalsignorecase")


def _correct_statement(statement: Mapping[str, Any], issuer: str, subject: str, audience: str) -> dict[str, Any]:
    """*statement* with the least change that lets it admit *subject* with *audience* (see
    :func:`merge_irsa_statement`)."""
    fixed = copy.deepcopy(dict(statement))
    actions = _strings(fixed.get("Action"))
    if not any(action_matches(a, WEB_IDENTITY_ACTION) for a in actions):
        fixed["Action"] = [*actions, WEB_IDENTITY_ACTION] if actions else WEB_IDENTITY_ACTION
    condition = fixed.get("Condition")
    if not isinstance(condition, dict):
        condition = {}
    admitted = {":sub": False, ":aud": False}
    for operator, block in list(condition.items()):
        if not isinstance(block, dict):
            continue
        family = operator.lower().split(":")[-1].removesuffix("ifexists")
        for key in list(block):
            suffix = _key_suffix(str(key))
            if suffix is None:
                continue
            values = _strings(block[key])
            if suffix == ":aud":
                values = [v for v in values if not v.startswith(SERVICE_ACCOUNT_SUBJECT_PREFIX)]
            else:
                values = [v for v in values if v.startswith(SERVICE_ACCOUNT_SUBJECT_PREFIX)]
            wanted = subject if suffix == ":sub" else audience
            if family in _NEGATED:
                values = [v for v in values if not glob_matches(v, wanted) and v != wanted]
            elif family.startswith("string"):
                if any(v == wanted or (family == "stringlike" and glob_matches(v, wanted)) for v in values):
                    admitted[suffix] = True
                elif suffix == ":aud":
                    # The audience is the token's one consumer (sts.amazonaws.com): a wrong value is the fault.
                    values = [wanted]
                    admitted[suffix] = True
                elif values or not admitted[suffix]:
                    values = [*values, wanted]
                    admitted[suffix] = True
            if values:
                block[key] = values[0] if len(values) == 1 else values
            else:
                del block[key]
        if not block:
            del condition[operator]
    equals = condition.setdefault("StringEquals", {})
    for suffix, wanted in ((":sub", subject), (":aud", audience)):
        if not admitted[suffix]:
            equals[f"{issuer}{suffix}"] = wanted
    if not equals:
        del condition["StringEquals"]
    fixed["Condition"] = condition
    return fixed


def _is_statement_for(statement: Mapping[str, Any], provider_arn: str, subject: str) -> bool:
    if str(statement.get("Effect", "")).strip().lower() != "allow":
        return False
    try:
        if principals(statement.get("Principal")) != {"Federated": [provider_arn]}:
            return False
    except InputError:
        return False
    if "NotAction" in statement:
        return False
    named = [
        value
        for suffix in (":sub", ":aud")
        for _op, _key, values in _condition_values_for(statement, suffix)
        for value in values
        if value.startswith(SERVICE_ACCOUNT_SUBJECT_PREFIX)
    ]
    return bool(named) and all(value == subject for value in named)


def _fix_statement(statement: Mapping[str, Any], wanted: Mapping[str, Any]) -> dict[str, Any]:
    fixed = copy.deepcopy(dict(statement))
    actions = _strings(fixed.get("Action"))
    if not any(action_matches(a, WEB_IDENTITY_ACTION) for a in actions):
        fixed["Action"] = [*actions, WEB_IDENTITY_ACTION] if actions else WEB_IDENTITY_ACTION
    condition: dict[str, Any] = {}
    for operator, block in (fixed.get("Condition") or {}).items():
        if not isinstance(block, Mapping):
            condition[operator] = block
            continue
        kept = {k: v for k, v in block.items() if _key_suffix(str(k)) is None}
        if kept:
            condition[operator] = kept
    equals = dict(condition.get("StringEquals", {}))
    equals.update(wanted["Condition"]["StringEquals"])
    condition["StringEquals"] = equals
    fixed["Condition"] = condition
    return fixed


# --------------------------------------------------------------------------
# EKS Pod Identity trust
# --------------------------------------------------------------------------


def pod_identity_trust_policy() -> dict[str, Any]:
    """The trust policy EKS Pod Identity needs, as the EKS guide writes it."""
    return {
        "Version": POLICY_VERSION,
        "Statement": [
            {
                "Sid": "AllowEksAuthToAssumeRoleForPodIdentity",
                "Effect": "Allow",
                "Principal": {"Service": POD_IDENTITY_SERVICE},
                "Action": list(POD_IDENTITY_ACTIONS),
            }
        ],
    }


def analyze_pod_identity_trust(
    trust_policy: Any, *, context: Mapping[str, ContextValue] | None = None
) -> TrustVerdict:
    """Does *trust_policy* let EKS Pod Identity assume the role?

    It must allow the service principal ``pods.eks.amazonaws.com`` both
    ``sts:AssumeRole`` and ``sts:TagSession`` (one statement or several), and
    no Deny may refuse either; otherwise the cause is ``POD_IDENTITY_TRUST``.

    Conditions (typically on ``aws:RequestTag/kubernetes-namespace`` …) are
    evaluated against *context* when given (the session tags of the failed
    call).  Without a context they cannot be decided: Allow statements count
    as allowing, conditional Deny statements as not denying, and each such
    statement is named in ``warnings``.
    """
    refs = _refs("trust policy", trust_policy)
    caller = ("Service", POD_IDENTITY_SERVICE)
    warnings: list[str] = []
    trusting = [ref for ref in refs if "Principal" in ref.statement and _safe_applies(ref, caller)]
    allowed: dict[str, list[StatementRef]] = {a: [] for a in POD_IDENTITY_ACTIONS}
    denied: dict[str, list[StatementRef]] = {a: [] for a in POD_IDENTITY_ACTIONS}
    for ref in trusting:
        condition = ref.statement.get("Condition")
        for action in POD_IDENTITY_ACTIONS:
            if not statement_matches_action(ref.statement, action):
                continue
            if condition and context is None:
                holds = ref.effect == "Allow"
                note = f"{ref.describe()} has conditions that were not evaluated (no request context)"
                if note not in warnings:
                    warnings.append(note)
            else:
                holds = condition_matches(condition, context)
            if holds:
                (denied if ref.effect == "Deny" else allowed)[action].append(ref)
    missing = [a for a in POD_IDENTITY_ACTIONS if not allowed[a]]
    refused = [a for a in POD_IDENTITY_ACTIONS if denied[a]]
    if not missing and not refused:
        return TrustVerdict(
            None,
            f"The trust policy allows {POD_IDENTITY_SERVICE} {' and '.join(POD_IDENTITY_ACTIONS)}.",
            tuple(trusting),
            False,
            tuple(warnings),
        )
    parts = []
    if not trusting:
        parts.append(f"No statement of the trust policy names the service principal {POD_IDENTITY_SERVICE}")
    elif missing:
        granted = [a for a in POD_IDENTITY_ACTIONS if allowed[a]]
        have = f"allows {POD_IDENTITY_SERVICE} only {', '.join(granted)}" if granted else (
            f"names {POD_IDENTITY_SERVICE} but allows neither action"
        )
        parts.append(f"The trust policy {have}; Pod Identity needs {' and '.join(POD_IDENTITY_ACTIONS)}")
    if refused:
        names = sorted({r.describe() for a in refused for r in denied[a]})
        parts.append(f"{'; '.join(names)} explicitly denies {', '.join(refused)}")
    candidates = tuple(trusting) or tuple(
        ref for ref in refs if any(statement_matches_action(ref.statement, a) for a in POD_IDENTITY_ACTIONS)
    )
    return TrustVerdict("POD_IDENTITY_TRUST", ". ".join(parts) + ".", candidates, bool(refused), tuple(warnings))


def _safe_applies(ref: StatementRef, caller: tuple[str, str]) -> bool:
    try:
        return _principal_applies(ref.statement, caller)
    except InputError:
        return False


# --------------------------------------------------------------------------
# CloudTrail event → IAM action
# --------------------------------------------------------------------------

#: CloudTrail event-source prefixes that are not the IAM service prefix.
_SOURCE_PREFIX = {
    "monitoring": "cloudwatch",
    "email": "ses",
    "tagging": "tag",
    "cloudcontrolapi": "cloudformation",
}

#: (IAM prefix, event name) whose IAM action has another name.
_EVENT_ACTION = {
    ("s3", "ListObjects"): "ListBucket",
    ("s3", "ListObjectsV2"): "ListBucket",
    ("s3", "HeadBucket"): "ListBucket",
    ("s3", "HeadObject"): "GetObject",
    ("s3", "SelectObjectContent"): "GetObject",
    ("s3", "ListObjectVersions"): "ListBucketVersions",
    ("s3", "ListBuckets"): "ListAllMyBuckets",
    ("s3", "ListMultipartUploads"): "ListBucketMultipartUploads",
    ("s3", "ListParts"): "ListMultipartUploadParts",
    ("s3", "CreateMultipartUpload"): "PutObject",
    ("s3", "UploadPart"): "PutObject",
    ("s3", "UploadPartCopy"): "PutObject",
    ("s3", "CompleteMultipartUpload"): "PutObject",
    ("s3", "CopyObject"): "PutObject",
    ("s3", "DeleteObjects"): "DeleteObject",
    ("s3", "GetBucketEncryption"): "GetEncryptionConfiguration",
    ("s3", "PutBucketEncryption"): "PutEncryptionConfiguration",
    ("s3", "DeleteBucketEncryption"): "PutEncryptionConfiguration",
    ("s3", "GetBucketLifecycle"): "GetLifecycleConfiguration",
    ("s3", "PutBucketLifecycle"): "PutLifecycleConfiguration",
    ("s3", "DeleteBucketLifecycle"): "PutLifecycleConfiguration",
    ("s3", "GetBucketReplication"): "GetReplicationConfiguration",
    ("s3", "PutBucketReplication"): "PutReplicationConfiguration",
    ("s3", "DeleteBucketReplication"): "PutReplicationConfiguration",
    ("s3", "GetBucketCors"): "GetBucketCORS",
    ("s3", "PutBucketCors"): "PutBucketCORS",
    ("s3", "DeleteBucketCors"): "PutBucketCORS",
    ("sqs", "SendMessageBatch"): "SendMessage",
    ("sqs", "DeleteMessageBatch"): "DeleteMessage",
    ("sqs", "ChangeMessageVisibilityBatch"): "ChangeMessageVisibility",
    ("sns", "PublishBatch"): "Publish",
    ("lambda", "Invoke"): "InvokeFunction",
    ("lambda", "InvokeWithResponseStream"): "InvokeFunction",
    ("kms", "ReEncrypt"): "ReEncryptFrom",
}

_LAMBDA_VERSION = re.compile(r"\d{8}(?:v\d+)?$")
_APIGATEWAY_VERBS = (("Get", "GET"), ("Create", "POST"), ("Update", "PATCH"), ("Delete", "DELETE"), ("Put", "PUT"))


def iam_action_for(event_source: str, event_name: str) -> str:
    """The IAM action a CloudTrail event needed: ``(eventSource, eventName)`` → ``prefix:Action``.

    Most events read straight across: ``("ec2.amazonaws.com",
    "DescribeInstances")`` → ``ec2:DescribeInstances`` (likewise ``sts``,
    ``kms``, ``dynamodb``, ``sqs``, ``logs``, ``events``, ``states``, ``ssm``,
    ``secretsmanager``, ``execute-api``, ``elasticloadbalancing``, ``es``,
    ``eks``, ``eks-auth`` — ``AssumeRoleForPodIdentity`` →
    ``eks-auth:AssumeRoleForPodIdentity``).  The exceptions:

    ========================================= ===========================================
    event source / event name                 IAM action
    ========================================= ===========================================
    ``monitoring.amazonaws.com``              ``cloudwatch:…``
    ``email.amazonaws.com``                   ``ses:…`` (SES also logs as ``ses``)
    ``tagging.amazonaws.com``                 ``tag:…``
    ``cloudcontrolapi.amazonaws.com``         ``cloudformation:…``
    lambda ``GetFunction20150331v2`` etc.     date/version suffix stripped
    lambda ``Invoke``, ``InvokeWithResponseStream`` ``lambda:InvokeFunction``
    s3 ``ListObjects``, ``ListObjectsV2``,    ``s3:ListBucket``
    ``HeadBucket``
    s3 ``GetObject``, ``HeadObject``,         ``s3:GetObject``
    ``SelectObjectContent``
    s3 ``ListObjectVersions``                 ``s3:ListBucketVersions``
    s3 ``ListBuckets``                        ``s3:ListAllMyBuckets``
    s3 ``ListMultipartUploads`` / ``ListParts`` ``s3:ListBucketMultipartUploads`` /
                                              ``s3:ListMultipartUploadParts``
    s3 ``CopyObject``, ``CreateMultipartUpload``, ``s3:PutObject``
    ``UploadPart(Copy)``, ``CompleteMultipartUpload``
    s3 ``DeleteObjects``                      ``s3:DeleteObject``
    s3 ``Get/Put/DeleteBucketEncryption``     ``s3:Get/PutEncryptionConfiguration``
    s3 ``Get/Put/DeleteBucketLifecycle``      ``s3:Get/PutLifecycleConfiguration``
    s3 ``Get/Put/DeleteBucketReplication``    ``s3:Get/PutReplicationConfiguration``
    s3 ``Get/Put/DeleteBucketCors``           ``s3:Get/PutBucketCORS``
    sqs ``SendMessageBatch`` etc.             ``sqs:SendMessage`` (batch → single action)
    sns ``PublishBatch``                      ``sns:Publish``
    kms ``ReEncrypt``                         ``kms:ReEncryptFrom`` (``ReEncryptTo`` too)
    apigateway ``Get…/Create…/Update…/``      ``apigateway:GET/POST/PATCH/``
    ``Delete…/Put…``                          ``DELETE/PUT``
    ========================================= ===========================================
    """
    source = event_source.strip().lower()
    name = event_name.strip()
    if not source or not name:
        raise InputError(f"cannot name the IAM action of event {event_source!r}/{event_name!r}")
    for suffix in (".amazonaws.com.cn", ".amazonaws.com"):
        if source.endswith(suffix):
            source = source[: -len(suffix)]
            break
    prefix = _SOURCE_PREFIX.get(source, source)
    if prefix == "lambda":
        name = _LAMBDA_VERSION.sub("", name) or name
    if prefix == "apigateway":
        for verb, method in _APIGATEWAY_VERBS:
            if name.startswith(verb) and name[len(verb) : len(verb) + 1].isupper():
                return f"apigateway:{method}"
    return f"{prefix}:{_EVENT_ACTION.get((prefix, name), name)}"


# --------------------------------------------------------------------------
# AWS refusal messages
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Denial:
    """What an AWS authorization error message says.

    ``reason``: ``no_identity_policy``, ``no_boundary``, ``no_session_policy``,
    ``no_resource_policy``, ``no_vpce_policy``, ``no_scp`` (implicit denies,
    "because no … allows"), ``explicit_deny`` ("with an explicit deny in …"),
    or ``None`` when the message does not say.  ``policy_type`` names the
    policy kind the message blames — ``identity``, ``scp``, ``rcp``,
    ``boundary``, ``session``, ``resource``, ``vpce`` — for explicit and
    implicit denies alike; ``policy_arn`` is the denying policy when AWS names
    it (same-account/organization requests since 2025); ``encoded_message``
    is EC2's "Encoded authorization failure message" (decode it with
    ``sts:DecodeAuthorizationMessage``).  ``authorization_id`` is the IAM Access
    Troubleshooter's id for this refusal ("… call the GetRequestAuthorizationDetails
    API with the following authorization id: …"), and ``authorization_region`` the
    region its console link names — the region whose ``iam-toolbox`` endpoint holds
    AWS's own evaluation (see :mod:`trailscan.troubleshooter`).
    """

    message: str
    principal_arn: str | None = None
    action: str | None = None
    resource: str | None = None
    reason: str | None = None
    policy_type: str | None = None
    policy_arn: str | None = None
    encoded_message: str | None = None
    authorization_id: str | None = None
    authorization_region: str | None = None

    @property
    def explicit(self) -> bool:
        return self.reason == "explicit_deny"

    @property
    def text(self) -> str:
        """The message without the Access Troubleshooter's tail ("Go to … for complete
        details, or call … with the following authorization id: …"), which differs for
        every refusal: what refusals alike share."""
        found = _TROUBLESHOOTER_TAIL.search(self.message)
        return self.message[: found.start()].rstrip() if found else self.message


#: Phrases AWS uses for each policy type, longest first.
_POLICY_PHRASES = (
    ("identity-based policy", "identity"),
    ("identity based policy", "identity"),
    ("service control policy", "scp"),
    ("resource control policy", "rcp"),
    ("permissions boundary policy", "boundary"),
    ("permissions boundary", "boundary"),
    ("permission boundary", "boundary"),
    ("session policy", "session"),
    ("resource-based policy", "resource"),
    ("resource based policy", "resource"),
    ("vpc endpoint policy", "vpce"),
)
_IMPLICIT_REASON = {
    "identity": "no_identity_policy",
    "boundary": "no_boundary",
    "session": "no_session_policy",
    "resource": "no_resource_policy",
    "vpce": "no_vpce_policy",
    "scp": "no_scp",
    "rcp": "no_rcp",
}
_ACTION = r"[A-Za-z0-9-]+:[A-Za-z0-9*-]+"
_USER_CLAUSE = re.compile(
    rf"User: (?P<principal>\S+) is not authorized to perform: (?P<action>{_ACTION})"
    r"(?: on resource: (?:\"(?P<quoted>[^\"]*)\"|(?P<resource>\S+)))?"
)
_NOT_AUTHORIZED = re.compile(rf"not authorized to perform:? (?P<action>{_ACTION})", re.IGNORECASE)
_IMPLICIT = re.compile(r"because no (?P<phrase>.+?) allows(?: the (?P<action>" + _ACTION + r") action)?", re.IGNORECASE)
_EXPLICIT = re.compile(r"with an explicit deny(?:\s+in\s+(?:an?|the)\s+(?P<rest>.*))?", re.IGNORECASE | re.DOTALL)
_POLICY_ARN = re.compile(r"(?:\s+policy)?\s*:\s*(?P<arn>arn:\S+)")
_ENCODED = re.compile(r"Encoded authorization failure message:\s*(?P<encoded>\S+)", re.IGNORECASE)
#: IAM Access Troubleshooter (IAM User Guide, "Troubleshoot access denied error messages with
#: authorization ID"): "… Go to https://REGION.console.aws.amazon.com/iam/home?region=REGION#/
#: authorization-details/ID for complete details, or call the GetRequestAuthorizationDetails API
#: with the following authorization id: ID".  The API documents ids as ``[0-9a-z]+``; the guide's
#: examples hold capitals, so both are read.
_AUTHORIZATION_ID = re.compile(r"authorization id:?\s*(?P<id>[A-Za-z0-9]{1,256})\b", re.IGNORECASE)
_AUTHORIZATION_LINK = re.compile(
    r"[?&]region=(?P<region>[a-z]{2}(?:-[a-z]+)+-\d+)#/authorization-details/(?P<id>[A-Za-z0-9]{1,256})"
)
_TROUBLESHOOTER_TAIL = re.compile(
    r"\s*(?:Go to https?://\S+authorization-details/|(?:or )?call the GetRequestAuthorizationDetails API)",
    re.IGNORECASE,
)


def _policy_type(text: str) -> tuple[str | None, str]:
    lowered = text.lower()
    for phrase, kind in _POLICY_PHRASES:
        if lowered.startswith(phrase):
            return kind, text[len(phrase) :]
    return None, text


def parse_denial_message(message: str | None) -> Denial:
    """Read an AWS authorization error message; never raises.

    Understands the IAM format "User: ARN is not authorized to perform:
    ACTION [on resource: ARN] because no TYPE policy allows the ACTION action"
    / "… with an explicit deny in a TYPE policy[: POLICY-ARN]" for every
    policy type (identity-based, service control, resource control,
    permissions boundary, session, resource-based, VPC endpoint), with or
    without the "An error occurred (AccessDenied) when calling …:" prefix an
    SDK adds, S3's quoted resource, and the shapes KMS, DynamoDB, SQS and
    others send as ``AccessDeniedException``; STS's "Not authorized to perform
    sts:AssumeRoleWithWebIdentity"; and EC2's "You are not authorized to
    perform this operation. Encoded authorization failure message: …"; and the
    IAM Access Troubleshooter's authorization id and console link that AccessDenied
    messages now often end with.  Fields the message does not state are ``None``.
    """
    text = (message or "").strip()
    principal = action = resource = reason = policy_type = policy_arn = encoded = None
    user = _USER_CLAUSE.search(text)
    if user:
        principal, action = user.group("principal"), user.group("action")
        if user.group("quoted") is not None:
            resource = user.group("quoted")
        elif user.group("resource"):
            resource = user.group("resource").rstrip(".,;")
    else:
        loose = _NOT_AUTHORIZED.search(text)
        if loose:
            action = loose.group("action")
    explicit = _EXPLICIT.search(text)
    implicit = _IMPLICIT.search(text)
    if explicit:
        reason = "explicit_deny"
        policy_type, after = _policy_type(explicit.group("rest") or "")
        if policy_type:
            arn = _POLICY_ARN.match(after)
            if arn:
                policy_arn = arn.group("arn").rstrip(".,;")
    elif implicit:
        policy_type, _after = _policy_type(implicit.group("phrase").strip())
        reason = _IMPLICIT_REASON.get(policy_type) if policy_type else None
        action = action or implicit.group("action")
    found = _ENCODED.search(text)
    if found:
        encoded = found.group("encoded")
    authorization_id = authorization_region = None
    link = _AUTHORIZATION_LINK.search(text)
    said = _AUTHORIZATION_ID.search(text)
    if said or link:
        authorization_id = (said or link).group("id")  # type: ignore[union-attr]
        if link and link.group("id") == authorization_id:
            authorization_region = link.group("region")
    return Denial(
        text, principal, action, resource, reason, policy_type, policy_arn, encoded, authorization_id,
        authorization_region,
    )
