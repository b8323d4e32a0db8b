"""``cti-agent decode`` as a user runs it: files and stdin, formats named or guessed, errors kept."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agent.callerid import encode_mdmf, encode_sdmf
from agent.decode import collect_decoders, pick_decoder
from agent.events import Absence
from agent.plugins import make_plugin_manager

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
    # A serial unit's CallerID.com records are read by the whozz decoder, one event a record.
    assert picked(capture) == "whozz"
    assert kinds == ["caller_id", "error", "call_report", "on_hook"]
    assert records[2]["talk_seconds"] == 276.0
    assert "garbage" in records[1]["raw"]
    assert records[2]["line"] == "1"


def picked(data: bytes) -> str | None:
    decoder = pick_decoder(collect_decoders(make_plugin_manager()), data)
    return decoder.name if decoder else None


def test_serialbox_keeps_what_only_it_reads() -> None:
    """NetCallerID records and binary frames go to serialbox; whozz never claims them."""
    ncid = b"###DATE08082225...NMBR14075551212...NAMEJOHN+++\r"
    binary = b"\x55" * 20 + b"\xff" * 10 + encode_mdmf(datetime="11271030", number="13812345678")
    assert picked(ncid) == "serialbox"
    assert picked(binary) == "serialbox"
    code, records, err = decode("-", "--json", stdin=ncid)
    assert code == 0, err
    assert [(r["kind"], r["number"], r["name"]) for r in records] == [("caller_id", "14075551212", "JOHN")]
    code, records, err = decode("-", "--json", stdin=binary)
    assert code == 0, err
    assert [(r["kind"], r["number"]) for r in records] == [("caller_id", "13812345678")]


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


def test_an_ncid_log_includes_history_and_keeps_unknown_lines_as_errors() -> None:
    log = (
        b"200 NCID Server: ncidd 1.13\n"
        b"CIDLOG: *DATE*11272026*TIME*1030*LINE*POTS*NMBR*13812345678*MESG*NONE*NAME*WANG WEI*\n"
        b"300 End of call log\n"
        b"CID: *DATE*11272026*TIME*1031*LINE*POTS*NMBR*PRIVATE*MESG*NONE*NAME*PRIVATE*\n"
        b"XYZ: junk\n"
    )
    code, records, err = decode("-", "--json", stdin=log)
    assert code == 0, err
    assert [(r["kind"], r["number"], r["absence"]) for r in records] == [
        ("caller_id", "13812345678", None),
        ("caller_id", None, "P"),
        ("error", None, None),
    ]
    assert records[0]["line"] == "POTS"
    assert records[2]["raw"] == "XYZ: junk"


def test_an_ncid_log_shows_the_server_s_account_of_each_call() -> None:
    # What the tracker is given: END:'s start and end times, and HUP:'s caller ended at once.
    log = (
        b"CID: *DATE*11272026*TIME*1030*LINE*SIP*NMBR*13812345678*MESG*NONE*NAME*WANG WEI*\n"
        b"END: *HTYPE*BYE*DATE*11272026*TIME*1032*SCALL*11/27/2026 10:30:00*ECALL*11/27/2026 10:32:05*"
        b"CTYPE*IN*LINE*SIP*NMBR*13812345678*NAME*WANG WEI*\n"
        b"HUP: *DATE*11272026*TIME*1040*LINE*SIP*NMBR*4005551111*MESG*NONE*NAME*JUNK*\n"
        b"END: *HTYPE*BYE*SCALL*11/27/2026 10:50:00*ECALL*11/20/2026 10:52:05*LINE*SIP*\n"
    )
    code, records, err = decode("-", "--json", "--format", "ncid", stdin=log)
    assert code == 0, err
    reports = [r for r in records if r["kind"] == "call_report"]
    assert [(r["line"], r["duration"], r["answered"], r["blocked"], r["ends_call"]) for r in reports] == [
        ("SIP", 125.0, True, False, False),
        ("SIP", None, False, True, True),
        ("SIP", None, True, False, False),  # ends before it starts: no count, never a made-up one
    ]
    assert (reports[0]["device_start"], reports[0]["device_end"]) == (
        "11/27/2026 10:30:00",
        "11/27/2026 10:32:05",
    )
    assert reports[0]["datetime"] == "11/27/2026 10:30:00"
    # The blocked caller's report follows the caller ID it ends.
    kinds = [r["kind"] for r in records]
    hup = next(i for i, r in enumerate(records) if r["number"] == "4005551111")
    assert kinds[hup + 1] == "call_report"


def test_whozz_records_guessed() -> None:
    records_in = (
        b"01 I S 0276 G B3 09/26 11:28 AM 021-6234-5678 ZHANG SAN\n"
        b"02 O S 0000 G A0 09/26 11:29 AM 13812345678\n"
        b"01 I E 0276 G B3 09/26 11:33 AM 021-6234-5678 ZHANG SAN\n"
    )
    assert picked(records_in) == "whozz"
    code, records, err = decode("-", "--json", stdin=records_in)
    assert code == 0, err
    numbered = [(r["kind"], r["line"], r["number"]) for r in records if r["number"]]
    assert ("caller_id", "1", "021-6234-5678") in numbered
    assert ("dialed", "2", "13812345678") in numbered
    assert records[-1]["kind"] == "on_hook"
