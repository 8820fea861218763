"""JSON and YAML documents a user hands trailscan, read within bounds.

Inventory files (``--service-accounts``, ``--iam``) and the policy documents inside
them come from wherever a user found them.  Read naively, a few hundred bytes can
cost minutes and gigabytes: a YAML "billion laughs" (nine anchors, each aliased
nine times by the next) expands to 387 million strings the moment anything walks
it, and JSON nested thousands deep overflows Python's recursion in the parser or in
the first ``copy.deepcopy``.  Nothing trailscan reads needs either: a
``kubectl get serviceaccounts`` list or a ``get-account-authorization-details``
document is a dozen levels deep, and kubectl writes no YAML aliases at all.

So every such document is read here, and refused with one
:class:`~trailscan.errors.InputError` line naming it when it is nested deeper than
:data:`MAX_DEPTH` or its aliases would add more than :data:`MAX_ALIAS_NODES` nodes
(or more nodes than the document itself holds, whichever is larger).  The checks are
linear in the document's size and never expand an alias.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import yaml

from trailscan.errors import InputError

__all__ = ["MAX_ALIAS_NODES", "MAX_DEPTH", "check_depth", "parse_json", "parse_yaml"]

#: Deepest nesting of lists and objects accepted: ten times what real inputs use.
MAX_DEPTH = 64
#: Nodes YAML aliases may add beyond the document's own (or as many as it holds, if more).
MAX_ALIAS_NODES = 10_000

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _too_deep(source: str, what: str) -> InputError:
    return InputError(
        f"{source}: {what} is nested more than {MAX_DEPTH} levels deep",
        "no kubectl or AWS CLI output is; is this the right file?",
    )


def check_depth(value: Any, source: str, what: str = "the document") -> None:
    """Raise :class:`InputError` when *value* nests lists/objects deeper than :data:`MAX_DEPTH`.

    Iterative, so a deep value cannot overflow the stack here; meant for parsed JSON
    (a tree).  YAML, whose aliases make a graph, is bounded by :func:`parse_yaml`.
    """
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, Mapping):
            children: Any = item.values()
        elif isinstance(item, (list, tuple)):
            children = item
        else:
            continue
        if depth > MAX_DEPTH:
            raise _too_deep(source, what)
        stack.extend((child, depth + 1) for child in children)


def parse_json(text: str | bytes, source: str, what: str = "the document") -> Any:
    """``json.loads`` that refuses nesting deeper than :data:`MAX_DEPTH`.

    ``json.JSONDecodeError`` and ``UnicodeDecodeError`` pass through for the caller to
    word; nesting too deep for the parser itself (100,000 levels) and nesting deeper
    than the bound both raise :class:`InputError`.
    """
    try:
        value = json.loads(text)
    except RecursionError:
        raise _too_deep(source, what) from None
    check_depth(value, source, what)
    return value


def parse_yaml(text: str, source: str, what: str = "the document") -> list[Any]:
    """The non-empty documents of a YAML stream, loaded with the safe loader.

    Before anything is built, the stream's events are read once to bound its nesting
    and what its aliases expand to (each anchor's size counted, never expanded).
    ``yaml.YAMLError`` passes through for the caller to word.
    """
    _check_yaml_events(text, source, what)
    return [doc for doc in yaml.load_all(text, Loader=_LOADER) if doc is not None]


def _check_yaml_events(text: str, source: str, what: str) -> None:
    own = 0  # nodes written in the stream
    added = 0  # nodes its aliases would add
    anchors: dict[str, int] = {}  # anchor -> nodes it stands for, expanded
    open_nodes: list[list[Any]] = []  # [anchor, size so far] of each open collection

    def close(anchor: str | None, size: int) -> None:
        if anchor is not None:
            anchors[anchor] = size
        if open_nodes:
            open_nodes[-1][1] += size

    for event in yaml.parse(text, Loader=_LOADER):
        if isinstance(event, yaml.DocumentStartEvent):
            anchors.clear()  # anchors belong to one document
        elif isinstance(event, yaml.CollectionStartEvent):
            own += 1
            open_nodes.append([event.anchor, 1])
            if len(open_nodes) > MAX_DEPTH:
                raise _too_deep(source, what)
        elif isinstance(event, yaml.CollectionEndEvent):
            anchor, size = open_nodes.pop()
            close(anchor, size)
        elif isinstance(event, yaml.ScalarEvent):
            own += 1
            close(event.anchor, 1)
        elif isinstance(event, yaml.AliasEvent):
            size = anchors.get(event.anchor, 1)  # an unknown anchor is the parser's error to report
            added += size
            if added > max(MAX_ALIAS_NODES, own):
                raise InputError(
                    f"{source}: {what} uses YAML aliases that expand to more than "
                    f"{max(MAX_ALIAS_NODES, own):,} extra nodes (a \"billion laughs\"?): refused",
                    "kubectl writes no aliases; save the list again with kubectl",
                )
            close(None, size)
