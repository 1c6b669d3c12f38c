"""The live terminal dashboard: a pure render of `LiveState`, redrawn by its owner."""

from __future__ import annotations

import asyncio
import time

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from ser.labels import COLOURS, letter
from ser.state import BrokerStatus, LiveState

_BAR_WIDTH = 30
_LEVEL_FLOOR_DB = -60.0
_SPARKS = "▁▂▃▄▅▆▇█"
_FALLBACK_STYLES = ("white", "cyan", "yellow", "blue", "red", "magenta", "green")
_COMPACT_BELOW_ROWS = 40  # shorter terminals: probabilities in two columns, fewer history rows


def _styles(labels: tuple[str, ...]) -> dict[str, str]:
    return {
        label: COLOURS.get(label, _FALLBACK_STYLES[i % len(_FALLBACK_STYLES)])
        for i, label in enumerate(labels)
    }


def middle_ellipsis(text: str, width: int) -> str:
    """`text` cut to `width` characters with "…" in the middle (both ends of a path say most)."""
    if len(text) <= width:
        return text
    if width <= 1:
        return "…"[:width]
    head = (width - 1) // 2
    tail = width - 1 - head
    return text[:head] + "…" + (text[-tail:] if tail else "")


def sparkline(values: list[float], low: float = -1.0, high: float = 1.0) -> str:
    """Values in [low, high] -> one block character each, ▁ (low) to █ (high)."""
    top = len(_SPARKS) - 1
    chars = []
    for v in values:
        fraction = (min(max(v, low), high) - low) / (high - low)
        chars.append(_SPARKS[round(fraction * top)])
    return "".join(chars)


def _timeline(state: LiveState) -> Table:
    """Emotion of each recent utterance (one coloured letter, oldest left) and the trend's
    arousal and valence over the same utterances as sparklines."""
    styles = _styles(state.labels)
    strip = Text()
    for r in state.timeline:
        if not r.is_speech:
            strip += Text("·", style="grey50")
            continue
        strip += Text(
            letter(r.emotion), style=("dim " if r.uncertain else "bold ") + styles[r.emotion]
        )
    legend = Text()
    for label in state.labels:
        legend += Text(letter(label), style="bold " + styles[label]) + Text(f" {label} ")
    legend += Text("·", style="grey50") + Text(" not speech")
    trends = [r.trend for r in state.timeline if r.trend is not None]
    grid = Table.grid(padding=(0, 1))
    grid.add_column(justify="right")
    grid.add_column()
    grid.add_row("emotions", strip if state.timeline else Text("-", "grey50"))
    grid.add_row("", legend)
    if trends:
        last = trends[-1]
        grid.add_row(
            "trend",
            Text.assemble(
                (last.emotion, "bold " + styles.get(last.emotion, "")),
                f" {last.confidence:.0%} over {last.utterances} utterances",
            ),
        )
        grid.add_row(
            "arousal",
            Text(sparkline([t.arousal for t in trends]), "red") + f" {last.arousal:+.2f}",
        )
        grid.add_row(
            "valence",
            Text(sparkline([t.valence for t in trends]), "green") + f" {last.valence:+.2f}",
        )
    return grid


def _count(n: int, noun: str) -> str:
    """ "1 utterance", "2 utterances"."""
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _bar(fraction: float, width: int = _BAR_WIDTH, style: str = "green") -> Text:
    filled = max(0, min(width, round(fraction * width)))
    return Text("█" * filled, style=style) + Text("░" * (width - filled), style="grey37")


def _broker_line(broker: BrokerStatus | None, now_s: float, unit: str = "") -> Text:
    if broker is None:
        return Text("off", style="grey50")
    styles = {"connected": "green", "retrying": "yellow", "connecting": "yellow"}
    text = Text(broker.state, style=styles.get(broker.state, "red"))
    if broker.state == "retrying" and broker.retry_at_s is not None:
        text += Text(f" in {max(0.0, broker.retry_at_s - now_s):.0f} s")
    if broker.last_error and broker.state != "connected":
        text += Text(f" ({broker.last_error})", style="grey62")
    text += Text(f"  waiting {broker.queued}{unit}  sent {broker.published}")
    if broker.dropped:
        text += Text(f"  dropped {broker.dropped}", style="red")
    return text


