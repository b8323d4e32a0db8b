"""Made-up callers: names and phone numbers, deterministic given a ``random.Random``.

Numbers are written the way a modem on a line of that region sends them: the
national form (``13812345678``, ``02187654321``, ``2125550147``), never
``+86``. Every number generated here is valid in the numbering plan, so
:func:`agent.numbers.to_e164` normalises it.
"""

from __future__ import annotations

import random

import phonenumbers


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


# The hundred-odd most common surnames cover most of the population; a few compound ones for colour.
_SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈"
    "姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
)
_COMPOUND_SURNAMES = _words("欧阳 司马 诸葛 上官 慕容")
_GIVEN_ONE = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超霞平刚辉鹏华飞玲婷斌宇浩凯健俊帆雪琳晨欣瑶"
_GIVEN_TWO = _words(
    "建华 志强 秀兰 海燕 晓东 丽华 婷婷 子涵 浩然 欣怡 宇轩 一诺 "
    "梓萱 雨桐 俊杰 秀英 桂英 建国 文静 晓明 国强 春梅 佳怡 思远"
)

_CN_CITIES = _words("北京 上海 广州 深圳市 天津 重庆 杭州 南京 成都 武汉 苏州 西安")
_CN_BRANDS = _words(
    "华信 鼎盛 恒通 瑞丰 金达 远航 宏图 中联 新元 博雅 天成 汇通 嘉禾 长城 东方 百川 永辉 泰和"
)
_CN_TRADES = _words(
    "科技 贸易 信息技术 电子 物流 建材 医疗器械 教育咨询 文化传媒 餐饮管理 实业 网络科技 机械设备 环保工程"
)

_LATIN_FIRST = _words(
    "John Mary David Linda Michael Sarah James Emma Robert Anna "
    "Peter Laura Thomas Julia Daniel Sophie Mark Olivia Paul Nina"
)
_LATIN_LAST = _words(
    "Smith Johnson Brown Miller Garcia Wilson Taylor Anderson Martin Lee "
    "Walker Young Schmidt Rossi Dubois Novak Kowalski Jensen Silva Murphy"
)
_LATIN_COMPANY_WORDS = _words(
    "Northwind Contoso Bluebird Summit Harbor Pioneer Redwood Atlas Cobalt Meridian"
)
_LATIN_COMPANY_KINDS = (
    "Traders",
    "Logistics",
    "Supply Co",
    "Dental",
    "Realty",
    "Insurance",
    "Motors",
    "Labs",
)

# Mainland mobile prefixes in service (13x, 15x, 17x, 18x, 19x); 154, 174 (satellite), 179 and 194 are not.
_CN_MOBILE_PREFIXES = _words(
    "130 131 132 133 134 135 136 137 138 139 "
    "150 151 152 153 155 156 157 158 159 "
    "170 171 173 175 176 177 178 "
    "180 181 182 183 184 185 186 187 188 189 "
    "191 193 195 196 197 198 199"
)
# Area code -> subscriber number length: big cities have 8 digits, smaller ones 7.
_CN_AREA_CODES: tuple[tuple[str, int], ...] = (
    *((code, 8) for code in _words("010 020 021 022 023 024 025 027 028 029")),
    *((code, 8) for code in _words("0755 0571 0512 0532 0731 0769 0371 0531 0591 0757 0574")),
    *((code, 7) for code in _words("0351 0931 0951 0471 0991 0592")),
)
# Subscriber numbers start with 2-7 here: 0 and 1 are prefixes and service codes, and 8xx/9xx
# blocks hold toll-free and special numbers in some cities.
_CN_SUBSCRIBER_FIRST = "234567"

_NANP_AREA_CODES = _words(
    "201 202 206 212 213 214 303 305 312 313 404 415 480 503 512 602 617 619 646 702 704 713 718 "
    "773 801 804 818 917 919 949 403 416 514 604 613"
)

MOBILE_RATIO = 0.7  # share of mobiles among mainland callers; sales lines mostly see mobiles


def chinese_name(rng: random.Random) -> str:
    """A person's name such as 王伟, 李秀兰 or 欧阳娜."""
    surname = rng.choice(_COMPOUND_SURNAMES) if rng.random() < 0.03 else rng.choice(_SURNAMES)
    given = rng.choice(_GIVEN_ONE) if rng.random() < 0.45 else rng.choice(_GIVEN_TWO)
    return surname + given


def chinese_company(rng: random.Random) -> str:
    """A company name in the usual city + brand + trade + 有限公司 pattern (北京华信科技有限公司)."""
    return f"{rng.choice(_CN_CITIES)}{rng.choice(_CN_BRANDS)}{rng.choice(_CN_TRADES)}有限公司"


def latin_name(rng: random.Random) -> str:
    """A Latin-script person's name such as ``Sarah Miller``."""
    return f"{rng.choice(_LATIN_FIRST)} {rng.choice(_LATIN_LAST)}"


def latin_company(rng: random.Random) -> str:
    """A Latin-script company name such as ``Northwind Logistics``."""
    return f"{rng.choice(_LATIN_COMPANY_WORDS)} {rng.choice(_LATIN_COMPANY_KINDS)}"


def caller_name(rng: random.Random, region: str = "CN") -> str:
    """A caller-ID name: mostly people, some companies, in the mix a line of ``region`` would see."""
    roll = rng.random()
    if region.upper() == "CN":
        if roll < 0.65:
            return chinese_name(rng)
        if roll < 0.85:
            return chinese_company(rng)
        return latin_name(rng)
    if roll < 0.75:
        return latin_name(rng)
    if roll < 0.9:
        return latin_company(rng)
    return chinese_name(rng)


def _digits(rng: random.Random, count: int) -> str:
    return "".join(rng.choice("0123456789") for _ in range(count))


def cn_mobile(rng: random.Random) -> str:
    """A mainland mobile number, 11 digits (``13812345678``)."""
    return rng.choice(_CN_MOBILE_PREFIXES) + _digits(rng, 8)


def cn_landline(rng: random.Random) -> str:
    """A mainland landline with its area code and trunk prefix (``02187654321``, ``03511234567``)."""
    area, length = rng.choice(_CN_AREA_CODES)
    return area + rng.choice(_CN_SUBSCRIBER_FIRST) + _digits(rng, length - 1)


def nanp_number(rng: random.Random) -> str:
    """A North American number, 10 digits (area code, exchange, line), as a US/Canadian line sends it."""
    while True:
        exchange = str(rng.randint(2, 9)) + _digits(rng, 2)
        # N11 codes are service codes; 555 is the directory/fiction exchange.
        if exchange[1:] != "11" and exchange != "555":
            break
    return rng.choice(_NANP_AREA_CODES) + exchange + _digits(rng, 4)


def phone_number(rng: random.Random, region: str = "CN") -> str:
    """A caller's number as a modem on a line of ``region`` sends it.

    ``CN``: mobiles and landlines in national form. A North American region:
    10 digits. Any other region: a North American number in international form
    (``+12125550147``), so it is still a valid number there.
    """
    region = region.upper()
    if region == "CN":
        return cn_mobile(rng) if rng.random() < MOBILE_RATIO else cn_landline(rng)
    number = nanp_number(rng)
    if phonenumbers.country_code_for_region(region) == 1:
        return number
    return "+1" + number


__all__ = [
    "caller_name",
    "chinese_company",
    "chinese_name",
    "cn_landline",
    "cn_mobile",
    "latin_company",
    "latin_name",
    "nanp_number",
    "phone_number",
]
