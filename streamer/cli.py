"""`ser-live`: the streaming recognizer (microphone, files or stdin -> dashboard, JSON, MQTT)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import logging
import re
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from ser.bundle import (
    DEFAULT_BUNDLE,
    Bundle,
    BundleError,
    load_bundle,
    resolve_bundle_path,
    shipped_bundles,
)
from ser.config import Config, ConfigError, apply_overrides, load_config, replace
from ser.keys import key_commands
from ser.pcm import PcmFormat
from ser.sources import (
    FileSource,
    MicrophoneSource,
    Source,
    SourceError,
    StdinSource,
    check_files,
    list_input_devices,
)

logger = logging.getLogger("ser.live")

DRAIN_TIMEOUT_S = 10.0
# a closed terminal (SIGHUP) stops like Ctrl-C or SIGTERM: results in flight are finished
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
DEMO_FILE = Path(__file__).resolve().parent / "demo" / "ravdess-demo.flac"
NO_MICROPHONE_HINT = (
    "pick a device with --device NAME|INDEX (see --list-devices), or read a file with --input FILE"
)


def version() -> str:
    try:
        return importlib.metadata.version("ser")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed)"


def _model_epilog() -> str:
    """One line on the shipped model for --help (never fails: --help must always work)."""
    try:
        bundle = load_bundle(resolve_bundle_path(DEFAULT_BUNDLE))
    except BundleError as exc:
        return f"model: the shipped bundle is unusable ({exc})"
    accuracy = bundle.accuracy_note()
    try:
        others = sorted(
            d.name
            for d in shipped_bundles().iterdir()
            if (d / "manifest.json").is_file() and d.name != bundle.name
        )
    except (ImportError, OSError):
        others = []
    shipped = f"--model {' or '.join(others)} for the other shipped bundle, " if others else ""
    return f"model: {bundle.name} ({accuracy}), {bundle.path}; {shipped}--model DIR for your own"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ser-live",
        description="Recognize the emotion of each utterance from a microphone, files or stdin.",
        epilog=_model_epilog(),
    )
    p.add_argument("--version", action="version", version=f"ser-live {version()}")
    src = p.add_argument_group("input")
    src.add_argument(
        "--input",
        metavar="PATH",
        help="audio file, folder of audio files (recursive, sorted), or '-' for stdin (an audio "
        "file, or raw 16 kHz mono s16le PCM: see --rate/--channels/--format); default: the "
        "microphone",
    )
    src.add_argument(
        "--rate", type=int, metavar="HZ", help="raw PCM on stdin: its sample rate (default 16000)"
    )
    src.add_argument(
        "--channels", type=int, metavar="N", help="raw PCM on stdin: interleaved channels (1)"
    )
    src.add_argument(
        "--format",
        choices=("s16le", "f32le"),
        help="raw PCM on stdin: sample format (s16le); WAV, FLAC, Ogg, AIFF and MP3 on stdin "
        "are recognised and decoded without these",
    )
    src.add_argument("--device", metavar="NAME|INDEX", help="input device (see --list-devices)")
    src.add_argument("--list-devices", action="store_true", help="list input devices and exit")
    src.add_argument(
        "--realtime", action="store_true", help="pace file input like a live microphone"
    )
    src.add_argument(
        "--demo",
        action="store_true",
        help="play the built-in demo recording (RAVDESS clips of several emotions) in real time; "
        "also what runs when no microphone exists",
    )
    out = p.add_argument_group("output")
    out.add_argument(
        "--json",
        action="store_true",
        help="one JSON object per utterance on stdout (default when stdout is not a terminal)",
    )
    remote = p.add_argument_group("thin client (the model runs on a ser-serve server)")
    remote.add_argument(
        "--connect",
        metavar="URL",
        help="send the audio to ser-serve at URL (ws://HOST:PORT/v1/stream) and show its results "
        "here; no model or feature workers run locally (token: $SER_TOKEN when set)",
    )
    remote.add_argument(
        "--stream",
        metavar="NAME",
        help="stream name with --connect (the results' source; default: HOST-mic, or the file "
        "name)",
    )
    mq = p.add_argument_group("mqtt (see [mqtt] in config.toml)")
    mq.add_argument("--mqtt-host", help="broker host name or address")
    mq.add_argument("--mqtt-port", type=int, help="broker port")
    mq.add_argument("--node-id", help="topic segment naming this recognizer (default: host name)")
    mq.add_argument(
        "--mqtt",
        action="store_true",
        help="publish to MQTT and keep results the broker did not get, for file input too "
        "(mqtt.enabled = true)",
    )
    mq.add_argument("--no-mqtt", action="store_true", help="do not publish to MQTT")
    p.add_argument(
        "--workers", type=int, help="feature processes (pipeline.feature_workers, default 1)"
    )
    add_common_arguments(p)
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
    p.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    return p


def add_common_arguments(p: argparse.ArgumentParser) -> None:
    """Settings that mean the same in ser-live and ser-serve (the rest: --set)."""
    g = p.add_argument_group("settings (any config key: --set section.key=value)")
    g.add_argument("--config", type=Path, help="config file (default: ./config.toml if present)")
    g.add_argument("--model", help="model bundle: 'default', 'small' or a folder")
    g.add_argument(
        "--no-adaptation",
        action="store_true",
        help="read every utterance on its own, without the speaker's earlier ones "
        '(pipeline.adaptation = "off"; on the dashboard, r says a new speaker starts)',
    )
    g.add_argument("--hangover-ms", type=int, help="silence that ends an utterance (300)")
    g.add_argument(
        "--min-confidence",
        help='results below this top probability are "uncertain" (0-1, or "auto")',
    )
    g.add_argument(
        "--home-assistant", action="store_true", help="publish Home Assistant MQTT discovery"
    )
    g.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="any config key, e.g. --set vad.aggressiveness=3 (repeatable)",
    )


def common_overrides(args: argparse.Namespace) -> dict[str, dict[str, object]]:
    """The config sections and keys the common flags set."""
    sections: dict[str, dict[str, object]] = {"pipeline": {}, "vad": {}, "mqtt": {}}
    if args.model:
        sections["pipeline"]["model"] = args.model
    if args.no_adaptation:
        sections["pipeline"]["adaptation"] = "off"
    if args.min_confidence is not None:
        text = args.min_confidence
        try:
            sections["pipeline"]["min_confidence"] = text if text == "auto" else float(text)
        except ValueError:
            raise ConfigError(
                f'--min-confidence: expected a number 0-1 or "auto", got {text!r}'
            ) from None
    if args.hangover_ms is not None:
        sections["vad"]["hangover_ms"] = args.hangover_ms
    if args.home_assistant:
        sections["mqtt"]["home_assistant"] = True
    return sections


def config_file(args: argparse.Namespace) -> Config:
    """--config, else ./config.toml when present, else the defaults."""
    path = args.config
    if path is None and Path("config.toml").is_file():
        path = Path("config.toml")
    return load_config(path)


def mqtt_overrides(args: argparse.Namespace) -> dict[str, object]:
    """[mqtt] keys set by --mqtt-host, --mqtt-port, --node-id and --no-mqtt."""
    mqtt: dict[str, object] = {}
    if args.mqtt_host:
        mqtt["host"] = args.mqtt_host
    if args.mqtt_port is not None:
        mqtt["port"] = args.mqtt_port
    if args.node_id is not None:
        mqtt["node_id"] = args.node_id
    if args.no_mqtt:
        mqtt["enabled"] = False
    return mqtt


def configure_logging(args: argparse.Namespace) -> None:
    """Our loggers at INFO (-v: DEBUG, -q: WARNING) on stderr; other libraries' at WARNING."""
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    logging.getLogger("ser").setLevel(level)  # every module's logger is ser.*


