"""A loopback IAM Access Troubleshooter (``iam-toolbox``) server for tests (moto does not implement it).

It speaks ``GetRequestAuthorizationDetails`` as botocore's service model describes it
(``botocore/data/iam-toolbox/2018-05-10/service-2.json``), so trailscan is tested through a
real boto3 client, its paginator and its error parsing::

    with ToolboxServer() as server:
        server.add("abc123", "eu-west-1", [evaluation, …], policies=[…], context={…})
        # AWS_ENDPOINT_URL_IAM_TOOLBOX=server.endpoint_url, or a config `services` section

Wire format, as botocore sends it and AWS answers:

- ``GET /authorization-details/{authorizationId}[?nextToken=…]``, REST-JSON, SigV4 signed for the
  service ``iam`` (the model's ``signingName``): the credential scope in ``Authorization`` must read
  ``…/REGION/iam/aws4_request``, and the id is looked up in that region only (AWS keeps an
  evaluation in the region of the refusal);
- ``200`` with ``{"requestContext", "evaluations", "policies", "nextToken"?}``; ``evaluations`` come
  ``page_size`` at a time, ``nextToken`` opaque and only valid for the same id;
- errors carry ``x-amzn-ErrorType`` and ``{"message": …}``: ``AccessDeniedException`` (403) for an
  access key in :attr:`denied`, ``ResourceNotFoundException`` (404) for an unknown or expired id,
  ``ValidationException`` (400) for a bad token or an id outside ``[0-9a-z]``-ish.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

_SCOPE = re.compile(r"Credential=(?P<key>[^/]+)/\d{8}/(?P<region>[^/]+)/(?P<service>[^/]+)/aws4_request")


class ToolboxServer:
    """The server; a context manager.  :attr:`requests` records (path, query, region) of each call."""

    def __init__(self, page_size: int = 2) -> None:
        self.page_size = page_size
        self.details: dict[tuple[str, str], dict[str, Any]] = {}
        self.denied: set[str] = set()
        self.expired: set[str] = set()
        self.requests: list[tuple[str, str, str]] = []
        self._httpd: ThreadingHTTPServer | None = None
        self._lock = threading.Lock()

    def add(self, authorization_id: str, region: str, evaluations: list[dict], *, policies: list[dict] | None = None,
            context: dict | None = None) -> None:
        self.details[(authorization_id, region)] = {
            "requestContext": context or {}, "evaluations": evaluations, "policies": policies or []}

    def start(self) -> ToolboxServer:
        server = self

        class Handler(_Handler):
            owner = server

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()

    def __enter__(self) -> ToolboxServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def endpoint_url(self) -> str:
        assert self._httpd is not None
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"


class _Handler(BaseHTTPRequestHandler):
    owner: ToolboxServer

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        url = urlparse(self.path)
        scope = _SCOPE.search(self.headers.get("Authorization", ""))
        region = scope.group("region") if scope else ""
        with self.owner._lock:
            self.owner.requests.append((url.path, url.query, region))
        if scope is None or scope.group("service") != "iam":
            return self._error(403, "InvalidSignatureException", "requests are signed for the service 'iam'")
        if scope.group("key") in self.owner.denied:
            return self._error(403, "AccessDeniedException", "User: arn:aws:sts::111122223333:assumed-role/trailscan/x "
                               "is not authorized to perform: iam:GetRequestAuthorizationDetails")
        found = re.fullmatch(r"/authorization-details/(?P<id>[^/]+)", url.path)
        if not found:
            return self._error(404, "UnknownOperationException", "no such operation")
        authorization_id = unquote(found.group("id"))
        if not re.fullmatch(r"[0-9A-Za-z]{1,256}", authorization_id):
            return self._error(400, "ValidationException", "authorizationId does not match its pattern")
        details = self.owner.details.get((authorization_id, region))
        if details is None or authorization_id in self.owner.expired:
            return self._error(404, "ResourceNotFoundException", "The requested authorization details do not exist in "
                               "this region or have expired.")
        token = parse_qs(url.query).get("nextToken", [None])[0]
        start = 0
        if token is not None:
            try:
                owner, offset = base64.urlsafe_b64decode(token.encode()).decode().split(":")
                start = int(offset)
                if owner != authorization_id:
                    raise ValueError(owner)
            except ValueError:
                return self._error(400, "ValidationException", "invalid nextToken")
        evaluations = details["evaluations"]
        end = start + self.owner.page_size
        body: dict[str, Any] = {"requestContext": details["requestContext"], "policies": details["policies"],
                                "evaluations": evaluations[start:end]}
        if end < len(evaluations):
            body["nextToken"] = base64.urlsafe_b64encode(f"{authorization_id}:{end}".encode()).decode()
        self._reply(200, body)

    def _error(self, status: int, code: str, message: str) -> None:
        self._reply(status, {"message": message}, code)

    def _reply(self, status: int, body: dict, code: str | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if code:
            self.send_header("x-amzn-ErrorType", code)
        self.end_headers()
        self.wfile.write(data)
