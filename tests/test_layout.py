"""The shape of the code: one cause table everything derives from, stage packages without
cycles, one source registry, and a README that says what the code does.

These tests read the package's source (imports, sizes) and the README; they run nothing
of AWS.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from trailscan.doctor.model import CHECKS as DOCTOR_CHECKS
from trailscan.doctor.model import Check as DoctorCheck
from trailscan.doctor.model import spec_for
from trailscan.explain import denied, irsa, pod_identity
from trailscan.explain.causes import CAUSES, DOCTOR, DOCTOR_CAUSES, KINDS, codes, doctor_cause, kinds_of
from trailscan.explain.rules import Rules, Verdict
from trailscan.findings import Finding, Workload
from trailscan.sources import REGISTRY, get_source

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "trailscan"
README = ROOT / "README.md"

DECISIONS = {"irsa": irsa.RULES, "pod_identity": pod_identity.RULES, "denied_call": denied.RULES}


# -- the cause table ------------------------------------------------------------------------


def test_every_kind_has_its_decision_module():
    assert set(DECISIONS) == set(KINDS)


@pytest.mark.parametrize("kind", KINDS)
def test_decision_order_is_the_table_order(kind):
    """Each kind's rules, in the order they run, may establish exactly the table's causes of
    that kind, in the table's order; UNEXPLAINED closes every kind."""
    assert DECISIONS[kind].order() + ("UNEXPLAINED",) == codes(kind)


def test_a_rule_cannot_declare_a_cause_the_table_lacks():
    rules: Rules = Rules("irsa")
    with pytest.raises(KeyError):
        rules.rule("NOT_A_CAUSE")


def test_a_rule_cannot_return_a_cause_it_did_not_declare():
    rules: Rules = Rules("irsa")

    @rules.rule("TOKEN_EXPIRED")
    def wrong(_case):
        return Verdict("ROLE_NOT_FOUND", Workload(), None, None, "sts:AssumeRoleWithWebIdentity", "", "")

    with pytest.raises(AssertionError, match="does not declare"):
        rules.decide(object(), lambda _case: None)


def test_findings_accept_only_the_table_causes_of_their_kind():
    def finding(kind: str, cause: str) -> Finding:
        from datetime import UTC, datetime

        now = datetime(2026, 1, 1, tzinfo=UTC)
        return Finding(kind, cause, Workload(), None, None, "", "", "x:Y", None, None, 1, now, now, (), (), "", "")

    assert finding("denied_call", "UNEXPLAINED").cause == "UNEXPLAINED"
    with pytest.raises(ValueError, match="unknown cause"):
        finding("irsa", "NOT_A_CAUSE")
    with pytest.raises(ValueError, match="not a cause of irsa"):
        finding("irsa", "MISSING_PERMISSION")


def test_the_report_titles_come_from_the_table():
    from trailscan.report import CAUSE_TITLES

    assert CAUSE_TITLES == {row.code: row.title for row in CAUSES}


def _readme_causes() -> list[tuple[str, list[str]]]:
    """The README's table of causes: (kind, [causes in order])."""
    text = README.read_text()
    rows = re.findall(r"^\| (irsa|pod_identity|denied_call|any) \| (.+) \|$", text, flags=re.M)
    assert rows, "the README has no table of causes"
    return [(kind, re.findall(r"`([A-Z_]+)`", cell)) for kind, cell in rows]


def test_the_readme_table_of_causes_is_the_table():
    found = _readme_causes()
    assert [kind for kind, _ in found] == [*KINDS, "any"]
    assert [code for _, cells in found for code in cells] == [row.code for row in CAUSES]


# -- the doctor's section of the table ---------------------------------------------------------


def test_every_doctor_cause_is_declared_by_a_check_and_every_declared_cause_is_in_the_table():
    """The doctor's checks (trailscan.doctor.model.CHECKS) are its decision module: what they may
    establish is exactly the doctor's section of the table (and UNEXPLAINED)."""
    declared = {code for spec in DOCTOR_CHECKS for code in spec.causes}
    assert declared == set(codes(DOCTOR)), (declared ^ set(codes(DOCTOR)))


@pytest.mark.parametrize("spec_id", [spec.id for spec in DOCTOR_CHECKS])
def test_each_check_lists_its_causes_in_the_table_order(spec_id):
    spec = spec_for(spec_id.replace("*", "x"))
    order = codes(DOCTOR)
    assert list(spec.causes) == sorted(spec.causes, key=order.index)


def test_every_doctor_cause_is_produced_by_a_test_that_builds_its_situation():
    """Issue 19's acceptance: each cause of the doctor's table is asserted by a scenario of
    tests/test_doctor.py (in the pod) or tests/test_doctor_pod.py (through kubectl)."""
    scenarios = "".join((ROOT / "tests" / name).read_text() for name in ("test_doctor.py", "test_doctor_pod.py"))
    for code in codes(DOCTOR):
        assert re.search(rf"""(==|,) ?\(?"(fail|warn)", "{code}"\)|"{code}"\),?$|, "{code}"\]""", scenarios, re.M), (
            f"no test produces {code}")


