"""Wire codes read from the one registry, protocol-spec/registry.json (NDP.md §2).

Nothing in this package types a code by hand. The file is found next to the repository this
package lives in, or at the path in the environment variable ``NDP_REGISTRY``.
"""
import json
import os
from pathlib import Path

from .errors import NdpError


def _registry_path() -> Path:
    override = os.environ.get("NDP_REGISTRY")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[2] / "protocol-spec" / "registry.json"


def _load() -> dict:
    path = _registry_path()
    try:
        with open(path, "rb") as f:
            return json.load(f)
    except OSError as e:
        raise NdpError("NDP_ERR_WORKER_START", f"cannot read the code registry at {path} (set NDP_REGISTRY): {e}") from e


REGISTRY = _load()
MAGIC: int = REGISTRY["frame"]["magic"]
FRAME_HEADER_BYTES: int = REGISTRY["frame"]["headerBytes"]
FRAME_CRC_BYTES: int = REGISTRY["frame"]["crcBytes"]
MAX_PAYLOAD: int = REGISTRY["frame"]["maxPayload"]
SRC = {name: entry["code"] for name, entry in REGISTRY["src"].items()}
DST = {name: entry["code"] for name, entry in REGISTRY["dst"].items()}
TYP = {name: entry["code"] for name, entry in REGISTRY["typ"].items()}
