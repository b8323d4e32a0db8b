"""SpanDSP (Debian's libspandsp) as an independent transmitter and receiver.

SpanDSP's ``dtmf_tx``/``dtmf_rx`` and ``adsi_tx``/``adsi_rx`` (Bell 202 as
"class", V.23 as "clip", DTMF caller ID as "clip-dtmf") were written by
someone else from the same specifications, so vectors from them test our
decoders against more than our own generator, and its receivers score beside
ours in the same run. A tiny C driver (``tests/spandsp_helper.c``) is built
with ``cc`` on first use into a cache directory, keyed by its source's hash.
SpanDSP runs at 8000 Hz only; its PCM is 16-bit.

Missing ``cc`` or ``libspandsp-dev`` is a failure, never a skip: run
``tests/system-deps.sh``.
"""

from __future__ import annotations

import functools
import hashlib
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

RATE = 8000
_SOURCE = Path(__file__).with_name("spandsp_helper.c")
#: our FSK standard names -> SpanDSP's ADSI standards
STANDARDS = {"bell202": "class", "v23": "clip", "dtmf": "clip-dtmf"}


@functools.cache
def helper() -> Path:
    """The built driver (compiled once per source version)."""
    cc = shutil.which("cc") or shutil.which("gcc")
    assert cc, "no C compiler: apt-get install gcc (tests/system-deps.sh)"
    assert Path("/usr/lib/x86_64-linux-gnu/libspandsp.so").exists() or list(
        Path("/usr/lib").glob("*/libspandsp.so")
    ), "libspandsp-dev missing: run tests/system-deps.sh"
    digest = hashlib.sha256(_SOURCE.read_bytes()).hexdigest()[:12]
    out = Path(tempfile.gettempdir()) / f"cti-spandsp-helper-{digest}"
    if not out.exists():
        tmp = out.with_suffix(".tmp")
        subprocess.run([cc, "-O2", "-o", str(tmp), str(_SOURCE), "-lspandsp", "-lm"], check=True, timeout=120)
        tmp.replace(out)
    return out


def _run(args: list[str], stdin: bytes = b"") -> bytes:
    result = subprocess.run([str(helper()), *args], input=stdin, capture_output=True, timeout=60, check=True)
    return result.stdout


def _pcm(x: np.ndarray) -> bytes:
    a = np.asarray(x)
    if a.dtype != np.int16:
        a = np.clip(np.round(a * 32768), -32768, 32767).astype(np.int16)
    return a.tobytes()


def to_float(pcm: bytes) -> np.ndarray:
    """SpanDSP's PCM16 as floats in [-1, 1]."""
    return np.frombuffer(pcm, dtype=np.int16).astype(np.float64) / 32768.0


def dtmf_tx(
    keys: str, *, level_dbm0: int = -10, twist_db: int = 0, on_ms: int = 50, off_ms: int = 55
) -> np.ndarray:
    """SpanDSP's DTMF generator: the low tone at ``level_dbm0``, the high one ``twist_db`` above it."""
    return to_float(_run(["dtmf-tx", keys, str(level_dbm0), str(twist_db), str(on_ms), str(off_ms)]))


def dtmf_rx(x: np.ndarray) -> str:
    """The keys SpanDSP's ``dtmf_rx`` (default parameters) hears in 8 kHz audio."""
    return _run(["dtmf-rx"], _pcm(x)).decode("ascii").strip()


def adsi_tx(standard: str, message: bytes) -> np.ndarray:
    """SpanDSP's caller-ID transmitter (seizure, marks, bytes) for one message.

    For the FSK standards ``message`` is a whole message with its checksum
    (SpanDSP adds its own, so ours is dropped); for ``dtmf`` the keys' ASCII.
    """
    data = message if standard == "dtmf" else message[:-1]
    return to_float(_run(["adsi-tx", STANDARDS[standard], data.hex()]))


def adsi_rx(standard: str, x: np.ndarray) -> list[bytes]:
    """The messages SpanDSP's ``adsi_rx`` decodes, as whole messages (checksum put back; DTMF: keys)."""
    out = []
    for line in _run(["adsi-rx", STANDARDS[standard]], _pcm(x)).decode("ascii").split():
        data = bytes.fromhex(line)
        out.append(data if standard == "dtmf" else data + bytes([(-sum(data)) & 0xFF]))
    return out
