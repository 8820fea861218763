"""The coverage of a window (issue 17.1): what findings rest on, merged from every ingest the
store holds for the window, with the events of the window counted in the store.

The rules, each tested on a store of its own: events count only inside the window, per
source (by origin), account and region; a row read but holding no event of the window is
``empty`` and says what it read; a window holding no event at all is never an all-clear
(exit 3, no green banner); a remote source is ``complete`` when its complete ingests
together cover the window, whatever failed later; local files stay ``partial`` while a
file that could not be read has not been read since.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import run_cli
from trailscan.explain.coverage import measure_coverage, window_coverage
from trailscan.findings import CoverageRow, FindingsReport
from trailscan.model import COMPLETE, FAILED, PARTIAL, Coverage, Window
from trailscan.sources.files import ingest_files
from trailscan.store import Store

ACCOUNT = "111122223333"
OTHER = "444455556666"
REGION = "eu-west-1"
START = datetime(2026, 11, 27, 6, 0, tzinfo=UTC)
WINDOW = Window(START, START + timedelta(hours=24))
OFFLINE = {"AWS_EC2_METADATA_DISABLED": "true", "AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""}


def record(n: int, when: datetime, account: str = ACCOUNT, region: str = REGION, **fields) -> dict:
    return {
        "eventVersion": "1.08",
        "eventID": f"evt-{n:05d}",
        "eventTime": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "eventSource": "s3.amazonaws.com",
        "eventName": "ListBuckets",
        "awsRegion": region,
        "recipientAccountId": account,
        "userIdentity": {"type": "AssumedRole", "accountId": account},
        **fields,
    }


def store_records(store: Store, records: list[dict], origins: list[str]) -> None:
    """Store *records* as a source does, each with its origin (S3 URL, lookup:REGION:ID, path)."""
    result = store.ingest_documents([json.dumps(r) for r in records], origin="test", names=origins)
    assert result.new_events == len(records) and not result.problems


def s3_origin(n: int, account: str = ACCOUNT, region: str = REGION) -> str:
    return f"s3://trail/AWSLogs/{account}/CloudTrail/{region}/2026/11/27/{account}_CloudTrail_{region}_{n}.json.gz"


def remote(status: str, start: datetime, end: datetime, *, source="s3", account=ACCOUNT, region=REGION,
           events=0, detail="") -> Coverage:
    return Coverage(source, account, region, start, end, events=events, status=status, detail=detail)


def only_row(store: Store, window: Window | None = WINDOW) -> CoverageRow:
    [row] = window_coverage(store, window)
    return row


# -- events count inside the window, per source, account and region -----------------------------------


def test_events_are_counted_inside_the_window_per_account_and_region(store):
    inside = [record(i, START + timedelta(hours=i)) for i in range(5)]
    before = [record(10 + i, START - timedelta(hours=1 + i)) for i in range(3)]
    after = [record(20, WINDOW.end), record(21, WINDOW.end + timedelta(days=1))]  # the end is exclusive
    elsewhere = [record(30, START + timedelta(hours=2), region="us-east-1"), record(31, START, account=OTHER)]
    everything = inside + before + after + elsewhere
    store_records(store, everything, [s3_origin(int(r["eventID"][4:]), r["recipientAccountId"], r["awsRegion"])
                                      for r in everything])
    for account, region in ((ACCOUNT, REGION), (ACCOUNT, "us-east-1"), (OTHER, REGION)):
        store.record_coverage(remote(COMPLETE, WINDOW.start, WINDOW.end, account=account, region=region, events=999))
    measured = measure_coverage(store, WINDOW)
    by_key = {(row.account, row.region): row for row in measured.rows}
    assert by_key[(ACCOUNT, REGION)].events == 5  # not the 999 the ingest said, not the 10 outside
    assert by_key[(ACCOUNT, "us-east-1")].events == 1 and by_key[(OTHER, REGION)].events == 1
    assert measured.events == 7 == sum(row.events for row in measured.rows)
    assert {row.status for row in measured.rows} == {COMPLETE}


def test_lookup_rows_count_the_events_of_their_own_region_from_their_origin(store):
    records = [record(i, START + timedelta(minutes=i)) for i in range(4)]
    store_records(store, records[:3], [f"lookup:{REGION}:{r['eventID']}" for r in records[:3]])
    store_records(store, records[3:], [s3_origin(3)])
    store.record_coverage(remote(COMPLETE, WINDOW.start, WINDOW.end, source="lookup"))
    store.record_coverage(remote(COMPLETE, WINDOW.start, WINDOW.end, source="s3"))
    by_source = {row.source: row for row in window_coverage(store, WINDOW)}
    assert by_source["lookup"].events == 3 and by_source["s3"].events == 1


def test_the_real_corpus_counts_what_the_store_holds_in_any_window(real_store):
    windows = [Window(datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 2, 1, tzinfo=UTC)),
               Window(datetime(2019, 1, 1, tzinfo=UTC), datetime(2023, 1, 1, tzinfo=UTC)),
               Window(datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 1, 8, tzinfo=UTC))]
    with Store.open(real_store, read_only=True) as store:
        for window in windows:
            _, [(expected,)] = store.query("SELECT count(*) FROM events WHERE event_time >= $s AND event_time < $e",
                                           {"s": window.start, "e": window.end})
            measured = measure_coverage(store, window)
            [row] = measured.rows
            assert row.events == measured.events == expected
            assert row.status == ("complete" if expected else "empty")
        everything = measure_coverage(store, None)
        assert everything.events == everything.rows[0].events == store.count_events() == 3250


# -- empty: read, but nothing in the window ---------------------------------------------------------


def test_a_complete_read_without_an_event_of_the_window_is_empty_and_says_what_it_read(store):
    old = [record(i, START - timedelta(days=30 + i)) for i in range(4)]
    store_records(store, old, [s3_origin(i) for i in range(4)])
    store.record_coverage(remote(COMPLETE, START - timedelta(days=40), START - timedelta(days=20)))
    store.record_coverage(remote(COMPLETE, WINDOW.start, WINDOW.end, detail="0 log files in the window"))
    row = only_row(store)
    assert (row.status, row.events) == ("empty", 0)
    assert row.detail == "4 events read, spanning 2026-10-25T06:00:00Z – 2026-10-28T06:00:00Z; none in the window"


def test_an_empty_read_that_never_read_a_record_says_so(store):
    store.record_coverage(remote(COMPLETE, WINDOW.start, WINDOW.end, detail="0 log files in the window"))
    row = only_row(store)
    assert (row.status, row.events, row.detail) == ("empty", 0, "no records read; 0 log files in the window")


def test_a_read_whose_events_another_source_stored_first_is_not_empty(store):
    records = [record(i, START + timedelta(hours=1)) for i in range(2)]
    store_records(store, records, [f"lookup:{REGION}:{r['eventID']}" for r in records])
    store.record_coverage(remote(COMPLETE, WINDOW.start, WINDOW.end, source="lookup"))
    store.record_coverage(remote(COMPLETE, WINDOW.start, WINDOW.end, source="s3"))
    by_source = {row.source: row for row in window_coverage(store, WINDOW)}
    assert (by_source["lookup"].status, by_source["lookup"].events) == ("complete", 2)
    assert (by_source["s3"].status, by_source["s3"].events) == ("complete", 0)
    assert "stored first from another source" in by_source["s3"].detail


def test_partial_and_failed_reads_never_become_empty(store):
    store.record_coverage(remote(PARTIAL, WINDOW.start, WINDOW.end, region="us-east-1", detail="2 unreadable"))
    store.record_coverage(remote(FAILED, WINDOW.start, WINDOW.end, region="us-west-2", detail="AccessDenied"))
    assert {row.region: row.status for row in window_coverage(store, WINDOW)} == {
        "us-east-1": "partial", "us-west-2": "failed"}


# -- a window with no event at all is never complete ----------------------------------------------------


@pytest.mark.parametrize(
    "statuses, window_events, complete",
    [
        (["complete"], 10, True),
        (["complete", "empty"], 10, True),
        (["empty"], 0, False),
        (["complete"], 0, False),  # whatever the rows say, a window without events proves nothing
        (["complete", "partial"], 10, False),
        (["complete", "failed"], 10, False),
        ([], 10, False),
    ],
)
def test_findings_are_complete_only_over_read_rows_and_events(statuses, window_events, complete):
    rows = [CoverageRow("s3", ACCOUNT, f"region-{i}", status, 5) for i, status in enumerate(statuses)]
    report = FindingsReport(WINDOW.start, WINDOW.end, rows, window_events=window_events)
    assert report.complete is complete


# -- remote sources: the complete ingests' windows together -----------------------------------------


def at(hours: float) -> datetime:
    return START + timedelta(hours=hours)


@pytest.mark.parametrize(
    "ingests, status",
    [
        ([(COMPLETE, 0, 24)], "complete"),
        ([(COMPLETE, -48, 48)], "complete"),  # a wider read covers the window
        ([(COMPLETE, 0, 24), (FAILED, 0, 24)], "complete"),  # a later failure erases nothing stored
        ([(COMPLETE, 0, 24), (PARTIAL, 0, 24)], "complete"),
        ([(COMPLETE, 0, 12), (COMPLETE, 12, 24)], "complete"),  # two halves, in either order
        ([(COMPLETE, 12, 30), (COMPLETE, -6, 12)], "complete"),
        ([(COMPLETE, 0, 12), (COMPLETE, 13, 24)], "partial"),  # an hour no complete read covers
        ([(COMPLETE, 6, 24)], "partial"),
        ([(PARTIAL, 0, 24)], "partial"),  # LookupEvents --quick is always recorded partial
        ([(PARTIAL, 0, 24), (PARTIAL, 0, 24)], "partial"),
        ([(FAILED, 0, 24), (PARTIAL, 0, 12)], "partial"),
        ([(FAILED, 0, 24)], "failed"),
        ([(FAILED, 0, 24), (FAILED, 0, 12)], "failed"),
        ([(FAILED, 0, 24), (COMPLETE, 0, 24)], "complete"),  # read again after a failure
    ],
)
def test_remote_status_merges_every_ingest_of_the_window(store, ingests, status):
    store_records(store, [record(1, at(12.5))], [s3_origin(1)])
    for recorded, begin, end in ingests:  # oldest first
        store.record_coverage(remote(recorded, at(begin), at(end), detail=f"{recorded} {begin}-{end}"))
    row = only_row(store)
    assert row.status == status
    if status == "partial":
        assert "read completely" in row.detail or "read in part" in row.detail


def test_a_partial_row_names_the_spans_read_and_the_last_problem(store):
    store_records(store, [record(1, at(3))], [s3_origin(1)])
    store.record_coverage(remote(COMPLETE, at(-12), at(6)))
    store.record_coverage(remote(PARTIAL, at(12), at(18), detail="1 unreadable"))
    store.record_coverage(remote(FAILED, at(18), at(24), detail="AccessDenied listing the region"))
    row = only_row(store)
    assert row.status == "partial" and row.events == 1
    assert row.detail == ("AccessDenied listing the region; read completely: 2026-11-27T06:00:00Z – "
                          "2026-11-27T12:00:00Z; read in part: 2026-11-27T18:00:00Z – 2026-11-28T00:00:00Z")


def test_a_failed_row_keeps_the_latest_reason(store):
    store.record_coverage(remote(FAILED, WINDOW.start, WINDOW.end, detail="first"))
    store.record_coverage(remote(FAILED, WINDOW.start, WINDOW.end, detail="second"))
    assert (only_row(store).status, only_row(store).detail) == ("failed", "second")


def test_ingests_outside_the_window_do_not_count(store):
    store.record_coverage(remote(COMPLETE, at(-48), at(-24)))
    store.record_coverage(remote(COMPLETE, at(24), at(48)))
    assert window_coverage(store, WINDOW) == []


def test_without_a_window_the_store_span_must_be_covered(store):
    store_records(store, [record(1, at(1)), record(2, at(30))], [s3_origin(1), s3_origin(2)])
    store.record_coverage(remote(COMPLETE, WINDOW.start, WINDOW.end))
    assert only_row(store, None).status == "partial"  # the event at +30 h was read by nobody's complete ingest
    store.record_coverage(remote(COMPLETE, WINDOW.end, at(48)))
    row = only_row(store, None)
    assert (row.status, row.events) == ("complete", 2)


# -- local files: one row, partial while an unreadable file stays unread -----------------------------------


def write_trail(folder: Path, first: int, count: int, when: datetime) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"trail-{first}.json"
    path.write_text(json.dumps({"Records": [record(first + i, when + timedelta(minutes=i)) for i in range(count)]}))
    return path


def test_a_later_bad_file_does_not_hide_what_earlier_ingests_read_and_fixing_it_clears_it(store, tmp_path):
    write_trail(tmp_path / "good", 0, 5, at(1))
    ingest_files(store, [str(tmp_path / "good")])
    bad = tmp_path / "later" / "bad.json"
    bad.parent.mkdir()
    bad.write_text('{"Records": [')
    result, coverage = ingest_files(store, [str(bad)])
    assert coverage.status == "partial" and result.records == 0
    row = only_row(store)
    assert (row.status, row.events) == ("partial", 5)  # the first ingest's events are still counted
    assert str(bad) in row.detail and "1 file could not be read" in row.detail
    # Another ingest that reads other files fine does not clear it ...
    write_trail(tmp_path / "more", 100, 2, at(2))
    ingest_files(store, [str(tmp_path / "more")])
    assert only_row(store).status == "partial"
    # ... reading it once fixed does.
    write_trail(bad.parent, 200, 1, at(3)).rename(bad)
    ingest_files(store, [str(bad.parent)])
    row = only_row(store)
    assert (row.status, row.events) == ("complete", 8)
    assert row.detail.startswith("4 ingests of local files; the last: ")


def test_unreadable_files_are_tracked_by_absolute_path(store, tmp_path, monkeypatch):
    bad = tmp_path / "bad.json"
    bad.write_text("not json")
    write_trail(tmp_path / "good", 0, 1, at(1))
    monkeypatch.chdir(tmp_path)
    ingest_files(store, ["bad.json", "good"])
    assert only_row(store).status == "partial"
    bad.write_text(json.dumps(record(7, at(2))))
    ingest_files(store, [str(bad)])  # the same file, named another way
    assert only_row(store).status == "complete"


def test_a_store_from_before_unreadable_files_were_tracked_keeps_its_last_status(store, tmp_path):
    write_trail(tmp_path, 0, 2, at(1))
    ingest_files(store, [str(tmp_path)])
    store.set_state("files.unreadable", None)  # as an older trailscan left it
    store.record_coverage(Coverage("files", status=PARTIAL, detail="1 unreadable"))
    assert (only_row(store).status, only_row(store).detail) == ("partial", "1 unreadable")


# -- the command line: the window, not the files ----------------------------------------------------------


def test_since_over_files_outside_the_window_exits_3_and_says_no_event_is_in_it(real_data):
    """Issue 17.1's acceptance: records from 2014-2024, a window of the last 7 days."""
    # A wide terminal, so the coverage row's detail stands on one line (the content is checked here).
    ran = run_cli("since", "7d", "--path", str(real_data), "--db", ":memory:", "--offline",
                  env={**OFFLINE, "COLUMNS": "200"})
    assert ran.returncode == 3, ran.stderr
    assert "No failing workloads" not in ran.stdout and "Traceback" not in ran.stderr
    assert re.search(r"^No CloudTrail events in the window \S+Z – \S+Z", ran.stdout, re.M), ran.stdout
    assert "empty" in ran.stdout and "3,250 events read, spanning 2014-03-06T17:10:34Z – 2024-11-30T08:43:18Z" in ran.stdout
    [error] = [line for line in ran.stderr.splitlines() if "error" in line]
    assert error.startswith("trailscan: error: no CloudTrail events in the window ")
    as_json = run_cli("since", "7d", "--path", str(real_data), "--db", ":memory:", "--offline", "--format", "json",
                      env=OFFLINE)
    assert as_json.returncode == 3
    [row] = json.loads(as_json.stdout)["coverage"]
    assert (row["source"], row["status"], row["events"]) == ("files", "empty", 0)


