"""A demo ledger with realistic data (`qledger demo`, used by scripts/run).

A wheat-to-bread chain in Fujian province: a farm, two flour mills, a bakery, a
distributor and two supermarkets, a testing institute and the regulator. One flour
lot fails a supervisory check and is recalled, so the bread made from it shows as
recalled when its QR code is scanned; another bread lot is clean. The organizations
are fictional; their codes carry valid check digits.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from stdnum.cn import uscc as stdnum_uscc

from ledger import client, keys
from ledger.application import Ledger
from ledger.genesis import genesis_envelopes
from ledger.identifiers import gtin_check_digit
from ledger.statement_types import StatementType as T


def _uscc(body: str) -> str:
    return body + stdnum_uscc.calc_check_digit(body)


def _gtin(company: str, item: str) -> str:
    """A GTIN-14 (indicator 0) under a GS1 China company prefix (690-699)."""
    body = f"0{company}{item}"
    if len(body) != 13:
        raise ValueError(f"GTIN body {body} must have 13 digits")
    return body + gtin_check_digit(body)


REGULATOR = _uscc("11350000MB0000001")  # 福建省市场监督管理局 (fictional code)
FARM = _uscc("93350181MA2Y00001")  # farmers' cooperative, Fuqing
MILL = _uscc("91350100MA2Y00002")
DECOY_MILL = _uscc("91350500MA2Y00003")
BAKERY = _uscc("91350102MA2Y00004")
DISTRIBUTOR = _uscc("91350100MA2Y00005")
MART_A = _uscc("91350203MA2Y00006")
MART_B = _uscc("91350102MA2Y00007")
LAB = _uscc("12350000MB0000008")
WORKSHOP = _uscc("92350104MA2Y00009")  # a small food workshop, later blacklisted

WHEAT = _gtin("692000", "100010")
FLOUR = _gtin("692000", "200010")
DECOY_FLOUR = _gtin("692001", "200010")
BREAD = _gtin("692002", "300010")
SNACK = _gtin("692003", "400010")


@dataclass(frozen=True)
class Demo:
    db: str
    recalled_bread: tuple[str, str]
    clean_bread: tuple[str, str]


CAST = (
    (FARM, "福清市禾丰粮食种植专业合作社", ["producer"], "350181"),
    (MILL, "福州金穗面粉有限公司", ["producer"], "350100"),
    (DECOY_MILL, "泉州麦源面粉有限公司", ["producer"], "350500"),
    (BAKERY, "福州麦香烘焙食品有限公司", ["producer"], "350102"),
    (DISTRIBUTOR, "福建闽运食品配送有限公司", ["distributor"], "350100"),
    (MART_A, "厦门鹭岛生活超市有限公司", ["retailer"], "350203"),
    (MART_B, "福州榕城便民超市有限公司", ["retailer"], "350102"),
    (LAB, "福建省产品质量检验研究院（演示）", ["lab"], "350000"),
    (WORKSHOP, "福州仓山某食品加工坊", ["producer"], "350104"),
)


class _Story:
    """The demo's month, told day by day: each statement is issued at 09:00 of `day`
    days after `start`, signed by its organization's key, and recorded at once."""

    def __init__(self, ledger: Ledger, start: datetime) -> None:
        self.ledger, self.start, self.day = ledger, start, 0
        self.signers: dict[str, Ed25519PrivateKey] = {REGULATOR: keys.generate_private_key()}

    def at(self) -> datetime:
        return self.start + timedelta(days=self.day, hours=9)

    def sign(self, type: str, by: str, **fields: Any) -> dict[str, Any]:
        statement = client.new_statement(type, by, issued_at=self.at(), **fields)
        return client.sign(statement, self.signers[by])

    def record(self, *envelopes: dict[str, Any]) -> None:
        self.ledger.append(list(envelopes))

    def register_cast(self) -> None:
        for uscc, name, roles, region in CAST:
            self.signers[uscc] = keys.generate_private_key()
            self.record(
                self.sign(T.ORG_REGISTERED, REGULATOR, uscc=uscc, name=name, roles=roles,
                          region=region),
                self.sign(T.KEY_REGISTERED, REGULATOR, org=uscc,
                          public_key=keys.encode_public_key(keys.public_bytes(self.signers[uscc]))),
            )

    def produce(self, by: str, gtin: str, lot: str, product: str, category: str, qty: int,
                unit: str, standard: str, inputs: list[dict[str, Any]],
                shelf_days: int | None = None) -> None:
        extra = ({"expires_at": client.format_time(self.at() + timedelta(days=shelf_days))}
                 if shelf_days else {})
        self.record(self.sign(T.BATCH_PRODUCED, by, gtin=gtin, lot=lot, product=product,
                              category=category, quantity=qty, unit=unit,
                              produced_at=client.format_time(self.at()), standard=standard,
                              inputs=inputs, **extra))

    def ship(self, by: str, gtin: str, lot: str, qty: int, to: str, shipment: str) -> None:
        self.record(self.sign(T.BATCH_SHIPPED, by, gtin=gtin, lot=lot, quantity=qty, to=to,
                              shipment=shipment),
                    self.sign(T.BATCH_RECEIVED, to, shipment=shipment, quantity=qty))

    def check(self, gtin: str, lot: str, subject: str, stage: str, verdict: str, report: str,
              lead: str) -> None:
        self.record(self.sign(
            T.CHECK_RECORDED, LAB, gtin=gtin, lot=lot, subject=subject, kind="supervisory",
            stage=stage, sampled_at=client.format_time(self.at()), standard="GB 2762-2022",
            items=[{"name": "铅（以Pb计）", "value": lead, "limit": "0.2", "unit": "mg/kg",
                    "verdict": verdict},
                   {"name": "呕吐毒素", "value": "320", "limit": "1000", "unit": "μg/kg",
                    "verdict": "pass"}],
            verdict=verdict, report_no=report))

    def wheat_to_flour(self) -> None:
        """The farm's two lots of wheat, milled by two mills; the lab checks one mill."""
        for lot, qty in (("WH2026-10A", 60000), ("WH2026-10B", 40000)):
            self.produce(FARM, WHEAT, lot, "优质强筋小麦", "agricultural", qty, "kg",
                         "GB 1351-2023", [])
        self.day += 2
        self.ship(FARM, WHEAT, "WH2026-10A", 30000, MILL, "SH-FARM-0001")
        self.ship(FARM, WHEAT, "WH2026-10B", 20000, DECOY_MILL, "SH-FARM-0002")
        self.day += 3
        self.produce(MILL, FLOUR, "FL20261025-1", "高筋小麦粉 25kg", "food", 800, "bag",
                     "GB/T 1355-2021", [{"gtin": WHEAT, "lot": "WH2026-10A", "quantity": 20000}],
                     365)
        self.produce(MILL, FLOUR, "FL20261025-2", "高筋小麦粉 25kg", "food", 400, "bag",
                     "GB/T 1355-2021", [{"gtin": WHEAT, "lot": "WH2026-10A", "quantity": 10000}],
                     365)
        self.produce(DECOY_MILL, DECOY_FLOUR, "QZ-F-1026", "特一粉 25kg", "food", 790, "bag",
                     "GB/T 1355-2021", [{"gtin": WHEAT, "lot": "WH2026-10B", "quantity": 20000}],
                     365)
        self.day += 1
        self.check(FLOUR, "FL20261025-1", MILL, "production", "pass", "FJQI-2026-10311", "0.05")
        self.check(FLOUR, "FL20261025-2", MILL, "production", "fail", "FJQI-2026-10312", "0.38")

    def flour_to_shops(self) -> None:
        """The bakery bakes a clean lot and one from the failed flour; both reach shops."""
        self.ship(MILL, FLOUR, "FL20261025-1", 300, BAKERY, "SH-MILL-0101")
        self.ship(MILL, FLOUR, "FL20261025-2", 100, BAKERY, "SH-MILL-0102")
        self.day += 2
        self.produce(BAKERY, BREAD, "BR20261028-A", "全麦吐司 400g", "food", 5000, "bag",
                     "GB 7099-2015", [{"gtin": FLOUR, "lot": "FL20261025-1", "quantity": 120}], 7)
        self.produce(BAKERY, BREAD, "BR20261028-B", "全麦吐司 400g", "food", 3000, "bag",
                     "GB 7099-2015", [{"gtin": FLOUR, "lot": "FL20261025-2", "quantity": 80}], 7)
        self.day += 1
        for lot, qty, sid in (("BR20261028-A", 4000, "SH-BK-0201"),
                              ("BR20261028-B", 2500, "SH-BK-0202")):
            self.ship(BAKERY, BREAD, lot, qty, DISTRIBUTOR, sid)
        self.ship(DISTRIBUTOR, BREAD, "BR20261028-A", 2000, MART_A, "SH-DS-0301")
        self.ship(DISTRIBUTOR, BREAD, "BR20261028-A", 1500, MART_B, "SH-DS-0302")
        self.ship(DISTRIBUTOR, BREAD, "BR20261028-B", 1200, MART_A, "SH-DS-0303")
        self.ship(DISTRIBUTOR, BREAD, "BR20261028-B", 1000, MART_B, "SH-DS-0304")

    def recall_and_complaint(self) -> None:
        """The mill recalls the failed flour; a shop's complaint about the bread is upheld."""
        self.day += 1
        self.check(BREAD, "BR20261028-A", BAKERY, "circulation", "pass", "FJQI-2026-11020", "0.04")
        self.record(self.sign(T.RECALL_ISSUED, MILL, gtin=FLOUR, lots=["FL20261025-2"], level=2,
                              reason="监督抽查铅含量超标（0.38 mg/kg，限量 0.2 mg/kg），主动召回"))
        self.day += 2
        self.record(self.sign(T.CASE_OPENED, MART_B, case="FJ-12315-2026-0457", respondent=BAKERY,
                              batches=[{"gtin": BREAD, "lot": "BR20261028-B"}],
                              summary="消费者经12315反映吐司口感异常，超市下架并投诉",
                              channel="12315"))
        self.day += 5
        self.record(self.sign(T.CASE_RESOLVED, REGULATOR, case="FJ-12315-2026-0457",
                              finding="substantiated", summary="经查所用面粉批次铅超标，已责令整改",
                              refs=[]))

    def credit(self) -> None:
        """A workshop's failed snack and its blacklisting; the farm's award."""
        self.produce(WORKSHOP, SNACK, "MH-1101", "手工麻花 250g", "food", 600, "bag",
                     "GB 7100-2015", [], 90)
        self.check(SNACK, "MH-1101", WORKSHOP, "production", "fail", "FJQI-2026-11105", "0.52")
        self.record(self.sign(T.BLACKLIST_ADDED, REGULATOR, org=WORKSHOP,
                              reason="生产销售不合格食品且拒不整改",
                              basis="《市场监督管理严重违法失信名单管理办法》第九条", refs=[]))
        self.record(self.sign(T.AWARD_GRANTED, REGULATOR, org=FARM, title="福建省名牌农产品",
                              valid_until=client.format_time(self.at() + timedelta(days=700))))


def build(db: str, log_key_path: Path, root_key_path: Path,
          origin: str = "demo.qledger.example/v1") -> Demo:
    """Create the demo ledger in `db` and write its log and root keys."""
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=30)
    log_key = keys.generate_private_key()
    ledger = Ledger(db, log_key=log_key, clock=lambda: datetime.now(UTC))
    story = _Story(ledger, start)
    root_key = story.signers[REGULATOR]
    ledger.create(origin, log_key, REGULATOR, genesis_envelopes(
        REGULATOR, "福建省市场监督管理局（演示）", "350000", root_key, issued_at=story.at()))
    story.register_cast()
    story.wheat_to_flour()
    story.flour_to_shops()
    story.recall_and_complaint()
    story.credit()
    root_key_path.parent.mkdir(parents=True, exist_ok=True)
    keys.write_private_key(log_key_path, log_key)
    keys.write_private_key(root_key_path, root_key)
    ledger.close()
    return Demo(db, (BREAD, "BR20261028-B"), (BREAD, "BR20261028-A"))
