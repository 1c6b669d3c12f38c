"""Benchmark `ser-serve`: concurrent real-time streams, idle connection cost, thin client.

Usage: .venv/bin/python benchmarks/serve.py [--data ../shared/data/ravdess] [--levels 10,50,100]
       [--seconds 40] [--ramp 2] [--windows 0] [--cpu-every 0] [--max] [--burst 24] [--idle 1000]
       [--no-thin] [--workers 2] [--model small] [--set K=V ...]

Starts `ser-serve --no-mqtt` as a subprocess and drives it from this process (asyncio websockets
clients: load generator and server share the machine's cores). Prints Markdown; BENCHMARKS.md
records the output.
- streams: N streams at once, each real RAVDESS speech (clips of one actor joined by 1.0-2.5 s of
  silence), sent as 100 ms frames paced in real time, starts spread over the first 2 s
  (`--ramp`: over that many seconds; 2 s is a storm: every client of a restarted replica
  reconnecting, and their first utterances ending within about 3 s; `--windows S`: each level's
  results also per S seconds, to see where the p95 is lost; `--cpu-every S`: the CPU of the
  server's main process, its feature workers and this load generator per S seconds, to see
  where the cores go). Reported:
  the results' `latency_ms` (end of speech to result, 300 ms hangover included) p50/p95
  and the p95 of the results after the first 12 s (every stream's first utterance ends within the
  first few seconds: a burst of its own, as when clients reconnect to a restarted replica), the
  worst send lag (how far a stream fell behind real time: > 0.2 s means the server could not take
  the audio in time), the server's CPU (all its processes, % of one core; in brackets its main
  process), this load generator's CPU and the server's peak RSS; and where the latency goes, the
  mean of each stage of `/metrics`' `ser_stage_seconds` (hangover: end of speech to the
  utterance's cut, the VAD's hangover and up to a 100 ms frame; wait: until handed to the feature
  workers; features: from then until analysed, at most one utterance ahead of it in its worker,
  and its analysis if started during its hangover; classify: to the result), and the analyses
  started during a hangover (`pipeline.encoder_tail_ms`), used or dropped (the voice came back),
  and the calls to the feature workers per utterance (`ser_feature_worker_calls_total`: analyse,
  early, pitch; dropped: of all kinds, run for nothing, their caller had moved on).
  Each level (and the burst) also shows the machine's speed just before it, on the idle machine
  (`benchmarks/machine_speed.py`: the shipped encoder, ms per second of audio; one machine's
  speed moves by 5-10 % within an hour, and at the edge of capacity that moves a p95 by hundreds
  of ms: compare rows at the same speed).
  "sustained": p95 <= 500 ms and lag <= 0.2 s. `--max` adds levels in steps of 25 until a level
  is not sustained.
- burst: `--burst N` streams connected first, then sent on one clock: in each of 3 rounds, 6 s
  apart, every stream's utterance (a clip trimmed to its speech) ends within 100 ms of the
  others'; the same latency and lag.
- idle: `--idle` streams connected and started, sending nothing: server RSS per stream.
- thin client: `ser-live --connect` (a file, real time) against full `ser-live` on the same file:
  time to the first "listening" line and peak RSS of all its processes.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import typing
from pathlib import Path

import numpy as np
import soundfile as sf
from machine_speed import encoder_ms_per_s
from proctree import seconds_to_listening, tree

FRAME_S = 0.1
CALL_KINDS = ("analyse", "early", "pitch")  # `stage_means_ms`' worker calls per utterance
RATE = 16_000
T = typing.TypeVar("T")


def _cpu_s(pid: int, children: bool = True) -> float:
    """CPU seconds of `pid` and (`children`) all its descendants."""
    total = 0.0
    for p in tree(pid) if children else [pid]:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / 100.0  # utime + stime, clock ticks
        except OSError:
            pass
    return total


def _rss_mb(pid: int) -> float:
    total = 0
    for p in tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


class _Sampler(typing.Generic[T]):
    """Calls `sample()` every `every_s` in a thread until `stop()`, which returns `result()`.
    Subclasses set their state before calling `__init__` (the thread starts in it)."""

    def __init__(self, every_s: float) -> None:
        self.every_s = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self.sample()

    def sample(self) -> None:
        raise NotImplementedError

    def result(self) -> T:
        raise NotImplementedError

    def stop(self) -> T:
        self._stop.set()
        self._thread.join()
        return self.result()


class CpuSeries(_Sampler[list[tuple[float, float, float, float]]]):
    """CPU of the server's main process, of its feature workers and of this load generator over
    each `every_s`, % of one core (where a level's cores go, second by second)."""

    def __init__(self, pid: int, every_s: float) -> None:
        self.pid = pid
        self.rows: list[tuple[float, float, float, float]] = []
        self._t0 = self._last_t = time.monotonic()
        self._last = self._cpu()
        super().__init__(every_s)

    def _cpu(self) -> tuple[float, float, float]:
        main, everything = _cpu_s(self.pid, children=False), _cpu_s(self.pid)
        return main, everything - main, sum(os.times()[:2])

    def sample(self) -> None:
        now, t = self._cpu(), time.monotonic()
        main, workers, clients = (
            (b - a) / (t - self._last_t) * 100 for a, b in zip(self._last, now, strict=True)
        )
        self.rows.append((t - self._t0, main, workers, clients))
        self._last, self._last_t = now, t

    def result(self) -> list[tuple[float, float, float, float]]:
        return self.rows


class PeakRss(_Sampler[float]):
    """The peak RSS of a process tree, sampled every 50 ms."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak = pid, 0.0
        super().__init__(0.05)

    def sample(self) -> None:
        self.peak = max(self.peak, _rss_mb(self.pid))

    def result(self) -> float:
        return self.peak


def speech_streams(data: Path, n: int, seconds: float) -> list[np.ndarray]:
    """n int16 streams of about `seconds`, each one actor's clips with pauses."""
    rng = random.Random(0)
    streams = []
    for i in range(n):
        actor = i % 24 + 1
        clips = sorted((data / f"Actor_{actor:02d}").glob("*.flac"))
        parts, total = [np.zeros(int(rng.uniform(0.2, 1.5) * RATE), np.int16)], 0.0
        while total < seconds:
            audio, _ = sf.read(rng.choice(clips), dtype="int16")
            gap = np.zeros(int(rng.uniform(1.0, 2.5) * RATE), np.int16)
            parts += [audio, gap]
            total += (audio.size + gap.size) / RATE
        streams.append(np.concatenate(parts)[: int(seconds * RATE)])
    return streams


def burst_streams(data: Path, n: int, rounds: int, period_s: float, spread_s: float) -> list:
    """n int16 streams whose utterances end together: in round r every stream's speech (one
    clip of its actor, trimmed to its speech) ends at (r + 1) * period_s, give or take
    spread_s / 2; then 1.5 s of silence."""
    import librosa

    rng = random.Random(2)
    streams = []
    for i in range(n):
        clips = sorted((data / f"Actor_{i % 24 + 1:02d}").glob("*.flac"))
        parts, pos = [], 0
        for r in range(rounds):
            audio, _ = sf.read(rng.choice(clips), dtype="int16")
            _, (a, b) = librosa.effects.trim(audio.astype(np.float32) / 32768, top_db=35)
            speech = audio[a:b]
            end = int(((r + 1) * period_s + rng.uniform(-spread_s / 2, spread_s / 2)) * RATE)
            start = max(pos, end - speech.size)
            parts += [np.zeros(start - pos, np.int16), speech]
            pos = start + speech.size
        parts.append(np.zeros(int(1.5 * RATE), np.int16))
        streams.append(np.concatenate(parts))
    return streams


async def _one_stream(
    url: str,
    name: str,
    audio: np.ndarray,
    delay_s: float,
    out: dict,
    *,
    start: asyncio.Future[float] | None = None,
    ready: list[str] | None = None,
) -> None:
    """One real-time stream; with `start`: once ready, wait for the shared start time (every
    stream's clock the same, for bursts)."""
    from websockets.asyncio.client import connect

    await asyncio.sleep(delay_s)
    frame = int(FRAME_S * RATE)
    lag = 0.0
    async with connect(url, max_size=2**20, open_timeout=60) as ws:
        await ws.send(json.dumps({"type": "start", "stream": name}))
        assert json.loads(await ws.recv())["type"] == "ready"
        latencies: list[float] = []
        if start is not None and ready is not None:
            ready.append(name)
            await asyncio.shield(start)

        async def receive() -> None:
            async for message in ws:
                data = json.loads(message)
                if data["type"] == "result":
                    latencies.append(data["latency_ms"])
                    RECEIVED.append((time.monotonic(), data["latency_ms"]))
                elif data["type"] == "end":
                    return

        receiver = asyncio.create_task(receive())
        t0 = start.result() if start is not None else time.monotonic()
        for k, i in enumerate(range(0, audio.size, frame)):
            due = t0 + k * FRAME_S
            now = time.monotonic()
            if due > now:
                await asyncio.sleep(due - now)
            else:
                lag = max(lag, now - due)
            await ws.send(audio[i : i + frame].astype("<i2").tobytes())
        await ws.send(json.dumps({"type": "stop"}))
        await asyncio.wait_for(receiver, 60)
    out[name] = (latencies, lag)


MODEL_ARGS: list[str] = []  # ["--model", BUNDLE] from the command line
# (when received, latency ms) of every result of the current level; beside the whole run's
# percentiles, those after the first WARM_UP_S (every stream's first utterance ends within the
# first few seconds, a burst of its own)
RECEIVED: list[tuple[float, float]] = []
WARM_UP_S = 12.0


# each server's log (stderr) by pid: a file, never an unread pipe (once the pipe's 64 kB filled,
# the server's next log line would block its event loop and every stream with it)
SERVER_LOGS: dict[int, typing.IO[bytes]] = {}


def start_server(
    port: int, workers: int, extra: list[str] | None = None
) -> subprocess.Popen[bytes]:
    log = tempfile.TemporaryFile()  # noqa: SIM115 (closed by show_log, after the server)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ser.serve_cli",
            "--port",
            str(port),
            "--no-mqtt",
            "--workers",
            str(workers),
            "-q",
            *MODEL_ARGS,
            *(extra or []),
        ],
        stdout=subprocess.DEVNULL,  # a crashed benchmark's server must not hold its pipe open
        stderr=log,
    )
    SERVER_LOGS[proc.pid] = log
    deadline = time.monotonic() + 60
    import socket

    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.1)
    time.sleep(1.0)  # workers warm
    return proc


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def level(
    data: Path,
    n: int,
    seconds: float,
    workers: int,
    *,
    ramp_s: float = 2.0,
    cpu_every_s: float = 0.0,
) -> dict[str, typing.Any]:
    port = free_port()
    server = start_server(port, workers, ["--config", _config(n)])
    streams = speech_streams(data, n, seconds)
    url = f"ws://127.0.0.1:{port}/v1/stream"
    out: dict[str, tuple[list[float], float]] = {}
    peak = PeakRss(server.pid)
    series = CpuSeries(server.pid, cpu_every_s) if cpu_every_s > 0 else None
    cpu0, t0 = _cpu_s(server.pid), time.monotonic()
    main0, clients0 = _cpu_s(server.pid, children=False), time.process_time()
    RECEIVED.clear()

    async def all_streams() -> None:
        rng = random.Random(1)
        await asyncio.gather(
            *(
                _one_stream(url, f"s{i}", a, rng.uniform(0, ramp_s), out)
                for i, a in enumerate(streams)
            )
        )

    try:
        asyncio.run(all_streams())
        elapsed = time.monotonic() - t0
        cpu = (_cpu_s(server.pid) - cpu0) / elapsed * 100
        main = (_cpu_s(server.pid, children=False) - main0) / elapsed * 100
        clients = (time.process_time() - clients0) / elapsed * 100
        stages = stage_means_ms(port)
    finally:
        rss = peak.stop()
        cpu_rows = series.stop() if series is not None else []
        _stop(server)
    later = [lat for when, lat in RECEIVED if when - t0 >= WARM_UP_S]
    p95_later = float(np.percentile(later, 95)) if later else float("nan")
    return _summary(n, out) | {
        "cpu": cpu,
        "cpu_main": main,
        "cpu_clients": clients,
        "rss": rss,
        "p95_later": p95_later,
        "stages": stages,
        "cpu_series": cpu_rows,
    }


