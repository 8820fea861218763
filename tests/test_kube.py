"""Service-account inventory: saved kubectl output, manifests, and the real kubectl.

The live tests run the real ``kubectl`` against :mod:`tests.support.kube_api`, a
loopback API server (SPEC §9: no fake kubectl).  CI installs kubectl with
``.ci/install-kubectl``; they are skipped only where kubectl is not on PATH, and
never in CI.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.support.kube_api import KubeAPI, closed_port_url, service_account, write_kubeconfig
from trailscan.errors import InputError
from trailscan.kube import (
    DEFAULT_AUDIENCE,
    ServiceAccount,
    cluster_name_of_context,
    fetch_service_accounts,
    load_service_accounts,
    parse_service_accounts,
)

ROLE = "arn:aws:iam::111122223333:role/payments-api"
OTHER_ROLE = "arn:aws:iam::111122223333:role/reports"

# Skipped only on a machine without kubectl; in CI (CI set) they run and fail
# instead, so a missing install step cannot pass as green.
needs_kubectl = pytest.mark.skipif(
    shutil.which("kubectl") is None and not os.environ.get("CI"),
    reason="kubectl is not on PATH: the live inventory tests need the real kubectl "
    "(run .ci/install-kubectl, which installs Debian's kubernetes-client)",
)


def kubectl_list(*items: dict) -> dict:
    """What ``kubectl get serviceaccounts -A -o json`` prints."""
    return {
        "apiVersion": "v1",
        "kind": "List",
        "metadata": {"resourceVersion": ""},
        "items": [{"apiVersion": "v1", "kind": "ServiceAccount", **item} for item in items],
    }


def sample_items() -> list[dict]:
    return [
        service_account("payments", "api", role_arn=ROLE),
        service_account("reports", "nightly", role_arn=OTHER_ROLE, audience="sts.eu-west-1.amazonaws.com"),
        service_account("kube-system", "default"),
    ]


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def by_subject(accounts: list[ServiceAccount]) -> dict[str, ServiceAccount]:
    return {account.subject: account for account in accounts}


# -- files ---------------------------------------------------------------------------


def test_json_list_from_kubectl(tmp_path: Path) -> None:
    path = write(tmp_path, "sa.json", json.dumps(kubectl_list(*sample_items()), indent=4))

    accounts = load_service_accounts(path, cluster="prod")

    assert [a.subject for a in accounts] == [
        "system:serviceaccount:payments:api",
        "system:serviceaccount:reports:nightly",
        "system:serviceaccount:kube-system:default",
    ]
    api = accounts[0]
    assert api == ServiceAccount(
        cluster="prod",
        namespace="payments",
        name="api",
        role_arn=ROLE,
        audience=DEFAULT_AUDIENCE,
        annotations={"eks.amazonaws.com/role-arn": ROLE},
    )


def test_yaml_list_from_kubectl(tmp_path: Path) -> None:
    path = write(tmp_path, "sa.yaml", yaml.safe_dump(kubectl_list(*sample_items())))

    accounts = by_subject(load_service_accounts(str(path)))

    assert set(accounts) == {
        "system:serviceaccount:payments:api",
        "system:serviceaccount:reports:nightly",
        "system:serviceaccount:kube-system:default",
    }
    assert accounts["system:serviceaccount:reports:nightly"].role_arn == OTHER_ROLE
    assert all(account.cluster == "" for account in accounts.values())


def test_raw_api_list_and_json_array(tmp_path: Path) -> None:
    # `kubectl get --raw /api/v1/serviceaccounts`: items carry no kind.
    raw = {"kind": "ServiceAccountList", "apiVersion": "v1", "metadata": {}, "items": sample_items()}
    listing = write(tmp_path, "raw.json", json.dumps(raw))
    array = write(tmp_path, "array.json", json.dumps(kubectl_list(*sample_items())["items"]))

    assert len(load_service_accounts(listing)) == 3
    assert load_service_accounts(array) == load_service_accounts(listing)


def test_multi_document_manifests(tmp_path: Path) -> None:
    text = """\
