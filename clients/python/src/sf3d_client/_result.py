"""What a generation returns, and writing it to disk like ``sf3d remote`` does."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

__all__ = ["StageEvent", "StageTiming", "MeshResult", "ServerInfo"]


@dataclass(frozen=True)
class StageEvent:
    """One ``stage`` message of the WebSocket protocol (``docs/protocol.md`` § Stages)."""

    job_id: str
    stage: str
    state: str
    """``started``, ``progress``, ``finished``, ``cached`` or ``skipped``."""
    elapsed_ms: float
    value: Optional[int] = None
    max: Optional[int] = None
    label: Optional[str] = None

    @classmethod
    def from_message(cls, m: dict[str, Any]) -> StageEvent:
        return cls(
            job_id=str(m.get("job_id", "")),
            stage=str(m["stage"]),
            state=str(m["state"]),
            elapsed_ms=float(m.get("elapsed_ms", 0)),
            value=m.get("value"),
            max=m.get("max"),
            label=m.get("label"),
        )


@dataclass(frozen=True)
class StageTiming:
    """The server's wall time of one stage."""

    stage: str
    ms: float
    state: str


@dataclass
class ServerInfo:
    """What :meth:`SF3DClient.test_connection` found (``GET /api/health`` and the seed's ``GET /health``)."""

    status: str
    """``ok``, ``degraded`` (every worker dead) or ``shutting_down``."""
    version: str
    protocol: int
    model: str
    test_model: bool
    """True for the built-in test model: its meshes are meaningless shapes."""
    device: str
    """The first worker's device, e.g. ``cuda:0 NVIDIA H100 80GB HBM3`` or ``cpu (8 threads)``."""
    device_kind: str
    """``cuda``, ``metal`` or ``cpu`` (the seed's ``gpu`` field)."""
    workers: list[dict[str, Any]]
    queue: dict[str, Any]
    auth_required: bool
    health: dict[str, Any] = field(repr=False)
    """The whole ``GET /api/health`` answer."""
    seed_health: dict[str, Any] = field(repr=False)
    """The whole ``GET /health`` answer."""

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def _write_atomic(path: Path, data: bytes) -> None:
    """Writes ``data`` to a temporary file next to ``path`` and renames it over ``path``."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _json_bytes(value: Any) -> bytes:
    # What `sf3d remote` writes: serde_json's pretty printer (two spaces, keys in order, UTF-8, no newline).
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False).encode("utf-8")


@dataclass
class MeshResult:
    """A generated mesh: the GLB, the server's metadata and the client's own figures."""

    glb: bytes
    mesh_id: str
    job_id: str
    metadata: dict[str, Any]
    """The server's ``metadata.json`` of the mesh (params, model, device, timings, counts, …)."""
    urls: dict[str, str]
    server: str
    round_trip_ms: float
    """Upload → GLB downloaded, as seen by this client."""
    queue_ms: float
    """Time the job waited in the server's queue."""
    preview_mesh_id: Optional[str] = None
    """The quick preview's gallery id, when the request asked for ``preview=True``."""

    @property
    def timings(self) -> list[StageTiming]:
        """The server's per-stage wall times, in pipeline order."""
        return [StageTiming(str(t["stage"]), float(t["ms"]), str(t["state"])) for t in self.metadata.get("timings", [])]

    @property
    def server_ms(self) -> float:
        """The server's total time of the job's stages."""
        return float(self.metadata.get("total_ms", 0.0))

    def metadata_with_client(self) -> dict[str, Any]:
        """The metadata plus the ``client`` section (``server``, ``round_trip_ms``, ``queue_ms``), as
        ``sf3d remote`` writes it."""
        meta = dict(self.metadata)
        meta["client"] = {"server": self.server, "round_trip_ms": self.round_trip_ms, "queue_ms": self.queue_ms}
        return meta

    def save(self, out_dir: str | os.PathLike[str]) -> Path:
        """Writes ``mesh.glb`` and ``metadata.json`` into ``out_dir`` (created), like ``sf3d remote --out``.
        Returns the path of ``mesh.glb``."""
        d = Path(out_dir)
        d.mkdir(parents=True, exist_ok=True)
        _write_atomic(d / "mesh.glb", self.glb)
        _write_atomic(d / "metadata.json", _json_bytes(self.metadata_with_client()))
        return d / "mesh.glb"

    def save_into(self, folder: str | os.PathLike[str]) -> Path:
        """The seed pipeline's case, like ``sf3d remote --into``: writes ``mesh.glb`` into an existing output
        folder and merges a ``mesh`` section (the metadata, the ``client`` section and ``"file": "mesh.glb"``)
        into its ``metadata.json`` (created when missing), keeping every other key. Returns the path of
        ``metadata.json``."""
        d = Path(folder)
        if not d.is_dir():
            raise NotADirectoryError(f"{d} is not an existing folder (save_into expects the pipeline's output folder)")
        meta_path = d / "metadata.json"
        try:
            root = json.loads(meta_path.read_bytes())
        except FileNotFoundError:
            root = {}
        except json.JSONDecodeError as e:
            raise ValueError(f"{meta_path} is not JSON: {e}") from e
        if not isinstance(root, dict):
            raise ValueError(f"{meta_path} is not a JSON object")
        _write_atomic(d / "mesh.glb", self.glb)
        section = self.metadata_with_client()
        section["file"] = "mesh.glb"
        root["mesh"] = section
        _write_atomic(meta_path, _json_bytes(root))
        return meta_path
