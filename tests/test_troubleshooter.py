"""AWS's own answer (IAM Access Troubleshooter) beside trailscan's, through a real boto3 iam-toolbox client.

The loopback server (tests/support/toolbox_server.py) speaks GetRequestAuthorizationDetails as
botocore's model has it: REST-JSON GET /authorization-details/{id}, signed for `iam`, evaluations
paginated by nextToken, AccessDeniedException / ResourceNotFoundException as AWS sends them. The
refusals are CloudTrail records whose messages end as the IAM User Guide's example does.
"""

from __future__ import annotations

from pathlib import Path

import boto3
import botocore.session
import orjson
import pytest

from tests.support.toolbox_server import ToolboxServer
from tests.test_denied_layers import EC2_SILENT, READ_VOLUMES, WINDOW, Trail, denied
from tests.test_layers import organization_files
from trailscan.explain import collect_failures, explain_failures
from trailscan.explain.request import wanted_layers
from trailscan.inventory import Inventory, authorization_details_inventory
from trailscan.layers import PolicyLayers, load_policy_file
from trailscan.pipeline import InventoryRequest, load_inventory
from trailscan.store import Store
from trailscan.troubleshooter import fetch_answers

REGION = "eu-west-1"
AUTHORIZATION = "0a1b2c3d4e5f6g7h8i9j"


def tail(authorization_id: str = AUTHORIZATION, region: str = REGION) -> str:
    return (f" Go to https://{region}.console.aws.amazon.com/iam/home?region={region}#/authorization-details/"
            f"{authorization_id} for complete details, or call the GetRequestAuthorizationDetails API with the "
            f"following authorization id: {authorization_id}")


def session_for(server: ToolboxServer, folder: Path, key: str = "testing") -> boto3.Session:
    """Standard AWS configuration: the iam-toolbox endpoint from a config file's services section."""
    config = folder / "aws-config"
    config.write_text(
        "[profile t]\n"
        f"region = {REGION}\naws_access_key_id = {key}\naws_secret_access_key = testing\n"
        "services = toolbox\n[services toolbox]\niam_toolbox =\n"
        f"  endpoint_url = {server.endpoint_url}\n"
    )
    core = botocore.session.Session()
    core.set_config_variable("config_file", str(config))
    core.set_config_variable("credentials_file", str(folder / "absent"))
    core.set_config_variable("profile", "t")
    return boto3.Session(botocore_session=core)


def check(kind: str, effect: str, *, uri: str | None = None, sid: str | None = None, target: str | None = None) -> dict:
    found: dict = {"checkType": kind, "evaluatedEffect": effect}
    if target:
        found["targetArn"] = target
    if uri:
        found["matchedPolicies"] = [{"uri": uri, "matchedStatements": [{"sid": sid, "evaluatedEffect": "DENY"}]}]
    return found


def evaluation(action: str, effect: str, *checks: dict) -> dict:
    return {"action": action, "resource": "*", "evaluatedEffect": effect, "checks": list(checks)}


SCP_URI = "arn:aws:organizations::999988887777:policy/o-a1b2c3d4e5/service_control_policy/p-guard"


@pytest.fixture
def server():
    with ToolboxServer(page_size=1) as running:
        yield running


def test_answers_are_paged_signed_for_iam_and_read_in_the_refusals_region(server, tmp_path):
    server.add(AUTHORIZATION, REGION, [
        evaluation("ec2:DescribeInstances", "ALLOW", check("PRINCIPAL", "ALLOW")),
        evaluation("ec2:DescribeVolumes", "EXPLICIT_DENY", check("SERVICE_CONTROL_POLICY", "ALLOW", target="r-ab12"),
                   check("SERVICE_CONTROL_POLICY", "EXPLICIT_DENY", uri=SCP_URI, sid="DenyOutsideEuWest1",
                         target="ou-ab12-11111111"), check("PRINCIPAL", "ALLOW")),
    ], policies=[{"type": "SERVICE_CONTROL_POLICY", "uri": SCP_URI, "inline": False}],
        context={"aws:RequestedRegion": "us-east-1"})
    answers, gaps = fetch_answers(session_for(server, tmp_path), [(AUTHORIZATION, REGION)])
    assert gaps == {}
    answer = answers[AUTHORIZATION]
    assert [e.action for e in answer.evaluations] == ["ec2:DescribeInstances", "ec2:DescribeVolumes"]
    assert len([r for r in server.requests if r[0].endswith(AUTHORIZATION)]) == 2  # two pages
    assert {region for _, _, region in server.requests} == {REGION}
    deciding = answer.deciding("ec2:DescribeVolumes")
    assert (deciding.layer, deciding.effect, deciding.target) == ("scp", "EXPLICIT_DENY", "ou-ab12-11111111")
    assert answer.context == {"aws:RequestedRegion": "us-east-1"}


