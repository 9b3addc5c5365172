"""Benchmark: the authenticated no-op request against ``/healthz``, under gunicorn, in one run.

    python bench/bench_api.py                       # embedded SQLite in a temporary folder
    python bench/bench_api.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/bench

It makes a fresh instance folder (and, with ``--database-url``, migrates that database), creates
a tenant and its admin key with the commands (``python app.py tenants create``), raises the
tenant's ``api_rate_limit_per_minute`` to the maximum so the per-key limit stays out of the way,
starts ``gunicorn app:app`` with ``--workers`` sync workers on 127.0.0.1, warms both endpoints
up, then loads ``GET /healthz`` and ``GET /api/v1/me`` (Bearer key) for ``--duration`` seconds
each, in ``--slices`` alternating slices (so that the machine's other load, which comes and goes,
falls on both alike), and prints requests/s, p50 and p99 of both, side by side, and the ratio.
The load tool is ``wrk`` when it is on the PATH, else a small multi-process Python client
(``--load python``); the two do not give comparable absolute figures, only the ratio is.

The database must be empty or migrated and is used as is: give a scratch database (the
tenant made for the run is left in it).

A run in which any answer was not a 2xx is reported as such (a 401 or 429 costs less than a
200 and would flatter the figure). Nothing here is part of the tests' pass/fail.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import platform
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAX_RATE_LIMIT = 100_000  # the largest api_rate_limit_per_minute the settings accept


@dataclass
class Figures:
    name: str
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    non_2xx: int

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _command(env: dict[str, str], *args: str) -> dict:
    result = subprocess.run([sys.executable, str(ROOT / "app.py"), *args], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise SystemExit(f"`app.py {' '.join(args)}` failed:\n{result.stdout}{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _environment(instance: Path, database_url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(GATEWAY_INSTANCE_PATH=str(instance), PYTHONPATH=str(ROOT))
    if database_url:
        env.update(GATEWAY_DATABASE_URL=database_url,
                   GATEWAY_SECRET_KEY=secrets.token_urlsafe(32))
    return env


def _wait_until_up(base: str, server: subprocess.Popen, deadline_seconds: float = 60) -> None:
    deadline = time.monotonic() + deadline_seconds
    host, port = base.removeprefix("http://").split(":")
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"gunicorn exited with {server.returncode}")
        try:
            conn = http.client.HTTPConnection(host, int(port), timeout=1)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit("gunicorn did not come up")


# --- load with wrk -------------------------------------------------------------------------

_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(number) * _UNIT_MS[unit]


def _wrk(url: str, headers: dict[str, str], seconds: float, connections: int,
         threads: int, name: str) -> Figures:
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s",
           "--latency", "--timeout", "5s"]
    for header, value in headers.items():
        cmd += ["-H", f"{header}: {value}"]
    out = subprocess.run(cmd + [url], capture_output=True, text=True, check=True,
                         timeout=seconds + 60).stdout
    total = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", out)
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    if errors:
        print(f"  ({name}: wrk socket errors: {errors.group(1)})")
    return Figures(name, int(total.group(1)), _ms(total.group(2) + total.group(3)) / 1000,
                   _ms(p50.group(1)), _ms(p99.group(1)),
                   int(non_2xx.group(1)) if non_2xx else 0)


# --- load with Python (when wrk is not installed) --------------------------------------------

def _client(port: int, path: str, headers: dict[str, str], until: float, queue) -> None:
    latencies: list[float] = []
    non_2xx = 0
    while time.monotonic() < until:
        started = time.perf_counter()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        response.read()
        conn.close()
        latencies.append(time.perf_counter() - started)
        non_2xx += not 200 <= response.status < 300
    queue.put((latencies, non_2xx))


def _python_load(port: int, path: str, headers: dict[str, str], seconds: float,
                 connections: int, name: str) -> Figures:
    queue: multiprocessing.Queue = multiprocessing.Queue()
    started = time.monotonic()
    until = started + seconds
    workers = [multiprocessing.Process(target=_client, args=(port, path, headers, until, queue))
               for _ in range(connections)]
    for worker in workers:
        worker.start()
    results = [queue.get(timeout=seconds + 60) for _ in workers]
    elapsed = time.monotonic() - started
    for worker in workers:
        worker.join()
    latencies = sorted(x for lat, _ in results for x in lat)
    if not latencies:
        raise SystemExit(f"{name}: no request completed")

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000

    return Figures(name, len(latencies), elapsed, pct(0.50), pct(0.99),
                   sum(n for _, n in results))


# --- the run -------------------------------------------------------------------------------

def _combine(slices: list[Figures]) -> Figures:
    """One endpoint's slices as one figure: total requests over total time; p50 the median of
    the slices' p50s, p99 the worst slice's p99 (wrk's percentiles cannot be merged exactly)."""
    p50s = sorted(f.p50_ms for f in slices)
    return Figures(slices[0].name, sum(f.requests for f in slices),
                   sum(f.seconds for f in slices), p50s[len(p50s) // 2],
                   max(f.p99_ms for f in slices), sum(f.non_2xx for f in slices))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0,
                        help="seconds of load per endpoint, in all")
    parser.add_argument("--slices", type=int, default=5,
                        help="alternate the endpoints this many times (so that a change in the "
                             "machine's other load falls on both alike)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds per endpoint")
    parser.add_argument("--connections", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn sync workers")
    parser.add_argument("--database-url", help="PostgreSQL instead of the embedded SQLite")
    parser.add_argument("--load", choices=["auto", "wrk", "python"], default="auto")
    args = parser.parse_args(argv)
    load = args.load if args.load != "auto" else ("wrk" if shutil.which("wrk") else "python")

    with tempfile.TemporaryDirectory(prefix="bench_api_") as tmp:
        env = _environment(Path(tmp) / "instance", args.database_url)
        if args.database_url:
            _command(env, "db", "upgrade")
        created = _command(env, "tenants", "create", "Bench shop")
        _command(env, "tenants", "settings", created["tenant_id"],
                 f"api_rate_limit_per_minute={MAX_RATE_LIMIT}")
        port = _free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--workers", str(args.workers), "--bind",
             f"127.0.0.1:{port}", "--log-level", "warning", "app:app"],
            env=env, cwd=ROOT)
        try:
            base = f"http://127.0.0.1:{port}"
            _wait_until_up(base, server)
            auth = {"Authorization": f"Bearer {created['api_key']}"}
            targets = [("/healthz", "/healthz", {}), ("/api/v1/me", "/api/v1/me", auth)]

            def run(path: str, headers: dict[str, str], seconds: float, name: str) -> Figures:
                if load == "wrk":
                    return _wrk(base + path, headers, seconds, args.connections, args.threads,
                                name)
                return _python_load(port, path, headers, seconds, args.connections, name)

            for name, path, headers in targets:
                run(path, headers, args.warmup, name)
            load_avg = os.getloadavg()[0]
            piece = args.duration / args.slices
            slices = [[run(path, headers, piece, name) for name, path, headers in targets]
                      for _ in range(args.slices)]
            load_avg_end = os.getloadavg()[0]
        finally:
            server.terminate()
            server.wait(timeout=30)

    health, me = (_combine([pair[i] for pair in slices]) for i in range(2))
    database = "postgresql" if args.database_url else "sqlite (embedded)"
    print(f"api benchmark: python {platform.python_version()}, {os.cpu_count()} cores, "
          f"gunicorn {args.workers} sync workers, {database}; load: {load}, "
          f"{args.connections} connections, {args.duration:g} s per endpoint in {args.slices} "
          f"alternating slices; load average {load_avg:.2f} at start, {load_avg_end:.2f} at end")
    print(f"{'endpoint':<14}{'requests':>10}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}"
          f"{'non-2xx':>9}")
    for f in (health, me):
        print(f"{f.name:<14}{f.requests:>10,}{f.rate:>10,.0f}{f.p50_ms:>9.2f}{f.p99_ms:>9.2f}"
              f"{f.non_2xx:>9,}")
    ratio = me.rate / health.rate if health.rate else 0.0
    per_slice = ", ".join(f"{m.rate / h.rate:.2f}" for h, m in slices if h.rate)
    verdict = "ok" if ratio >= 0.5 and not me.non_2xx else "MISSED"
    print(f"/api/v1/me / /healthz = {ratio:.2f} (target >= 0.50: {verdict}; "
          f"per slice: {per_slice})")
    return 0 if not (health.non_2xx or me.non_2xx) else 1


if __name__ == "__main__":
    sys.exit(main())
