#!/bin/bash
# ChatGLM3-6B on a GPU without the real weights: builds a ChatGLM3-6B-shaped checkpoint with random bf16 weights
# (6.24 B parameters, 12.5 GB; the tokenizer of CHATGLM3_FIXTURE), then trains 12 steps of a LoRA persona with
# `python -m core train`, once with --qlora (4-bit nf4 base) and once on the bf16 base, and prints seconds per
# run and the peak GPU memory nvidia-smi saw. Needs a CUDA GPU with ~30 GB free and ~26 GB of disk in $W.
#
#   CHATGLM3_FIXTURE=../shared/fixtures/chatglm3-tiny bash bench/chatglm3_6b_train.sh
set -u
cd "$(dirname "$0")/.."
W=${W:-${TMPDIR:-/tmp}/inkstone-6b}; mkdir -p "$W"
export FIXTURE=${CHATGLM3_FIXTURE:-../shared/fixtures/chatglm3-tiny} W
${PYTHON:-python3} - <<'PY'
import json, shutil, time, torch
from pathlib import Path
from safetensors.torch import save_file
import os
src = Path(os.environ["FIXTURE"]); dst = Path(os.environ["W"]) / "chatglm3-6b-shaped"; dst.mkdir(parents=True, exist_ok=True)
cfg = json.loads((src / "config.json").read_text())
cfg.update(num_layers=28, hidden_size=4096, ffn_hidden_size=13696, num_attention_heads=32, kv_channels=128,
           multi_query_group_num=2, padded_vocab_size=65024, seq_length=8192, torch_dtype="bfloat16")
t = time.time(); g = torch.Generator(device="cuda").manual_seed(0); sd = {}
def r(*shape, std=0.02):
    return (torch.randn(*shape, device="cuda", generator=g, dtype=torch.bfloat16) * std).cpu()
h, f, v, L = 4096, 13696, 65024, 28; qkv = (32 + 2 * 2) * 128
sd["transformer.embedding.word_embeddings.weight"] = r(v, h); sd["transformer.output_layer.weight"] = r(v, h)
sd["transformer.encoder.final_layernorm.weight"] = torch.ones(h, dtype=torch.bfloat16)
for i in range(L):
    p = f"transformer.encoder.layers.{i}."
    sd[p + "input_layernorm.weight"] = torch.ones(h, dtype=torch.bfloat16)
    sd[p + "post_attention_layernorm.weight"] = torch.ones(h, dtype=torch.bfloat16)
    sd[p + "self_attention.query_key_value.weight"] = r(qkv, h); sd[p + "self_attention.query_key_value.bias"] = r(qkv, std=0.0)
    sd[p + "self_attention.dense.weight"] = r(h, 32 * 128); sd[p + "mlp.dense_h_to_4h.weight"] = r(2 * f, h)
    sd[p + "mlp.dense_4h_to_h.weight"] = r(h, f)
sd["transformer.rotary_pos_emb.inv_freq"] = 1.0 / 10000 ** (torch.arange(0, 64, 2, dtype=torch.float) / 64)
print("params", sum(x.numel() for x in sd.values()) / 1e9, "B")
save_file(sd, str(dst / "model.safetensors"), metadata={"format": "pt"})
(dst / "config.json").write_text(json.dumps(cfg))
for n in ("tokenizer.model", "tokenizer_config.json", "generation_config.json"):
    if (src / n).is_file(): shutil.copy(src / n, dst / n)
words = "the keeper of the lighthouse writes a long letter about the sea the storm the ships and the light".split()
with open(Path(os.environ["W"]) / "data.jsonl", "w") as fh:
    for i in range(40):
        fh.write(json.dumps({"instruction": f"Tell me about night {i} at the lighthouse.", "output": " ".join(words[(i + k) % len(words)] for k in range(150))}) + "\n")
print("built in", round(time.time() - t, 1), "s")
PY
ls -la $W/chatglm3-6b-shaped
for mode in qlora bf16; do
  extra=""; [ $mode = qlora ] && extra="--qlora"
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 500 > $W/mem-$mode.txt &
  smi=$!
  start=$(date +%s)
  INKSTONE_HOME=$W/home-$mode INKSTONE_ADAPTERS=$W/ad-$mode timeout 200 ${PYTHON:-python3} -m core train --base $W/chatglm3-6b-shaped \
    --data $W/data.jsonl --persona p$mode --steps 12 --preview 0 --holdout 0 $extra 2>&1 | grep -v Warning | tail -25
  kill $smi; echo "$mode: wall $(( $(date +%s) - start )) s, peak GPU memory used $(sort -n $W/mem-$mode.txt | tail -1) MiB (idle $(sort -n $W/mem-$mode.txt | head -1))"
done
