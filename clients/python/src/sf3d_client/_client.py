"""The client: :class:`SF3DClient`."""

from __future__ import annotations

import json
import os
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Optional
from urllib.parse import quote

import requests
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from ._images import ImageInput, image_bytes
from ._result import MeshResult, ServerInfo, StageEvent
from .errors import (
    AuthError,
    ProtocolError,
    QueueFullError,
    SF3DConnectionError,
    SF3DError,
    SF3DTimeoutError,
    ServerError,
    error_from_code,
)

__all__ = ["SF3DClient", "PROTOCOL_VERSION", "STAGES", "DEFAULT_SERVER"]

PROTOCOL_VERSION = 1
"""The protocol version this client speaks (``docs/protocol.md`` § Versioning)."""
DEFAULT_SERVER = "http://127.0.0.1:9299"
STAGES = (
    "decode",
    "remove_background",
    "prepare",
    "encode_image",
    "backbone",
    "triplane",
    "estimate_material",
    "extract_mesh",
    "remesh",
    "unwrap_uv",
    "bake_texture",
    "export",
)
"""Every stage of a job, in pipeline order (``docs/protocol.md`` § Stages)."""
_STAGE_ENDS = ("finished", "cached", "skipped")
_QUEUE_FULL_WAIT = 5.0
"""Seconds to wait on ``queue_full`` when the server gave no ``Retry-After`` (its own default)."""

StageCallback = Callable[[StageEvent], None]
QueueCallback = Callable[[int], None]


class _Progress:
    """A tqdm bar over the stages, when asked for and tqdm is installed."""

    def __init__(self, wanted: bool, label: str) -> None:
        self.bar: Any = None
        self.done: set[str] = set()
        if not wanted:
            return
        try:
            from tqdm.auto import tqdm  # type: ignore[import-untyped, unused-ignore]
        except ImportError:
            warnings.warn("progress=True needs tqdm (pip install 'sf3d-client[progress]'); no bar shown", stacklevel=4)
            return
        self.bar = tqdm(total=len(STAGES), desc=label, unit="stage")

    def queued(self, position: int) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(f"queued, {position} ahead" if position else "queued, next")

    def stage(self, e: StageEvent) -> None:
        if self.bar is None:
            return
        if e.state == "progress" and e.max:
            self.bar.set_postfix_str(f"{e.stage} {e.value}/{e.max}")
        elif e.state == "started":
            self.bar.set_postfix_str(e.stage)
        elif e.state in _STAGE_ENDS and e.stage not in self.done:
            self.done.add(e.stage)
            self.bar.update(1)

    def close(self, ok: bool) -> None:
        if self.bar is not None:
            if ok:
                self.bar.update(self.bar.total - self.bar.n)
                self.bar.set_postfix_str("done")
            self.bar.close()


