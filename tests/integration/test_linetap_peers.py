"""Our signal generator and decoder against two independent decoders from Debian.

``minimodem --rx -q -f FILE callerid`` (Bell 202) and ``multimon-ng -q -t wav
-a CLIPFSK FILE`` (Bell 202 and V.23, 22050 Hz input) must read the files
tests/signalgen.py writes as we meant them, which shows the generator follows
the specifications and not only our decoder's assumptions. minimodem does
not verify the checksum, so a corrupted burst gives it a wrong number; ours
must report an error instead. The peers are installed by tests/system-deps.sh:
missing, these tests fail (they never skip).

The last test plays line audio into a PulseAudio null sink and checks the
live ``linetap`` device decodes it from sounddevice's ``pulse`` input.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import signalgen as sg
from pulse_fixture import PulseServer, pulse  # noqa: F401  (the fixture)

from agent.callerid import encode_mdmf, encode_sdmf
from agent.events import CallerId
from plugins.linetap.config import LinetapConfig
from plugins.linetap.device import LineTapDevice
from plugins.linetap.protocol import decode_file

MESSAGES = [
    (
        "mdmf-name",
        encode_mdmf(datetime="11271015", number="13812345678", name="ZHANG SAN"),
        "13812345678",
        "ZHANG SAN",
    ),
    ("mdmf-bare", encode_mdmf(datetime="01010000", number="02112345678"), "02112345678", None),
    ("sdmf", encode_sdmf("5551234567", "12312359"), "5551234567", None),
]


def _tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} not installed: run tests/system-deps.sh (Debian package {name})"
    return path


def _write(tmp_path: Path, name: str, message: bytes, rate: int, standard: str) -> Path:
    x = np.concatenate(
        [sg.silence(0.3, rate), sg.fsk_callerid(message, rate, standard), sg.silence(0.3, rate)]
    )
    return sg.write_wav(tmp_path / f"{name}-{standard}-{rate}.wav", x, rate)


def minimodem(path: Path) -> dict[str, str]:
    out = subprocess.run(
        [_tool("minimodem"), "--rx", "-q", "-f", str(path), "callerid"],
        capture_output=True,
        text=True,
        errors="replace",
        timeout=60,
        check=True,
    ).stdout
    fields = dict(re.findall(r"^(Time|Phone|Name):\s*(.*?)\s*$", out, re.MULTILINE))
    if "Phone" in fields:
        fields["Phone"] = fields["Phone"].replace("-", "")  # it prints NANP numbers as 555-123-4567
    return fields


def multimon(path: Path) -> dict[str, str]:
    out = subprocess.run(
        [_tool("multimon-ng"), "-q", "-t", "wav", "-a", "CLIPFSK", str(path)],
        capture_output=True,
        text=True,
        errors="replace",
        timeout=60,
        check=True,
    ).stdout
    line = next((ln for ln in out.splitlines() if ln.startswith("CLIPFSK:")), "")
    return dict(re.findall(r"(DATE|CID|CNT)=(.*?)(?= [A-Z]+=|$)", line))


def ours(path: Path) -> list[dict]:
    return [r for r in decode_file(path) if r["kind"] in ("caller_id", "error")]


@pytest.mark.parametrize(("name", "message", "number", "cid_name"), MESSAGES)
def test_minimodem_reads_our_bell202(
    tmp_path: Path, name: str, message: bytes, number: str, cid_name: str
) -> None:
    path = _write(tmp_path, name, message, 8000, "bell202")
    theirs = minimodem(path)
    assert theirs["Phone"] == number
    assert theirs.get("Name") == cid_name
    (record,) = ours(path)
    assert (record["number"], record["name"]) == (number, cid_name)


@pytest.mark.parametrize("standard", ["bell202", "v23"])
@pytest.mark.parametrize(("name", "message", "number", "cid_name"), MESSAGES[:2])
def test_multimon_reads_our_fsk(
    tmp_path: Path, standard: str, name: str, message: bytes, number: str, cid_name: str
) -> None:
    path = _write(tmp_path, name, message, 22050, standard)
    theirs = multimon(path)
    assert theirs["CID"] == number
    assert theirs.get("CNT") == cid_name
    (record,) = ours(path)
    assert (record["number"], record["name"], record["datetime"]) == (number, cid_name, theirs["DATE"])


def test_corrupted_checksum_minimodem_guesses_we_refuse(tmp_path: Path) -> None:
    data = bytearray(encode_mdmf(datetime="11271015", number="13812345678", name="ZHANG SAN"))
    data[15] ^= 0x01  # '3' -> '2' in the number; the checksum no longer matches
    path8 = _write(tmp_path, "bad", bytes(data), 8000, "bell202")
    path22 = _write(tmp_path, "bad", bytes(data), 22050, "bell202")
    assert minimodem(path8)["Phone"] == "12812345678"  # a wrong number, printed as if good
    assert multimon(path22) == {}  # multimon-ng checks the sum and prints nothing
    for path in (path8, path22):
        (record,) = ours(path)
        assert (record["kind"], record["number"], record["error"]) == ("error", None, "bad checksum")


# -- live input: the device records a real (PulseAudio null-sink) sound device


async def test_live_device_decodes_what_the_line_plays(pulse: PulseServer, tmp_path: Path) -> None:  # noqa: F811
    rate = pulse.rate
    message = encode_mdmf(datetime="11271015", number="13812345678", name="LIVE TEST")
    clip = np.concatenate(
        [
            sg.silence(0.5, rate),
            sg.fsk_callerid(message, rate, "v23", level_dbfs=-10),
            sg.silence(1.0, rate),
            sg.dtmf("A02112345678C", rate, level_dbfs=-10),
            sg.silence(1.0, rate),
        ]
    )
    path = sg.write_wav(tmp_path / "line.wav", clip, rate)
    device = LineTapDevice("box", LinetapConfig(device=pulse.device, samplerate=rate, channels=[1]))
    found: list[CallerId] = []

    async def collect() -> None:
        async for event in device.events():
            if isinstance(event, CallerId):
                found.append(event)
                if len(found) == 2:
                    return

    async with device:
        task = asyncio.create_task(collect())
        await asyncio.sleep(2.5)  # capture through the ALSA pulse plugin takes up to 1.8 s to start
        await asyncio.to_thread(pulse.play(path).wait)
        await asyncio.wait_for(task, timeout=15)
    assert [(c.number, c.name) for c in found] == [("13812345678", "LIVE TEST"), ("02112345678", None)]