def print_cpu_series(rows: list[tuple[float, float, float, float]]) -> None:
    """`CpuSeries` rows as Markdown: % of one core per interval (the machine has 2 cores: 200)."""
    print("\n| s | server main process % | feature workers % | load generator % | all % |")
    print("|---|---|---|---|---|")
    for t, main, workers, clients in rows:
        total = main + workers + clients
        print(f"| {t:.0f} | {main:.0f} | {workers:.0f} | {clients:.0f} | {total:.0f} |")
    print(flush=True)


def print_windows(width_s: float) -> None:
    """The level's results per window of `width_s` from the first result: how many, and their
    latency p50 / p95 / max (where in the run the p95 is lost)."""
    first = min(when for when, _ in RECEIVED)
    rows = collections.defaultdict(list)
    for when, latency in RECEIVED:
        rows[int((when - first) // width_s)].append(latency)
    print("\n| results in s | n | p50 / p95 / max ms |\n|---|---|---|")
    for k in sorted(rows):
        lat = np.array(rows[k])
        print(
            f"| {k * width_s:.0f}-{(k + 1) * width_s:.0f} | {lat.size} | "
            f"{np.percentile(lat, 50):.0f} / {np.percentile(lat, 95):.0f} / {lat.max():.0f} |"
        )
    print(flush=True)


def stage_means_ms(port: int) -> list[float]:
    """The server's mean per latency stage so far (ms), from its /metrics; then its early
    analyses (`pipeline.encoder_tail_ms`) used and dropped; then its feature worker calls per
    utterance: analyse, early, pitch, and of all those the ones dropped (run for nothing)."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    from ser.metrics import STAGES

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    sums: dict[str, float] = {}
    counts: dict[str, float] = {}
    calls: dict[str, float] = {}  # by kind
    dropped = 0.0  # calls of any kind given up while a worker ran them
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            stage = sample.labels.get("stage", "")
            if sample.name == "ser_stage_seconds_sum":
                sums[stage] = sample.value
            elif sample.name == "ser_stage_seconds_count":
                counts[stage] = sample.value
            elif sample.name == "ser_early_analyses_total":
                counts[sample.labels["outcome"]] = sample.value
            elif sample.name == "ser_feature_worker_calls_total":
                kind = sample.labels["kind"]
                calls[kind] = calls.get(kind, 0.0) + sample.value
                if sample.labels["outcome"] == "dropped":
                    dropped += sample.value
    means = [1000 * sums.get(k, 0.0) / max(counts.get(k, 0.0), 1.0) for k in STAGES]
    utterances = max(counts.get("features", 0.0), 1.0)
    per_utterance = [x / utterances for x in (*(calls.get(k, 0.0) for k in CALL_KINDS), dropped)]
    return [*means, counts.get("used", 0.0), counts.get("dropped", 0.0), *per_utterance]


def _stages(means: list[float]) -> str:
    """The stages' means, then the early analyses used / dropped, then the worker calls per
    utterance."""
    return (
        " / ".join(f"{m:.0f}" for m in means[:4])
        + " | "
        + " / ".join(f"{m:.0f}" for m in means[4:6])
        + " | "
        + " / ".join(f"{m:.2f}" for m in means[6:])
    )


def _stop(server: subprocess.Popen[bytes]) -> None:
    """The server stopped, however the benchmark ended (SIGKILL after 30 s); what it logged
    (warnings and errors: it runs with -q) shown on stderr."""
    server.terminate()
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
    show_log(server)


def show_log(server: subprocess.Popen[bytes], last: int = 20) -> None:
    """The last `last` lines `server` logged, on stderr (nothing if it logged nothing)."""
    log = SERVER_LOGS.pop(server.pid, None)
    if log is None:
        return
    with log:
        log.seek(0)
        lines = log.read().decode(errors="replace").splitlines()
    if lines:
        print(f"server {server.pid} logged {len(lines)} lines; the last:", file=sys.stderr)
        print("\n".join(f"  {line}" for line in lines[-last:]), file=sys.stderr)


def _summary(n: int, out: dict[str, tuple[list[float], float]]) -> dict[str, float]:
    """Latency percentiles over every stream's results, and the worst send lag."""
    latencies = [x for lat, _ in out.values() for x in lat]
    p50, p95 = np.percentile(latencies, [50, 95])
    return {
        "streams": n,
        "utterances": len(latencies),
        "p50": float(p50),
        "p95": float(p95),
        "max": float(max(latencies)),
        "lag": max(lag for _, lag in out.values()),
    }


def burst(data: Path, n: int, rounds: int, workers: int) -> dict[str, float]:
    """`n` streams connected first, then started on one clock; their utterances end within
    100 ms of each other, `rounds` times, 6 s apart."""
    port = free_port()
    server = start_server(port, workers, ["--config", _config(n)])
    streams = burst_streams(data, n, rounds, period_s=6.0, spread_s=0.1)
    url = f"ws://127.0.0.1:{port}/v1/stream"
    out: dict[str, tuple[list[float], float]] = {}
    cpu0, t0 = _cpu_s(server.pid), time.monotonic()

    async def all_streams() -> None:
        start: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        ready: list[str] = []
        tasks = [
            asyncio.ensure_future(_one_stream(url, f"b{i}", a, 0.0, out, start=start, ready=ready))
            for i, a in enumerate(streams)
        ]
        deadline = time.monotonic() + 60
        while len(ready) < n:
            assert time.monotonic() < deadline, f"{len(ready)} of {n} streams ready"
            await asyncio.sleep(0.05)
        start.set_result(time.monotonic() + 0.2)
        await asyncio.gather(*tasks)

    try:
        asyncio.run(all_streams())
        cpu = (_cpu_s(server.pid) - cpu0) / (time.monotonic() - t0) * 100
        stages = stage_means_ms(port)
    finally:
        _stop(server)
    return _summary(n, out) | {"cpu": cpu, "stages": stages}


def _config(max_streams: int) -> str:
    path = Path(tempfile.mkdtemp()) / "serve.toml"
    # every client is this process on 127.0.0.1: the per-address and not-yet-started caps (a
    # defence against one client holding every slot) would refuse a burst's simultaneous starts
    n = max(max_streams, 2000)
    path.write_text(
        f"[serve]\nmax_streams = {n}\nidle_timeout_s = 0\nmax_unstarted = {n}\n"
        f"max_unstarted_per_address = {n}\n"
    )
    return str(path)


def idle_cost(n: int, workers: int) -> tuple[float, float]:
    port = free_port()
    server = start_server(port, workers, ["--config", _config(n)])
    before = _rss_mb(server.pid)
    url = f"ws://127.0.0.1:{port}/v1/stream"

    async def hold() -> float:
        from websockets.asyncio.client import connect

        conns = []
        for i in range(n):
            ws = await connect(url, open_timeout=60)
            await ws.send(json.dumps({"type": "start", "stream": f"idle{i}"}))
            assert json.loads(await ws.recv())["type"] == "ready"
            conns.append(ws)
        await asyncio.sleep(2.0)
        after = _rss_mb(server.pid)
        for ws in conns:
            await ws.close()
        return after

    try:
        after = asyncio.run(hold())
    finally:
        _stop(server)
    return before, after


def thin_vs_full(data: Path) -> list[tuple[str, float, float]]:
    clip = sorted((data / "Actor_01").glob("*.flac"))[0]
    port = free_port()
    server = start_server(port, 1)
    try:
        return _thin_vs_full(clip, port)
    finally:
        _stop(server)


def _thin_vs_full(clip: Path, port: int) -> list[tuple[str, float, float]]:
    rows = []
    for label, args in (
        ("ser-live (full: model + feature worker)", ["--no-mqtt"]),
        ("ser-live --connect (thin client)", ["--connect", f"ws://127.0.0.1:{port}/v1/stream"]),
    ):
        starts, peaks = [], []
        for _ in range(3):
            start_s, proc = seconds_to_listening(
                [
                    sys.executable,
                    "-m",
                    "ser.cli",
                    "--input",
                    str(clip),
                    "--realtime",
                    "--json",
                    *args,
                ]
            )
            peak = PeakRss(proc.pid)
            proc.wait()
            starts.append(start_s)
            peaks.append(peak.stop())
        rows.append((label, statistics.median(starts), max(peaks)))
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=Path("../shared/data/ravdess"))
    p.add_argument("--levels", default="10,50,100")
    p.add_argument("--seconds", type=float, default=40.0)
    p.add_argument("--max", action="store_true")
    p.add_argument(
        "--windows",
        type=float,
        default=0.0,
        help="also print each level's results per window of this many seconds (0: no)",
    )
    p.add_argument(
        "--ramp",
        type=float,
        default=2.0,
        help="streams start spread over this many seconds (default 2: a reconnect storm)",
    )
    p.add_argument(
        "--cpu-every",
        type=float,
        default=0.0,
        metavar="S",
        help="also print each level's CPU per S seconds: server main process, feature workers, "
        "load generator (0: no)",
    )
    p.add_argument("--idle", type=int, default=1000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--model", default=None, help="bundle folder or shipped name (default: default)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="a config key for the server (repeatable), e.g. pipeline.adaptation=always",
    )
    p.add_argument(
        "--burst",
        type=int,
        default=0,
        metavar="N",
        help="also N streams whose utterances end within 100 ms of each other (3 rounds)",
    )
    p.add_argument("--no-thin", action="store_true", help="skip the thin-client comparison")
    args = p.parse_args()
    if args.model:
        MODEL_ARGS.extend(["--model", args.model])
    for assignment in args.set:
        MODEL_ARGS.extend(["--set", assignment])
    print(
        "| streams | utterances | latency p50 / p95 ms | p95 after the first 12 s | worst send "
        "lag s | server CPU % (its "
        "main process) | load generator CPU % | server RSS MB | stages ms: hangover / wait / "
        "features / classify | early analyses used / dropped | worker calls per utterance: "
        "analyse / early / pitch / dropped | machine: encoder ms per s of audio | sustained |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    levels = [int(x) for x in args.levels.split(",") if x]
    n = 0
    while levels:
        n = levels.pop(0)
        speed = encoder_ms_per_s(args.data)  # just before the level, on the idle machine
        r = level(
            args.data, n, args.seconds, args.workers, ramp_s=args.ramp, cpu_every_s=args.cpu_every
        )
        ok = r["p95"] <= 500 and r["lag"] <= 0.2
        print(
            f"| {n} | {r['utterances']} | {r['p50']:.0f} / {r['p95']:.0f} | {r['p95_later']:.0f} | "
            f"{r['lag']:.2f} | "
            f"{r['cpu']:.0f} ({r['cpu_main']:.0f}) | {r['cpu_clients']:.0f} | {r['rss']:.0f} | "
            f"{_stages(r['stages'])} | {speed:.2f} | {'yes' if ok else 'no'} |",
            flush=True,
        )
        if args.windows > 0:
            print_windows(args.windows)
        if r["cpu_series"]:
            print_cpu_series(r["cpu_series"])
        if args.max and ok and not levels:
            levels.append(n + 25)
    if args.burst:
        speed = encoder_ms_per_s(args.data)
        b = burst(args.data, args.burst, 3, args.workers)
        print(
            "\n| burst streams | utterances | latency p50 / p95 / max ms | worst send lag s | "
            "server CPU % | stages ms: hangover / wait / features / classify | early analyses "
            "used / dropped | worker calls per utterance: analyse / early / pitch / dropped "
            "| machine: encoder ms per s of audio |\n"
            f"|---|---|---|---|---|---|---|---|---|\n| {args.burst} | {b['utterances']} | "
            f"{b['p50']:.0f} / {b['p95']:.0f} / {b['max']:.0f} | {b['lag']:.2f} | {b['cpu']:.0f} | "
            f"{_stages(b['stages'])} | {speed:.2f} |",
            flush=True,
        )
    if args.idle:
        before, after = idle_cost(args.idle, args.workers)
        print(
            f"\n| idle streams | server RSS before / after | per stream |\n|---|---|---|\n"
            f"| {args.idle} | {before:.0f} / {after:.0f} MB | "
            f"{(after - before) * 1024 / args.idle:.0f} kB |"
        )
    if args.no_thin:
        return
    print(
        "\n| client | start to 'listening' (median of 3) | peak RSS, all processes |\n|---|---|---|"
    )
    for label, start, rss in thin_vs_full(args.data):
        print(f"| {label} | {start:.2f} s | {rss:.0f} MB |")


if __name__ == "__main__":
    main()