def test_the_same_files_over_a_window_that_holds_their_events_are_complete(real_data):
    ran = run_cli("since", "31d", "--until", "2024-02-01", "--path", str(real_data), "--db", ":memory:", "--offline",
                  "--format", "json", env=OFFLINE)
    assert ran.returncode == 0, ran.stderr
    [row] = json.loads(ran.stdout)["coverage"]
    assert (row["status"], row["events"]) == ("complete", 1)


def test_findings_shows_everything_the_store_holds_for_the_window(real_data, tmp_path):
    db = str(tmp_path / "store.duckdb")
    assert run_cli("ingest", "files", str(real_data), "--db", db).returncode == 0
    (tmp_path / "bad.json").write_text('{"Records": [')
    assert run_cli("ingest", "files", str(tmp_path / "bad.json"), "--db", db).returncode == 2
    found = run_cli("findings", "--db", db, "--format", "json", "--offline", env=OFFLINE)
    assert found.returncode == 3 and "coverage is incomplete" in found.stderr
    [row] = json.loads(found.stdout)["coverage"]
    assert (row["status"], row["events"]) == ("partial", 3250) and "bad.json" in row["detail"]
    (tmp_path / "bad.json").write_text(json.dumps({"Records": []}))
    assert run_cli("ingest", "files", str(tmp_path / "bad.json"), "--db", db).returncode == 0
    fixed = run_cli("findings", "--db", db, "--format", "json", "--offline", env=OFFLINE)
    assert fixed.returncode == 0, fixed.stderr
    assert json.loads(fixed.stdout)["coverage"][0]["status"] == "complete"


