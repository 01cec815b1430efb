"""Cold start: seconds from a fresh process to the first streamed token, and its peak resident memory, on the
first start (conversion, then packing for the CPU weights) and on a cached start, for the default ``cpu_weights``
and for fp32 in the same run (targets for the default model: first start not slower than fp32's, cached start
under ~10 s). With packed weights it prints their size on disk and peak / packed (target: at most 1.3 on a cached
start; on a first start at most the larger of that and the peak of converting the checkpoint shard by shard,
which ``--local`` ChatGLM3 checkpoints measure in the same run). Figures only.

    .venv/bin/python bench/coldstart.py [--models smollm2-135m qwen2.5-coder-0.5b] [--weights int4 fp32]
    .venv/bin/python bench/coldstart.py --local ~/models/chatglm3-6b --weights auto
    .venv/bin/python bench/coldstart.py --chatglm3-layers 8 --weights auto   # 6B widths, 8 of 28 layers

``--chatglm3-layers N`` writes a ChatGLM3-6B-shaped checkpoint with N layers (random fp16 weights, ``.bin``
shards of ~1.9 GB like the real download, the test fixture's tokenizer) under the temp dir and deletes it after.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
import core  # noqa: E402,F401 - first: offline, no telemetry, no hub kernels (core/offline.py)

GIB = 1024**3
FIXTURE = Path(os.environ.get("CHATGLM3_FIXTURE") or REPO.parent / "shared/fixtures/chatglm3-tiny")


def run_measured(cmd: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Run ``cmd``; seconds to its first byte on stdout, its peak resident GiB (VmHWM of that child alone), and
    the tail of its stderr."""
    with tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=err)
        assert proc.stdout is not None
        proc.stdout.read(1)
        elapsed = time.perf_counter() - start
        proc.stdout.read()
        _pid, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        tail = err.read().decode(errors="replace")[-600:] if proc.returncode else ""
    return elapsed, usage.ru_maxrss * 1024 / GIB, tail


def first_token(home: Path, model: str, weights: str) -> tuple[float, float, str]:
    """Start ``python -m core chat`` with ``cpu_weights = weights``: seconds to its first byte of answer, peak GiB."""
    config = home / "inkstone.toml"
    config.write_text(f'cpu_weights = "{weights}"\n', encoding="utf-8")
    env = {**os.environ, "INKSTONE_HOME": str(home), "INKSTONE_CONFIG": str(config), "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "core", "chat", "--model", model, "--device", "cpu", "--temperature", "0",
           "--max-new-tokens", "8", "Say hello."]
    return run_measured(cmd, env)


def packed_gib(home: Path) -> tuple[str, float] | None:
    """The kind and GiB on disk of the packed CPU weights cached under ``home`` (None: nothing packed)."""
    for meta in (home / "cache").rglob("lowbit.json"):
        kind = json.loads(meta.read_text(encoding="utf-8"))["kind"]
        return kind, sum(p.stat().st_size for p in meta.parent.glob("*.safetensors")) / GIB
    return None


def conversion_peak(src: Path) -> float:
    """Peak resident GiB of converting ChatGLM3 checkpoint ``src`` to native GLM safetensors, shard by shard."""
    with tempfile.TemporaryDirectory(dir=src.parent) as out:
        code = ("import sys; from pathlib import Path; import core; from core.chatglm3 import "
                "convert_chatglm3_checkpoint as c; c(Path(sys.argv[1]), Path(sys.argv[2]) / 'glm'); print('done')")
        _s, peak, tail = run_measured([sys.executable, "-c", code, str(src), out], {**os.environ,
                                                                                    "HF_HUB_OFFLINE": "1"})
        if tail:
            print(tail, file=sys.stderr)
    return peak


