"""A Hayes modem on the far end of a pseudo-terminal, for tests and for trying the agent by hand.

The device under test opens the pty's slave path with pyserial, exactly as it
opens ``/dev/ttyACM0``; the emulator answers on the master side: AT commands
per a vendor profile (which caller-ID commands it accepts, echo until ``ATE0``,
``OK`` to ``ATZ``), rings and caller ID on cue in the formats real modems use,
and the failures real modems have: refused commands, lost characters, the port
vanishing and coming back under another name (``link`` keeps one stable path
pointing at whichever pty is current, like a udev symlink).

As a script::

    python tests/modem_emulator.py --profile usr --link /tmp/modem
    # then type: ring [A] | cid 5072884388 JOHN DOE | cid-style zoom | vanish | back | quit
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import select
import sys
import threading
import time
import tty
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from agent.callerid import encode_mdmf
from agent.events import Absence

_CID_COMMAND = re.compile(r"^AT(\+VCID|#CID|%CCID|\+CID)=(\d)$")


@dataclass(frozen=True)
class Profile:
    """How one vendor's modem answers: the caller-ID commands it knows and its caller-ID style."""

    name: str
    cid_commands: frozenset[str]
    style: str = "usr"
    banner: str = "56K Voice Modem"


PROFILES: dict[str, Profile] = {
    # USRobotics 5637: +VCID and #CID, formatted with spaces around '='.
    "usr": Profile(
        "usr",
        frozenset({"+VCID", "#CID"}),
        style="usr",
        banner="U.S. Robotics 56K FAX USB V1.2.23",
    ),
    # Zoom 3095 (Conexant): +VCID only, no spaces around '='.
    "zoom": Profile("zoom", frozenset({"+VCID"}), style="zoom", banner="Zoom 3095 USB Mini Modem"),
    # An old Rockwell-type modem that only knows #CID.
    "hash-only": Profile("hash-only", frozenset({"#CID"}), style="usr", banner="Rockwell 56K"),
    # A data-only modem without caller ID.
    "no-cid": Profile("no-cid", frozenset(), banner="Generic 56K data modem"),
}


@dataclass
class _State:
    echo: bool = True
    cid_mode: int = 0
    received: list[str] = field(default_factory=list)