# payments: what we keep in git
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: api
  namespace: payments
  annotations:
    eks.amazonaws.com/role-arn: "  arn:aws:iam::111122223333:role/payments-api  "
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: payments}
spec: {}
---
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: worker
"""
    path = write(tmp_path, "manifests.yaml", text)

    accounts = load_service_accounts(path, cluster="prod")

    assert [(a.namespace, a.name, a.role_arn) for a in accounts] == [
        ("payments", "api", ROLE),  # the annotation's stray spaces are not part of the ARN
        ("default", "worker", None),  # no namespace: where `kubectl apply` puts it
    ]


def test_single_object(tmp_path: Path) -> None:
    obj = {"apiVersion": "v1", "kind": "ServiceAccount", **service_account("payments", "api", role_arn=ROLE)}
    as_json = write(tmp_path, "sa.json", json.dumps(obj))
    as_yaml = write(tmp_path, "sa.yaml", yaml.safe_dump(obj))

    assert [a.subject for a in load_service_accounts(as_json)] == ["system:serviceaccount:payments:api"]
    assert load_service_accounts(as_yaml) == load_service_accounts(as_json)


def test_missing_annotations(tmp_path: Path) -> None:
    items = [
        {"metadata": {"name": "bare", "namespace": "ns"}},
        {"metadata": {"name": "null", "namespace": "ns", "annotations": None}},
        {"metadata": {"name": "blank", "namespace": "ns", "annotations": {"eks.amazonaws.com/role-arn": ""}}},
        {"metadata": {"name": "other", "namespace": "ns", "annotations": {"team": "payments"}}},
    ]
    path = write(tmp_path, "sa.json", json.dumps(kubectl_list(*items)))

    accounts = load_service_accounts(path)

    assert [a.role_arn for a in accounts] == [None, None, None, None]
    assert {a.audience for a in accounts} == {"sts.amazonaws.com"}
    assert accounts[3].annotations == {"team": "payments"}


def test_custom_audience(tmp_path: Path) -> None:
    path = write(tmp_path, "sa.json", json.dumps(kubectl_list(*sample_items())))

    accounts = by_subject(load_service_accounts(path))

    assert accounts["system:serviceaccount:reports:nightly"].audience == "sts.eu-west-1.amazonaws.com"
    assert accounts["system:serviceaccount:payments:api"].audience == "sts.amazonaws.com"


def test_empty_list_is_no_accounts(tmp_path: Path) -> None:
    path = write(tmp_path, "sa.json", json.dumps(kubectl_list()))

    assert load_service_accounts(path) == []


def test_utf16_file_saved_by_powershell(tmp_path: Path) -> None:
    text = json.dumps(kubectl_list(*sample_items()))
    path = write(tmp_path, "sa.json", text.encode("utf-16"))  # with its byte-order mark

    assert len(load_service_accounts(path)) == 3


def test_service_account_is_a_hashable_value() -> None:
    account = ServiceAccount("prod", "payments", "api", ROLE, annotations={"a": "b"})

    assert account in {account}
    with pytest.raises(AttributeError):
        account.name = "other"  # type: ignore[misc]


BAD_FILES = {
    "empty": ("", "empty"),
    "comments only": ("# nothing here\n---\n", "empty"),
    "binary": (b"\x1f\x8b\x08\x00\xff\xfe\xfd", "not JSON or YAML"),
    "broken yaml": ("items:\n  - metadata: {name: a\n", "not JSON or YAML"),
    "truncated json": ('{"kind": "List", "items": [{"metadata": ', "not valid JSON"),
    "cloudtrail file": ('{"Records": []}', "neither kind nor items"),
    "scalar": ("just some text\n", "the document is a string"),
    "pods": (
        json.dumps(kubectl_list()).replace(
            '"items": []', '"items": [{"kind": "Pod", "metadata": {"name": "p"}}]'
        ),
        "holds Pod, no ServiceAccount",
    ),
    "items not a list": ('{"kind": "List", "items": {"a": 1}}', "items is an object, not a list"),
    "item not an object": ('{"kind": "List", "items": ["api"]}', "items[0] is a string"),
    "no metadata": ('{"kind": "List", "items": [{"kind": "ServiceAccount"}]}', "items[0] has no metadata"),
    "no name": (
        '{"kind": "List", "items": [{"metadata": {"namespace": "ns"}}]}',
        "items[0] has no metadata.name",
    ),
    "annotations not a mapping": (
        '{"kind": "List", "items": [{"metadata": {"name": "a", "annotations": ["x"]}}]}',
        "annotations that is not a mapping",
    ),
    "annotation not a string": (
        "kind: ServiceAccount\nmetadata:\n  name: a\n  annotations:\n    eks.amazonaws.com/audience: 42\n",
        "annotation eks.amazonaws.com/audience is a number",
    ),
    "second document bad": (
        "kind: ServiceAccount\nmetadata: {name: a}\n---\nkind: ServiceAccount\nmetadata: {namespace: b}\n",
        "document 2 has no metadata.name",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_file_is_one_line_naming_it(tmp_path: Path, case: str) -> None:
    content, expected = BAD_FILES[case]
    path = write(tmp_path, "service-accounts.json", content)

    with pytest.raises(InputError) as caught:
        load_service_accounts(path)

    message = str(caught.value)
    assert message.startswith(f"{path}: "), message
    assert expected in message
    assert "\n" not in message


@pytest.mark.parametrize("make", [lambda p: p / "absent.json", lambda p: p], ids=["missing", "directory"])
def test_unreadable_path(tmp_path: Path, make) -> None:
    path = make(tmp_path)

    with pytest.raises(InputError, match="cannot read service accounts") as caught:
        load_service_accounts(path)

    assert str(path) in str(caught.value)


def test_cluster_name_of_eks_context() -> None:
    assert cluster_name_of_context("arn:aws:eks:eu-west-1:111122223333:cluster/prod") == "prod"
    assert cluster_name_of_context("arn:aws-cn:eks:cn-north-1:111122223333:cluster/cn") == "cn"
    assert cluster_name_of_context("kind-dev") == "kind-dev"


# -- the real kubectl against a loopback API server ------------------------------------


@pytest.fixture
def kube_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Keep kubectl's discovery cache (under $HOME/.kube) out of the real home."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("KUBECACHEDIR", str(home / ".kube" / "cache"))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    return home


@pytest.fixture
def cluster(kube_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[KubeAPI]:
    """A loopback API server holding the sample accounts, as kubectl's current context."""
    with KubeAPI(sample_items(), context="prod", directory=tmp_path) as api:
        monkeypatch.setenv("KUBECONFIG", str(api.kubeconfig))
        yield api


