"""The resolver's link set (GS1-Conformant Resolver standard; RFC 9264 `application/linkset+json`).

A GS1 Digital Link URI names a product, a batch or one item; the resolver knows several
sources of information about it, each under a link type of the GS1 Web Vocabulary:

  defaultLink        the scan page (HTML): where a phone that scanned the code lands
  pip                product information: the scan view as JSON (`/v1/batches/{gtin}/{lot}`)
  recallStatus       whether the batch or anything it was made from is recalled: the same
                     JSON view, whose `status` and `recalls` answer it
  traceability       the trace graph, upstream and downstream
  certificationInfo  the quality checks of the batch, each as its ledger entry with an
                     inclusion proof, and the proof of the production record itself

`gs1:qualityCertificate` is not a GS1 Web Vocabulary link type, so it is not offered:
test reports are certification information. Relation types are written as full URIs
(`https://gs1.org/voc/pip`), as the resolver standard's link sets do; requests may name
them as `gs1:pip` or by the full URI.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from traceability.product import ProductView
from traceability.scan import ScanView

GS1_VOC = "https://gs1.org/voc/"
_VOC_ALIASES = ("gs1:", GS1_VOC, "https://ref.gs1.org/voc/", "http://gs1.org/voc/")

DEFAULT = "defaultLink"
MEDIA_TYPE = "application/linkset+json"


@dataclass(frozen=True, slots=True)
class Link:
    href: str
    title: str
    type: str
    hreflang: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"href": self.href, "title": self.title, "type": self.type}
        if self.hreflang:
            out["hreflang"] = list(self.hreflang)
        return out


@dataclass(frozen=True, slots=True)
class LinkSet:
    """The links of one Digital Link URI (`anchor`), by GS1 link type (short name)."""

    anchor: str
    links: dict[str, tuple[Link, ...]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        context: dict[str, Any] = {"anchor": self.anchor}
        for link_type, links in self.links.items():
            context[GS1_VOC + link_type] = [link.to_json() for link in links]
        return {"linkset": [context]}

    def target(self, link_type: str) -> Link:
        """The link to follow for `link_type` (a short name): its first link, or the
        default link when the URI has none of that type."""
        found = self.links.get(link_type) or self.links[DEFAULT]
        return found[0]


def link_type_name(requested: str) -> str:
    """`gs1:pip`, `https://gs1.org/voc/pip` or `pip` → `pip`; anything else unchanged."""
    for prefix in _VOC_ALIASES:
        if requested.startswith(prefix):
            return requested[len(prefix):]
    return requested


def batch_links(base: str, anchor: str, view: ScanView) -> LinkSet:
    """The link set of a batch's (or one of its items') Digital Link URI `anchor`; the
    other links point under `base` (scheme and host of this resolver)."""
    base = base.rstrip("/")
    batch = view.batch
    path = f"{base}/v1/batches/{batch.gtin}/{quote(batch.lot, safe='')}"
    title = f"{batch.product} · {batch.lot}"
    checks = tuple(
        Link(f"{base}/v1/entries/{c.entry}/proof",
             f"{c.kind} check {c.report_no} ({c.stage}): {c.verdict}", "application/json")
        for c in view.checks
    )
    proof = Link(f"{base}/v1/entries/{batch.entry}/proof",
                 f"the production record of {title}, with its inclusion proof",
                 "application/json")
    return LinkSet(anchor, {
        DEFAULT: (Link(anchor, title, "text/html", ("zh", "en")),),
        "pip": (Link(path, title, "application/json"),),
        "recallStatus": (Link(path, f"recall status of {title}: {view.status}",
                              "application/json"),),
        "traceability": (
            Link(f"{path}/trace?direction=up", f"where {title} came from", "application/json"),
            Link(f"{path}/trace?direction=down", f"where {title} went", "application/json"),
        ),
        "certificationInfo": (*checks, proof),
    })


def product_links(base: str, anchor: str, view: ProductView) -> LinkSet:
    """The link set of a product's Digital Link URI `/01/{gtin}`."""
    base = base.rstrip("/")
    return LinkSet(anchor, {
        DEFAULT: (Link(anchor, view.product, "text/html", ("zh", "en")),),
        "pip": (Link(f"{base}/v1/products/{view.gtin}", view.product, "application/json"),),
    })