class SF3DClient:
    """A client of one ``sf3d serve``.

    ``base_url``: the server (``http://HOST:9299``; default ``$SF3D_SERVER``, else ``http://127.0.0.1:9299``).
    ``api_key``: the server's key when it has one (default ``$SF3D_API_KEY``). ``timeout``: seconds one call may
    take in all (a generation: from the upload to the GLB downloaded). ``connect_timeout``: seconds to open a
    connection. ``retries``: how often a step that is safe to repeat is retried (opening a connection before
    anything was sent, downloads, re-attaching to an accepted job whose connection broke). ``queue_full_retries``:
    how often a request the server refused with ``queue_full`` is sent again after waiting its ``Retry-After``
    (0, the default: raise :class:`QueueFullError`). A job the server may have accepted is never sent twice.

    Every call is synchronous and opens its own connections, so one client may be shared by threads.
    """

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float = 600.0,
        *,
        connect_timeout: float = 10.0,
        retries: int = 2,
        queue_full_retries: int = 0,
    ) -> None:
        base = base_url or os.environ.get("SF3D_SERVER") or DEFAULT_SERVER
        base = base.rstrip("/")
        if not base.startswith(("http://", "https://")):
            raise ValueError(f"base_url {base!r} must start with http:// or https://")
        self.base_url = base
        self.api_key = api_key if api_key is not None else (os.environ.get("SF3D_API_KEY") or None)
        self.timeout = float(timeout)
        self.connect_timeout = float(connect_timeout)
        self.retries = max(0, int(retries))
        self.queue_full_retries = max(0, int(queue_full_retries))

    def __repr__(self) -> str:
        key = "<set>" if self.api_key else None
        return f"SF3DClient({self.base_url!r}, api_key={key}, timeout={self.timeout})"

    # ----------------------------------------------------------------------------------------------- HTTP

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def _get(self, path: str, *, params: dict[str, Any] | None = None, timeout: float | None = None) -> requests.Response:
        """GET with retries on connection errors and 5xx (GETs are idempotent); errors become exceptions."""
        url = self.base_url + path
        last: SF3DError | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(0.5 * 2 ** (attempt - 1))
            try:
                r = requests.get(
                    url,
                    params=params,
                    headers=self._headers(),
                    timeout=(self.connect_timeout, timeout if timeout is not None else self.timeout),
                )
            except requests.ConnectionError as e:
                last = SF3DConnectionError(f"cannot reach the server at {self.base_url}: {_reason(e)}")
                continue
            except requests.Timeout as e:
                raise SF3DTimeoutError(f"GET {path}: no answer in time ({e})") from e
            if r.ok:
                return r
            err = _http_error(r)
            if isinstance(err, ServerError) and r.status_code in (500, 502, 503, 504):
                last = err
                continue
            raise err
        assert last is not None
        raise last

    def test_connection(self) -> ServerInfo:
        """Checks that the server answers and speaks this client's protocol, and, when it needs a key, that the
        key is right (:class:`AuthError` otherwise). Returns what it runs: model, device, whether the model is the
        built-in test model, workers, queue."""
        health = self._get("/api/health", timeout=self.connect_timeout).json()
        seed = self._get("/health", timeout=self.connect_timeout).json()
        if health.get("protocol") != PROTOCOL_VERSION:
            raise ProtocolError(
                f"the server speaks protocol {health.get('protocol')} (sf3d-studio {health.get('version')}); "
                f"this client speaks {PROTOCOL_VERSION}: update one of them"
            )
        auth_required = bool(health.get("auth_required"))
        if auth_required:
            if not self.api_key:
                raise AuthError("the server needs an API key (api_key= or SF3D_API_KEY)", code="unauthorized")
            # The health endpoints are public; a gallery read checks the key.
            self._get("/api/meshes", params={"limit": 1}, timeout=self.connect_timeout)
        device = health.get("device", {})
        model = health.get("model", {})
        return ServerInfo(
            status=str(health.get("status")),
            version=str(health.get("version")),
            protocol=int(health.get("protocol", 0)),
            model=str(model.get("id", seed.get("model"))),
            test_model=bool(model.get("test_model", seed.get("test_model"))),
            device=str(device.get("name", "")),
            device_kind=str(device.get("kind", seed.get("gpu", ""))),
            workers=list(health.get("workers", [])),
            queue=dict(health.get("queue", {})),
            auth_required=auth_required,
            health=health,
            seed_health=seed,
        )

    def job_status(self, job_id: str) -> dict[str, Any]:
        """``GET /api/jobs/{id}``: a job's state (any job of the last 24 hours)."""
        return dict(self._get(f"/api/jobs/{quote(job_id, safe='')}", timeout=self.connect_timeout).json())

    def list_meshes(self, limit: int = 20) -> list[dict[str, Any]]:
        """The newest gallery entries (``GET /api/meshes``)."""
        return list(self._get("/api/meshes", params={"limit": limit}).json()["items"])

    def download(self, mesh_id: str, file: str = "mesh.glb") -> bytes:
        """One file of a gallery entry: ``mesh.glb``, ``input.png``, ``preprocessed.png`` or ``metadata.json``."""
        return self._get(f"/api/meshes/{quote(mesh_id, safe='')}/{quote(file, safe='')}").content

    # ------------------------------------------------------------------------------------------ WebSocket

    def generate_mesh(
        self,
        image: ImageInput,
        out_dir: str | os.PathLike[str] | None = None,
        *,
        filename: str | None = None,
        on_stage: Optional[StageCallback] = None,
        on_queue: Optional[QueueCallback] = None,
        progress: bool = False,
        **params: Any,
    ) -> MeshResult:
        """Generates a mesh from ``image``: a path, the bytes of an image file, a PIL image, or a NumPy array
        (H×W×3 RGB or H×W×4 RGBA, ``uint8``; encoded as PNG without needing Pillow).

        ``params`` are the generation parameters (``texture_resolution``, ``foreground_ratio``, ``remesh``,
        ``vertex_count``, ``background``, ``preview``; ``docs/protocol.md``); the server checks them and a bad
        one raises :class:`BadInputError` naming the field. ``on_stage`` is called with every stage event as the
        server pushes it, ``on_queue`` with the queue position while the job waits; ``progress=True`` shows a
        tqdm bar. With ``out_dir``, ``mesh.glb`` and ``metadata.json`` are written there (see
        :meth:`MeshResult.save`; :meth:`MeshResult.save_into` is the pipeline's folder case)."""
        data, name = image_bytes(image, filename)
        header: dict[str, Any] = {"kind": "binary", "size": len(data)}
        if name:
            header["filename"] = name
        request = {"type": "generate", "request_id": "py-1", "params": params, "image": header}
        result = self._job(request, data, on_stage, on_queue, progress, label=name or "sf3d")
        if out_dir is not None:
            result.save(out_dir)
        return result

    def generate_from_file(
        self, path: str | os.PathLike[str], out_dir: str | os.PathLike[str] | None = None, **kwargs: Any
    ) -> MeshResult:
        """:meth:`generate_mesh` of an image file."""
        return self.generate_mesh(Path(path), out_dir, **kwargs)

    def regenerate(
        self,
        mesh_id: str,
        out_dir: str | os.PathLike[str] | None = None,
        *,
        on_stage: Optional[StageCallback] = None,
        on_queue: Optional[QueueCallback] = None,
        progress: bool = False,
        **params: Any,
    ) -> MeshResult:
        """Re-extracts a stored mesh with new ``params`` from its cached scene codes (the network is skipped when
        ``foreground_ratio`` and ``background`` equal the parent's). The result is a new gallery entry whose
        ``metadata["parent_id"]`` is ``mesh_id``."""
        request = {"type": "regenerate", "request_id": "py-1", "mesh_id": mesh_id, "params": params}
        result = self._job(request, None, on_stage, on_queue, progress, label=f"regenerate {mesh_id[-6:]}")
        if out_dir is not None:
            result.save(out_dir)
        return result

    def wait_for_job(
        self,
        job_id: str,
        out_dir: str | os.PathLike[str] | None = None,
        *,
        on_stage: Optional[StageCallback] = None,
        on_queue: Optional[QueueCallback] = None,
        progress: bool = False,
    ) -> MeshResult:
        """Follows a job accepted earlier (e.g. after :class:`SF3DTimeoutError`) to its end and returns its mesh,
        without submitting anything. Works for any job of the last 24 hours, across server restarts."""
        result = self._job(None, None, on_stage, on_queue, progress, label=f"job {job_id[-6:]}", job_id=job_id)
        if out_dir is not None:
            result.save(out_dir)
        return result

    def _ws_url(self) -> str:
        scheme, rest = self.base_url.split("://", 1)
        url = ("wss" if scheme == "https" else "ws") + "://" + rest + "/ws"
        return url + (f"?token={quote(self.api_key, safe='')}" if self.api_key else "")

    def _connect(self, deadline: float) -> ClientConnection:
        """Opens the WebSocket; connection failures are retried (nothing has been sent yet)."""
        last: SF3DError | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(min(0.5 * 2 ** (attempt - 1), max(0.0, deadline - time.monotonic())))
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                return connect(
                    self._ws_url(),
                    open_timeout=min(self.connect_timeout, left),
                    max_size=None,
                    compression=None,
                    additional_headers=self._headers(),
                )
            except InvalidStatus as e:
                raise _handshake_error(e.response.status_code, e.response.body) from e
            except InvalidHandshake as e:
                raise ProtocolError(f"the server at {self.base_url} did not open a WebSocket: {e}") from e
            except TimeoutError:
                last = SF3DConnectionError(f"connecting to {self.base_url} timed out after {self.connect_timeout} s")
            except OSError as e:
                last = SF3DConnectionError(f"cannot reach the server at {self.base_url}: {_reason(e)}")
        raise last or SF3DTimeoutError(f"no connection to {self.base_url} within the timeout")

    def _job(
        self,
        request: dict[str, Any] | None,
        data: bytes | None,
        on_stage: Optional[StageCallback],
        on_queue: Optional[QueueCallback],
        progress: bool,
        *,
        label: str,
        job_id: str | None = None,
    ) -> MeshResult:
        """Sends ``request`` (+ the image frame), or subscribes to ``job_id``, and follows the job to its end."""
        started = time.monotonic()
        deadline = started + self.timeout
        bar = _Progress(progress, label)
        ok = False
        try:
            done, queue_ms, preview = self._follow(request, data, job_id, deadline, on_stage, on_queue, bar)
            glb = self._download_before(done["urls"]["glb"], deadline, str(done.get("job_id")))
            ok = True
        finally:
            bar.close(ok)
        return MeshResult(
            glb=glb,
            mesh_id=str(done["mesh_id"]),
            job_id=str(done.get("job_id", job_id or "")),
            metadata=dict(done["metadata"]),
            urls=dict(done["urls"]),
            server=self.base_url,
            round_trip_ms=(time.monotonic() - started) * 1e3,
            queue_ms=queue_ms,
            preview_mesh_id=preview,
        )

    def _download_before(self, path: str, deadline: float, job_id: str) -> bytes:
        left = deadline - time.monotonic()
        if left <= 0:
            raise SF3DTimeoutError(
                f"job {job_id} finished but the call ran out of time before the download", job_id=job_id
            )
        try:
            return self._get(path, timeout=left).content
        except SF3DError as e:
            # The job succeeded: its mesh is in the gallery even though this download failed.
            e.job_id = e.job_id or job_id
            e.message = f"{e} (job {job_id} succeeded; its mesh is in the gallery: {path})"
            e.args = (e.message,)
            raise

    def _follow(
        self,
        request: dict[str, Any] | None,
        data: bytes | None,
        job_id: str | None,
        deadline: float,
        on_stage: Optional[StageCallback],
        on_queue: Optional[QueueCallback],
        bar: _Progress,
    ) -> tuple[dict[str, Any], float, str | None]:
        queue_full_left = self.queue_full_retries
        reattach_left = self.retries
        queued_at: float | None = None
        queue_ms = 0.0
        preview: str | None = None
        seen: set[tuple[str, str]] = set()

        def stage(e: StageEvent) -> None:
            if e.state != "progress":
                if (e.stage, e.state) in seen:
                    return  # replayed after a re-attach
                seen.add((e.stage, e.state))
            bar.stage(e)
            if on_stage is not None:
                on_stage(e)

        def queued(position: int) -> None:
            bar.queued(position)
            if on_queue is not None:
                on_queue(position)

        while True:
            try:
                ws = self._connect(deadline)
            except SF3DError as e:
                if job_id is not None and e.job_id is None:
                    # Lost while re-attaching: the job was accepted and may still finish.
                    e.job_id = job_id
                    e.message = f"{e}; job {job_id} was accepted: follow it later with wait_for_job({job_id!r})"
                    e.args = (e.message,)
                raise
            # Once a job id is known, a new connection re-attaches to it; it never submits again.
            sent_request = job_id is None
            try:
                hello = _recv(ws, deadline, job_id, self.timeout)
                if hello.get("type") != "hello":
                    raise ProtocolError(f"the server did not greet with hello: {hello}")
                if hello.get("protocol") != PROTOCOL_VERSION:
                    raise ProtocolError(
                        f"the server speaks protocol {hello.get('protocol')} (sf3d-studio "
                        f"{hello.get('server_version')}); this client speaks {PROTOCOL_VERSION}: update one of them"
                    )
                if hello.get("auth_required") and not self.api_key:
                    raise AuthError("the server needs an API key (api_key= or SF3D_API_KEY)", code="unauthorized")
                if job_id is None:
                    assert request is not None
                    ws.send(json.dumps(request))
                    # An image over the socket's limit is refused at once; sending it would only close the socket.
                    if data is not None and len(data) <= int(hello.get("max_upload_bytes", len(data))):
                        ws.send(data)
                else:
                    ws.send(json.dumps({"type": "subscribe", "job_id": job_id}))
                while True:
                    m = _recv(ws, deadline, job_id, self.timeout)
                    kind = m.get("type")
                    if kind == "accepted":
                        job_id = str(m["job_id"])
                        queued_at = time.monotonic()
                        queued(int(m.get("position", 0)))
                    elif kind == "queue":
                        if queued_at is None:
                            queued_at = time.monotonic()
                        queued(int(m.get("position", 0)))
                    elif kind == "status":
                        job_id = str(m.get("job_id", job_id))
                        for s in m.get("stages", []):
                            stage(StageEvent.from_message({"job_id": job_id, **s}))
                    elif kind == "stage":
                        if queued_at is not None:
                            queue_ms = (time.monotonic() - queued_at) * 1e3
                            queued_at = None
                        stage(StageEvent.from_message(m))
                    elif kind == "preview":
                        preview = str(m.get("mesh_id"))
                    elif kind == "done":
                        return m, queue_ms, preview
                    elif kind == "cancelled":
                        raise error_from_code("cancelled", "the job was cancelled on the server", job_id=job_id)
                    elif kind == "error":
                        err = error_from_code(
                            str(m.get("code")),
                            str(m.get("message", "")),
                            field=m.get("field"),
                            job_id=m.get("job_id") or job_id,
                            retry_after=_float_or_none(m.get("retry_after")),
                        )
                        if isinstance(err, QueueFullError) and job_id is None and queue_full_left > 0:
                            # Refused before it was queued: sending it again is safe.
                            queue_full_left -= 1
                            wait = err.retry_after if err.retry_after is not None else _QUEUE_FULL_WAIT
                            if time.monotonic() + wait >= deadline:
                                raise err
                            time.sleep(wait)
                            break
                        raise err
                    # hello (again) and anything newer: ignored.
            except SF3DError:
                raise
            except ConnectionClosed as e:
                closed = _closed_error(e, job_id, sent_request)
                if job_id is not None and reattach_left > 0 and not isinstance(closed, AuthError):
                    reattach_left -= 1
                    continue
                raise closed from e
            except OSError as e:
                if job_id is not None and reattach_left > 0:
                    reattach_left -= 1
                    continue
                raise SF3DConnectionError(f"the connection broke: {_reason(e)}", job_id=job_id) from e
            finally:
                _close(ws)


