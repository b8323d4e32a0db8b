"""``cti-agent decode`` as a user runs it: files and stdin, formats named or guessed, errors kept."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agent.callerid import encode_mdmf, encode_sdmf
from agent.events import Absence

CLI = [sys.executable, "-m", "agent.cli", "decode"]


def decode(*args: str, stdin: bytes | None = None) -> tuple[int, list[dict[str, Any]], str]:
    out = subprocess.run([*CLI, *args], input=stdin, capture_output=True, timeout=60, check=False)
    records = [json.loads(line) for line in out.stdout.decode().splitlines() if line.startswith("{")]
    return out.returncode, records, out.stderr.decode()


def test_hex_messages_from_a_file_guessed_and_checked(tmp_path: Path) -> None:
    good = encode_mdmf(datetime="11271030", number="13812345678", name="WANG WEI")
    withheld = encode_sdmf(None, "11271031", absence=Absence.PRIVATE)
    corrupt = bytearray(encode_mdmf(datetime="11271032", number="13900000000"))
    corrupt[10] ^= 0x01
    path = tmp_path / "cid.hex"
    path.write_text("\n".join(m.hex(" ") for m in (good, withheld, bytes(corrupt))) + "\n")
    code, records, err = decode(str(path), "--json")
    assert code == 0, err
    assert [r["kind"] for r in records] == ["caller_id", "caller_id", "error"]
    assert records[0]["number"] == "13812345678"
    assert records[0]["number_e164"] == "+8613812345678"
    assert records[0]["datetime"] == "11271030"
    assert records[1]["number"] is None
    assert records[1]["absence"] == "P"
    assert "checksum" in records[2]["error"]
    assert records[2]["number"] is None  # a damaged message never yields a number


def test_a_serial_box_capture_from_stdin() -> None:
    capture = (
        b"01 I S 0276 G B3 09/26 11:28 AM 021-6234-5678 ZHANG SAN\r\n"
        b"\x00\x13garbage\r\n"
        b"01 I E 0276 G B3 09/26 11:33 AM 021-6234-5678 ZHANG SAN\r\n"
    )
    code, records, err = decode("-", "--json", stdin=capture)
    assert code == 0, err
    kinds = [r["kind"] for r in records]
    assert kinds[0] == "caller_id"
    assert "error" in kinds
    assert records[0]["number"] == "021-6234-5678"
    assert records[0]["number_e164"] == "+862162345678"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "nope"], "unknown format 'nope'"),
        ([], "cannot tell the format"),
    ],
)
def test_usage_errors_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    path = tmp_path / "x.bin"
    path.write_bytes(b"\x01\x02 nothing anyone sends")
    code, _, err = decode(str(path), *args)
    assert code == 2
    assert message in err


def test_a_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    code, _, err = decode(str(tmp_path / "missing.log"))
    assert code == 2
    assert "missing.log" in err
    assert "Traceback" not in err


def test_a_modem_log_guessed_with_the_number_as_sent() -> None:
    log = (
        b"RING\r\n\r\nDATE = 1127\r\nTIME = 1030\r\nNMBR = 13812345678\r\nNAME = WANG WEI\r\n\r\nRING\r\n"
        b"NAME=ONMBR=5072884388\r\nRING\r\n"
    )
    code, records, err = decode("-", "--json", stdin=log)
    assert code == 0, err
    assert [r["kind"] for r in records] == ["ring", "caller_id", "ring", "caller_id", "ring"]
    assert records[1]["number"] == "13812345678"
    assert records[1]["name"] == "WANG WEI"
    assert records[1]["datetime"] == "11271030"
    assert records[3]["number"] == "5072884388"
    assert records[3]["name_absence"] == "O"