@needs_kubectl
def test_fetch_through_kubectl(cluster: KubeAPI) -> None:
    accounts = fetch_service_accounts("prod")

    served = json.dumps(cluster.list_page(None, None, None))  # the file loader must agree
    assert accounts == parse_service_accounts(served, "server", cluster="prod")
    assert {a.cluster for a in accounts} == {"prod"}
    assert (
        by_subject(accounts)["system:serviceaccount:reports:nightly"].audience
        == "sts.eu-west-1.amazonaws.com"
    )
    lists = [r for r in cluster.requests if r.path.startswith("/api/v1/serviceaccounts")]
    assert [r.path for r in lists] == ["/api/v1/serviceaccounts?limit=500"]
    assert lists[0].accept == "application/json"  # -o json: no server-side Table


@needs_kubectl
def test_fetch_follows_pages(cluster: KubeAPI) -> None:
    cluster.service_accounts = [service_account(f"ns{i % 4}", f"sa{i}", role_arn=ROLE) for i in range(11)]
    cluster.page_size = 4  # the server returns fewer than kubectl's limit=500

    accounts = fetch_service_accounts("prod")

    assert [a.name for a in accounts] == [f"sa{i}" for i in range(11)]
    lists = [r.path for r in cluster.requests if r.path.startswith("/api/v1/serviceaccounts")]
    assert len(lists) == 3
    assert all("limit=500" in path for path in lists)
    assert all("continue=" in path for path in lists[1:])