def write_chatglm3(dst: Path, layers: int, shard_gb: float = 1.9) -> Path:
    """A ChatGLM3-6B-shaped checkpoint with ``layers`` layers: random fp16 weights in ``torch.save`` shards."""
    import torch

    cfg = json.loads((FIXTURE / "config.json").read_text(encoding="utf-8"))
    cfg |= {"hidden_size": 4096, "ffn_hidden_size": 13696, "kv_channels": 128, "num_attention_heads": 32,
            "multi_query_group_num": 2, "num_layers": layers, "padded_vocab_size": 65024, "vocab_size": 65024,
            "seq_length": 8192, "torch_dtype": "float16"}
    dst.mkdir(parents=True)
    for name in ("tokenizer.model", "tokenizer_config.json"):
        shutil.copy(FIXTURE / name, dst / name)
    (dst / "config.json").write_text(json.dumps(cfg, indent=2), encoding="utf-8")
    shapes = {"transformer.embedding.word_embeddings.weight": (65024, 4096)}
    for i in range(layers):
        p = f"transformer.encoder.layers.{i}."
        shapes |= {p + "input_layernorm.weight": (4096,), p + "self_attention.query_key_value.weight": (4608, 4096),
                   p + "self_attention.query_key_value.bias": (4608,), p + "self_attention.dense.weight": (4096, 4096),
                   p + "post_attention_layernorm.weight": (4096,), p + "mlp.dense_h_to_4h.weight": (27392, 4096),
                   p + "mlp.dense_4h_to_h.weight": (4096, 13696)}
    shapes |= {"transformer.encoder.final_layernorm.weight": (4096,), "transformer.output_layer.weight": (65024, 4096)}
    gen = torch.Generator().manual_seed(0)
    words = 1100  # the fixture tokenizer's pieces and specials: the head answers only with those
    weight_map, shard, size, n = {}, {}, 0, 0

    def flush() -> None:
        nonlocal shard, size, n
        n += 1
        name = f"pytorch_model-{n:05d}.bin"
        torch.save(shard, dst / name)
        weight_map.update(dict.fromkeys(shard, name))
        shard, size = {}, 0

    for name, shape in shapes.items():
        if name.endswith("layernorm.weight"):
            t = torch.ones(shape, dtype=torch.float16)
        else:
            t = (torch.randn(shape, generator=gen) * (0.02 if len(shape) == 2 else 0.1)).half()
        if name.endswith("output_layer.weight"):
            t[words:] = 0
        shard[name] = t
        size += t.numel() * 2
        if size >= shard_gb * 1e9:
            flush()
    if shard:
        flush()
    index = {"metadata": {"total_size": sum(s[0] * (s[1] if len(s) > 1 else 1) * 2 for s in shapes.values())},
             "weight_map": weight_map}
    (dst / "pytorch_model.bin.index.json").write_text(json.dumps(index), encoding="utf-8")
    return dst


def measure(model: str, weights: str, convert_peak: float | None) -> None:
    """One model and setting: a first start on an empty data dir, then a cached start on the same dir."""
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        cold, cold_peak, err1 = first_token(home, model, weights)
        warm, warm_peak, err2 = first_token(home, model, weights)
        packed = packed_gib(home)
    for tail in (err1, err2):
        if tail:
            print(f"  (the command failed: {tail.strip()})")
    print(f"{Path(model).name} cpu_weights={weights}: first token {cold:6.1f} s on first start, {warm:6.1f} s "
          f"cached; peak resident {cold_peak:5.2f} GiB first start, {warm_peak:5.2f} GiB cached", flush=True)
    if packed is not None:
        kind, gib = packed
        line = (f"  packed {kind} weights {gib:.2f} GiB on disk: peak / packed = {cold_peak / gib:.2f} first start, "
                f"{warm_peak / gib:.2f} cached (target <= 1.3")
        if convert_peak is not None:
            line += f"; first start <= max(1.3 x packed = {1.3 * gib:.2f}, conversion peak {convert_peak:.2f} GiB)"
        print(line + ")", flush=True)


def main() -> None:
    """Measure each model and setting cold (empty data dir) and cached (same dir again)."""
    from core.config import Settings

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["smollm2-135m", "qwen2.5-coder-0.5b"])
    p.add_argument("--local", type=Path, help="a local model directory instead of the bundled models")
    p.add_argument("--chatglm3-layers", type=int, help="write and measure a ChatGLM3-6B-shaped checkpoint")
    p.add_argument("--weights", nargs="+", default=[Settings().cpu_weights, "fp32"])
    p.add_argument("--no-conversion", action="store_true", help="skip measuring a ChatGLM3 conversion's peak")
    args = p.parse_args()
    built = None
    if args.chatglm3_layers:
        built = Path(tempfile.mkdtemp(prefix="inkstone-chatglm3-shape-"))
        start = time.perf_counter()
        args.local = write_chatglm3(built / "chatglm3-6b-shape", args.chatglm3_layers)
        size = sum(f.stat().st_size for f in args.local.glob("*.bin")) / GIB
        print(f"wrote a ChatGLM3-6B-shaped checkpoint, {args.chatglm3_layers} of 28 layers, {size:.2f} GiB of fp16 "
              f".bin shards, in {time.perf_counter() - start:.0f} s", flush=True)
    try:
        models = [str(args.local)] if args.local else args.models
        convert_peak = None
        chatglm3 = args.local and json.loads((args.local / "config.json").read_text()).get("model_type") == "chatglm"
        if chatglm3 and not args.no_conversion:
            convert_peak = conversion_peak(args.local)
            print(f"converting it to native GLM safetensors, shard by shard: peak resident {convert_peak:.2f} GiB",
                  flush=True)
        for model in models:
            for weights in args.weights:
                measure(model, weights, convert_peak)
    finally:
        if built is not None:
            shutil.rmtree(built, ignore_errors=True)


if __name__ == "__main__":
    main()