def render(
    state: LiveState, now_s: float | None = None, width: int = 120, height: int = 50
) -> RenderableType:
    """Everything the dashboard shows, from `state` alone, for a `width` x `height` terminal
    (below 40 rows: probabilities in two columns and fewer history rows, so 80x24 fits)."""
    now_s = time.monotonic() if now_s is None else now_s
    compact = height < _COMPACT_BELOW_ROWS
    accuracy = state.model_accuracy or "accuracy not recorded"
    header = Text.assemble(
        ("ser ", "bold"),
        (f"model {state.model_name}", "cyan"),
        f" ({accuracy})",
    )
    header.truncate(width, overflow="ellipsis")
    up = f"  up {now_s - state.started_wall_s:.0f} s"
    source = middle_ellipsis(state.source or "-", max(8, width - len("source ") - len(up) - 1))
    header_source = Text.assemble(("source ", "bold"), source, up)

    level_fraction = (max(state.level_db, _LEVEL_FLOOR_DB) - _LEVEL_FLOOR_DB) / -_LEVEL_FLOOR_DB
    vad = Text("SPEECH", style="bold green") if state.in_speech else Text("silence", "grey50")
    level = Text.assemble("input ", _bar(level_fraction), f" {state.level_db:6.1f} dBFS  ", vad)

    current = Table.grid(padding=(0, 1))
    columns = 2 if compact else 1
    for _ in range(columns):
        current.add_column(justify="right")
        current.add_column()
        current.add_column(justify="right")
    bar_width = 12 if compact else _BAR_WIDTH
    last = state.last
    cells: list[tuple[Text | str, Text, str]] = []
    if last is None:
        title = "waiting for speech"
        cells = [(label, _bar(0.0, bar_width), "") for label in state.labels]
    elif not last.is_speech:
        title = (
            f"#{last.seq} not speech (speech probability {last.speech:.0%})"
            f"  {last.start_s:.2f}-{last.end_s:.2f} s"
        )
        cells = [(Text(label, style="grey50"), _bar(0.0, bar_width), "") for label in state.labels]
    else:
        style = "dim" if last.uncertain else "bold"
        title = (
            f"#{last.seq} {last.emotion} {last.confidence:.0%}"
            + (" (uncertain)" if last.uncertain else "")
            + f"  {last.start_s:.2f}-{last.end_s:.2f} s"
            + f"  arousal {last.arousal:+.2f} valence {last.valence:+.2f}"
        )
        for label in state.labels:
            p = last.probabilities.get(label, 0.0)
            is_top = label == last.emotion
            cells.append(
                (
                    Text(label, style=style if is_top else ""),
                    _bar(p, bar_width, style="magenta" if is_top else "blue"),
                    f"{p:.0%}",
                )
            )
    rows = (len(cells) + columns - 1) // columns
    for row_index in range(rows):
        row: list[Text | str] = []
        for c in range(columns):
            i = row_index + c * rows
            row.extend(cells[i] if i < len(cells) else ("", Text(), ""))
        current.add_row(*row)

    history = Table(expand=True, box=None, header_style="bold")
    for name, justify in (
        ("#", "right"),
        ("source", "left"),
        ("time s", "right"),
        ("dur s", "right"),
        ("emotion", "left"),
        ("conf", "right"),
        ("latency ms", "right"),
    ):
        history.add_column(name, justify=justify)  # type: ignore[arg-type]
    source_width = max(8, width - 56)
    fixed_rows = 1 + 1 + 1 + (rows + 2) + 7 + 3 + 3  # headers, panels, counters
    shown = list(state.history)[: max(1, height - fixed_rows)] if compact else state.history
    for r in shown:
        history.add_row(
            str(r.seq),
            middle_ellipsis(r.source, source_width),
            f"{r.start_s:.2f}",
            f"{r.end_s - r.start_s:.2f}",
            r.emotion if r.is_speech else "(not speech)",
            f"{r.confidence:.0%}" if r.is_speech else "",
            f"{r.latency_ms:.0f}",
            style="dim" if r.uncertain or not r.is_speech else None,
        )

    pct = state.latency_percentiles()
    latency = f"{pct[0]:.0f} / {pct[1]:.0f} ms" if pct else "-"
    counters = Text.assemble(
        f"{_count(state.utterances, 'utterance')}  dropped: short {state.dropped_short}, "
        f"backlog {state.dropped_backlog}  failed {state.failed}  "
        f"overflows {state.overflows}  lost blocks {state.dropped_blocks}\n"
        f"latency p50/p95 {latency}  speaker resets {state.resets} (r: a new speaker starts)\n",
        *(
            ("server ", _broker_line(state.remote, now_s, unit=" x 0.1 s audio"))
            if state.remote is not None
            else ("mqtt ", _broker_line(state.broker, now_s))
        ),
    )
    notes = [Text(state.note, style="italic")] if state.note else []
    return Group(
        header,
        header_source,
        *notes,
        level,
        Panel(current, title=title, title_align="left"),
        Panel(_timeline(state), title="over time", title_align="left"),
        Panel(history, title="recent utterances", title_align="left"),
        counters,
    )


async def run_dashboard(state: LiveState, refresh_hz: float, console: Console) -> None:
    """Redraw until cancelled. Only this task touches the terminal; no refresh thread."""

    def draw() -> RenderableType:
        size = console.size
        return render(state, width=size.width, height=size.height)

    with Live(draw(), console=console, auto_refresh=False, transient=False) as live:
        try:
            while True:
                await asyncio.sleep(1.0 / refresh_hz)
                live.update(draw(), refresh=True)
        finally:
            live.update(draw(), refresh=True)