class ModemEmulator:
    """A modem on a pty. ``path`` is what the device opens (the symlink when ``link`` is given)."""

    def __init__(self, profile: str | Profile = "usr", *, link: Path | None = None) -> None:
        self.profile = PROFILES[profile] if isinstance(profile, str) else profile
        self.link = link
        self.refused: set[str] = set()
        self.silent: set[str] = set()
        self.drop_every = 0  # drop every Nth byte the modem sends (0: none)
        self.slave_path = ""
        self._state = _State()
        self._master = -1
        self._slave = -1
        self._wake_r = -1
        self._wake_w = -1
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._changed = threading.Condition()
        self._sent_count = 0

    # -- life cycle ---------------------------------------------------------------------

    @property
    def path(self) -> str:
        """The path the device under test should open."""
        return str(self.link) if self.link is not None else self.slave_path

    @property
    def received(self) -> list[str]:
        """Every command the modem received, in order (as typed, without the CR)."""
        with self._changed:
            return list(self._state.received)

    @property
    def running(self) -> bool:
        """True while the pty exists."""
        return self._thread is not None

    def start(self) -> ModemEmulator:
        """Create the pty (and point ``link`` at it) and start answering."""
        if self._thread is not None:
            raise RuntimeError("the emulator is already running")
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)  # until the device sets its own modes: no echo, no CR/LF mangling
        self.slave_path = os.ttyname(self._slave)
        self._wake_r, self._wake_w = os.pipe()
        if self.link is not None:
            temporary = self.link.with_name(self.link.name + ".new")
            with contextlib.suppress(FileNotFoundError):
                temporary.unlink()
            temporary.symlink_to(self.slave_path)
            os.replace(temporary, self.link)
        self._state.echo = True
        self._state.cid_mode = 0
        self._thread = threading.Thread(target=self._run, name="modem-emulator", daemon=True)
        self._thread.start()
        return self

    def vanish(self) -> None:
        """Unplug: stop answering and close the pty (the device's reads fail), remove ``link``."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        os.write(self._wake_w, b"x")
        thread.join(5)
        for fd in (self._master, self._slave, self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._master = self._slave = self._wake_r = self._wake_w = -1
        if self.link is not None:
            with contextlib.suppress(FileNotFoundError):
                self.link.unlink()

    def come_back(self) -> ModemEmulator:
        """Plug back in: a new pty (another slave path), ``link`` pointed at it."""
        self.vanish()
        return self.start()

    close = vanish

    def __enter__(self) -> ModemEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.vanish()

    # -- on cue -----------------------------------------------------------------------------

    def ring(self, cadence: str | None = None) -> None:
        """One ``RING`` (``RING A`` with a distinctive-ring cadence)."""
        self.send_line("RING" if cadence is None else f"RING {cadence}")

    def caller_id(
        self,
        number: str | None,
        name: str | None = None,
        *,
        style: str | None = None,
        date: str = "0115",
        time_: str = "1230",
        absence: str = "O",
    ) -> str:
        """Send one caller-ID message; returns the text sent.

        ``number``/``name`` None send ``absence`` ('O' or 'P') instead. ``style``:
        ``usr`` (``NMBR = ``), ``zoom`` (``NMBR=``), ``runtogether``
        (one line, ``NAME=...NMBR=...``), ``quebec`` (``DDN_NMBR=``, name first) or
        ``vcid2-hex`` (an MDMF message in hex, wrapped at 60 digits). By
        default the style of the profile, or hex after ``AT+VCID=2``.
        """
        if style is None:
            style = "vcid2-hex" if self._state.cid_mode == 2 else self.profile.style
        shown_number = number if number is not None else absence
        shown_name = name if name is not None else absence
        if style == "usr":
            text = (
                f"\r\nDATE = {date}\r\nTIME = {time_}\r\nNMBR = {shown_number}\r\nNAME = {shown_name}\r\n\r\n"
            )
        elif style == "zoom":
            text = f"\r\nDATE={date}\r\nTIME={time_}\r\nNMBR={shown_number}\r\nNAME={shown_name}\r\n\r\n"
        elif style == "runtogether":
            text = f"\r\nDATE={date} TIME={time_} NAME={shown_name}NMBR={shown_number}\r\n\r\n"
        elif style == "quebec":
            text = (
                f"\r\nDATE = {date}\r\nTIME = {time_}\r\nNAME = {shown_name}\r\n"
                f"DDN_NMBR= {shown_number}\r\n\r\n"
            )
        elif style == "vcid2-hex":
            message = (
                encode_mdmf(
                    datetime=date + time_,
                    number=number,
                    name=name,
                    absence=None if number is not None else Absence(absence),
                    name_absence=None if name is not None else Absence(absence),
                )
                .hex()
                .upper()
            )
            wrapped = "\r\n".join(message[i : i + 60] for i in range(0, len(message), 60))
            text = f"\r\n{wrapped}\r\n"
        else:
            raise ValueError(f"unknown caller-ID style {style!r}")
        self.send(text.encode("latin-1"))
        return text

    def send_line(self, text: str) -> None:
        """A result-code style line: ``\\r\\n<text>\\r\\n``."""
        self.send(f"\r\n{text}\r\n".encode("latin-1"))

    def send(self, data: bytes) -> None:
        """Raw bytes from the modem (through the character-dropping fault, if set)."""
        if self.drop_every:
            kept = bytearray()
            for byte in data:
                self._sent_count += 1
                if self._sent_count % self.drop_every:
                    kept.append(byte)
            data = bytes(kept)
        with self._lock:
            if self._master < 0:
                raise RuntimeError("the emulator is not running")
            view = memoryview(data)
            while view:
                written = os.write(self._master, view)
                view = view[written:]

    def wait_for(self, predicate: Callable[[list[str]], bool], timeout: float = 5.0) -> list[str]:
        """Block until ``predicate(received commands)`` holds; AssertionError after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate(self._state.received):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"the modem did not get what was awaited: {self._state.received}")
                self._changed.wait(left)
            return list(self._state.received)

    # -- the modem ------------------------------------------------------------------------

    def _run(self) -> None:
        buffer = bytearray()
        master, wake = self._master, self._wake_r
        while True:
            try:
                ready, _, _ = select.select([master, wake], [], [], 1.0)
            except (OSError, ValueError):
                return
            if wake in ready:
                return
            if master not in ready:
                continue
            try:
                data = os.read(master, 1024)
            except OSError:
                # EIO: nobody has the slave open; wait for the device to reopen it.
                time.sleep(0.05)
                continue
            for byte in data:
                if byte in (0x0D, 0x0A):
                    if buffer:
                        self._command(buffer.decode("latin-1"))
                        buffer.clear()
                    continue
                buffer.append(byte)

    def _command(self, command: str) -> None:
        state = self._state
        with self._changed:
            state.received.append(command)
            self._changed.notify_all()
        if state.echo:
            self.send(command.encode("latin-1") + b"\r")
        upper = command.strip().upper()
        if upper in self.silent:
            return
        if upper in self.refused or not upper.startswith("AT"):
            self.send_line("ERROR")
            return
        cid = _CID_COMMAND.match(upper)
        if cid:
            if cid.group(1) not in self.profile.cid_commands:
                self.send_line("ERROR")
                return
            state.cid_mode = int(cid.group(2))
        elif upper in ("ATZ", "AT&F"):
            state.echo = True
            state.cid_mode = 0
        elif upper in ("ATE0", "ATE1"):
            state.echo = upper == "ATE1"
        elif upper.startswith("ATI"):
            self.send_line(self.profile.banner)
        elif upper.startswith("ATD") and not upper.endswith(";"):
            # A data call: nobody answers with a carrier here.
            self.send_line("NO CARRIER")
            return
        self.send_line("OK")


def main(argv: list[str] | None = None) -> int:
    """Run an emulator from a terminal: commands on stdin, the pty path on stdout."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=sorted(PROFILES), default="usr")
    parser.add_argument("--link", type=Path, help="a stable symlink to the current pty")
    args = parser.parse_args(argv)
    emulator = ModemEmulator(args.profile, link=args.link).start()
    style: str | None = None
    sys.stdout.write(f"modem ({emulator.profile.name}) on {emulator.path}\n")
    sys.stdout.flush()
    try:
        for line in sys.stdin:
            words = line.split()
            if not words:
                continue
            verb, rest = words[0].lower(), words[1:]
            if verb == "quit":
                break
            if verb == "ring":
                emulator.ring(rest[0] if rest else None)
            elif verb == "cid" and rest:
                withheld = rest[0] in ("O", "P")
                emulator.caller_id(
                    None if withheld else rest[0],
                    " ".join(rest[1:]) or None,
                    style=style,
                    absence=rest[0] if withheld else "O",
                )
            elif verb == "cid-style" and rest:
                style = rest[0]
            elif verb == "vanish":
                emulator.vanish()
            elif verb == "back":
                emulator.come_back()
                sys.stdout.write(f"back on {emulator.path} ({emulator.slave_path})\n")
            else:
                sys.stdout.write(
                    "commands: ring [A] | cid NUMBER [NAME] | cid-style STYLE | vanish | back | quit\n"
                )
            sys.stdout.flush()
    finally:
        emulator.vanish()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
