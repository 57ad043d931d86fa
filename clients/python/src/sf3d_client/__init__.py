"""Python client of SF3D Studio (``sf3d serve``): image in, GLB mesh out, with live stage progress.

>>> from sf3d_client import SF3DClient
>>> client = SF3DClient("http://lab-gpu:9299", api_key="...")
>>> client.test_connection().model
>>> result = client.generate_mesh("shirt.png", texture_resolution=1024, on_stage=print)
>>> result.save_into("out/20261127_103000")   # mesh.glb + a `mesh` section in metadata.json

See ``docs/clients.md`` of the repository.
"""

from ._client import DEFAULT_SERVER, PROTOCOL_VERSION, STAGES, SF3DClient
from ._images import encode_png
from ._result import MeshResult, ServerInfo, StageEvent, StageTiming
from .errors import (
    AuthError,
    BadInputError,
    JobCancelledError,
    NotFoundError,
    ProtocolError,
    QueueFullError,
    ServerError,
    SF3DConnectionError,
    SF3DError,
    SF3DTimeoutError,
)

__version__ = "0.1.0"

__all__ = [
    "SF3DClient",
    "MeshResult",
    "ServerInfo",
    "StageEvent",
    "StageTiming",
    "STAGES",
    "PROTOCOL_VERSION",
    "DEFAULT_SERVER",
    "encode_png",
    "SF3DError",
    "SF3DConnectionError",
    "AuthError",
    "QueueFullError",
    "BadInputError",
    "NotFoundError",
    "SF3DTimeoutError",
    "JobCancelledError",
    "ServerError",
    "ProtocolError",
]
