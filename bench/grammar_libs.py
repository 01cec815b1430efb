"""llguidance against lm-format-enforcer on the bundled qwen2.5-coder-0.5b tokenizer (issue 21: measure two).

Only the tokenizer is loaded (from the bundled GGUF's metadata, joined into a temporary dir and removed after; or
``--tokenizer DIR``, a converted model dir), never the weights. For three JSON schemas (a flat object; tool-call
arguments with a nested object and an enum; a list of objects) it times, per library:

- setup: the one-time work per tokenizer (llguidance's token trie via ``core.generation.constrain``; LMFE's
  regular-token list and prefix tree, built as its transformers integration builds it), plus one walk of the flat
  answer that carries the imports and what each library does lazily on first use (llguidance: ~2 s on its first
  mask);
- compile: per schema (llguidance: schema to grammar plus the matcher; LMFE: the ``JsonSchemaParser`` and its
  ``TokenEnforcer``);
- 1st mask: the first allowed-token mask of a fresh compile (both do part of the compile lazily);
- mask: per later step while walking a fixed valid answer token by token (its ids from the tokenizer), mean and
  p95, as a boolean mask over the vocabulary (llguidance: ``Constraint.allow``, what Inkstone's sampler calls).
  Torch runs on one thread here: on a busy machine a multi-threaded op over a 151k-entry row stalled ~100 ms a
  step (llguidance's mask took 100 ms a step, 0.8 ms with one thread), which measures the machine, not the library.

Both must allow every token of the answer and then the end token, and both must refuse the letter ``a`` at the
start and wherever the answer so far ends in ``{``, ``[``, ``, `` or ``: `` (a bracket or a quote must come); the
bench stops with an error otherwise. (llguidance allows only the tokenizer's own token where text is forced: after
nothing, ``{"`` and not ``{``.)

    .venv/bin/python bench/grammar_libs.py [--tokenizer DIR] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SCHEMAS: dict[str, tuple[dict[str, Any], Any]] = {
    "flat": (
        {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
         "required": ["name", "age"]},
        {"name": "Ada Lovelace", "age": 36},
    ),
    "tool_args": (
        {"type": "object", "properties": {
            "city": {"type": "string"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            "when": {"type": "object", "properties": {"date": {"type": "string"}, "hour": {"type": "integer"}},
                     "required": ["date", "hour"]},
        }, "required": ["city", "unit", "when"]},
        {"city": "Lisbon", "unit": "celsius", "when": {"date": "2026-12-04", "hour": 18}},
    ),
    "list": (
        {"type": "array", "items": {"type": "object", "properties": {
            "title": {"type": "string"}, "year": {"type": "integer"}, "tags": {"type": "array",
                                                                             "items": {"type": "string"}}},
            "required": ["title", "year", "tags"]}},
        [{"title": "Dune", "year": 1965, "tags": ["sf", "desert"]},
         {"title": "Solaris", "year": 1961, "tags": ["sf"]},
         {"title": "Emma", "year": 1815, "tags": []}],
    ),
}


def load_tokenizer(directory: str | None) -> tuple[Any, str]:
    """The tokenizer of the bundled qwen2.5-coder-0.5b (from its GGUF) or of ``directory``; and where it came from."""
    from transformers import AutoTokenizer

    if directory:
        return AutoTokenizer.from_pretrained(directory), directory
    from core.models import bundled

    source = bundled.source_for("qwen2.5-coder-0.5b")
    with tempfile.TemporaryDirectory(prefix="inkstone-grammar-") as tmp:
        gguf = bundled.assemble(source, Path(tmp))
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    return tokenizer, f"bundled {source.gguf_name} (tokenizer only)"


def lmfe_tokenizer_data(tokenizer: Any) -> Any:
    """LMFE's per-tokenizer data, built as ``lmformatenforcer.integrations.transformers`` builds it (that module
    does not import under transformers 5: it imports ``transformers.tokenization_utils``)."""
    from lmformatenforcer import TokenEnforcerTokenizerData

    vocab = len(tokenizer)
    special = set(tokenizer.all_special_ids)
    token_0 = tokenizer.encode("0")[-1]
    regular = []
    for idx in range(vocab):
        if idx in special:
            continue
        after_0 = tokenizer.decode([token_0, idx])[1:]
        regular.append((idx, after_0, len(after_0) > len(tokenizer.decode([idx]))))

    def decode(ids: list[int]) -> str:
        return str(tokenizer.decode(ids)).rstrip("\ufffd")

    return TokenEnforcerTokenizerData(regular, decode, tokenizer.eos_token_id, False, vocab)


class Llg:
    """llguidance through Inkstone's own wrapper."""

    name = "llguidance"

    def __init__(self, codec: Any) -> None:
        from core.generation import constrain

        self.codec = codec
        constrain._tokenizer(codec)
        self.vocab = len(codec.tokenizer)

    def compile(self, schema: dict[str, Any]) -> Any:
        from core.generation.constrain import Grammar, compile_for

        return compile_for(self.codec, Grammar.json_schema(schema))

    def mask(self, state: Any, done: list[int]) -> Any:
        import torch

        return torch.isfinite(state.allow(torch.zeros(1, self.vocab)))[0]

    def consume(self, state: Any, done: list[int], token: int) -> None:
        state.consume(token)


