"""The picture of a dispute case (DISPUTES.md, "Spreadsheet and picture"): the trace graph of
the batches involved as an SVG 1.1 image, organizations as swim lanes, time left to right.

Each batch is a box in its producer's lane; solid arrows run from an input batch to the
batch made from it, dashed arrows carry a shipment from the sender's lane to the
receiver's; failed checks and recalls are labelled marks on the batch, explained in a
legend. Every event (a batch made, a shipment sent) has its own column, in time order,
so nothing overlaps however many events share a day.

Hand-written: no maintained Python library draws swim lanes, and the markup is small.
The image is self-contained (no fonts, style sheets or scripts from elsewhere; styles are
attributes, so an inline copy leaks no CSS into the page around it) and every text from
the ledger is escaped. Classes and data-* attributes name what each element shows
(`class="lane" data-org=USCC`, `class="mark recall" data-lot=…`), for tests and tools.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape

from ledger.text import scrub
from typing import Literal

from ledger.errors import LedgerError
from traceability.cases import case_view
from traceability.trace import Direction, TraceEdge, TraceNode, TraceShipment, trace
from traceability.views import Views

SVG_MEDIA_TYPE = "image/svg+xml"
Lang = Literal["zh", "en"]


@dataclass(frozen=True, slots=True)
class Lane:
    org: str  # USCC
    name: str


@dataclass(frozen=True, slots=True)
class Mark:
    kind: Literal["recall", "failed-check"]
    entry: int
    label: str  # e.g. the recall level or the report number


@dataclass(frozen=True, slots=True)
class BatchBox:
    gtin: str
    lot: str
    org: str
    product: str
    at: str  # produced_at, RFC 3339
    entry: int
    marks: tuple[Mark, ...] = ()


@dataclass(frozen=True, slots=True)
class Shipment:
    gtin: str
    lot: str
    sender: str
    receiver: str
    quantity: int
    at: str  # issued_at of the batch.shipped statement
    entry: int
    received_entry: int | None


@dataclass(frozen=True, slots=True)
class Picture:
    title: str
    lanes: tuple[Lane, ...]  # top to bottom
    batches: tuple[BatchBox, ...]
    inputs: tuple[TraceEdge, ...]
    shipments: tuple[Shipment, ...]


# ---- gathering ------------------------------------------------------------------------------

_DIRECTIONS: tuple[Direction, ...] = ("up", "down")


def case_picture(views: Views, case_id: str) -> Picture:
    """The batches the case names with everything up and down from them.
    Raises NotFound for a case that was never opened."""
    case = case_view(views, case_id)
    nodes: dict[tuple[str, str], TraceNode] = {}
    edges: dict[tuple[int, str, str], TraceEdge] = {}
    shipped: dict[int, TraceShipment] = {}
    for ref in case.batches:
        for direction in _DIRECTIONS:
            graph = trace(views, ref.gtin, ref.lot, direction)
            nodes.update({(n.gtin, n.lot): n for n in graph.nodes})
            edges.update({(e.entry, e.source.gtin, e.source.lot): e for e in graph.edges})
            shipped.update({s.entry: s for s in graph.shipments})
    with views.reading() as tx:
        produced: dict[tuple[str, str], str | None] = {}
        marks: dict[tuple[str, str], list[Mark]] = {}
        for key in sorted(nodes):
            produced[key] = tx.value(
                "SELECT produced_at FROM v_batches WHERE gtin = ? AND lot = ?", key)
            for r in tx.rows("SELECT entry, level FROM v_recalls WHERE gtin = ? AND lot = ? "
                             "ORDER BY entry", key):
                marks.setdefault(key, []).append(Mark("recall", r["entry"], f"L{r['level']}"))
            for r in tx.rows("SELECT entry, report_no FROM v_checks WHERE gtin = ? AND lot = ? "
                             "AND verdict = 'fail' AND withdrawn = 0 ORDER BY entry", key):
                marks.setdefault(key, []).append(Mark("failed-check", r["entry"], r["report_no"]))
        orgs = {n.org for n in nodes.values()} | {case.respondent}
        orgs |= {s.sender for s in shipped.values()} | {s.receiver for s in shipped.values()}
        names = {r["uscc"]: r["name"] for r in tx.rows(
            f"SELECT uscc, name FROM v_organizations WHERE uscc IN ({', '.join('?' * len(orgs))})",
            sorted(orgs))}
    batches = tuple(
        BatchBox(n.gtin, n.lot, n.org, n.product, produced[k] or "", n.entry,
                 tuple(marks.get(k, ())))
        for k, n in sorted(nodes.items(), key=lambda kn: (produced[kn[0]] or "", kn[1].entry))
    )
    shipments = tuple(
        Shipment(s.gtin, s.lot, s.sender, s.receiver, s.quantity, _issued_at(views, s.entry),
                 s.entry, s.received_entry)
        for s in sorted(shipped.values(), key=lambda s: s.entry)
    )
    first = _first_seen(batches, shipments)
    lanes = tuple(Lane(o, names.get(o, o))
                  for o in sorted(orgs, key=lambda o: (first.get(o, "\uffff"), o)))
    inputs = tuple(sorted(edges.values(), key=lambda e: (e.entry, e.source.gtin, e.source.lot)))
    return Picture(case.case, lanes, batches, inputs, shipments)


def _issued_at(views: Views, entry: int) -> str:
    """When the sender says it shipped ("" when the entry cannot be read: it then sorts first)."""
    try:
        return views.ledger.statement_at(entry).issued_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    except LedgerError:
        return ""


def _first_seen(batches: tuple[BatchBox, ...], shipments: tuple[Shipment, ...]) -> dict[str, str]:
    """When each organization first made or handled a batch of the picture: lanes run
    from the start of the chain (top) to its end (bottom)."""
    first: dict[str, str] = {}
    events = [(b.org, b.at) for b in batches]
    events += [(o, s.at) for s in shipments for o in (s.sender, s.receiver)]
    for org, at in events:
        if org not in first or at < first[org]:
            first[org] = at
    return first


# ---- drawing --------------------------------------------------------------------------------

_TEXT = {
    "zh": {"title": "案件 {} 涉及的批次", "batch": "批次", "input": "原料投入",
           "shipment": "发货", "recall": "召回", "failed-check": "抽检不合格", "legend": "图例",
           "tag-recall": "召回", "tag-failed-check": "不合格"},
    "en": {"title": "Batches of case {}", "batch": "batch", "input": "input used",
           "shipment": "shipment", "recall": "recall", "failed-check": "failed check",
           "legend": "Legend", "tag-recall": "RECALL", "tag-failed-check": "FAIL"},
}
_MARK_COLOUR = {"recall": "#b3261e", "failed-check": "#c25e00"}

LABEL_W = 230  # the lane labels on the left
HEADER_H = 64  # title and time axis
LANE_H = 84
BATCH_COL = 150
SHIP_COL = 40
BOX_W, BOX_H = 134, 40
LEGEND_H = 56
FONT = "system-ui, -apple-system, 'PingFang SC', 'Noto Sans CJK SC', sans-serif"


@dataclass
class _Layout:
    lane_y: dict[str, int]  # org -> top of its lane
    x: dict[tuple[str, int], int] = field(default_factory=dict)  # ("batch"|"ship", entry) -> x
    width: int = 0


def _layout(p: Picture) -> _Layout:
    layout = _Layout({lane.org: HEADER_H + i * LANE_H for i, lane in enumerate(p.lanes)})
    events = [(b.at, b.entry, "batch") for b in p.batches]
    events += [(s.at, s.entry, "ship") for s in p.shipments]
    x = LABEL_W
    for _, entry, kind in sorted(events):
        step = BATCH_COL if kind == "batch" else SHIP_COL
        layout.x[(kind, entry)] = x + step // 2
        x += step
    layout.width = max(x + 20, LABEL_W + 520)
    return layout


def render_svg(p: Picture, lang: Lang = "zh") -> str:
    """The picture as a standalone SVG document (no XML declaration, so it can also be
    placed inline in an HTML page)."""
    t = _TEXT.get(lang, _TEXT["zh"])
    layout = _layout(p)
    height = HEADER_H + LANE_H * len(p.lanes) + LEGEND_H
    title = t["title"].format(p.title)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" version="1.1" class="case-trace" '
        f'width="{layout.width}" height="{height}" viewBox="0 0 {layout.width} {height}" '
        f'role="img" aria-label="{_e(title)}" font-family="{_e(FONT)}" font-size="12">',
        f"<title>{_e(title)}</title>",
        '<defs><marker id="qtrace-arrow" viewBox="0 0 10 10" refX="9" refY="5" '
        'markerWidth="7" markerHeight="7" orient="auto">'
        '<path d="M0,0 L10,5 L0,10 z" fill="#3b4556"/></marker></defs>',
        f'<rect width="{layout.width}" height="{height}" fill="#ffffff"/>',
        f'<text x="12" y="22" font-size="15" font-weight="700" fill="#1d2330">{_e(title)}</text>',
    ]
    out += _lanes(p, layout)
    out += _axis(p, layout)
    out += _inputs(p, layout)
    out += _shipments(p, layout)
    out += _batches(p, layout, t)
    out += _legend(t, HEADER_H + LANE_H * len(p.lanes) + 14)
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _lanes(p: Picture, layout: _Layout) -> list[str]:
    out = []
    for i, lane in enumerate(p.lanes):
        y = layout.lane_y[lane.org]
        fill = "#f3f5f9" if i % 2 == 0 else "#e9edf4"
        out.append(
            f'<g class="lane" data-org="{_e(lane.org)}">'
            f'<rect x="0" y="{y}" width="{layout.width}" height="{LANE_H}" fill="{fill}"/>'
            f'<text class="lane-name" x="10" y="{y + 34}" font-weight="600" fill="#1d2330">'
            f"{_e(_clip(lane.name, 16))}</text>"
            f'<text x="10" y="{y + 52}" font-size="10" fill="#5b6475">{_e(lane.org)}</text></g>'
        )
    return out


def _axis(p: Picture, layout: _Layout) -> list[str]:
    """A date above each event column, written only where the date changes."""
    out = []
    shown = ""
    events = [(b.at, ("batch", b.entry)) for b in p.batches]
    events += [(s.at, ("ship", s.entry)) for s in p.shipments]
    for at, key in sorted(events, key=lambda e: layout.x[e[1]]):
        day = at[:10]
        if day and day != shown:
            shown = day
            x = layout.x[key]
            out.append(f'<text class="time" x="{x}" y="{HEADER_H - 8}" font-size="10" '
                       f'fill="#5b6475" text-anchor="middle">{_e(day)}</text>')
    return out


def _box_centre(b: BatchBox, layout: _Layout) -> tuple[int, int]:
    return layout.x[("batch", b.entry)], layout.lane_y[b.org] + LANE_H // 2 + 8


def _inputs(p: Picture, layout: _Layout) -> list[str]:
    boxes = {(b.gtin, b.lot): b for b in p.batches}
    out = []
    for e in p.inputs:
        source, target = boxes.get((e.source.gtin, e.source.lot)), boxes.get((e.target.gtin, e.target.lot))
        if source is None or target is None:
            continue
        (x1, y1), (x2, y2) = _box_centre(source, layout), _box_centre(target, layout)
        x1, x2 = x1 + BOX_W // 2, x2 - BOX_W // 2
        bend = max(30, (x2 - x1) // 2)
        out.append(
            f'<g class="edge input" data-from="{_e(e.source.gtin)}/{_e(e.source.lot)}" '
            f'data-to="{_e(e.target.gtin)}/{_e(e.target.lot)}" data-entry="{e.entry}">'
            f"<title>{_e(f'{e.source.lot} → {e.target.lot}: {e.quantity} (#{e.entry})')}</title>"
            f'<path d="M{x1},{y1} C{x1 + bend},{y1} {x2 - bend},{y2} {x2},{y2}" fill="none" '
            f'stroke="#3b4556" stroke-width="1.5" marker-end="url(#qtrace-arrow)"/></g>'
        )
    return out


def _shipments(p: Picture, layout: _Layout) -> list[str]:
    out = []
    for s in p.shipments:
        x = layout.x[("ship", s.entry)]
        y1 = layout.lane_y[s.sender] + LANE_H // 2
        y2 = layout.lane_y[s.receiver] + LANE_H // 2
        y2 += -12 if y2 > y1 else 12  # stop short of the receiver's lane middle
        state = "received" if s.received_entry is not None else "in-transit"
        label = f"{s.lot} ×{s.quantity}"
        mid = (y1 + y2) // 2
        out.append(
            f'<g class="edge shipment {state}" data-gtin="{_e(s.gtin)}" data-lot="{_e(s.lot)}" '
            f'data-from="{_e(s.sender)}" data-to="{_e(s.receiver)}" data-entry="{s.entry}">'
            f"<title>{_e(f'{s.gtin}/{s.lot} ×{s.quantity}: {s.sender} → {s.receiver} (#{s.entry})')}"
            f"</title>"
            f'<circle cx="{x}" cy="{y1}" r="3" fill="#3b4556"/>'
            f'<line x1="{x}" y1="{y1}" x2="{x}" y2="{y2}" stroke="#3b4556" stroke-width="1.5" '
            f'stroke-dasharray="5 3" marker-end="url(#qtrace-arrow)"/>'
            f'<text x="{x + 11}" y="{mid}" font-size="9" fill="#3b4556" text-anchor="middle" '
            f'transform="rotate(-90 {x + 11} {mid})">{_e(label)}</text></g>'
        )
    return out


def _batches(p: Picture, layout: _Layout, t: dict[str, str]) -> list[str]:
    out = []
    for b in p.batches:
        cx, cy = _box_centre(b, layout)
        x, y = cx - BOX_W // 2, cy - BOX_H // 2
        flagged = bool(b.marks)
        out.append(
            f'<g class="batch" data-gtin="{_e(b.gtin)}" data-lot="{_e(b.lot)}" '
            f'data-org="{_e(b.org)}" data-entry="{b.entry}">'
            f"<title>{_e(f'{b.product} {b.gtin}/{b.lot}, {b.at[:10]} (#{b.entry})')}</title>"
            f'<rect x="{x}" y="{y}" width="{BOX_W}" height="{BOX_H}" rx="6" fill="#ffffff" '
            f'stroke="{"#b3261e" if flagged else "#3b4556"}" stroke-width="{2 if flagged else 1}"/>'
            f'<text x="{cx}" y="{y + 16}" text-anchor="middle" fill="#1d2330">'
            f"{_e(_clip(b.product, 10))}</text>"
            f'<text x="{cx}" y="{y + 31}" text-anchor="middle" font-size="10" fill="#5b6475">'
            f"{_e(b.lot)}</text></g>"
        )
        # Marks sit in a row above the box, each a coloured tag naming what it is.
        mx = x
        for m in b.marks:
            out.append(_mark(m, b, mx, y - 21, t[f"tag-{m.kind}"]))
            mx += 68
    return out


def _mark(m: Mark, b: BatchBox, x: int, y: int, word: str) -> str:
    return (
        f'<g class="mark {m.kind}" data-gtin="{_e(b.gtin)}" data-lot="{_e(b.lot)}" '
        f'data-entry="{m.entry}"><title>{_e(f"{m.kind} {m.label} (#{m.entry})")}</title>'
        f'<rect x="{x}" y="{y}" width="64" height="17" rx="3" fill="{_MARK_COLOUR[m.kind]}"/>'
        f'<text x="{x + 32}" y="{y + 12}" text-anchor="middle" font-size="9" font-weight="700" '
        f'fill="#ffffff">{_e(_clip(f"{word} {m.label}", 12))}</text></g>'
    )


def _legend(t: dict[str, str], y: int) -> list[str]:
    x = 12
    items = [
        f'<text x="{x}" y="{y + 14}" font-weight="600" fill="#1d2330">{_e(t["legend"])}</text>',
        f'<rect x="{x + 60}" y="{y + 2}" width="28" height="16" rx="4" fill="#ffffff" '
        f'stroke="#3b4556"/><text x="{x + 94}" y="{y + 14}" fill="#1d2330">{_e(t["batch"])}</text>',
        f'<path d="M{x + 160},{y + 10} L{x + 196},{y + 10}" stroke="#3b4556" stroke-width="1.5" '
        f'marker-end="url(#qtrace-arrow)"/><text x="{x + 202}" y="{y + 14}" fill="#1d2330">'
        f'{_e(t["input"])}</text>',
        f'<path d="M{x + 290},{y + 10} L{x + 326},{y + 10}" stroke="#3b4556" stroke-width="1.5" '
        f'stroke-dasharray="5 3" marker-end="url(#qtrace-arrow)"/>'
        f'<text x="{x + 332}" y="{y + 14}" fill="#1d2330">{_e(t["shipment"])}</text>',
    ]
    mx = x + 400
    for kind in ("failed-check", "recall"):
        items.append(
            f'<g class="legend-{kind}"><rect x="{mx}" y="{y + 2}" width="16" height="16" rx="3" '
            f'fill="{_MARK_COLOUR[kind]}"/><text x="{mx + 22}" y="{y + 14}" fill="#1d2330">'
            f"{_e(t[kind])}</text></g>"
        )
        mx += 110
    return [f'<g class="legend">{"".join(items)}</g>']


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _e(text: str) -> str:
    """Text or attribute value escaped for XML (&, <, >, both quotes), with what XML
    cannot hold or what would reorder the text replaced (ledger.text.scrub)."""
    return escape(scrub(text), quote=True)