async def cancel_quietly(task: asyncio.Task[None] | None) -> None:
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def resolve_config(args: argparse.Namespace) -> Config:
    config = apply_overrides(config_file(args), args.set)
    sections = common_overrides(args)
    if args.workers is not None:
        sections["pipeline"]["feature_workers"] = args.workers
    audio = {"device": args.device} if args.device is not None else {}
    mqtt = {**sections.pop("mqtt"), **mqtt_overrides(args)}
    if ("host" in mqtt or "port" in mqtt) and config.mqtt.enabled == "auto":
        mqtt["enabled"] = True  # a broker named on the command line is MQTT asked for
    if args.mqtt and not args.no_mqtt:
        mqtt["enabled"] = True
    return replace(config, audio=audio, mqtt=mqtt, **sections)


def resolve_bundle(config: Config) -> Bundle:
    return load_bundle(resolve_bundle_path(config.pipeline.model))


def _dashboard_wanted(args: argparse.Namespace) -> bool:
    """The run shows the dashboard: stdout is a terminal and --json was not asked for."""
    return not args.json and sys.stdout.isatty()


def _is_demo(source: Source) -> bool:
    return isinstance(source, FileSource) and list(source.paths) == [DEMO_FILE]


DEMO_NOTE = "demo: RAVDESS actor 12 acting neutral, happy, sad, angry, surprised (in this order)"