def _close(ws: ClientConnection) -> None:
    """Closes the socket. websockets' ``close()`` waits until every message that arrived has been read, so what
    is left (an error frame's successors, events of the job) is read and dropped meanwhile."""

    def drain() -> None:
        try:
            while True:
                ws.recv()
        except Exception:  # noqa: BLE001 - ends with the connection, however it ends
            pass

    threading.Thread(target=drain, daemon=True).start()
    ws.close()


def _recv(ws: ClientConnection, deadline: float, job_id: str | None, timeout: float) -> dict[str, Any]:
    """The next JSON message, within the call's deadline."""
    while True:
        left = deadline - time.monotonic()
        try:
            if left <= 0:
                raise TimeoutError
            frame = ws.recv(timeout=left)
        except TimeoutError:
            if job_id:
                raise SF3DTimeoutError(
                    f"no result within {timeout:g} s; job {job_id} was accepted and may still finish: "
                    f"follow it with wait_for_job({job_id!r}) rather than submitting it again",
                    job_id=job_id,
                ) from None
            raise SF3DTimeoutError(f"no answer from the server within {timeout:g} s") from None
        if isinstance(frame, str):
            try:
                m = json.loads(frame)
            except json.JSONDecodeError as e:
                raise ProtocolError(f"the server sent something that is not JSON: {frame[:200]!r}") from e
            if isinstance(m, dict):
                return m
            raise ProtocolError(f"unexpected message from the server: {frame[:200]!r}")