def test_report_of_a_window_without_events_is_not_green_and_exits_3(real_data, tmp_path):
    ran = run_cli("report", "--since", "7d", "--path", str(real_data), "--to", str(tmp_path / "out"),
                  "--db", ":memory:", "--offline", env=OFFLINE)
    assert ran.returncode == 3, ran.stderr
    assert "no CloudTrail events in the window" in ran.stderr
    html = (tmp_path / "out" / "latest" / "report.html").read_text()
    markdown = (tmp_path / "out" / "latest" / "report.md").read_text()
    for text in (html, markdown):
        assert "No CloudTrail events in the window" in text
        assert "Every source of the window was read completely" not in text
        assert "3,250 events read, spanning" in text
    assert 'class="banner ok"' not in html and "No refused calls" not in html
    assert "No refused calls" not in markdown


# -- the report: empty rows as such; green only over read rows and events ------------------------------------


def document(*rows: tuple[str, int]) -> dict:
    return {
        "schema": "trailscan.findings/v1",
        "generated_at": "2026-11-28T06:00:00Z",
        "window": {"start": "2026-11-27T06:00:00Z", "end": "2026-11-28T06:00:00Z"},
        "coverage": [{"source": "s3", "account": ACCOUNT, "region": f"region-{i}", "status": status, "events": events,
                      "detail": f"detail {i}"} for i, (status, events) in enumerate(rows)],
        "findings": [],
    }


