"""The policy bundle's manifest, readable without torch: its format id, file names, and the
checks a reader runs before trusting a bundle (``verify_bundle``): the manifest parses to a
JSON object with every required field, every file it names is present with the sha256 it
records. The store, the dashboard and the executor use this module; ``policy.py`` adds the
network (torch) on top.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from raytrade.envs.errors import RaytradeError

BUNDLE_FORMAT = "raytrade.policy/1"
MANIFEST = "manifest.json"
WEIGHTS = "weights.safetensors"
REQUIRED = ("format", "files", "observation", "actions", "feature_spec", "feature_spec_hash",
            "normalizer", "network")


class PolicyRejectedError(RaytradeError):
    """A bundle failed validation; ``reason`` says which check and why."""

    def __init__(self, reason: str, version: int | None = None) -> None:
        self.reason = reason
        self.version = version
        where = f"policy v{version:06d}: " if version is not None else "policy bundle: "
        super().__init__(where + reason)


def parse_manifest(data: bytes, version: int | None = None) -> dict[str, Any]:
    """The manifest's JSON object; ``PolicyRejectedError`` if it does not parse to one."""
    try:
        manifest = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PolicyRejectedError(f"manifest.json is malformed: {exc}", version) from exc
    if not isinstance(manifest, dict):
        raise PolicyRejectedError("manifest.json is not a JSON object", version)
    return manifest


def verify_bundle(files: Mapping[str, bytes], version: int | None = None) -> dict[str, Any]:
    """The parsed manifest, after checking it and every file's sha256; ``PolicyRejectedError``
    naming the first problem otherwise."""
    if MANIFEST not in files:
        raise PolicyRejectedError("no manifest.json (an incomplete upload is invisible)", version)
    manifest = parse_manifest(files[MANIFEST], version)
    missing = [k for k in REQUIRED if k not in manifest]
    if missing:
        raise PolicyRejectedError(f"manifest.json lacks {missing}", version)
    if manifest["format"] != BUNDLE_FORMAT:
        raise PolicyRejectedError(f"unsupported bundle format {manifest['format']!r} "
                             f"(this reader knows {BUNDLE_FORMAT})", version)
    listed = manifest["files"]
    if not isinstance(listed, dict) or WEIGHTS not in listed:
        raise PolicyRejectedError(f"manifest.json must list {WEIGHTS} with its sha256", version)
    if version is not None and manifest.get("version") not in (None, version):
        raise PolicyRejectedError(f"manifest says version {manifest.get('version')}, the "
                             f"store folder says {version}", version)
    for name, digest in listed.items():
        if name not in files:
            raise PolicyRejectedError(f"manifest names {name}, which is missing", version)
        actual = hashlib.sha256(files[name]).hexdigest()
        if actual != digest:
            raise PolicyRejectedError(f"{name}: sha256 {actual[:12]}... does not match the "
                                 f"manifest's {str(digest)[:12]}... (truncated or altered)",
                                 version)
    return manifest
