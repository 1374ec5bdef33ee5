"""Rule-based translation through apertium-apy, which keeps Apertium pipelines warm.

Spawning `apertium eng-spa` per text costs about 0.2 s (the pipeline's eight
programs load their transducers); APY starts each pair's pipeline once and feeds
it NUL-separated texts. The service either talks to an APY server it is given
(`PERCEPT_NLP_APERTIUM_URL`) or starts one beside itself on a loopback port.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from collections import deque
from collections.abc import Sequence
from pathlib import Path

from percept.nlp.apy_child import PARENT, SOCKET
from percept.nlp.language import iso_639_1

log = logging.getLogger(__name__)

# One request carries a batch of texts separated by blank lines, which Apertium's
# text deformatter keeps: one round trip instead of one per text (about 1.5 ms
# instead of 18 ms a text measured here). Texts holding a blank line go alone.
SEPARATOR = "\n\n"
BATCH_CHARS = 8_000
_SPACES = re.compile(r"[ \t]{2,}")


class ApertiumError(RuntimeError):
    """APY could not be started or did not answer as expected."""


def pair_codes(source: str, target: str) -> tuple[str, str] | None:
    """APY's codes ('eng', 'cat_valencia', 'pt') → ISO 639-1; None for variants."""
    if "_" in source or "_" in target:
        return None  # regional and orthographic variants stay out of the public list
    return iso_639_1(source) or source, iso_639_1(target) or target


class ApyClient:
    """Blocking client of one APY server; one keep-alive connection per thread."""

    def __init__(self, url: str, timeout_s: float = 30.0) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme != "http" or not parsed.hostname:
            raise ApertiumError(f"nlp_apertium_url: expected http://host:port, not {url!r}")
        self.url = url
        self._host, self._port = parsed.hostname, parsed.port or 80
        self._timeout = timeout_s
        self._local = threading.local()

    def _call(self, path: str, fields: dict[str, str] | None = None) -> object:
        body = urllib.parse.urlencode(fields or {})
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        for attempt in (1, 2):  # a kept-alive connection the server closed is retried once
            conn = getattr(self._local, "conn", None)
            if conn is None:
                conn = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
                self._local.conn = conn
            try:
                conn.request("POST", path, body, headers)
                response = conn.getresponse()
                payload = response.read()
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                self._local.conn = None
                if attempt == 2:
                    raise ApertiumError(f"apertium-apy at {self.url}: {exc}") from exc
                continue
            if response.status != 200:
                raise ApertiumError(
                    f"apertium-apy {path}: HTTP {response.status}: {payload[:200]!r}"
                )
            return json.loads(payload)
        raise AssertionError("unreachable")

    def pairs(self) -> list[tuple[str, str]]:
        answer = self._call("/listPairs")
        assert isinstance(answer, dict)
        return [(p["sourceLanguage"], p["targetLanguage"]) for p in answer["responseData"]]

    def translate(self, text: str, langpair: str) -> str:
        answer = self._call("/translate", {"langpair": langpair, "q": text, "markUnknown": "no"})
        assert isinstance(answer, dict)
        return str(answer["responseData"]["translatedText"])


RESTART_BACKOFF_S = 30.0  # after a failed restart, translations fail at once this long
# One process; pipelines kept warm (never shut down idle, at least one per pair); 30 s a request.
_APY_OPTIONS = ("-j", "1", "-n", "1", "-m", "0", "-t", "30")


class ApyProcess:
    """An apertium-apy server run as a child process on a loopback port.

    The port is bound here and the listening socket handed to APY, so no other process can
    take it between choosing and listening. APY's stderr is drained as it comes (it logs
    every request: an unread pipe fills after some 900 and blocks APY), keeping only the
    last lines for the error a failed start reports."""

    def __init__(self, modes_dir: Path, start_timeout_s: float = 60.0) -> None:
        if not modes_dir.is_dir() or not any(modes_dir.glob("*.mode")):
            raise ApertiumError(
                f"no Apertium pairs in {modes_dir}: install some, e.g. "
                "`apt-get install apertium-eng-spa` (scripts/setup.sh does)"
            )
        with socket.create_server(("127.0.0.1", 0)) as listener:
            port = listener.getsockname()[1]
            self.url = f"http://127.0.0.1:{port}"
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "percept.nlp.apy_child", str(modes_dir), *_APY_OPTIONS],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                # Its own process group (APY and its pipelines), ended together by close().
                process_group=0,
                pass_fds=[listener.fileno()],
                env={**os.environ, PARENT: str(os.getpid()), SOCKET: str(listener.fileno())},
            )
        self._closed = False
        self._stderr_tail: deque[str] = deque(maxlen=20)
        self._drain = threading.Thread(target=self._read_stderr, name="apy-stderr", daemon=True)
        self._drain.start()
        self._wait_until_answering(start_timeout_s)

    def _read_stderr(self) -> None:
        assert self._proc.stderr is not None
        for line in self._proc.stderr:
            self._stderr_tail.append(line.decode(errors="replace").rstrip())

    def _wait_until_answering(self, timeout_s: float) -> None:
        client = ApyClient(self.url, timeout_s=timeout_s)
        deadline = time.monotonic() + timeout_s
        while True:
            if self._proc.poll() is not None:
                self._drain.join(5)
                tail = "\n".join(self._stderr_tail)[-500:]
                self.close()
                raise ApertiumError(f"apertium-apy exited with {self._proc.returncode}: {tail}")
            try:
                client.pairs()
                return
            except ApertiumError:
                if time.monotonic() > deadline:
                    self.close()
                    raise ApertiumError(
                        f"apertium-apy did not answer within {timeout_s:.0f} s"
                    ) from None
                time.sleep(0.1)

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def alive(self) -> bool:
        return self._proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode

    def close(self) -> None:
        """Ends APY and every pipeline it started (its process group), once: a group id
        signalled again later could be another group's by then."""
        if self._closed:
            return
        self._closed = True
        group = self._proc.pid
        if self._proc.poll() is None:
            _signal_group(group, signal.SIGTERM)
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                _signal_group(group, signal.SIGKILL)
                self._proc.wait()
        _signal_group(group, signal.SIGKILL)  # pipelines that outlived APY
        self._drain.join(5)  # at end of file once APY and its pipelines are gone
        if self._proc.stderr and not self._drain.is_alive():
            self._proc.stderr.close()


