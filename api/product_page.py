"""The product page of the resolver (`/01/{gtin}`): the product and its lots, each linking
to its scan page. Jinja2, autoescaped, no external assets, no JavaScript."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape

_ENV = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html"]),
)

_TEXT = {
    "zh": {"title": "产品信息", "category": "类别", "producers": "生产者", "lots": "批次",
           "produced": "生产日期", "expires": "保质期至", "newest": "仅显示最新批次：",
           "switch": "English"},
    "en": {"title": "Product", "category": "Category", "producers": "Producers", "lots": "Lots",
           "produced": "produced", "expires": "best before", "newest": "Showing the newest lots:",
           "switch": "中文"},
}


def render_product(view: dict[str, Any], lot_hrefs: list[str], lang: str = "zh") -> str:
    """`view` is ProductView.to_json(); `lot_hrefs[i]` is the scan page of `view["lots"][i]`."""
    lang = lang if lang in _TEXT else "zh"
    lots = [{**lot, "href": href} for lot, href in zip(view["lots"], lot_hrefs, strict=True)]
    return _ENV.get_template("product.html").render(
        p={**view, "lots": lots}, t=_TEXT[lang], lang=lang, other="en" if lang == "zh" else "zh")
