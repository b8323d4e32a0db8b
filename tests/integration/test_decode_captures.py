"""``cti-agent decode`` on what a user can capture (issue 18, item 5).

Raw dumps of Whozz Calling datagrams (binary headers included, several back to
back), pcap and pcapng files of UDP port 3520 (written with dpkt, read back the
way Wireshark's files are), and line audio as WAV or FLAC at any rate.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import dpkt
import numpy as np
import pytest
import signalgen as sg
import soundfile
from whozz_emulator import build_packet, call_record

from agent.callerid import encode_mdmf

CLI = [sys.executable, "-m", "agent.cli", "decode"]
WHEN = datetime(2026, 9, 26, 11, 28)


def decode(*args: str, stdin: bytes | None = None) -> tuple[int, list[dict[str, Any]], str]:
    out = subprocess.run([*CLI, *args], input=stdin, capture_output=True, timeout=120, check=False)
    records = [json.loads(line) for line in out.stdout.decode().splitlines() if line.startswith("{")]
    return out.returncode, records, out.stderr.decode()


def datagrams() -> list[bytes]:
    # The serial numbers hold CR and LF bytes: a line-based reader would cut these headers.
    return [
        build_packet(
            call_record(1, when=WHEN, number="021-6234-5678", name="ZHANG SAN"), serial=b"\r\n\x00\r\n$"
        ),
        build_packet(call_record(2, inbound=False, when=WHEN, number="13812345678"), unit=2),
        build_packet(
            call_record(1, start=False, duration=42, when=WHEN, number="021-6234-5678"), serial=b"\n" * 6
        ),
    ]


def check(records: list[dict[str, Any]]) -> None:
    assert [(r["kind"], r["line"], r["number"]) for r in records] == [
        ("caller_id", "1", "021-6234-5678"),
        ("dialed", "2", "13812345678"),
        ("call_report", "1", None),
        ("on_hook", "1", None),
    ]
    # The end record's count of the call's seconds, as the tracker is given it (issue 18, item 6).
    report = records[2]
    assert (report["talk_seconds"], report["duration"], report["answered"]) == (42.0, 42.0, True)
    assert report["device_start"] == "09/26 11:28 AM"


def test_raw_dump_of_datagrams_back_to_back(tmp_path: Path) -> None:
    path = tmp_path / "whozz.raw"
    path.write_bytes(b"".join(datagrams()))
    code, records, err = decode(str(path), "--json")
    assert code == 0, err
    check(records)


def _ethernet_udp(payload: bytes, sport: int = 3520, dport: int = 3520) -> bytes:
    udp = dpkt.udp.UDP(sport=sport, dport=dport, data=payload)
    udp.ulen = len(udp)
    ip = dpkt.ip.IP(src=b"\xc0\xa8\x01\x5a", dst=b"\xff\xff\xff\xff", p=dpkt.ip.IP_PROTO_UDP, data=udp)
    ip.len = len(ip)
    return bytes(dpkt.ethernet.Ethernet(src=b"\x00\x11" * 3, dst=b"\xff" * 6, type=0x0800, data=ip))


@pytest.mark.parametrize("kind", ["pcap", "pcapng"])
def test_pcap_of_udp_3520(tmp_path: Path, kind: str) -> None:
    buf = io.BytesIO()
    writer = dpkt.pcap.Writer(buf) if kind == "pcap" else dpkt.pcapng.Writer(buf)
    packets = datagrams()
    writer.writepkt(_ethernet_udp(b"not whozz", sport=5353, dport=5353), ts=1.0)  # other traffic: skipped
    for i, packet in enumerate(packets):
        writer.writepkt(_ethernet_udp(packet, sport=3520 + i % 2), ts=2.0 + i)
    path = tmp_path / f"lan.{kind}"
    path.write_bytes(buf.getvalue())
    code, records, err = decode(str(path), "--json")
    assert code == 0, err
    check(records)


def test_truncated_pcap_keeps_what_came_before(tmp_path: Path) -> None:
    buf = io.BytesIO()
    writer = dpkt.pcap.Writer(buf)
    for i, packet in enumerate(datagrams()):
        writer.writepkt(_ethernet_udp(packet), ts=2.0 + i)
    path = tmp_path / "cut.pcap"
    path.write_bytes(buf.getvalue()[:-10])
    code, records, err = decode(str(path), "--json")
    assert code == 0, err
    assert [r["number"] for r in records[:2]] == ["021-6234-5678", "13812345678"]


@pytest.mark.parametrize(("rate", "fmt"), [(8000, "WAV"), (11025, "WAV"), (22050, "FLAC"), (44100, "FLAC")])
def test_audio_of_any_rate(tmp_path: Path, rate: int, fmt: str) -> None:
    message = encode_mdmf(datetime="11271015", number="13812345678", name="ZHANG SAN")
    x = np.concatenate([sg.silence(0.3, rate), sg.fsk_callerid(message, rate, "v23"), sg.silence(0.5, rate)])
    path = tmp_path / f"line.{fmt.lower()}"
    soundfile.write(str(path), sg.to_int16(x), rate, format=fmt)
    code, records, err = decode(str(path), "--json")
    assert code == 0, err
    assert [(r["kind"], r["number"], r["name"]) for r in records] == [
        ("caller_id", "13812345678", "ZHANG SAN")
    ]


def test_name_encoding_reads_a_capture_as_the_device_would(tmp_path: Path) -> None:
    # A Taiwanese exchange sends Big5: the guess reads it as something else, the option as the
    # device configured with name_encoding = "big5" would.
    name = "陳大文"
    line = (
        b"CID: *DATE*09262026*TIME*1128*LINE*1*NMBR*0223456789*MESG*NONE*NAME*" + name.encode("big5") + b"*\n"
    )
    path = tmp_path / "cidcall.log"
    path.write_bytes(line)
    code, records, err = decode(str(path), "--json", "--format", "ncid", "--name-encoding", "big5")
    assert code == 0, err
    assert [(r["number"], r["name"]) for r in records] == [("0223456789", name)]
    code, records, err = decode(str(path), "--json", "--format", "ncid")
    assert code == 0, err
    assert records[0]["number"] == "0223456789"
    assert records[0]["name"] != name


def test_name_encoding_refuses_what_is_no_text_codec(tmp_path: Path) -> None:
    path = tmp_path / "x.hex"
    path.write_text("80\n")
    code, _, err = decode(str(path), "--format", "hex", "--name-encoding", "base64")
    assert code == 2
    assert "not a text encoding" in err
    code, _, err = decode(str(path), "--format", "hex", "--name-encoding", "klingon")
    assert code == 2
    assert "unknown name encoding" in err