def _signal_group(group: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, sig)


def _tidy(text: str) -> str:
    """Drops the spaces a removed word leaves behind ('Cuánto  el coste')."""
    return _SPACES.sub(" ", text).strip()


class ApertiumBackend:
    """The offline default: every installed Apertium pair, through APY."""

    name = "apertium"

    def __init__(self, url: str = "", modes_dir: Path = Path("/usr/share/apertium/modes")) -> None:
        self.modes_dir = modes_dir
        self._process = None if url else ApyProcess(modes_dir)
        self.client = ApyClient(url or self._process.url)  # type: ignore[union-attr]
        self._restarting = threading.Lock()
        self._failed_restart_at = -RESTART_BACKOFF_S
        self._apy_pairs: dict[tuple[str, str], str] = {}
        for source, target in self.client.pairs():
            codes = pair_codes(source, target)
            if codes is not None and codes[0] != codes[1]:
                self._apy_pairs.setdefault(codes, f"{source}|{target}")

    def pairs(self) -> list[tuple[str, str]]:
        return sorted(self._apy_pairs)

    def warm(self) -> None:
        """Starts every pair's pipeline now rather than on a visitor's first message."""
        threads = [
            threading.Thread(target=self.client.translate, args=("hello", langpair))
            for langpair in self._apy_pairs.values()
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def translate(self, texts: Sequence[str], source: str, target: str) -> list[str]:
        process = self._process
        try:
            return self._translate(texts, source, target)
        except ApertiumError:
            if process is None or (process.alive and process is self._process):
                raise  # APY's own answer, or one it gives elsewhere
            self._restart(process)
            return self._translate(texts, source, target)

    def _restart(self, dead: ApyProcess) -> None:
        """APY the service started has died (the OOM killer, a crash): every translation
        would fail until the pod restarted, health still SERVING. Started again, once
        for all the threads that found it dead."""
        with self._restarting:
            if self._process is not dead:
                return  # another thread has
            if time.monotonic() - self._failed_restart_at < RESTART_BACKOFF_S:
                raise ApertiumError("apertium-apy died and could not be started again yet")
            log.error("apertium-apy died (exit %s); starting it again", dead.returncode)
            dead.close()
            try:
                self._process = ApyProcess(self.modes_dir)
            except ApertiumError:
                self._failed_restart_at = time.monotonic()
                raise
            self.client = ApyClient(self._process.url)

    def _translate(self, texts: Sequence[str], source: str, target: str) -> list[str]:
        langpair = self._apy_pairs[(source, target)]
        out: list[str | None] = [None] * len(texts)
        batch: list[int] = []
        size = 0

        def flush() -> None:
            nonlocal size
            if batch:
                self._translate_batch(texts, batch, langpair, out)
            batch.clear()
            size = 0

        for i, text in enumerate(texts):
            if not text.strip():
                out[i] = ""
                continue
            if SEPARATOR in text.strip():
                out[i] = _tidy(self.client.translate(text, langpair))
                continue
            if size + len(text) > BATCH_CHARS:
                flush()
            batch.append(i)
            size += len(text) + len(SEPARATOR)
        flush()
        return [t if t is not None else "" for t in out]

    def _translate_batch(
        self, texts: Sequence[str], batch: list[int], langpair: str, out: list[str | None]
    ) -> None:
        joined = SEPARATOR.join(texts[i].strip() for i in batch)
        parts = self.client.translate(joined, langpair).strip().split(SEPARATOR)
        if len(parts) != len(batch):  # the deformatter merged or split something: go one by one
            log.warning("apertium batch of %d came back as %d parts", len(batch), len(parts))
            parts = [self.client.translate(texts[i], langpair) for i in batch]
        for i, part in zip(batch, parts, strict=True):
            out[i] = _tidy(part)

    def close(self) -> None:
        if self._process is not None:
            self._process.close()
