"""How long a run without credentials spends asking the instance metadata service.

A metadata endpoint that accepts connections and never answers (a firewall that drops
packets, off EC2) is served on 127.0.0.1; the same process then asks for credentials
with botocore's defaults and with trailscan's session (`trailscan.aws.default_session`),
alternating, and prints the median of each and their ratio.

    python benchmarks/metadata_probe.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import threading
import time


def serve_silently() -> tuple[str, list[socket.socket]]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            held.append(server.accept()[0])

    threading.Thread(target=accept, daemon=True).start()
    return f"http://127.0.0.1:{server.getsockname()[1]}/", held


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        del os.environ[name]
    os.environ["AWS_CONFIG_FILE"] = os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    endpoint, held = serve_silently()
    os.environ["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = endpoint

    import boto3

    from trailscan.aws import default_session, on_ec2

    def probe(make) -> float:
        session = make()
        started = time.monotonic()
        assert session.get_credentials() is None
        return time.monotonic() - started

    botocore_times, trailscan_times = [], []
    for _ in range(args.rounds):
        botocore_times.append(probe(boto3.Session))
        trailscan_times.append(probe(default_session))
    before, after = statistics.median(botocore_times), statistics.median(trailscan_times)
    print(f"this machine, as its firmware says: on EC2 = {on_ec2()}")
    print(f"botocore defaults: {before:.2f} s   trailscan: {after:.2f} s   ratio {after / before:.2f}x "
          f"(median of {args.rounds}, {len(held)} connections accepted)")


if __name__ == "__main__":
    main()