def test_an_expired_id_and_a_missing_permission_are_gaps_never_errors(server, tmp_path):
    server.add(AUTHORIZATION, REGION, [])
    server.expired.add(AUTHORIZATION)
    _, gaps = fetch_answers(session_for(server, tmp_path), [(AUTHORIZATION, REGION), ("otherregion1", "us-east-1")])
    assert "AWS no longer has it" in gaps[AUTHORIZATION] and "24 hours" in gaps[AUTHORIZATION]
    assert "AWS no longer has it" in gaps["otherregion1"]  # asked in the other region: not there
    server.denied.add("refused-key")
    _, gaps = fetch_answers(session_for(server, tmp_path, key="refused-key"), [(AUTHORIZATION, REGION)])
    assert "refused: AccessDeniedException" in gaps[AUTHORIZATION]
    assert "iam:GetRequestAuthorizationDetails" in gaps[AUTHORIZATION]


def test_the_number_of_lookups_is_bounded(server, tmp_path):
    _, gaps = fetch_answers(session_for(server, tmp_path), [(f"id{n}", REGION) for n in range(4)], limit=2)
    assert "more than 2 authorization ids" in gaps["id3"] and len(server.requests) == 2


def refused_trail(message_tail: str, **kwargs) -> Trail:
    trail = Trail()
    trail.role("app", READ_VOLUMES)
    trail.refused(trail.pod_session("app"), "ec2.amazonaws.com", "DescribeVolumes", EC2_SILENT + message_tail,
                  code="Client.UnauthorizedOperation", count=1, **kwargs)
    return trail


def explained(trail: Trail, session: boto3.Session, *files: str):
    """The pipeline's inventory step, live for the answers only, then the explanation."""
    with Store.open(":memory:") as store:
        store.ingest_documents([orjson.dumps({"Records": trail.records})], origin="test")
        failures = collect_failures(store, WINDOW)
        wants = wanted_layers(failures.groups, failures.issued)
        answers, gaps = fetch_answers(session, wants.authorizations)
        inventory = authorization_details_inventory({"RoleDetailList": trail.roles, "Policies": []}, source="iam.json")
        inventory = inventory.merge(Inventory(layers=PolicyLayers(
            answers=answers, gaps={f"authorization:{k}": v for k, v in gaps.items()})),
            *(Inventory(layers=load_policy_file(f)) for f in files))
        return explain_failures(failures, inventory)


def test_aws_answer_agreeing_with_trailscan_is_shown_beside_it(server, tmp_path):
    server.add(AUTHORIZATION, REGION, [evaluation("ec2:DescribeVolumes", "IMPLICIT_DENY", check("PRINCIPAL", "IMPLICIT_DENY"))])
    finding = denied(explained(refused_trail(tail()), session_for(server, tmp_path), *organization_files(tmp_path)))
    assert finding.cause == "MISSING_PERMISSION", finding.explanation
    assert f"authorization id {AUTHORIZATION}" in finding.explanation and "trailscan's evaluation agrees" in finding.explanation


def test_when_they_disagree_the_finding_says_so_and_aws_answer_wins(server, tmp_path):
    """trailscan reads the guard as not applying (the record says eu-west-1); AWS evaluated a Deny."""
    server.add(AUTHORIZATION, REGION, [evaluation(
        "ec2:DescribeVolumes", "EXPLICIT_DENY",
        check("SERVICE_CONTROL_POLICY", "EXPLICIT_DENY", uri=SCP_URI, sid="DenyOutsideEuWest1", target="ou-ab12-11111111"))])
    finding = denied(explained(refused_trail(tail()), session_for(server, tmp_path), *organization_files(tmp_path)))
    assert finding.cause == "EXPLICIT_DENY", finding.explanation
    assert "they disagree, and AWS's answer stands" in finding.explanation
    assert "implicit_deny at the identity layer" in finding.explanation  # trailscan's own, beside it
    assert "Sid 'DenyOutsideEuWest1'" in finding.explanation


def test_without_the_permission_the_answer_is_named_and_trailscan_decides(server, tmp_path):
    server.add(AUTHORIZATION, REGION, [])
    server.denied.add("refused-key")
    finding = denied(explained(refused_trail(tail()), session_for(server, tmp_path, key="refused-key"),
                               *organization_files(tmp_path)))
    assert finding.cause == "MISSING_PERMISSION", finding.explanation


def test_the_pipeline_reads_answers_only_when_live(server, tmp_path):
    trail = refused_trail(tail())
    with Store.open(":memory:") as store:
        store.ingest_documents([orjson.dumps({"Records": trail.records})], origin="test")
        failures = collect_failures(store, WINDOW)
        wants = wanted_layers(failures.groups, failures.issued)
    assert wants.authorizations == ((AUTHORIZATION, REGION),)
    loaded, _ = load_inventory(InventoryRequest(live_iam=False, iam_files=()), session=session_for(server, tmp_path),
                               layers=wants)
    assert server.requests == [] and loaded is None
