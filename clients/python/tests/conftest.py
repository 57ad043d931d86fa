"""Fixtures: real ``sf3d serve`` processes (built-in test model, one CPU worker, a free port, a fresh data folder).

The binary comes from ``SF3D_BIN`` (``cargo xtask test`` sets it to the ``sf3d`` it builds).
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from sf3d_client import encode_png

STARTUP_TIMEOUT = 180.0
"""Seconds a server may take to load the test model and listen."""
FAST: dict[str, Any] = {"texture_resolution": 512}
"""Small parameters, like the Rust tests' `fast_params()`."""


def sf3d_bin() -> str:
    path = os.environ.get("SF3D_BIN")
    if not path or not os.access(path, os.X_OK):
        pytest.exit(
            f"SF3D_BIN={path!r} is not an executable `sf3d`: build it (cargo build -p sf3d-backend --bin sf3d) and "
            "set SF3D_BIN, or run `cargo xtask test`",
            returncode=2,
        )
    return path


class Server:
    """A running ``sf3d serve``."""

    def __init__(self, *args: str, api_key: str | None = None) -> None:
        self.data = Path(tempfile.mkdtemp(prefix="sf3d-pytest-"))
        self.api_key = api_key
        cmd = [sf3d_bin(), "serve", "--port", "0", "--data", str(self.data), "--device", "cpu", *args]
        if api_key:
            cmd += ["--api-key", api_key]
        # The server reads SF3D_* settings from the environment: none of the caller's may leak in.
        env = {k: v for k, v in os.environ.items() if not k.startswith("SF3D_")}
        env.setdefault("RUST_LOG", "warn")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, text=True)
        self.log: list[str] = []
        found = threading.Event()
        self.base = ""

        def read() -> None:
            assert self.proc.stderr is not None
            for line in self.proc.stderr:
                self.log.append(line)
                m = re.search(r"is serving (http://[^/\s]+)/", line)
                if m and not found.is_set():
                    self.base = m.group(1)
                    found.set()
            found.set()

        threading.Thread(target=read, daemon=True).start()
        if not found.wait(STARTUP_TIMEOUT) or not self.base:
            self.stop()
            raise RuntimeError(f"`{' '.join(cmd)}` did not start:\n{''.join(self.log)}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.data, ignore_errors=True)


@pytest.fixture(autouse=True)
def no_client_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """SF3DClient reads SF3D_SERVER and SF3D_API_KEY when not given them: the caller's must not leak in."""
    monkeypatch.delenv("SF3D_SERVER", raising=False)
    monkeypatch.delenv("SF3D_API_KEY", raising=False)


@pytest.fixture(scope="session")
def server() -> Iterator[Server]:
    """A plain server shared by the tests that only need one (two CPU workers' worth of queue: the default)."""
    s = Server()
    yield s
    s.stop()


@pytest.fixture
def start_server() -> Iterator:
    """Starts servers with extra flags; each is stopped at the end of the test."""
    started: list[Server] = []

    def start(*args: str, api_key: str | None = None) -> Server:
        s = Server(*args, api_key=api_key)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()


def disc_pixels(size: int = 128, channels: int = 4) -> bytes:
    """A product-like picture: a soft coloured disc on a transparent (or white) background, row-major RGB(A)."""
    out = bytearray()
    c = (size - 1) / 2
    for y in range(size):
        for x in range(size):
            r = math.hypot(x - c, y - c) / (size * 0.4)
            inside = r < 1.0
            rgb = (40 + x * 200 // size, 90, 200 - y * 150 // size) if inside else (255, 255, 255)
            out += bytes(rgb)
            if channels == 4:
                out.append(255 if inside else 0)
    return bytes(out)


@pytest.fixture(scope="session")
def png_bytes() -> bytes:
    return encode_png(disc_pixels(), 128, 128, 4)


@pytest.fixture
def png_file(tmp_path: Path, png_bytes: bytes) -> Path:
    p = tmp_path / "shirt.png"
    p.write_bytes(png_bytes)
    return p


_dumped = itertools.count()


def check_glb(glb: bytes) -> None:
    """The GLB container is sound: magic, version 2, declared length, a JSON chunk that parses, a textured mesh.
    With ``SF3D_GLB_DIR`` set (``cargo xtask test``), the GLB is also written there for the Khronos validator."""
    dump = os.environ.get("SF3D_GLB_DIR")
    if dump:
        test = os.environ.get("PYTEST_CURRENT_TEST", "test").split(" ")[0].split("::")[-1]
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", f"python_client_{test}_{next(_dumped)}.glb")
        Path(dump).mkdir(parents=True, exist_ok=True)
        (Path(dump) / name).write_bytes(glb)
    assert len(glb) > 20, len(glb)
    magic, version, length = struct.unpack_from("<4sII", glb, 0)
    assert magic == b"glTF", magic
    assert version == 2, version
    assert length == len(glb), (length, len(glb))
    chunk_len, chunk_type = struct.unpack_from("<I4s", glb, 12)
    assert chunk_type == b"JSON", chunk_type
    doc = json.loads(glb[20 : 20 + chunk_len])
    assert doc["asset"]["version"] == "2.0"
    assert doc["meshes"], "no mesh in the GLB"
    prim = doc["meshes"][0]["primitives"][0]
    assert "POSITION" in prim["attributes"] and "indices" in prim
    material = doc["materials"][prim["material"]]
    assert "baseColorTexture" in material["pbrMetallicRoughness"] and "normalTexture" in material


def free_closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    time.sleep(0.05)
    return port