def test_a_check_cannot_return_a_cause_it_does_not_declare():
    Check = DoctorCheck
    assert Check("cluster.coredns", "fail", "COREDNS_UNAVAILABLE").cause == "COREDNS_UNAVAILABLE"
    with pytest.raises(ValueError, match="does not declare"):
        Check("cluster.coredns", "fail", "TOKEN_EXPIRED")
    with pytest.raises(KeyError):
        Check("cluster.coredns", "fail", "NOT_A_CAUSE")
    with pytest.raises(ValueError, match="without a cause"):
        Check("cluster.coredns", "fail")
    with pytest.raises(KeyError):
        Check("no.such.check", "ok")
    assert Check("probe.token.web_identity.claims", "fail", "TOKEN_EXPIRED").id.startswith("probe.")


def test_a_code_may_belong_to_several_kinds():
    assert kinds_of("TOKEN_EXPIRED") == ("irsa", DOCTOR)
    assert kinds_of("NODE_ROLE_FALLBACK") == ("denied_call", DOCTOR)
    assert kinds_of("WEBHOOK_MISSING") == (DOCTOR,)
    assert kinds_of("MISSING_PERMISSION") == ("denied_call",)
    assert doctor_cause("TOKEN_EXPIRED").kind == DOCTOR
    assert doctor_cause("UNEXPLAINED").kind == "any"
    with pytest.raises(KeyError):
        doctor_cause("MISSING_PERMISSION")
    assert all(row.kind == DOCTOR for row in DOCTOR_CAUSES)
    assert len({row.code for row in DOCTOR_CAUSES}) == len(DOCTOR_CAUSES)


def test_a_finding_cannot_carry_a_doctor_only_cause():
    from datetime import UTC, datetime

    now = datetime(2026, 1, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="unknown cause"):
        Finding("irsa", "WEBHOOK_MISSING", Workload(), None, None, "", "", "x:Y", None, None, 1, now, now, (), (), "", "")


def _readme_doctor_causes() -> list[tuple[str, str]]:
    """The README's table of the doctor's causes: (code, kinds column), in order."""
    text = README.read_text()
    rows = re.findall(r"^\| `([A-Z_]+)` \| (doctor(?:, [a-z_]+)*) \| .+ \|$", text, flags=re.M)
    assert rows, "the README has no table of the doctor's causes"
    return rows


def test_the_readme_table_of_doctor_causes_is_the_table():
    """In the table's order, each with every kind it belongs to (doctor first)."""
    expected = [(row.code, ", ".join([DOCTOR, *(k for k in kinds_of(row.code) if k != DOCTOR)]))
                for row in DOCTOR_CAUSES]
    assert _readme_doctor_causes() == expected


# -- the rooms ----------------------------------------------------------------------------------


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every trailscan module *path* imports, at any level (a lazy import in a function is
    still a dependency), except under ``if TYPE_CHECKING:``."""
    tree = ast.parse(path.read_text())
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(child) for child in ast.walk(node))
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("trailscan"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("trailscan"):
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        graph[name] = {target for target in _imports(path) if target in modules and target != name}
    return graph


def test_no_import_cycle_in_the_package():
    graph = _graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                cycle = stack[stack.index(target):] + [target]
                pytest.fail("import cycle: " + " → ".join(cycle))
            if target not in state:
                visit(target)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_the_judging_stage_never_reaches_a_source():
    graph = _graph()
    for start in (name for name in graph if name.startswith("trailscan.explain")):
        seen, todo = set(), [start]
        while todo:
            node = todo.pop()
            if node in seen:
                continue
            seen.add(node)
            todo.extend(graph[node])
        assert not {n for n in seen if n.startswith("trailscan.sources")}, f"{start} reaches a source"


@pytest.mark.parametrize("room", ["explain", "report", "doctor"])
def test_no_module_of_a_stage_package_is_too_long(room):
    for path in (PACKAGE / room).glob("*.py"):
        assert len(path.read_text().splitlines()) <= 600, f"{path.name} is over 600 lines"


# -- the source registry -------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_registered_source_implements_the_interface(name):
    source = get_source(name)
    assert source.name == name
    assert source.remote == REGISTRY[name][1]
    assert callable(source.ingest) and callable(source.required_statements)


def test_the_cli_offers_exactly_the_registered_sources():
    from trailscan.cli import since_command

    [option] = [p for p in since_command.params if p.name == "source"]
    assert tuple(option.type.choices) == tuple(REGISTRY)


# -- the README ------------------------------------------------------------------------------------


def test_the_readme_layout_names_every_room():
    text = README.read_text()
    section = text[text.index("## Working on trailscan"):]
    for room in ("explain/", "report/", "sources/", "doctor/", "pipeline.py", "store.py", "queries/", "causes.py"):
        assert room in section, f"the README's layout does not name {room}"


def test_the_readme_lists_every_query_as_the_cli_does():
    from click.testing import CliRunner

    from trailscan.cli import main

    listed = CliRunner().invoke(main, ["queries", "list"]).output
    text = README.read_text()
    block = text[text.index("$ trailscan queries list\n") + len("$ trailscan queries list\n"):]
    assert block.startswith(listed), "the README's `trailscan queries list` is not what the command prints"


def test_every_cause_of_findings_has_a_family_with_a_documentation_page():
    from trailscan.explain.causes import FAMILIES, FAMILY_OF

    assert set(FAMILY_OF) == {row.code for row in CAUSES}
    assert set(FAMILY_OF.values()) == set(FAMILIES)
    assert all(url.startswith("https://docs.aws.amazon.com/") for _, url in FAMILIES.values())