def demo_source(config: Config, sample_rate: int) -> FileSource:
    """The shipped demo recording, paced in real time."""
    if not DEMO_FILE.is_file():
        raise SourceError(f"the demo recording {DEMO_FILE} is missing: reinstall ser", 1)
    return FileSource(
        [DEMO_FILE], sample_rate, config.audio.block_ms, realtime=True, stream_name="demo"
    )


def _no_microphone(args: argparse.Namespace, config: Config) -> str | None:
    """Why the default microphone cannot be used (None: there is one, or one was asked for by
    name, which is then opened and reported as usual)."""
    if args.device is not None or config.audio.device:
        return None
    try:
        devices = list_input_devices()
    except SourceError as exc:
        return str(exc)
    return None if devices else "no audio input device found"


def _stdin_format(args: argparse.Namespace) -> PcmFormat | None:
    """--rate/--channels/--format for raw PCM on stdin (None: not given)."""
    given = [f for f in ("rate", "channels", "format") if getattr(args, f, None) is not None]
    if not given:
        return None
    if args.input != "-":
        raise SourceError(
            f"--{'/--'.join(given)} describe raw PCM on stdin: use them with --input -", 2
        )
    rate, channels = args.rate or 16_000, args.channels or 1
    if not 8000 <= rate <= 384_000 or not 1 <= channels <= 32:
        raise SourceError("--rate must be 8000-384000 (Hz) and --channels 1-32", 2)
    return PcmFormat(args.format or "s16le", rate, channels)


def make_source(args: argparse.Namespace, config: Config, sample_rate: int) -> Source:
    block_ms = config.audio.block_ms
    pcm = _stdin_format(args)
    if args.demo:
        return demo_source(config, sample_rate)
    if args.input == "-":
        return StdinSource(sample_rate, block_ms, pcm=pcm)
    if args.input is not None:
        from ser.audio_io import list_audio_files

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
    reason = _no_microphone(args, config)
    if reason is not None:
        if not _dashboard_wanted(args):  # a service or a pipe: never made-up results
            raise SourceError(f"no microphone ({reason}): {NO_MICROPHONE_HINT}, or --demo", 1)
        logger.warning(
            "no microphone: %s; playing the built-in demo recording instead (%s)",
            reason,
            NO_MICROPHONE_HINT,
        )
        return demo_source(config, sample_rate)
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


def _stream_name(args: argparse.Namespace, source: Source) -> str:
    """--stream, else HOST-mic for a microphone, "stdin", or the file's name ("demo")."""
    import socket

    if args.stream:
        return str(args.stream)
    if source.live:
        name = f"{socket.gethostname()}-mic"
    elif isinstance(source, StdinSource):
        name = source.name
    else:
        name = Path(source.name).name
    return _safe_name(name)


def _safe_name(name: str) -> str:
    """A stream name the server takes: letters, digits and _.:@- only, at most 128."""
    return re.sub(r"[^A-Za-z0-9_.:@-]+", "-", name).strip("-")[:128] or "stream"