@pytest.mark.parametrize(
    "rows, green",
    [
        ([("complete", 120)], True),
        ([("complete", 120), ("empty", 0)], True),  # a region read that held nothing, beside events read
        ([("empty", 0)], False),
        ([("complete", 0)], False),
        ([("complete", 0), ("empty", 0)], False),
        ([("complete", 120), ("partial", 3)], False),
    ],
)
def test_the_report_is_green_only_when_every_row_was_read_and_events_were(rows, green):
    from trailscan.report import render_html, render_markdown

    doc = document(*rows)
    html, markdown = render_html(doc), render_markdown(doc)
    assert ('class="banner ok"' in html) is green
    assert ("Every source of the window was read completely" in html) is green
    no_events = all(events == 0 for _, events in rows)
    for text in (html, markdown):
        assert ("No CloudTrail events in the window 2026-11-27 06:00:00 UTC – 2026-11-28 06:00:00 UTC" in text) is no_events
        assert ("No refused calls" in text) is not no_events
        # empty rows are read rows: never listed as incomplete, and shown with their own status.
        unread = sum(status in ("partial", "failed") for status, _ in rows)
        assert ("Coverage is incomplete" in text) is bool(unread)
    if any(status == "empty" for status, _ in rows):
        assert '<span class="badge status-empty">empty</span>' in html and "| empty | s3 |" in markdown
