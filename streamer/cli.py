"""`ser-live`: the streaming recognizer (microphone, files or stdin -> dashboard, JSON, MQTT)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from streamer.bundle import Bundle, BundleError, load_bundle
from streamer.config import Config, ConfigError, load_config, replace
from streamer.sources import (
    FileSource,
    MicrophoneSource,
    Source,
    SourceError,
    StdinSource,
    check_files,
    list_input_devices,
)

logger = logging.getLogger("ser.live")

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
DRAIN_TIMEOUT_S = 10.0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ser-live",
        description="Recognize the emotion of each utterance from a microphone, files or stdin.",
    )
    src = p.add_argument_group("input")
    src.add_argument(
        "--input",
        metavar="PATH",
        help="audio file, folder of audio files (recursive, sorted), or '-' for raw 16 kHz mono "
        "s16le PCM on stdin; default: the microphone",
    )
    src.add_argument("--device", metavar="NAME|INDEX", help="input device (see --list-devices)")
    src.add_argument("--list-devices", action="store_true", help="list input devices and exit")
    src.add_argument(
        "--realtime", action="store_true", help="pace file input like a live microphone"
    )
    out = p.add_argument_group("output")
    out.add_argument(
        "--json",
        action="store_true",
        help="one JSON object per utterance on stdout (default when stdout is not a terminal)",
    )
    mq = p.add_argument_group("mqtt (see [mqtt] in config.toml)")
    mq.add_argument("--mqtt-host", help="broker host name or address")
    mq.add_argument("--mqtt-port", type=int, help="broker port")
    mq.add_argument("--node-id", help="topic segment naming this recognizer (default: host name)")
    mq.add_argument("--no-mqtt", action="store_true", help="do not publish to MQTT")
    p.add_argument("--config", type=Path, help="config file (default: ./config.toml if present)")
    p.add_argument("--model", help="model bundle folder (default: models/default)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
    p.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    return p


def resolve_config(args: argparse.Namespace) -> Config:
    path = args.config
    if path is None and Path("config.toml").is_file():
        path = Path("config.toml")
    config = load_config(path)
    pipeline = {"model": args.model} if args.model else {}
    audio = {"device": args.device} if args.device is not None else {}
    mqtt: dict[str, object] = {}
    if args.mqtt_host:
        mqtt["host"] = args.mqtt_host
    if args.mqtt_port is not None:
        mqtt["port"] = args.mqtt_port
    if args.node_id is not None:
        mqtt["node_id"] = args.node_id
    if args.no_mqtt:
        mqtt["enabled"] = False
    return replace(config, pipeline=pipeline, audio=audio, mqtt=mqtt)


def resolve_bundle(config: Config) -> Bundle:
    path = Path(config.pipeline.model).expanduser()
    if not path.is_absolute() and not path.exists() and (PACKAGE_ROOT / path).exists():
        path = PACKAGE_ROOT / path  # the shipped bundle, when run from another folder
    return load_bundle(path)


def make_source(args: argparse.Namespace, config: Config, sample_rate: int) -> Source:
    block_ms = config.audio.block_ms
    if args.input == "-":
        return StdinSource(sample_rate, block_ms)
    if args.input is not None:
        from streamer.audio_io import list_audio_files

        path = Path(args.input)
        if not path.exists():
            raise SourceError(f"input {path} not found", exit_code=2)
        files = list_audio_files(path)
        if not files:
            raise SourceError(
                f"input folder {path} holds no audio files (.wav, .flac, .ogg, .aiff, .mp3, .opus)",
                exit_code=2,
            )
        return FileSource(check_files(files), sample_rate, block_ms, args.realtime)
    return MicrophoneSource(
        config.audio.device,
        sample_rate,
        block_ms,
        config.audio.queue_blocks,
        capture_rate=config.audio.capture_rate,
    )


def print_devices() -> None:
    devices = list_input_devices()
    if not devices:
        print("no audio input devices found")
        return
    for d in devices:
        mark = "*" if d["default"] else " "
        print(
            f"{mark} {d['index']:3d}  {d['name']}  "
            f"({d['channels']} ch, {d['default_samplerate']:.0f} Hz)"
        )


async def run_live(
    config: Config,
    bundle: Bundle,
    source: Source,
    started_s: float,
    *,
    use_json: bool,
) -> int:
    from rich.console import Console

    from streamer.classifier import Classifier
    from streamer.pipeline import Pipeline, Sink
    from streamer.sinks.dashboard import run_dashboard
    from streamer.sinks.jsonl import JsonLinesSink
    from streamer.state import LiveState
    from streamer.workers import FeatureWorkers

    classifier = Classifier(bundle)
    state = LiveState(
        model_name=bundle.name,
        model_accuracy=bundle.accuracy,
        labels=bundle.labels,
        history_size=config.dashboard.history,
    )
    sinks: list[Sink] = [JsonLinesSink()] if use_json else []
    mqtt = None
    if config.mqtt.enabled:
        from streamer.sinks.mqtt import MqttSink, default_node_id

        node_id = config.mqtt.node_id or default_node_id()
        mqtt = MqttSink(config.mqtt, node_id, bundle.labels, bundle.name, state)
        sinks.append(mqtt)
    workers = FeatureWorkers(config.pipeline.feature_workers)
    dashboard: asyncio.Task[None] | None = None
    loop = asyncio.get_running_loop()
    stop_count = 0
    run_task: asyncio.Task[None] | None = None

    def request_stop() -> None:
        nonlocal stop_count
        stop_count += 1
        source.stop()
        if run_task is None:
            return
        if stop_count == 1:  # finish what is in flight, but not forever
            loop.call_later(DRAIN_TIMEOUT_S, run_task.cancel)
        else:
            logger.warning("second interrupt: stopping without waiting for results in flight")
            run_task.cancel()

    try:
        if mqtt is not None:
            mqtt.start()
        await workers.start()
        pipeline = Pipeline(config, classifier, workers, sinks, state)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, request_stop)
        logger.info("listening on %s (ready in %.2f s)", source.name, time.monotonic() - started_s)
        state.started_wall_s = time.monotonic()
        if not use_json:
            dashboard = asyncio.create_task(
                run_dashboard(state, config.dashboard.refresh_hz, Console()), name="ser-dashboard"
            )
        run_task = asyncio.create_task(pipeline.run(source), name="ser-pipeline")
        try:
            await run_task
        except asyncio.CancelledError:
            if not run_task.cancelled():
                raise
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        if dashboard is not None:
            dashboard.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await dashboard
        workers.close()
        if mqtt is not None:
            await mqtt.aclose()
        logger.info(
            "%d utterances, %d dropped as too short, %d dropped (backlog), %d failed, %d overflows",
            state.utterances,
            state.dropped_short,
            state.dropped_backlog,
            state.failed,
            state.overflows,
        )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    started_s = time.monotonic()
    args = build_parser().parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    for name in ("ser", "streamer"):
        logging.getLogger(name).setLevel(level)
    try:
        if args.list_devices:
            print_devices()
            return 0
        config = resolve_config(args)
        bundle = resolve_bundle(config)
        source = make_source(args, config, bundle.sample_rate)
        use_json = args.json or not sys.stdout.isatty()
        return asyncio.run(run_live(config, bundle, source, started_s, use_json=use_json))
    except (ConfigError, BundleError) as exc:
        print(f"ser-live: error: {exc}", file=sys.stderr)
        return 2
    except SourceError as exc:
        print(f"ser-live: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