async def run_remote(
    args: argparse.Namespace, config: Config, source: Source, *, use_json: bool
) -> int:
    """The thin client: `source` to a ser-serve stream, its results to the local sinks."""
    import os

    from rich.console import Console

    from ser.labels import LABELS
    from ser.pipeline import Sink
    from ser.remote import RemotePipeline, redact_url
    from ser.sinks.dashboard import run_dashboard
    from ser.sinks.jsonl import JsonLinesSink
    from ser.state import LiveState

    state = LiveState(
        model_name=f"on {redact_url(args.connect)}",
        model_accuracy=None,
        labels=LABELS,
        history_size=config.dashboard.history,
        timeline_size=config.dashboard.timeline,
    )
    streams = _remote_streams(args, config, source)
    stopping = False
    current: list[RemotePipeline] = []

    def stop_sending() -> None:  # stdout closed, or a stop signal: no further file either
        nonlocal stopping
        stopping = True
        for _, part in streams:
            part.stop()

    sinks: list[Sink] = [JsonLinesSink(on_closed=stop_sending)] if use_json else []
    token = os.environ.get("SER_TOKEN") or None

    async def send_all() -> None:
        """Each (name, source) in turn as one server stream (a folder: a stream per file)."""
        seq = 0  # contiguous over the run, as locally
        for name, part in streams:
            if stopping:
                break
            remote = RemotePipeline(args.connect, name, sinks, state, token=token, first_seq=seq)
            current[:] = [remote]
            await remote.run(part)
            seq = remote.next_seq

    loop = asyncio.get_running_loop()
    run_task = asyncio.create_task(send_all(), name="ser-remote")
    stops = 0

    def request_stop() -> None:  # as ser-live's: the last results, but not forever
        nonlocal stops
        stops += 1
        stop_sending()
        if stops == 1:
            loop.call_later(DRAIN_TIMEOUT_S, run_task.cancel)
        else:
            run_task.cancel()

    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, request_stop)
    dashboard = None
    keys = contextlib.ExitStack()
    try:
        logger.info("listening on %s, sending to %s", source.name, redact_url(args.connect))
        if not use_json:
            dashboard = asyncio.create_task(
                run_dashboard(state, config.dashboard.refresh_hz, Console()), name="ser-dashboard"
            )
            if source.live:  # a file has no speaker to change mid-way; stdin is its data
                keys.enter_context(key_commands({"r": lambda: _reset_current(current)}))
        try:
            await run_task
        except asyncio.CancelledError:
            if not run_task.cancelled():
                raise
            logger.warning("stopped before the server's last results arrived")
    finally:
        keys.close()
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)
        await cancel_quietly(dashboard)
        logger.info(
            "%d results from the server, %d reconnections",
            state.utterances,
            sum(r.reconnects for r in current),
        )
    return 0


def _remote_streams(
    args: argparse.Namespace, config: Config, source: Source
) -> list[tuple[str, Source]]:
    """What `--connect` sends: (stream name, source) pairs, one after another. A folder (or
    several files) is one stream per file, named after the file (prefixed with --stream when
    given), so each file starts with no speaker history, as it does locally."""
    if not isinstance(source, FileSource) or len(source.paths) == 1:
        return [(_stream_name(args, source), source)]
    out: list[tuple[str, Source]] = []
    for path in source.paths:
        part = FileSource([path], source.sample_rate, config.audio.block_ms, source.realtime)
        name = f"{args.stream}-{path.name}" if args.stream else path.name
        out.append((_safe_name(name), part))
    return out


def _reset_current(current: Sequence[_Resettable]) -> None:
    """The thin client's r key: the stream being sent now (none before the first starts)."""
    if current:
        _reset(current[0])


class _Resettable(Protocol):
    def reset_speaker(self) -> object: ...


def _reset(target: _Resettable) -> None:
    """The dashboard's r key: a new speaker starts (the pipeline's or the server's history)."""
    outcome = target.reset_speaker()
    if asyncio.iscoroutine(outcome):
        task = asyncio.ensure_future(outcome)
        _KEY_TASKS.add(task)
        task.add_done_callback(_KEY_TASKS.discard)