class Lmfe:
    """lm-format-enforcer's ``TokenEnforcer`` (state keyed by the tokens so far)."""

    name = "lm-format-enforcer"

    def __init__(self, tokenizer: Any) -> None:
        self.data = lmfe_tokenizer_data(tokenizer)
        self.vocab = len(tokenizer)

    def compile(self, schema: dict[str, Any]) -> Any:
        from lmformatenforcer import JsonSchemaParser, TokenEnforcer

        return TokenEnforcer(self.data, JsonSchemaParser(schema))

    def mask(self, state: Any, done: list[int]) -> Any:
        import torch

        allowed = torch.zeros(self.vocab, dtype=torch.bool)
        allowed[state.get_allowed_tokens(done).allowed_tokens] = True
        return allowed

    def consume(self, state: Any, done: list[int], token: int) -> None:
        pass  # the next get_allowed_tokens call takes the longer sequence


def walk(lib: Any, schema: dict[str, Any], ids: list[int], eos: int, letter: int, text: Any
         ) -> tuple[float, list[float]]:
    """Compile, then mask and advance along ``ids``; (compile seconds, per-step mask seconds). Checks that every
    token of the answer and then the end token is allowed, and that ``letter`` is refused wherever the answer so far
    (``text`` of the ids) ends outside a string where a bracket, a key's or a value's quote must come."""
    refused = 0
    started = time.perf_counter()
    state = lib.compile(schema)
    compile_s = time.perf_counter() - started
    steps: list[float] = []
    done: list[int] = []
    for token in [*ids, None]:
        started = time.perf_counter()
        allowed = lib.mask(state, done)
        steps.append(time.perf_counter() - started)
        if not done or text(done).endswith(("{", "[", ", ", ": ")):
            if bool(allowed[letter]):
                raise SystemExit(f"{lib.name} allows a letter after {text(done)!r}")
            refused += 1
        if token is None:
            if not bool(allowed[eos]):
                raise SystemExit(f"{lib.name} does not allow the end token after the complete answer")
            break
        if not bool(allowed[token]):
            raise SystemExit(f"{lib.name} refuses token {len(done)} ({token}) of a valid answer")
        lib.consume(state, done, token)
        done = [*done, token]
    if refused < 2:
        raise SystemExit(f"the letter check ran {refused} times: pick an answer with more structure")
    return compile_s, steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokenizer", help="a model dir whose tokenizer to use instead of the bundled Qwen GGUF's")
    parser.add_argument("--repeat", type=int, default=3, help="walks per schema and library (fresh compile each)")
    args = parser.parse_args()
    import torch

    # One thread for the mask's tensor ops: on a busy 2-core machine a multi-threaded op over a 151k-entry row
    # stalls ~100 ms a step waiting for its threads, which measures the machine, not the library.
    torch.set_num_threads(1)
    from core.models.codec import HFChatCodec

    started = time.perf_counter()
    tokenizer, origin = load_tokenizer(args.tokenizer)
    print(f"tokenizer: {origin}, {len(tokenizer):,} tokens, loaded in {time.perf_counter() - started:.1f} s")
    codec = HFChatCodec(tokenizer, None, origin)
    eos = int(tokenizer.eos_token_id)
    letter = tokenizer.convert_tokens_to_ids("a")
    decode = tokenizer.decode

    rows = []
    for make in (lambda: Llg(codec), lambda: Lmfe(tokenizer)):
        started = time.perf_counter()
        lib = make()
        schema, answer = SCHEMAS["flat"]  # one walk counted as setup: imports and first-use (lazy) costs
        walk(lib, schema, tokenizer.encode(json.dumps(answer), add_special_tokens=False), eos, letter, decode)
        setup = time.perf_counter() - started
        for name, (schema, answer) in SCHEMAS.items():
            text = json.dumps(answer)
            ids = tokenizer.encode(text, add_special_tokens=False)
            compiles, firsts, steps = [], [], []
            for _ in range(args.repeat):
                compile_s, step_s = walk(lib, schema, ids, eos, letter, decode)
                compiles.append(compile_s)
                firsts.append(step_s[0])
                steps.extend(step_s[1:])
            steps.sort()
            p95 = steps[min(len(steps) - 1, int(0.95 * len(steps)))]
            rows.append((lib.name, setup, name, len(ids), statistics.median(compiles), statistics.median(firsts),
                         statistics.mean(steps), p95))

    print(f"\n{'library':<19}{'setup s':>9}  {'schema':<10}{'tokens':>7}{'compile ms':>12}{'1st mask ms':>13}"
          f"{'mask mean ms':>14}{'mask p95 ms':>13}")
    for lib_name, setup, name, n, comp, first, mean, p95 in rows:
        print(f"{lib_name:<19}{setup:>9.2f}  {name:<10}{n:>7}{comp * 1e3:>12.2f}{first * 1e3:>13.2f}"
              f"{mean * 1e3:>14.3f}{p95 * 1e3:>13.3f}")
    llg = [r for r in rows if r[0] == "llguidance"]
    lmfe = [r for r in rows if r[0] != "llguidance"]
    ratio = statistics.mean(b[6] for b in lmfe) / statistics.mean(a[6] for a in llg)
    faster = "llguidance" if ratio >= 1 else "lm-format-enforcer"
    print(f"\nverdict: both accept every answer; per-step mask lm-format-enforcer/llguidance = {ratio:.1f}x, setup "
          f"{llg[0][1]:.1f} s vs {lmfe[0][1]:.1f} s; {faster} is faster per step.")


if __name__ == "__main__":
    main()