@needs_kubectl
def test_current_context_names_the_cluster(cluster: KubeAPI) -> None:
    accounts = fetch_service_accounts()

    assert {a.cluster for a in accounts} == {"prod"}
    assert len(accounts) == 3


@needs_kubectl
def test_explicit_cluster_name_and_kubectl_path(cluster: KubeAPI) -> None:
    kubectl = shutil.which("kubectl")
    assert kubectl is not None

    accounts = fetch_service_accounts("prod", kubectl=kubectl, cluster="payments-prod")

    assert {a.cluster for a in accounts} == {"payments-prod"}


@needs_kubectl
def test_context_selects_the_cluster(
    kube_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    eks_context = "arn:aws:eks:eu-west-1:111122223333:cluster/prod"
    with (
        KubeAPI([service_account("staging", "api", role_arn=OTHER_ROLE)], context="staging") as staging,
        KubeAPI(sample_items(), context="prod") as prod,
    ):
        config = write_kubeconfig(
            tmp_path / "kubeconfig",
            {"staging": staging.url, eks_context: prod.url},
            current="staging",
        )
        monkeypatch.setenv("KUBECONFIG", str(config))

        chosen = fetch_service_accounts(eks_context)
        current = fetch_service_accounts()

    assert len(chosen) == 3 and {a.cluster for a in chosen} == {"prod"}
    assert [(a.cluster, a.subject) for a in current] == [("staging", "system:serviceaccount:staging:api")]
    assert sum(r.path.startswith("/api/v1/serviceaccounts") for r in prod.requests) == 1
    assert sum(r.path.startswith("/api/v1/serviceaccounts") for r in staging.requests) == 1


@needs_kubectl
def test_unreachable_server(kube_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = closed_port_url()
    monkeypatch.setenv("KUBECONFIG", str(write_kubeconfig(tmp_path / "kubeconfig", {"gone": url})))

    with pytest.raises(InputError) as caught:
        fetch_service_accounts("gone")

    message = str(caught.value)
    assert message.startswith("kubectl context gone: kubectl failed: ")
    assert "refused" in message and url.removeprefix("http://") in message
    assert "\n" not in message


@needs_kubectl
def test_refused_list_is_an_error_not_an_empty_inventory(cluster: KubeAPI) -> None:
    cluster.list_status = 403  # kubectl prints an empty List, then fails

    with pytest.raises(InputError, match=r"kubectl context prod: .*forbidden.*cannot list"):
        fetch_service_accounts("prod")


@needs_kubectl
def test_unknown_context(cluster: KubeAPI) -> None:
    with pytest.raises(InputError, match="kubectl context nope: kubectl failed: .*context was not found"):
        fetch_service_accounts("nope")


@needs_kubectl
def test_no_current_context(kube_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = write_kubeconfig(tmp_path / "kubeconfig", {"a": closed_port_url()}, current=None)
    monkeypatch.setenv("KUBECONFIG", str(config))

    with pytest.raises(
        InputError, match="^kubectl current context: kubectl failed: error: current-context is not set"
    ):
        fetch_service_accounts()


@needs_kubectl
def test_server_too_slow(cluster: KubeAPI) -> None:
    cluster.delay = 5

    with pytest.raises(InputError, match=r"kubectl context prod: kubectl .* timed out after 1 s"):
        fetch_service_accounts("prod", timeout=1)


def test_kubectl_not_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))

    with pytest.raises(
        InputError, match="^kubectl context prod: cannot list service accounts: kubectl not found on PATH"
    ):
        fetch_service_accounts("prod")
    with pytest.raises(InputError, match="^kubectl current context: cannot list service accounts"):
        fetch_service_accounts()


def test_kubectl_that_cannot_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "kubectl"
    fake.write_text("not a program\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))

    with pytest.raises(InputError, match="kubectl context prod: cannot run kubectl"):
        fetch_service_accounts("prod")
