"""`python -m bench.scraper --port P --count N`: scrape the agent's /metrics as Prometheus does.

A process of its own, standard library only: the benchmark's process runs the fake controller
(its event loop, and garbage collections over a 5,000-unit model), which would otherwise add
to the round trips measured for the big model only. Prints one JSON object on stdout: every
round trip in seconds, and the last answer (its size on the wire, its decoded text).
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import time
import urllib.request

# One scrape (seconds).
SCRAPE_TIMEOUT = 10.0
# What Prometheus 2.x sends when it scrapes (scrape/scrape.go, scrapeAcceptHeader; and
# gzip): the agent answers in the format and encoding a real scrape gets (OpenMetrics).
SCRAPE_HEADERS = {
    "Accept": "application/openmetrics-text;version=1.0.0,"
    "application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
    "Accept-Encoding": "gzip",
}


def scrape(port: int) -> tuple[float, bytes, bytes]:
    """GET /metrics on 127.0.0.1:`port`: (round trip in seconds, body on the wire, text)."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers=SCRAPE_HEADERS)
    began = time.perf_counter()
    with urllib.request.urlopen(request, timeout=SCRAPE_TIMEOUT) as answer:
        body = answer.read()
        encoding = answer.headers.get("Content-Encoding", "")
    seconds = time.perf_counter() - began
    return seconds, body, gzip.decompress(body) if encoding == "gzip" else body


def main(argv: list[str] | None = None) -> int:
    """Scrape `--count` times one after the other; print the round trips and the last text."""
    parser = argparse.ArgumentParser(prog="python -m bench.scraper", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--count", type=int, required=True)
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error("--count must be 1 or more")
    seconds: list[float] = []
    body = text = b""
    for _ in range(args.count):
        took, body, text = scrape(args.port)
        seconds.append(took)
    json.dump({"seconds": seconds, "wire-bytes": len(body), "text": text.decode()}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