_KEY_TASKS: set[asyncio.Future[object]] = set()


async def run_live(
    config: Config,
    bundle: Bundle,
    source: Source,
    started_s: float,
    *,
    use_json: bool,
) -> int:
    from rich.console import Console

    from ser.classifier import Classifier
    from ser.pipeline import Pipeline, Sink
    from ser.sinks.dashboard import run_dashboard
    from ser.sinks.jsonl import JsonLinesSink
    from ser.state import LiveState
    from ser.workers import FeatureWorkers

    classifier = Classifier(bundle)
    state = LiveState(
        model_name=bundle.name,
        model_accuracy=bundle.accuracy_note(short=True),
        labels=bundle.labels,
        history_size=config.dashboard.history,
        timeline_size=config.dashboard.timeline,
    )
    if _is_demo(source):
        state.note = DEMO_NOTE
    sinks: list[Sink] = [JsonLinesSink(on_closed=source.stop)] if use_json else []
    mqtt = None
    if config.mqtt.enabled:
        from ser.sinks.mqtt import MqttSink, default_node_id

        node_id = config.mqtt.node_id or default_node_id()
        mqtt = MqttSink(
            config.mqtt,
            node_id,
            bundle.labels,
            bundle.name,
            state,
            # "auto": a file run does not wait for, or keep results of, a broker never reached
            keep_unreached=config.mqtt.enabled is True or source.live,
        )
        sinks.append(mqtt)
    workers = FeatureWorkers(
        config.pipeline.feature_workers,
        encoder=bundle.encoder,
        statistics=bundle.needs_statistics,
    )
    dashboard: asyncio.Task[None] | None = None
    loop = asyncio.get_running_loop()
    stop_count = 0
    run_task: asyncio.Task[None] | None = None
    keys = contextlib.ExitStack()

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
            if mqtt is not None:
                mqtt.hurry()  # queued results are saved, not flushed

    try:
        if mqtt is not None:
            mqtt.start()
        await workers.start()
        pipeline = Pipeline(config, classifier, workers, sinks, state)
        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, request_stop)
        logger.info("listening on %s (ready in %.2f s)", source.name, time.monotonic() - started_s)
        state.started_wall_s = time.monotonic()
        if not use_json:
            dashboard = asyncio.create_task(
                run_dashboard(state, config.dashboard.refresh_hz, Console()), name="ser-dashboard"
            )
            if source.live:
                keys.enter_context(key_commands({"r": lambda: _reset(pipeline)}))
        run_task = asyncio.create_task(pipeline.run(source), name="ser-pipeline")
        try:
            await run_task
        except asyncio.CancelledError:
            if not run_task.cancelled():
                raise
    finally:
        keys.close()
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)
        await cancel_quietly(dashboard)
        await asyncio.to_thread(workers.close)
        if mqtt is not None:
            await mqtt.aclose()
        logger.info(
            "%d utterances, %d dropped as too short, %d dropped (backlog), %d failed, %d overflows"
            ", %d with their pitch computed while spoken, %d analysed during the hangover (%d "
            "dropped: the voice came back)",
            state.utterances,
            state.dropped_short,
            state.dropped_backlog,
            state.failed,
            state.overflows,
            state.early_pitch,
            state.early_analyses,
            state.dropped_early_analyses,
        )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    started_s = time.monotonic()
    args = build_parser().parse_args(argv)
    configure_logging(args)
    try:
        if args.list_devices:
            print_devices()
            return 0
        config = resolve_config(args)
        use_json = args.json or not sys.stdout.isatty()
        if args.connect:
            source = make_source(args, config, 16_000)
            return asyncio.run(run_remote(args, config, source, use_json=use_json))
        bundle = resolve_bundle(config)
        source = make_source(args, config, bundle.sample_rate)
        if _is_demo(source) and config.mqtt.enabled is not True:
            if config.mqtt.enabled:
                logger.info("demo results are not published to MQTT (--mqtt to publish them)")
            config = replace(config, mqtt={"enabled": False})
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
