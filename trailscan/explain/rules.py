"""Decision trees as ordered rules: the first rule that establishes a cause decides.

Each decision module (:mod:`.irsa`, :mod:`.pod_identity`, :mod:`.denied`) registers its
rules with :meth:`Rules.rule`, in the order they are written, naming the causes each
may return.  :meth:`Rules.decide` runs them in that order and refuses a verdict whose
cause the rule did not declare, so the declared order *is* the precedence — and a test
compares it with the cause table (:mod:`.causes`).

A rule declared ``said=True`` decides on AWS's own words (its error message, its Access
Troubleshooter): its verdicts are marked ``said``, and no walk-back through the
configuration's changes can unsettle them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Generic, TypeVar

from trailscan.explain.causes import cause as cause_row
from trailscan.findings import Workload

__all__ = ["Rule", "Rules", "Verdict"]

Case = TypeVar("Case")


@dataclass(frozen=True)
class Verdict:
    """One group's outcome, before groups are merged into findings."""

    cause: str
    workload: Workload
    role_arn: str | None
    principal_arn: str | None
    action: str
    explanation: str
    fix: str
    #: AWS said the cause (its message or evaluation), not trailscan's reading of the configuration.
    said: bool = False
    #: The policy layer trailscan's own evaluation found deciding (``identity``, ``scp``, …), if any.
    layer: str | None = None


@dataclass(frozen=True)
class Rule(Generic[Case]):
    """A check that may establish one of ``causes`` for a case (or return None)."""

    name: str
    causes: tuple[str, ...]
    check: Callable[[Case], Verdict | None]
    said: bool = False


@dataclass
class Rules(Generic[Case]):
    """The ordered rules of one kind of finding, and what is said when none holds."""

    kind: str
    rules: list[Rule[Case]] = field(default_factory=list)

    def rule(self, *causes: str, said: bool = False
             ) -> Callable[[Callable[[Case], Verdict | None]], Callable[[Case], Verdict | None]]:
        """Register the decorated check as the next rule; it may return only *causes* (and,
        *said*, decides on AWS's own words)."""
        for code in causes:
            cause_row(code)  # a KeyError here names a cause missing from the table

        def register(check: Callable[[Case], Verdict | None]) -> Callable[[Case], Verdict | None]:
            self.rules.append(Rule(check.__name__, causes, check, said))
            return check

        return register

    def order(self) -> tuple[str, ...]:
        """The causes these rules may establish, each at its first (deciding) position."""
        return tuple(dict.fromkeys(code for rule in self.rules for code in rule.causes))

    def decide(self, case: Case, otherwise: Callable[[Case], Verdict]) -> Verdict:
        """The first rule's verdict, or ``otherwise(case)`` (``UNEXPLAINED``) when none holds."""
        for rule in self.rules:
            verdict = rule.check(case)
            if verdict is not None:
                if verdict.cause not in rule.causes:
                    raise AssertionError(f"rule {rule.name} returned {verdict.cause}, which it does not declare")
                return replace(verdict, said=True) if rule.said else verdict
        verdict = otherwise(case)
        if verdict.cause != "UNEXPLAINED":
            raise AssertionError(f"the {self.kind} fallback returned {verdict.cause}, not UNEXPLAINED")
        return verdict
