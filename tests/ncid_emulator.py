"""An NCID server that speaks the documented protocol (NCID is not packaged in Debian).

Follows the NCID API document, "Feature Set 1: Server Implementation": on each
connection it sends the ``200`` greeting, the ``210`` API line (then waits briefly
for the client's ``HELLO:`` lines), the call log with each label turned into its
``LOG`` form and ``250 End of call log`` (``251 Call log not sent`` when the client
asked ``HELLO: CMD: no_log``, ``252 Call log empty`` when there is none), the
``OPT:`` lines and ``300 End of connection startup``. With ``api=None`` it is a
pre-1.0 server: greeting, log, ``300 End of call log``. Live lines go to every
connected client on cue::

    async with NcidEmulator() as emu:
        ...connect a client to emu.port...
        await emu.wait_clients(1)
        await emu.send_cid("5551234567", "JOHN DOE", line="POTS")
        await emu.drop()   # close every connection; new ones are still accepted
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
from datetime import datetime
from types import TracebackType

DEFAULT_LOG = (
    "CID: *DATE*01142026*TIME*0915*LINE*POTS*NMBR*4075550000*MESG*NONE*NAME*HISTORY ONE*",
    "HUP: *DATE*01142026*TIME*0930*LINE*POTS*NMBR*8005551111*MESG*NONE*NAME*JUNK CALLER*",
    "OUT: *DATE*01142026*TIME*1002*LINE*POTS*NMBR*4075552222*MESG*NONE*NAME*-*",
    "MSG: Caller ID Logfile too big ***DATE*01142026*TIME*1100*NAME*-*NMBR*-*LINE*-*MTYPE*-*",
    "# comment line",
)


def fields(**pairs: str) -> str:
    """``*DATE*..*TIME*..*`` from keyword pairs, in order."""
    return "*" + "".join(f"{label}*{value}*" for label, value in pairs.items())


def _stamp(when: datetime | None) -> tuple[str, str]:
    when = when or datetime.now()
    return when.strftime("%m%d%Y"), when.strftime("%H%M")


class NcidEmulator:
    """A loopback NCID server. ``port`` is known once started (it binds port 0)."""

    def __init__(
        self,
        *,
        greeting: str = "200 Server: ncidd (NCID) 1.13 cti-agent test emulator",
        api: str | None = "210 API 1.5 Feature Set 1 2 3 4",
        call_log: tuple[str, ...] | list[str] = DEFAULT_LOG,
        options: tuple[str, ...] = ("hangup-1", "ignore1"),
        hello_wait: float = 0.1,
    ) -> None:
        self.greeting = greeting
        self.api = api
        self.call_log = list(call_log)
        self.options = options
        self.hello_wait = hello_wait
        self.port = 0
        self.connections = 0
        self.received: list[str] = []
        self._server: asyncio.Server | None = None
        self._clients: list[asyncio.StreamWriter] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Condition()

    async def __aenter__(self) -> NcidEmulator:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(
        self,
        exc_type: builtins.type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def stop(self) -> None:
        """Stop listening and close every connection."""
        if self._server is not None:
            self._server.close()
            self._server = None
        await self.drop()
        # Closed connections end their tasks; cancel only what does not end soon
        # (a client still in its start-up that never reads).
        pending = list(self._tasks)
        if pending:
            _, late = await asyncio.wait(pending, timeout=2.0)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)

    # -- connections ----------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        try:
            await self._startup(reader, writer)
            async with self._changed:
                self._clients.append(writer)
                self._changed.notify_all()
            # Keep reading what the client sends (newline keep-alives) until it goes.
            while line := await reader.readline():
                self.received.append(line.decode("utf-8", errors="replace").rstrip("\r\n"))
        except (ConnectionError, OSError):
            pass
        finally:
            async with self._changed:
                if writer in self._clients:
                    self._clients.remove(writer)
                self._changed.notify_all()
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            self._tasks.discard(task)

    async def _startup(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        out = [self.greeting]
        no_log = False
        if self.api is not None:
            writer.write(f"{self.greeting}\r\n{self.api}\r\n".encode())
            await writer.drain()
            out = []
            # "The server delays on connect after sending a 210 line in order to give
            # a client or gateway the opportunity to send the optional HELLO: lines."
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.hello_wait):
                    while line := await reader.readline():
                        text = line.decode("utf-8", errors="replace").rstrip("\r\n")
                        self.received.append(text)
                        no_log = no_log or text == "HELLO: CMD: no_log"
        log = [self._log_form(line) for line in self.call_log]
        if self.api is None:
            out += [*log, "300 End of call log"]
        else:
            if no_log:
                out.append("251 Call log not sent: /var/log/cidcall.log")
            elif log:
                out += [*log, "250 End of call log"]
            else:
                out.append("252 Call log empty")
            out += [f"OPT: {option}" for option in self.options]
            out.append("300 End of connection startup")
        writer.write("".join(f"{line}\r\n" for line in out).encode())
        await writer.drain()

    @staticmethod
    def _log_form(line: str) -> str:
        """The call log's form of a line: ``CID:`` -> ``CIDLOG:``, unlabelled -> ``LOG:``."""
        label, sep, rest = line.partition(":")
        if sep and label.isalpha() and label.isupper():
            return f"{label}LOG:{rest}"
        return f"LOG: {line}"

    @property
    def clients(self) -> int:
        """Connections past their start-up."""
        return len(self._clients)

    async def wait_clients(self, count: int, timeout: float = 5.0) -> None:
        """Wait until ``count`` clients are connected and started up."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: len(self._clients) >= count)

    async def drop(self) -> None:
        """Close every client connection (the server keeps listening)."""
        async with self._changed:
            clients, self._clients = self._clients, []
            self._changed.notify_all()
        for writer in clients:
            writer.close()
        for writer in clients:
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    # -- live lines -------------------------------------------------------------

    async def send_raw(self, text: str) -> None:
        """Send ``text`` (one line, CR LF added) to every started client."""
        data = f"{text}\r\n".encode()
        for writer in list(self._clients):
            writer.write(data)
        for writer in list(self._clients):
            with contextlib.suppress(ConnectionError):
                await writer.drain()

    async def _send_call(
        self, kind: str, number: str, name: str, line: str, when: datetime | None, mesg: str = "NONE"
    ) -> str:
        date, time = _stamp(when)
        text = f"{kind}: " + fields(DATE=date, TIME=time, LINE=line, NMBR=number, MESG=mesg, NAME=name)
        await self.send_raw(text)
        return text

    async def send_cid(
        self, number: str, name: str = "-", *, line: str = "-", when: datetime | None = None
    ) -> str:
        """An incoming call's caller ID (``CID:``)."""
        return await self._send_call("CID", number, name, line, when)

    async def send_out(self, number: str, *, line: str = "-", when: datetime | None = None) -> str:
        """An outgoing call (``OUT:``)."""
        return await self._send_call("OUT", number, "-", line, when)

    async def send_hup(
        self, number: str, name: str = "-", *, line: str = "-", when: datetime | None = None
    ) -> str:
        """A caller the server hung up on (``HUP:``)."""
        return await self._send_call("HUP", number, name, line, when)

    async def send_blk(
        self, number: str, name: str = "-", *, line: str = "-", when: datetime | None = None
    ) -> str:
        """A caller a device blocked (``BLK:``)."""
        return await self._send_call("BLK", number, name, line, when)

    async def send_wid(
        self, number: str, name: str = "-", *, line: str = "-", when: datetime | None = None
    ) -> str:
        """A call-waiting caller ID (``WID:``)."""
        return await self._send_call("WID", number, name, line, when)

    async def send_cidinfo(self, ring: int, *, line: str = "-", when: datetime | None = None) -> str:
        """Ring information: a count, 0 (answered / stopped), -1 (gave up), -2 (hung up after answer)."""
        stamp = (when or datetime.now()).strftime("%H:%M:%S")
        text = "CIDINFO: " + fields(LINE=line, RING=str(ring), TIME=stamp)
        await self.send_raw(text)
        return text

    async def send_end(
        self,
        htype: str,
        *,
        ctype: str = "IN",
        number: str = "-",
        name: str = "-",
        line: str = "-",
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> str:
        """A gateway's end of call (``END:``) with start and end times."""
        end = end or datetime.now()
        start = start or end
        date, time = _stamp(end)
        text = "END: " + fields(
            HTYPE=htype,
            DATE=date,
            TIME=time,
            SCALL=start.strftime("%m/%d/%Y %H:%M:%S"),
            ECALL=end.strftime("%m/%d/%Y %H:%M:%S"),
            CTYPE=ctype,
            LINE=line,
            NMBR=number,
            NAME=name,
        )
        await self.send_raw(text)
        return text

    async def send_msg(self, message: str) -> str:
        """A server or user message (``MSG:``)."""
        date, time = _stamp(None)
        text = f"MSG: {message} **" + fields(DATE=date, TIME=time, NAME="-", NMBR="-", LINE="-", MTYPE="-")
        await self.send_raw(text)
        return text


__all__ = ["DEFAULT_LOG", "NcidEmulator", "fields"]
