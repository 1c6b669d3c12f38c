"""Benchmark the MQTT sink against a local mosquitto: publish latency and sustained rate.

Usage: .venv/bin/python benchmarks/mqtt.py [--paced 1000] [--burst 20000]

Starts Debian's mosquitto on a free loopback port, runs `MqttSink` (QoS 1, as `ser-live` does)
and a paho subscriber in this process. Latency: from `emit()` (the moment a result is ready) to
the subscriber's receipt, for results emitted every 10 ms. Rate: a burst of results emitted at
once, divided by the time until the last one arrives.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import paho.mqtt.client as paho

from ser.config import MqttConfig
from ser.labels import LABELS
from ser.messages import Result
from ser.sinks.mqtt import MqttSink


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _result(seq: int) -> Result:
    probs = dict.fromkeys(LABELS, 1 / len(LABELS))
    return Result(seq, "bench", 0.0, 1.0, "neutral", 0.125, probs, 300.0, "default")


async def _bench(port: int, paced: int, burst: int) -> dict[str, float]:
    received: dict[int, float] = {}
    done = threading.Event()
    total = paced + burst

    def on_message(_c: object, _u: object, msg: paho.MQTTMessage) -> None:
        received.setdefault(json.loads(msg.payload)["seq"], time.monotonic())
        if len(received) == total:
            done.set()

    sub = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="bench-sub")
    sub.on_message = on_message
    sub.connect("127.0.0.1", port)
    sub.subscribe("ser/bench/emotion", qos=1)
    sub.loop_start()
    await asyncio.sleep(0.5)

    sink = MqttSink(
        MqttConfig(host="127.0.0.1", port=port, queue_size=burst + paced),
        "bench",
        LABELS,
        "default",
    )
    sink.start()
    await asyncio.sleep(0.5)
    emitted: dict[int, float] = {}
    for seq in range(paced):
        emitted[seq] = time.monotonic()
        sink.emit(_result(seq))
        await asyncio.sleep(0.01)
    burst_start = time.monotonic()
    for seq in range(paced, total):
        sink.emit(_result(seq))
    while not done.is_set():
        await asyncio.sleep(0.01)
    burst_end = max(received[s] for s in range(paced, total))
    await sink.aclose()
    sub.loop_stop()
    latencies = np.array([(received[s] - emitted[s]) * 1000 for s in range(paced)])
    return {
        "p50": float(np.percentile(latencies, 50)),
        "p95": float(np.percentile(latencies, 95)),
        "rate": burst / (burst_end - burst_start),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--paced", type=int, default=1000)
    p.add_argument("--burst", type=int, default=20_000)
    args = p.parse_args()
    port = _free_port()
    with tempfile.TemporaryDirectory() as tmp:
        conf = Path(tmp) / "mosquitto.conf"
        conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\nuser root\n")
        broker = subprocess.Popen(["mosquitto", "-c", str(conf)], stderr=subprocess.DEVNULL)
        try:
            time.sleep(0.5)
            r = asyncio.run(_bench(port, args.paced, args.burst))
        finally:
            broker.terminate()
            broker.wait()
    print("| measure | value |")
    print("|---|---|")
    print(f"| publish latency p50, result ready to subscriber (ms) | {r['p50']:.2f} |")
    print(f"| publish latency p95 (ms) | {r['p95']:.2f} |")
    print(f"| sustained rate, burst of {args.burst} QoS 1 results (per s) | {r['rate']:.0f} |")


if __name__ == "__main__":
    main()
