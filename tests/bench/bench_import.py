"""Customer import into SQLite (as on a seat or a try-out centre): rows per second on a realistic sheet.

Writes a CSV like the ones a floor gets (UTF-8 with a byte order mark, Chinese headers):
Chinese names and companies, mobiles and landlines in the spellings people type (spaces,
dashes, ``+86``, ``0086``, brackets round the area code, an extension now and then, two
numbers in one cell), an owner rep on most rows, about 1 % numbers already on an
earlier row and about 0.2 % broken rows (no number, a number that is not one, too many
cells). It imports it through :func:`storage.customers.import_customers` with a reject
file, as ``cti-agent import-customers`` does, then imports a tenth of it again (every
row a ``duplicate_in_db``).

Run: .venv/bin/python tests/bench/bench_import.py [--rows 1000000]

Prints figures, not pass/fail.
"""

from __future__ import annotations

import argparse
import csv
import random
import tempfile
import time
from pathlib import Path

from sqlalchemy.orm import Session

from storage.customers import RejectWriter, import_customers, read_rows
from storage.db import make_engine, upgrade

SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董"
    + "袁潘于蒋蔡余杜叶程苏魏吕丁任沈"
)
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰文建国志红梅海波鹏宇浩然子轩欣怡晨"
COMPANY_WORDS = list("华盛达通信恒鑫泰源隆宏瑞丰联创科")
COMPANY_KINDS = ["科技有限公司", "贸易有限公司", "商贸行", "实业有限公司", "电子商务有限公司", "建材店"]
CITIES = ["北京", "上海", "天津", "广州", "深圳", "杭州", "南京", "成都", "武汉", "西安"]
#: Area codes (2 and 3 digits) and their subscriber lengths.
AREAS = [("10", 8), ("21", 8), ("22", 8), ("20", 8), ("755", 8), ("571", 8), ("25", 8), ("28", 8)]
AREAS += [("27", 8), ("29", 8), ("311", 8), ("371", 8), ("431", 8), ("851", 8), ("898", 8)]
MOBILE_PREFIXES = ["130", "131", "132", "133", "135", "136", "137", "138", "139", "150", "151", "152"]
MOBILE_PREFIXES += ["155", "157", "158", "159", "166", "170", "176", "177", "180", "181", "185", "186"]
MOBILE_PREFIXES += ["187", "188", "189", "191", "198", "199"]
REPS = [f"rep{n:03d}" for n in range(60)]


def mobile(rng: random.Random, serial: int) -> str:
    # A serial in the last eight digits keeps the numbers unique unless a duplicate is wanted.
    return f"{MOBILE_PREFIXES[serial % len(MOBILE_PREFIXES)]}{(serial * 7919) % 10**8:08d}"


def spell_mobile(rng: random.Random, number: str) -> str:
    return rng.choice(
        [
            number,
            number,
            number,
            f"{number[:3]} {number[3:7]} {number[7:]}",
            f"{number[:3]}-{number[3:7]}-{number[7:]}",
            f"+86 {number}",
            f"+86-{number[:3]}-{number[3:7]}-{number[7:]}",
            f"0086{number}",
        ]
    )


def landline(rng: random.Random, serial: int) -> str:
    area, digits = AREAS[serial % len(AREAS)]
    first = "2345678"[serial % 7]
    subscriber = f"{first}{(serial * 104729) % 10 ** (digits - 1):0{digits - 1}d}"
    written = rng.choice(
        [
            f"0{area}-{subscriber}",
            f"0{area}-{subscriber}",
            f"0{area} {subscriber[:4]} {subscriber[4:]}",
            f"(0{area}){subscriber}",
            f"0{area}{subscriber}",
            f"+86 {area} {subscriber}",
        ]
    )
    if rng.random() < 0.05:
        written += rng.choice([" 转 8001", " ext. 12", "-分机 305"])
    return written


