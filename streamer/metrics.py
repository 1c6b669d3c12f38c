"""`ser-serve`'s Prometheus metrics (`GET /metrics`, text format), one registry per server.

Counters are updated as results pass (`ServeMetrics` is a pipeline `Sink`) and as connections are
refused; gauges (open streams, connections by state, queue depths, worker restarts, MQTT) are
read from the live objects at scrape time, so they are never stale.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Histogram, Info, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ser.messages import Result
from ser.workers import CALL_KINDS, CALL_OUTCOMES

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS_S = (0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0)
# where the latency goes (`Pipeline` and `FeatureWorkers` report them): they add up to it
STAGES = ("hangover", "feature_wait", "features", "classify")


@dataclass(frozen=True)
class Snapshot:
    """What the server holds at scrape time."""

    streams: int
    unstarted: int
    feature_queue: int  # utterances waiting for or in a feature worker
    inference_queue: int  # utterances waiting for the classifier
    workers_healthy: bool
    worker_restarts: int
    mqtt_connected: bool | None  # None: MQTT off
    mqtt_queued: int = 0
    mqtt_dropped: int = 0
    mqtt_published: int = 0
    mqtt_failures: int = 0
    inference_healthy: bool = True
    inference_restarts: int = 0
    # feature worker calls by (kind, outcome): `FeatureWorkers.calls`
    worker_calls: Mapping[tuple[str, str], int] = field(default_factory=dict)


class _LiveCollector(Collector):
    def __init__(self, snapshot: Callable[[], Snapshot]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        s = self._snapshot()
        yield GaugeMetricFamily("ser_streams_open", "Streams open now.", value=s.streams)
        connections = GaugeMetricFamily(
            "ser_connections", "WebSocket connections by state.", labels=["state"]
        )
        connections.add_metric(["unstarted"], s.unstarted)
        connections.add_metric(["streaming"], s.streams)
        yield connections
        queues = GaugeMetricFamily("ser_queue_depth", "Utterances waiting.", labels=["queue"])
        queues.add_metric(["features"], s.feature_queue)
        queues.add_metric(["inference"], s.inference_queue)
        yield queues
        yield GaugeMetricFamily(
            "ser_feature_workers_healthy",
            "1 while the feature worker pool can take work.",
            value=int(s.workers_healthy),
        )
        yield CounterMetricFamily(
            "ser_feature_worker_restarts",
            "Feature worker pools replaced after a worker died.",
            value=s.worker_restarts,
        )
        calls = CounterMetricFamily(
            "ser_feature_worker_calls",
            "Calls handed to the feature workers, by kind (analyse: an utterance analysed once "
            "it ended; early: analysed during its hangover; pitch: while spoken) "
            "and outcome (done, failed, lost with a worker, cancelled before a worker took it, "
            "dropped: its caller gave up while a worker ran it).",
            labels=["kind", "outcome"],
        )
        # every kind's series from the start (zero), for dashboards
        every = {(kind, outcome) for kind in CALL_KINDS.values() for outcome in CALL_OUTCOMES}
        for kind, outcome in sorted(every | set(s.worker_calls)):
            calls.add_metric([kind, outcome], s.worker_calls.get((kind, outcome), 0))
        yield calls
        yield GaugeMetricFamily(
            "ser_inference_healthy",
            "1 while the shared classifier answers.",
            value=int(s.inference_healthy),
        )
        yield CounterMetricFamily(
            "ser_inference_restarts",
            "Shared classifier reopened, or its batch loop restarted, after failures.",
            value=s.inference_restarts,
        )
        if s.mqtt_connected is None:
            return
        yield GaugeMetricFamily(
            "ser_mqtt_connected", "1 while connected to the broker.", value=int(s.mqtt_connected)
        )
        yield GaugeMetricFamily(
            "ser_mqtt_queued", "Results waiting to be published.", value=s.mqtt_queued
        )
        yield CounterMetricFamily(
            "ser_mqtt_dropped",
            "Results dropped while the MQTT queue was full.",
            value=s.mqtt_dropped,
        )
        yield CounterMetricFamily(
            "ser_mqtt_published", "Results published.", value=s.mqtt_published
        )
        yield CounterMetricFamily(
            "ser_mqtt_failures", "Unexpected errors the MQTT sink survived.", value=s.mqtt_failures
        )


class ServeMetrics:
    """The registry of one server; a `Sink` for its results (add it to every stream)."""

    def __init__(self, version: str, bundle: str, snapshot: Callable[[], Snapshot]) -> None:
        registry = CollectorRegistry(auto_describe=True)
        self.registry = registry
        self.utterances = Counter(
            "ser_utterances", "Utterances classified (speech or not).", registry=registry
        )
        self.results = Counter(
            "ser_results",
            "Results by emotion (not_speech included).",
            ["emotion"],
            registry=registry,
        )
        self.refusals = Counter(
            "ser_refusals",
            "Connections or streams refused, by reason.",
            ["reason"],
            registry=registry,
        )
        self.latency = Histogram(
            "ser_latency_seconds",
            "End of speech to result.",
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        self.stages = Histogram(
            "ser_stage_seconds",
            "Where the latency goes, per utterance: hangover (end of speech to the utterance's "
            "cut), feature_wait, features (in a feature worker), classify (to the result).",
            ["stage"],
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        for stage in STAGES:  # every stage's series from the start (zero), for dashboards
            self.stages.labels(stage)
        self.early_analyses = Counter(
            "ser_early_analyses",
            "Analyses started during an utterance's hangover (pipeline.encoder_tail_ms), by "
            "outcome: used, or dropped when the voice came back (work wasted if it had run).",
            ["outcome"],
            registry=registry,
        )
        for outcome in ("used", "dropped"):
            self.early_analyses.labels(outcome)
        self.streams = Counter("ser_streams", "Streams started.", registry=registry)
        Info("ser_build", "Version and model bundle.", registry=registry).info(
            {"version": version, "bundle": bundle}
        )
        registry.register(_LiveCollector(snapshot))

    def emit(self, result: Result) -> None:
        self.utterances.inc()
        self.results.labels(result.emotion).inc()
        self.latency.observe(max(result.latency_ms, 0.0) / 1000.0)

    def observe_stage(self, stage: str, seconds: float) -> None:
        self.stages.labels(stage).observe(max(seconds, 0.0))

    def early_analysis(self, used: bool) -> None:
        self.early_analyses.labels("used" if used else "dropped").inc()

    def refused(self, reason: str) -> None:
        self.refusals.labels(reason).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