def _closed_error(e: ConnectionClosed, job_id: str | None, sent_request: bool) -> SF3DError:
    close = e.rcvd
    if close is not None and close.code == 1008 and "unauthorized" in close.reason:
        return AuthError("the server refused the API key", code="unauthorized", job_id=job_id)
    why = f": {close.reason}" if close is not None and close.reason else ""
    if job_id is not None:
        text = (
            f"the connection to the server broke{why}; job {job_id} was accepted and may still finish: "
            f"follow it with wait_for_job({job_id!r})"
        )
    elif sent_request:
        text = (
            f"the connection to the server broke{why} after the request was sent; the job may have been accepted "
            "(look in the gallery before sending it again)"
        )
    else:
        text = f"the connection to the server broke{why}"
    return SF3DConnectionError(text, job_id=job_id)


def _handshake_error(status: int, body: bytes | None) -> SF3DError:
    code, message, field = _error_body(body)
    if code:
        return error_from_code(code, message, status=status, field=field)
    if status in (401, 403):
        return AuthError(f"the server refused the WebSocket: HTTP {status}", status=status)
    return ServerError(f"the server refused the WebSocket: HTTP {status}", status=status)


def _error_body(body: bytes | None) -> tuple[str | None, str, str | None]:
    """``(code, message, field)`` of the server's error body (``{"error": {...}}``), if it is one."""
    try:
        detail = json.loads(body or b"")["error"]
        return str(detail["code"]), str(detail.get("message", "")), detail.get("field")
    except (ValueError, KeyError, TypeError):
        return None, "", None


def _http_error(r: requests.Response) -> SF3DError:
    code, message, field = _error_body(r.content)
    retry_after = _float_or_none(r.headers.get("Retry-After"))
    if code:
        return error_from_code(code, message, status=r.status_code, field=field, retry_after=retry_after)
    text = f"{r.request.method} {r.url}: HTTP {r.status_code}"
    if r.status_code in (401, 403):
        return AuthError(text, status=r.status_code)
    if r.status_code == 429:
        return QueueFullError(text, status=r.status_code, retry_after=retry_after)
    return error_from_code("http_" + str(r.status_code), text, status=r.status_code)


def _float_or_none(v: Any) -> float | None:
    try:
        return None if v is None else float(v)
    except (TypeError, ValueError):
        return None


def _reason(e: BaseException) -> str:
    """The innermost cause of a connection error (``Connection refused`` rather than urllib3's wrapping)."""
    while True:
        inner = e.__cause__ or e.__context__ or (e.args[0] if e.args and isinstance(e.args[0], BaseException) else None)
        if inner is None or inner is e:
            break
        e = inner
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return str(e) or type(e).__name__
