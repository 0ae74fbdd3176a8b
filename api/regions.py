"""Province-level names of GB/T 2260 administrative division codes, for the pages.

A region on the ledger is a 6-digit GB/T 2260 code (EVENTS.md `org.registered`); its first
two digits name the province-level division. Only those 34 names are kept here: a
shopper reads "福建省" more easily than "350181", and the full table (thousands of
counties, renamed every year) would be a data set to maintain, not a page detail.
"""

from __future__ import annotations

# code prefix: (Chinese name, English name)
PROVINCES: dict[str, tuple[str, str]] = {
    "11": ("北京市", "Beijing"),
    "12": ("天津市", "Tianjin"),
    "13": ("河北省", "Hebei"),
    "14": ("山西省", "Shanxi"),
    "15": ("内蒙古自治区", "Inner Mongolia"),
    "21": ("辽宁省", "Liaoning"),
    "22": ("吉林省", "Jilin"),
    "23": ("黑龙江省", "Heilongjiang"),
    "31": ("上海市", "Shanghai"),
    "32": ("江苏省", "Jiangsu"),
    "33": ("浙江省", "Zhejiang"),
    "34": ("安徽省", "Anhui"),
    "35": ("福建省", "Fujian"),
    "36": ("江西省", "Jiangxi"),
    "37": ("山东省", "Shandong"),
    "41": ("河南省", "Henan"),
    "42": ("湖北省", "Hubei"),
    "43": ("湖南省", "Hunan"),
    "44": ("广东省", "Guangdong"),
    "45": ("广西壮族自治区", "Guangxi"),
    "46": ("海南省", "Hainan"),
    "50": ("重庆市", "Chongqing"),
    "51": ("四川省", "Sichuan"),
    "52": ("贵州省", "Guizhou"),
    "53": ("云南省", "Yunnan"),
    "54": ("西藏自治区", "Xizang (Tibet)"),
    "61": ("陕西省", "Shaanxi"),
    "62": ("甘肃省", "Gansu"),
    "63": ("青海省", "Qinghai"),
    "64": ("宁夏回族自治区", "Ningxia"),
    "65": ("新疆维吾尔自治区", "Xinjiang"),
    "71": ("台湾省", "Taiwan"),
    "81": ("香港特别行政区", "Hong Kong"),
    "82": ("澳门特别行政区", "Macao"),
}


def province(code: str, lang: str = "zh") -> str | None:
    """The province-level name of a GB/T 2260 code in `lang` ("zh" or "en"), or None
    when the code does not start with a known province-level prefix."""
    names = PROVINCES.get(code[:2]) if len(code) == 6 and code.isdigit() else None
    if names is None:
        return None
    return names[1] if lang == "en" else names[0]