def write_file(path: Path, rows: int, seed: int = 19) -> None:
    rng = random.Random(seed)
    written_numbers: list[str] = []
    with path.open("w", encoding="utf-8-sig", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["客户姓名", "手机", "座机", "公司名称", "负责人", "备注", "标签"])
        for i in range(rows):
            name = rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2, 2))))
            phone = spell_mobile(rng, mobile(rng, i)) if rng.random() < 0.92 else ""
            desk = landline(rng, i) if rng.random() < 0.35 or not phone else ""
            if rng.random() < 0.03 and phone:
                phone += "/" + spell_mobile(rng, mobile(rng, i + 10**7))  # two mobiles in one cell
            company = (
                rng.choice(CITIES) + "".join(rng.sample(COMPANY_WORDS, 2)) + rng.choice(COMPANY_KINDS)
                if rng.random() < 0.6
                else ""
            )
            owner = rng.choice(REPS) if rng.random() < 0.8 else ""
            notes = rng.choice(["", "", "", "老客户", "要报价", "下周回访", "价格敏感，先发资料"])
            tags = rng.choice(["", "", "VIP", "展会", "转介绍,VIP"])
            cells = [name, phone, desk, company, owner, notes, tags]
            if i and rng.random() < 0.01 and written_numbers:
                cells[1] = rng.choice(written_numbers[-500:])  # the same number as an earlier row
                cells[2] = ""
            elif rng.random() < 0.002:
                broken = rng.choice(["no number", "not a number", "too many cells"])
                if broken == "no number":
                    cells[1] = cells[2] = ""
                elif broken == "not a number":
                    cells[1], cells[2] = rng.choice(["n/a", "12345", "无", "138abc"]), ""
                else:
                    cells += ["extra", "cells"]
            if cells[1]:
                written_numbers.append(cells[1])
            writer.writerow(cells)


def run(rows: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "customers.csv"
        started = time.perf_counter()
        write_file(source, rows)
        size = source.stat().st_size / 1e6
        print(f"wrote {rows:,} rows ({size:.0f} MB) in {time.perf_counter() - started:.1f} s")
        engine = make_engine(f"sqlite:///{Path(tmp) / 'cti.db'}")
        upgrade(engine)

        started = time.perf_counter()
        _, read = read_rows(source)
        rejects = RejectWriter(Path(tmp) / "rejects.csv", lang="zh-CN")
        with Session(engine) as session, session.begin():
            report = import_customers(session, read, reject=rejects)
        rejects.close()
        seconds = time.perf_counter() - started
        kinds = {kind: report.count(kind) for kind in ("duplicate_in_file", "conflict", "rejected")}
        print(
            f"import of {report.rows:,} rows: {seconds:.1f} s total = {report.rows / seconds:,.0f} rows/s; "
            f"{report.imported:,} customers, {report.phones:,} numbers, {report.not_imported:,} not imported "
            f"({', '.join(f'{k} {v:,}' for k, v in kinds.items())}; reject file {rejects.count:,} rows)"
        )

        again = Path(tmp) / "again.csv"
        with source.open(encoding="utf-8-sig", newline="") as full, again.open("w", newline="") as out:
            reader, writer = csv.reader(full), csv.writer(out)
            for n, row in enumerate(reader):
                if n > rows // 10:
                    break
                writer.writerow(row)
        started = time.perf_counter()
        _, read = read_rows(again)
        with Session(engine) as session, session.begin():
            second = import_customers(session, read)
        seconds = time.perf_counter() - started
        print(
            f"the first tenth again ({second.rows:,} rows, into {report.imported:,} customers): "
            f"{seconds:.1f} s = {second.rows / seconds:,.0f} rows/s, {second.imported:,} imported, "
            f"{second.count('duplicate_in_db'):,} duplicate_in_db, {second.count('conflict'):,} conflict"
        )
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    run(parser.parse_args().rows)


if __name__ == "__main__":
    main()
