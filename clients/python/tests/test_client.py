"""The Python client against real ``sf3d serve`` processes (built-in test model)."""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import FAST, Server, check_glb, disc_pixels, free_closed_port, sf3d_bin
from sf3d_client import (
    STAGES,
    AuthError,
    BadInputError,
    MeshResult,
    NotFoundError,
    QueueFullError,
    ServerError,
    SF3DClient,
    SF3DConnectionError,
    SF3DError,
    SF3DTimeoutError,
    StageEvent,
)

KEY = "0123456789abcdef-pytest-key"


def check_result(r: MeshResult, **params: Any) -> None:
    check_glb(r.glb)
    assert len(r.mesh_id) == 26 and r.job_id
    assert r.metadata["mesh_id"] == r.mesh_id
    assert r.metadata["model"]["test_model"] is True
    for k, v in {**FAST, **params}.items():
        assert r.metadata["params"][k] == v, (k, r.metadata["params"])
    assert [t.stage for t in r.timings] == list(STAGES)
    assert r.server_ms > 0 and r.round_trip_ms > 0 and r.queue_ms >= 0
    assert r.metadata["glb_bytes"] == len(r.glb)


# ------------------------------------------------------------------------------------------------ the calls


def test_connection_reports_model_device_and_test_model(server: Server) -> None:
    info = SF3DClient(server.base).test_connection()
    assert info.ok and info.status == "ok"
    assert info.protocol == 1
    assert info.model == "builtin-test" and info.test_model is True
    assert info.device_kind == "cpu" and info.device.startswith("cpu")
    assert info.auth_required is False
    assert len(info.workers) == 1 and info.workers[0]["state"] in ("idle", "busy")
    assert info.seed_health["model_loaded"] is True and info.seed_health["gpu"] == "cpu"
    assert info.queue["capacity"] == 16


def test_generate_from_file_with_stage_events_and_out_dir(server: Server, png_file: Path, tmp_path: Path) -> None:
    events: list[StageEvent] = []
    positions: list[int] = []
    client = SF3DClient(server.base)
    r = client.generate_from_file(
        png_file, tmp_path / "out", on_stage=events.append, on_queue=positions.append, **FAST
    )
    check_result(r)
    assert r.metadata["source_name"] == "shirt.png"
    # Every stage was pushed as it happened and ended once.
    ends = [(e.stage, e.state) for e in events if e.state in ("finished", "cached", "skipped")]
    assert [s for s, _ in ends] == list(STAGES), ends
    assert all(e.job_id == r.job_id for e in events)
    assert any(e.state == "started" for e in events)
    assert any(e.state == "progress" and e.max for e in events), "no progress event (backbone blocks)"
    assert positions and positions[0] >= 0
    # The stage timings agree with the events' final states.
    assert [(t.stage, t.state) for t in r.timings] == ends
    # out_dir: like `sf3d remote --out`.
    assert (tmp_path / "out" / "mesh.glb").read_bytes() == r.glb
    meta = json.loads((tmp_path / "out" / "metadata.json").read_text())
    assert meta["mesh_id"] == r.mesh_id
    assert meta["client"]["server"] == server.base and meta["client"]["round_trip_ms"] == r.round_trip_ms
    # The gallery has it, and the download matches.
    assert client.download(r.mesh_id) == r.glb
    assert any(item["id"] == r.mesh_id for item in client.list_meshes(limit=50))
    assert client.job_status(r.job_id)["state"] == "succeeded"


def test_generate_mesh_from_bytes(server: Server, png_bytes: bytes) -> None:
    r = SF3DClient(server.base).generate_mesh(png_bytes, texture_resolution=512, remesh="triangle", vertex_count=500)
    check_result(r, remesh="triangle", vertex_count=500)
    assert "source_name" not in r.metadata


