"""Athena in moto's server, with what moto leaves out put back for the tests.

moto answers Athena's API without running SQL: a query's results are whatever was queued
through its documented results API (``/moto-api/static/athena/query-results``), taken in
the order queries start; its state machine (``/moto-api/state-manager``) keeps a query
QUEUED or RUNNING for a number of polls.  What moto lacks, :class:`AthenaShim` adds as a
WSGI layer in front of the server (the requests still reach moto, over HTTP, from boto3):

- ``GetQueryResults`` pages: moto returns every row at once and no ``NextToken``; the shim
  cuts moto's answer into pages of ``MaxResults`` rows and hands out tokens;
- statistics: moto reports 0 bytes scanned; the shim reports ``scanned_bytes``;
- a failed query: moto's queries never fail; the shim reports FAILED, with a reason, for
  the queries whose text holds a given marker;
- throttling: the first ``throttle_starts`` StartQueryExecution calls are refused with
  ``TooManyRequestsException``, as Athena refuses starts beyond its quota.

And a protocol: moto 5.2 routes Athena by the JSON 1.1 protocol (POST ``/``,
``X-Amz-Target``) while botocore 1.44 describes Athena in REST-JSON, so the two no longer
meet.  :func:`speak_json_protocol` writes Athena's own service model with the JSON 1.1
protocol into a folder that both sides read first — the clients of the sessions handed out
(and a CLI subprocess, through ``AWS_DATA_PATH``) and moto's router in this process: same
operations, shapes and errors, one wire format.
"""

from __future__ import annotations

import io
import json
import threading
import urllib.request
from pathlib import Path

import botocore.loaders

from tests.support.moto_server import MotoServer

ACCOUNT = "123456789012"  # moto's default account


class AthenaShim:
    def __init__(self, app) -> None:
        self.app = app
        self.scanned_bytes = 0
        self.failing: dict[str, str] = {}
        self.throttle_starts = 0
        self.pages = 0
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if not target.startswith("AmazonAthena."):
            return self.app(environ, start_response)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        request = json.loads(body or b"{}")
        operation = target.split(".", 1)[1]
        if operation == "StartQueryExecution":
            with self.lock:
                refuse = self.throttle_starts > 0
                self.throttle_starts -= refuse
            if refuse:
                return _answer(start_response, 400, {"__type": "TooManyRequestsException",
                                                     "Message": "too many active queries"})
        if operation == "GetQueryResults":
            # moto answers with every row: forward without the paging, cut the answer here.
            forwarded = {k: v for k, v in request.items() if k not in ("MaxResults", "NextToken")}
            status, headers, answer = self._forward(environ, json.dumps(forwarded).encode())
            if status.startswith("200"):
                rows = answer["ResultSet"]["Rows"]
                start = int(request.get("NextToken") or 0)
                size = int(request.get("MaxResults") or 1000)
                answer["ResultSet"]["Rows"] = rows[start : start + size]
                if start + size < len(rows):
                    answer["NextToken"] = str(start + size)
                with self.lock:
                    self.pages += 1
            return _answer(start_response, int(status.split()[0]), answer)
        status, headers, answer = self._forward(environ, body)
        if operation == "GetQueryExecution" and status.startswith("200"):
            execution = answer["QueryExecution"]
            execution["Statistics"]["DataScannedInBytes"] = self.scanned_bytes
            execution["Statistics"]["TotalExecutionTimeInMillis"] = 1500
            for marker, reason in self.failing.items():
                if marker in execution.get("Query", "") and execution["Status"]["State"] == "SUCCEEDED":
                    execution["Status"]["State"] = "FAILED"
                    execution["Status"]["StateChangeReason"] = reason
        return _answer(start_response, int(status.split()[0]), answer)

    def _forward(self, environ, body: bytes):
        captured: dict = {}

        def keep(status, headers, exc_info=None):
            captured["status"], captured["headers"] = status, headers
            return lambda data: None

        inner = dict(environ, **{"wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body))})
        chunks = self.app(inner, keep)
        try:
            data = b"".join(chunks)
        finally:
            getattr(chunks, "close", lambda: None)()
        return captured["status"], captured["headers"], json.loads(data or b"{}")


def _answer(start_response, status: int, document: dict):
    data = json.dumps(document).encode()
    start_response(f"{status} {'OK' if status == 200 else 'Bad Request'}",
                   [("Content-Type", "application/x-amz-json-1.1"), ("Content-Length", str(len(data)))])
    return [data]


def install(moto: MotoServer) -> AthenaShim:
    """Put an :class:`AthenaShim` in front of a started :class:`MotoServer`."""
    served = moto._server._server
    shim = AthenaShim(served.app)
    served.app = shim
    return shim


def post(moto: MotoServer, path: str, document: dict) -> None:
    request = urllib.request.Request(f"{moto.endpoint_url}{path}", data=json.dumps(document).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        response.read()


def queue_results(moto: MotoServer, results: list[tuple[list[str], list[list[str | None]]]], region: str) -> None:
    """Queue query results through moto's documented API, in the order queries will start:
    each ``(columns, rows)``, with the header row Athena puts first."""
    def row(values):
        return {"Data": [{} if v is None else {"VarCharValue": v} for v in values]}

    post(moto, "/moto-api/static/athena/query-results", {
        "account_id": ACCOUNT,
        "region": region,
        "results": [
            {"rows": [row(columns), *(row(r) for r in rows)],
             "column_info": [{"Name": c, "Label": c, "Type": "varchar", "CatalogName": "hive", "SchemaName": "",
                              "TableName": "", "Precision": 0, "Scale": 0, "Nullable": "UNKNOWN",
                              "CaseSensitive": True} for c in columns]}
            for columns, rows in results
        ],
    })


def hold_queries(moto: MotoServer, polls: int) -> None:
    """Keep each query in each state (QUEUED, RUNNING) for *polls* GetQueryExecution calls."""
    post(moto, "/moto-api/state-manager/set-transition",
         {"model_name": "athena::execution", "transition": {"progression": "manual", "times": polls}})


def release_queries(moto: MotoServer) -> None:
    post(moto, "/moto-api/state-manager/unset-transition", {"model_name": "athena::execution"})


def json_protocol_models(folder: Path) -> Path:
    """Write Athena's service model, in the JSON 1.1 protocol moto serves, under *folder*."""
    loader = botocore.loaders.create_loader()
    model = loader.load_service_model("athena", "service-2")
    metadata = model["metadata"]
    metadata.update(protocol="json", protocols=["json"], jsonVersion="1.1", targetPrefix="AmazonAthena")
    target = folder / "athena" / metadata["apiVersion"]
    target.mkdir(parents=True, exist_ok=True)
    (target / "service-2.json").write_text(json.dumps(model))
    return folder


def speak_json_protocol(server: MotoServer, folder: Path) -> dict[str, str]:
    """Make *server* and the sessions it hands out speak Athena's JSON 1.1 protocol; returns
    the environment a CLI subprocess needs for the same."""
    from moto.core import loaders, utils

    json_protocol_models(folder)
    server._loader.search_paths.insert(0, str(folder))
    utils.create_loader = lambda: loaders.Loader(extra_search_paths=[str(folder), loaders.moto_root])
    return {"AWS_DATA_PATH": str(folder)}
