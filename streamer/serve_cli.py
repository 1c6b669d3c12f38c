"""`ser-serve`: many WebSocket audio streams per process (see streamer/server.py, README)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from collections.abc import Sequence

from ser.bundle import BundleError, load_bundle, resolve_bundle_path
from ser.cli import (
    STOP_SIGNALS,
    add_common_arguments,
    common_overrides,
    config_file,
    configure_logging,
    mqtt_overrides,
    version,
)
from ser.config import Config, ConfigError, apply_overrides, replace
from ser.server import ServeError

logger = logging.getLogger("ser.serve")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ser-serve",
        description="Recognize emotions in many audio streams sent over WebSockets "
        "(ws://HOST:PORT/v1/stream; health check GET /healthz).",
    )
    p.add_argument("--version", action="version", version=f"ser-serve {version()}")
    p.add_argument("--host", help="address to listen on (default: serve.host, 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default: serve.port, 8765; 0: any free)")
    p.add_argument(
        "--token-env",
        metavar="NAME",
        help="environment variable holding the token clients must send (serve.token_env)",
    )
    p.add_argument("--node-id", help="MQTT topic segment naming this replica (default: host name)")
    p.add_argument("--mqtt-host", help="broker host name or address")
    p.add_argument("--mqtt-port", type=int, help="broker port")
    p.add_argument(
        "--mqtt", action="store_true", help="publish to MQTT, keeping what the broker did not get"
    )
    p.add_argument("--no-mqtt", action="store_true", help="do not publish to MQTT")
    add_common_arguments(p)
    p.add_argument("--workers", type=int, help="feature processes (default: one per CPU core)")
    p.add_argument(
        "--insecure",
        action="store_true",
        help="allow a non-loopback --host without a token (serve.token_env): anyone who "
        "reaches the port may stream and read results",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    return p


def resolve_config(args: argparse.Namespace) -> Config:
    config = apply_overrides(config_file(args), args.set)
    serve: dict[str, object] = {}
    if args.token_env is not None:
        serve["token_env"] = args.token_env
    if args.host is not None:
        serve["host"] = args.host
    if args.port is not None:
        serve["port"] = args.port
    if args.workers is not None:
        serve["feature_workers"] = args.workers
    if args.insecure:
        serve["insecure"] = True
    sections = common_overrides(args)
    mqtt = {**sections.pop("mqtt"), **mqtt_overrides(args)}
    if args.mqtt and not args.no_mqtt:
        mqtt["enabled"] = True
    return replace(config, serve=serve, mqtt=mqtt, **sections)


async def serve(config: Config, started_s: float) -> int:
    from ser.server import StreamServer
    from ser.sinks.mqtt import MqttSink, default_node_id

    bundle = load_bundle(resolve_bundle_path(config.pipeline.model))
    mqtt = None
    if config.mqtt.enabled is not False:
        node_id = config.mqtt.node_id or default_node_id()
        mqtt = MqttSink(config.mqtt, node_id, bundle.labels, bundle.name)
    server = StreamServer(config, bundle, mqtt)
    loop = asyncio.get_running_loop()
    signals = 0

    def on_signal() -> None:
        nonlocal signals
        signals += 1
        if signals == 1:
            server.stop()  # drain: finish the utterances in flight
            return
        logger.warning("second stop signal: closing now, saving unsent results")
        server.hurry()
        if mqtt is not None:
            mqtt.hurry()

    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, on_signal)
    try:
        if mqtt is not None:
            mqtt.start()
        return await server.run(config.serve.host, config.serve.port, started_s)
    finally:
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)
        if mqtt is not None:
            await mqtt.aclose()


def main(argv: Sequence[str] | None = None) -> int:
    started_s = time.monotonic()
    args = build_parser().parse_args(argv)
    configure_logging(args)
    try:
        config = resolve_config(args)
        return asyncio.run(serve(config, started_s))
    except (ConfigError, BundleError) as exc:
        print(f"ser-serve: error: {exc}", file=sys.stderr)
        return 2
    except ServeError as exc:
        print(f"ser-serve: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
