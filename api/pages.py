"""Server-rendered pages (Jinja2, autoescaped, no external assets, no JavaScript)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape

_ENV = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html"]),
)

_TEXT = {
    "zh": {
        "title": "产品质量追溯", "ok": "正常：未发现召回或不合格记录",
        "recalled": "已召回：请勿食用或使用", "failed_check": "抽检不合格",
        "producer_blacklisted": "生产者已列入质量失信黑名单", "producer": "生产者",
        "grade": "信用等级", "product": "产品", "lot": "批号", "produced": "生产日期",
        "expires": "保质期至", "standard": "执行标准", "checks": "检验记录",
        "recalls": "召回记录", "origin": "原料来源", "verified": "已在账本中验证",
        "entry": "条目", "tree": "账本规模", "upstream": "上游原料", "switch": "English",
        "none": "无",
    },
    "en": {
        "title": "Product traceability", "ok": "OK: no recall or failed check on record",
        "recalled": "RECALLED: do not eat or use", "failed_check": "Failed a quality check",
        "producer_blacklisted": "Producer is on the quality blacklist", "producer": "Producer",
        "grade": "Credit grade", "product": "Product", "lot": "Lot", "produced": "Produced",
        "expires": "Best before", "standard": "Standard", "checks": "Checks",
        "recalls": "Recalls", "origin": "Origin", "verified": "Verified in the ledger",
        "entry": "entry", "tree": "ledger size", "upstream": "upstream ingredient",
        "switch": "中文", "none": "none",
    },
}


def render_scan(view: dict[str, Any], lang: str = "zh") -> str:
    lang = lang if lang in _TEXT else "zh"
    return _ENV.get_template("scan.html").render(
        v=view, t=_TEXT[lang], lang=lang, other="en" if lang == "zh" else "zh"
    )