@pytest.mark.parametrize("channels", [3, 4])
def test_generate_mesh_from_numpy_without_pillow(
    server: Server, channels: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    np = pytest.importorskip("numpy")
    # NumPy input needs no Pillow: make `import PIL` fail for the duration of the call.
    for name in [m for m in sys.modules if m == "PIL" or m.startswith("PIL.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "PIL", None)
    array = np.frombuffer(disc_pixels(96, channels), dtype=np.uint8).reshape(96, 96, channels)
    r = SF3DClient(server.base).generate_mesh(array, **FAST)
    check_result(r)
    # The server stored the very pixels sent.
    monkeypatch.delitem(sys.modules, "PIL")
    Image = pytest.importorskip("PIL.Image")
    stored = Image.open(io.BytesIO(SF3DClient(server.base).download(r.mesh_id, "input.png")))
    assert stored.size == (96, 96)
    assert np.array_equal(np.asarray(stored.convert("RGBA" if channels == 4 else "RGB")), array)


def test_numpy_input_is_checked_before_upload(server: Server) -> None:
    np = pytest.importorskip("numpy")
    client = SF3DClient(server.base)
    with pytest.raises(ValueError, match="uint8"):
        client.generate_mesh(np.zeros((8, 8, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="H×W×3"):
        client.generate_mesh(np.zeros((8, 8, 2), dtype=np.uint8))
    with pytest.raises(TypeError):
        client.generate_mesh(12345)


@pytest.mark.parametrize("mode", ["RGBA", "RGB", "P"])
def test_generate_mesh_from_pil_image(server: Server, mode: str) -> None:
    Image = pytest.importorskip("PIL.Image")
    img = Image.frombytes("RGBA", (96, 96), disc_pixels(96, 4))
    img = img if mode == "RGBA" else img.convert(mode)
    r = SF3DClient(server.base).generate_mesh(img, **FAST)
    check_result(r)
    assert r.metadata["source_name"] == "image.png"


def test_regenerate_reuses_the_cached_scene_codes(server: Server, png_bytes: bytes) -> None:
    client = SF3DClient(server.base)
    parent = client.generate_mesh(png_bytes, **FAST)
    events: list[StageEvent] = []
    child = client.regenerate(parent.mesh_id, on_stage=events.append, texture_resolution=512, remesh="quad")
    check_glb(child.glb)
    assert child.mesh_id != parent.mesh_id
    assert child.metadata["parent_id"] == parent.mesh_id
    assert child.metadata["params"]["remesh"] == "quad"
    states = {e.stage: e.state for e in events if e.state != "progress"}
    assert states["backbone"] == "cached", states
    assert states["export"] == "finished", states


def test_save_into_the_pipeline_folder_like_sf3d_remote(server: Server, png_bytes: bytes, tmp_path: Path) -> None:
    """The seed pipeline's output folder: its files and metadata keys stay; `mesh.glb` and a `mesh` section are
    added, with the same keys `sf3d remote --into` writes."""
    folder = tmp_path / "20261127_103000"
    folder.mkdir()
    for name in ("original_frame.png", "mask.png", "generated_clothing.png"):
        (folder / name).write_bytes(png_bytes)
    pipeline_meta = {
        "timestamp": "20261127_103000",
        "transcript": "a red shirt with long sleeves",
        "prompt": {"garment": "shirt", "colour": "red"},
        "timings": {"speech_ms": 812.5, "clothing_ms": 4200},
        "frame": {"width": 1280, "height": 720},
    }
    (folder / "metadata.json").write_text(json.dumps(pipeline_meta, indent=2))
    reference = tmp_path / "reference"
    shutil.copytree(folder, reference)

    r = SF3DClient(server.base).generate_mesh(folder / "generated_clothing.png", **FAST)
    meta_path = r.save_into(folder)
    assert meta_path == folder / "metadata.json"
    assert sorted(p.name for p in folder.iterdir()) == [
        "generated_clothing.png",
        "mask.png",
        "mesh.glb",
        "metadata.json",
        "original_frame.png",
    ]
    for name in ("original_frame.png", "mask.png", "generated_clothing.png"):
        assert (folder / name).read_bytes() == png_bytes
    assert (folder / "mesh.glb").read_bytes() == r.glb
    meta = json.loads(meta_path.read_text())
    for k, v in pipeline_meta.items():
        assert meta[k] == v, k
    mesh = meta["mesh"]
    assert mesh["file"] == "mesh.glb"
    assert mesh["mesh_id"] == r.mesh_id
    assert mesh["source_name"] == "generated_clothing.png"
    assert mesh["client"] == {"server": server.base, "round_trip_ms": r.round_trip_ms, "queue_ms": r.queue_ms}
    assert [t["stage"] for t in mesh["timings"]] == list(STAGES)

    # `sf3d remote --into` on a copy of the same folder writes the same shape.
    out = subprocess.run(
        [sf3d_bin(), "remote", str(reference / "generated_clothing.png"), "--server", server.base,
         "--into", str(reference), "--texture-resolution", "512"],
        capture_output=True, text=True, timeout=300,
        env={k: v for k, v in os.environ.items() if not k.startswith("SF3D_")},
    )
    assert out.returncode == 0, out.stderr
    theirs = json.loads((reference / "metadata.json").read_text())
    assert shape(theirs) == shape(meta)
    # Byte for byte in layout: same key order (sorted, as serde_json writes it) and indentation.
    assert [line.split(":")[0] for line in (reference / "metadata.json").read_text().splitlines()] == [
        line.split(":")[0] for line in meta_path.read_text().splitlines()
    ]

    # A second save replaces the section and keeps the rest.
    r.save_into(folder)
    assert json.loads(meta_path.read_text())["transcript"] == pipeline_meta["transcript"]
    # A folder without metadata.json gets one; a missing folder is refused.
    bare = tmp_path / "bare"
    bare.mkdir()
    assert json.loads(r.save_into(bare).read_text())["mesh"]["mesh_id"] == r.mesh_id
    with pytest.raises(NotADirectoryError):
        r.save_into(tmp_path / "missing")


def shape(v: Any) -> Any:
    """The keys of a JSON value, recursively (lists by their first element)."""
    if isinstance(v, dict):
        return {k: shape(x) for k, x in v.items()}
    if isinstance(v, list):
        return [shape(v[0])] if v else []
    return type(v).__name__ if not isinstance(v, (int, float)) or isinstance(v, bool) else "number"


def test_progress_bar_with_tqdm(server: Server, png_bytes: bytes, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("tqdm")
    r = SF3DClient(server.base).generate_mesh(png_bytes, progress=True, filename="bar.png", **FAST)
    check_result(r)
    err = capsys.readouterr().err
    assert "bar.png" in err and f"{len(STAGES)}/{len(STAGES)}" in err, err


# ------------------------------------------------------------------------------------------------- errors


def test_connection_refused(png_bytes: bytes) -> None:
    base = f"http://127.0.0.1:{free_closed_port()}"
    client = SF3DClient(base, retries=1)
    started = time.monotonic()
    with pytest.raises(SF3DConnectionError, match="Connection refused") as e:
        client.test_connection()
    assert e.value.job_id is None
    with pytest.raises(SF3DConnectionError, match="cannot reach"):
        client.generate_mesh(png_bytes)
    assert isinstance(e.value, ConnectionError) and isinstance(e.value, SF3DError)
    assert time.monotonic() - started < 10


def test_auth_errors_and_a_right_key(start_server: Any, png_bytes: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    srv = start_server(api_key=KEY)
    for client in (SF3DClient(srv.base), SF3DClient(srv.base, api_key="wrong-key-0123456789")):
        with pytest.raises(AuthError):
            client.test_connection()
        with pytest.raises(AuthError) as e:
            client.generate_mesh(png_bytes, **FAST)
        assert e.value.code == "unauthorized"
        with pytest.raises(AuthError) as e:
            client.list_meshes()
        assert e.value.status == 401
    good = SF3DClient(srv.base, api_key=KEY)
    assert good.test_connection().auth_required is True
    r = good.generate_mesh(png_bytes, **FAST)
    check_result(r)
    assert good.download(r.mesh_id) == r.glb
    # The key may also come from the environment, like `sf3d remote`.
    monkeypatch.setenv("SF3D_API_KEY", KEY)
    assert SF3DClient(srv.base).test_connection().auth_required is True


def test_bad_input_names_the_field(server: Server, png_bytes: bytes) -> None:
    client = SF3DClient(server.base)
    with pytest.raises(BadInputError) as e:
        client.generate_mesh(png_bytes, texture_resolution=4096)
    assert (e.value.code, e.value.field) == ("invalid_params", "texture_resolution")
    assert "4096" in str(e.value)
    with pytest.raises(BadInputError) as e:
        client.generate_mesh(png_bytes, remesh="hexagons")
    assert e.value.field == "remesh"
    with pytest.raises(BadInputError) as e:
        client.generate_mesh(png_bytes, foreground_ratio=0.3)
    assert e.value.field == "foreground_ratio"
    with pytest.raises(BadInputError) as e:
        client.generate_mesh(png_bytes, colour="red")
    assert "colour" in str(e.value)
    # Not an image: accepted as a job, refused by the decoder.
    with pytest.raises(BadInputError) as e:
        client.generate_mesh(b"this is not an image", **FAST)
    assert e.value.code == "unsupported_image" and e.value.job_id
    # A mesh that does not exist.
    with pytest.raises(NotFoundError):
        client.regenerate("01JDQ3ZK4W9X6YV2B8E5R7T1NM", **FAST)
    with pytest.raises(BadInputError) as e:
        client.regenerate("01JDQ3ZK4W9X6YV2B8E5R7T1NM", vertex_count=5)
    assert e.value.field == "vertex_count"


def test_queue_full_and_the_opt_in_retry(start_server: Any, png_bytes: bytes) -> None:
    """One worker stalled on its first job, a queue of one: the third request is refused with queue_full (nothing
    queued); with queue_full_retries it waits and gets through."""
    srv = start_server("--max-queue", "1", "--test-hook", "stall-first-job=4000")
    client = SF3DClient(srv.base)
    results: dict[str, Any] = {}

    def run(name: str) -> None:
        try:
            results[name] = client.generate_mesh(png_bytes, filename=f"{name}.png", **FAST)
        except Exception as e:  # noqa: BLE001 - reported by the asserts below
            results[name] = e

    first = threading.Thread(target=run, args=("running",))
    first.start()
    wait_for(lambda: client.test_connection().queue.get("running") == 1)
    second = threading.Thread(target=run, args=("waiting",))
    second.start()
    wait_for(lambda: client.test_connection().queue.get("waiting") == 1)

    with pytest.raises(QueueFullError) as e:
        client.generate_mesh(png_bytes, **FAST)
    assert e.value.code == "queue_full" and e.value.job_id is None
    # The WebSocket error frame carries the server's wait, as REST answers do with Retry-After.
    assert e.value.retry_after is not None and e.value.retry_after > 0

    patient = SF3DClient(srv.base, queue_full_retries=10)
    r = patient.generate_mesh(png_bytes, filename="patient.png", **FAST)
    check_result(r)
    first.join(120)
    second.join(120)
    for name in ("running", "waiting"):
        assert isinstance(results[name], MeshResult), results[name]
    names = sorted(m["metadata"].get("source_name") for m in client.list_meshes())
    assert names == ["patient.png", "running.png", "waiting.png"], "a refused request left a mesh behind"


def test_timeout_keeps_the_job_and_wait_for_job_fetches_it(start_server: Any, png_bytes: bytes) -> None:
    """A call that runs out of time says which job was accepted; it is never sent again, and wait_for_job gets
    its mesh."""
    srv = start_server("--test-hook", "stall-first-job=3000")
    client = SF3DClient(srv.base, timeout=1.0, retries=2)
    with pytest.raises(SF3DTimeoutError) as e:
        client.generate_mesh(png_bytes, **FAST)
    job_id = e.value.job_id
    assert job_id and isinstance(e.value, TimeoutError)
    assert "wait_for_job" in str(e.value)
    events: list[StageEvent] = []
    r = SF3DClient(srv.base).wait_for_job(job_id, on_stage=events.append)
    check_result(r)
    assert r.job_id == job_id
    assert {e.stage for e in events} == set(STAGES)
    assert len(client.list_meshes()) == 1, "the timed-out job was submitted again"
    with pytest.raises(NotFoundError):
        client.wait_for_job("01JDQ40A3G7ZC1T5PHXW2N9M6B")


def test_server_error_past_the_job_timeout(start_server: Any, png_bytes: bytes) -> None:
    srv = start_server("--job-timeout", "1", "--test-hook", "stall-first-job=4000")
    with pytest.raises(ServerError) as e:
        SF3DClient(srv.base).generate_mesh(png_bytes, **FAST)
    assert e.value.code == "deadline_exceeded" and e.value.job_id


def test_a_broken_connection_reattaches_to_the_accepted_job(start_server: Any, png_bytes: bytes) -> None:
    """The socket breaks right after `accepted` (the job is still running: its first stage stalls): the client
    follows the same job on a new connection (subscribe) instead of submitting it again."""
    srv = start_server("--test-hook", "stall-first-job=2000")
    proxy = Proxy(srv.base)
    try:
        events: list[StageEvent] = []
        r = SF3DClient(proxy.base).generate_mesh(
            png_bytes, on_queue=lambda _pos: proxy.cut(), on_stage=events.append, filename="cut.png", **FAST
        )
        check_result(r)
        assert proxy.cuts == 1
        assert proxy.connections == 3, "expected the WebSocket, the re-attached WebSocket and the download"
        # Each stage reached the callback once, although the second connection replayed the first ones.
        ends = [e.stage for e in events if e.state in ("finished", "cached", "skipped")]
        assert ends == list(STAGES), ends
        meshes = SF3DClient(srv.base).list_meshes()
        assert [m["id"] for m in meshes] == [r.mesh_id], "the job was submitted again"
    finally:
        proxy.close()


def test_a_server_gone_after_accepted_names_the_job(start_server: Any, png_bytes: bytes) -> None:
    """The socket breaks after `accepted` and the server cannot be reached again: the error carries the job id
    (nothing is submitted again), and the job's mesh can be fetched once the server is reachable."""
    srv = start_server("--test-hook", "stall-first-job=2000")
    proxy = Proxy(srv.base)
    client = SF3DClient(proxy.base, retries=1)
    with pytest.raises(SF3DConnectionError) as e:
        client.generate_mesh(png_bytes, on_queue=lambda _pos: proxy.close(), **FAST)
    job_id = e.value.job_id
    assert job_id and "wait_for_job" in str(e.value)
    r = SF3DClient(srv.base).wait_for_job(job_id)
    check_result(r)
    assert r.job_id == job_id
    assert len(SF3DClient(srv.base).list_meshes()) == 1


# ---------------------------------------------------------------------------------------------- helpers


def wait_for(cond: Any, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "condition not reached in time"
        time.sleep(0.05)


class Proxy:
    """A TCP proxy to a server whose connections can be cut (the first cut only)."""

    def __init__(self, target: str) -> None:
        host, port = target.removeprefix("http://").split(":")
        self.target = (host, int(port))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.base = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.conns: list[socket.socket] = []
        self.cuts = 0
        self.connections = 0
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            with self.lock:
                self.connections += 1
                self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> None:
        with self.lock:
            if self.cuts:
                return
            self.cuts += 1
            for s in self.conns:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self.conns.clear()

    def close(self) -> None:
        # shutdown() wakes the thread blocked in accept() (close() alone would not, and it would accept one more).
        try:
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()
        self.cut()
