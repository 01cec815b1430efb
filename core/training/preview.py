"""After training: a few prompts answered with and without the persona, side by side, and a plain verdict.

The prompts are held-out examples (never trained on) when the run kept a held-out split, else examples from the
data. Each answer is compared with the data's own answer for that prompt: an answer "shows the persona" when it
shares clearly more of the data answer's wording (character 3-grams, so Chinese works too) than the base model's
answer does. The verdict is "took" when most preview answers show the persona and the held-out loss fell well below
the base model's; otherwise "weak, train longer", with the command that continues the run.
"""

from __future__ import annotations

import math
import re
import shlex
from dataclasses import dataclass, field
from typing import Any

from core.training.data import Example

SHOWS_MARGIN = 0.15
"""How much more of the data answer's 3-grams the persona's answer must share than the base's."""
LOSS_DROP = 0.2
"""The held-out loss must fall at least this fraction below the base model's for "took"."""
TOOK = "took"
WEAK = "weak, train longer"


@dataclass(frozen=True)
class PreviewItem:
    """One prompt, the data's answer, and the answers with and without the persona."""

    prompt: str
    expected: str
    persona: str
    base: str
    shows: bool


@dataclass
class Preview:
    """Side-by-side answers and the verdict."""

    items: list[PreviewItem]
    source: str
    """"held-out" (unseen in training) or "training" (no held-out split)."""
    verdict: str = WEAK
    reason: str = ""
    resume_command: str = ""
    eval_loss: float | None = None
    base_eval_loss: float | None = None
    notes: list[str] = field(default_factory=list)

    def text(self, width: int = 160) -> str:
        """The preview as the CLI and the job log print it."""
        lines = [f"Preview on {len(self.items)} {self.source} prompts (greedy; with the persona | without):"]
        for i, item in enumerate(self.items, start=1):
            lines += [f"  {i}. {_clip(item.prompt, width)}",
                      f"     persona{' ✓' if item.shows else '  '}: {_clip(item.persona, width)}",
                      f"     base     : {_clip(item.base, width)}"]
        lines.append(f"Verdict: {self.verdict} — {self.reason}")
        if self.verdict != TOOK and self.resume_command:
            lines.append(f"  Continue training: {self.resume_command}")
        return "\n".join(lines)

    def record(self) -> dict[str, Any]:
        """The ``[training.preview]`` table of persona.toml."""
        return {"verdict": self.verdict, "reason": self.reason, "source": self.source,
                "prompts": [i.prompt for i in self.items], "persona": [i.persona for i in self.items],
                "base": [i.base for i in self.items], "shows": [i.shows for i in self.items],
                "resume_command": self.resume_command or None}


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def grams(text: str, n: int = 3) -> set[str]:
    """Character n-grams of ``text`` (lowercased, whitespace collapsed)."""
    text = re.sub(r"\s+", " ", text.lower()).strip()
    return {text[i: i + n] for i in range(max(1, len(text) - n + 1))} if text else set()


def overlap(answer: str, expected: str) -> float:
    """Share of ``expected``'s 3-grams that ``answer`` also has (0..1)."""
    want = grams(expected)
    return len(grams(answer) & want) / len(want) if want else 0.0


def shows_persona(persona: str, base: str, expected: str) -> bool:
    """True when the persona's answer is clearly closer to the data's answer than the base model's."""
    return persona.strip() != base.strip() and overlap(persona, expected) - overlap(base, expected) >= SHOWS_MARGIN


def verdict(items: list[PreviewItem], eval_loss: float | None, base_eval_loss: float | None) -> tuple[str, str]:
    """("took" or "weak, train longer", why in one sentence)."""
    shown = sum(i.shows for i in items)
    need = math.ceil(len(items) * 2 / 3)
    loss_note, loss_ok = "", True
    if eval_loss is not None and base_eval_loss is not None and base_eval_loss > 0:
        drop = 1 - eval_loss / base_eval_loss
        loss_ok = drop >= LOSS_DROP
        change = f"{drop:.0%} lower" if drop >= 0 else f"{-drop:.0%} higher"
        loss_note = f"; held-out loss {eval_loss:.3f} vs {base_eval_loss:.3f} for the base ({change})"
    if items and shown >= need and loss_ok:
        return TOOK, f"the persona shows in {shown} of {len(items)} answers{loss_note}."
    why = f"the persona shows in only {shown} of {len(items)} answers" if shown < need else \
        "the answers changed but the held-out loss barely fell"
    return WEAK, f"{why}{loss_note}."


def generate(model: Any, codec: Any, context: list[dict[str, str]], max_new_tokens: int) -> str:
    """A greedy answer of ``model`` (as it is: adapter on or off) to ``context``."""
    import torch

    ids = codec.prompt_ids(context)
    device = next(model.parameters()).device
    inputs = torch.tensor([ids], device=device)
    with torch.inference_mode():
        out = model.generate(input_ids=inputs, attention_mask=torch.ones_like(inputs), max_new_tokens=max_new_tokens,
                             do_sample=False, eos_token_id=list(codec.stop_ids),
                             pad_token_id=getattr(codec, "pad_id", None) or codec.stop_ids[0])
    return codec.decode(out[0, len(ids):].tolist()).strip()


def answer_budget(codec: Any, expected: str) -> int:
    """New tokens for a preview answer: the data answer's length and some room, 24 to 128."""
    try:
        n = len(codec.tokenizer.encode(expected, add_special_tokens=False))
    except (AttributeError, TypeError):
        n = len(expected) // 2
    return max(24, min(128, n + 16))


def run_preview(peft_model: Any, codec: Any, examples: list[Example], source: str, *,
                eval_loss: float | None = None, base_eval_loss: float | None = None,
                resume_command: str = "") -> Preview:
    """Answer each example's prompt with the adapter and without it (``disable_adapter``) and judge the result."""
    was_training = peft_model.training
    peft_model.eval()
    items = []
    try:
        for example in examples:
            budget = answer_budget(codec, example.answer)
            with_persona = generate(peft_model, codec, example.context, budget)
            with peft_model.disable_adapter():
                without = generate(peft_model, codec, example.context, budget)
            items.append(PreviewItem(example.context[-1]["content"], example.answer, with_persona, without,
                                     shows_persona(with_persona, without, example.answer)))
    finally:
        peft_model.train(was_training)
    result = Preview(items, source, eval_loss=eval_loss, base_eval_loss=base_eval_loss,
                     resume_command=resume_command)
    result.verdict, result.reason = verdict(items, eval_loss, base_eval_loss)
    return result


def resume_command(options: Any, steps: int) -> str:
    """``python -m core train ... --resume --steps N`` with the flags this run was given (so the split, the
    adapter's shape and the prompts match)."""
    parts = ["python", "-m", "core", "train", "--base", options.base, "--data", str(options.data),
             "--persona", options.persona]
    flags = {"--system": options.system, "--lr": options.lr, "--rank": options.rank, "--alpha": options.alpha,
             "--holdout": options.holdout, "--max-length": options.max_length if options.max_length != 512 else None,
             "--batch-size": options.batch_size if options.batch_size != 4 else None,
             "--grad-accum": options.grad_accum if options.grad_accum != 1 else None,
             "--seed": options.seed if options.seed != 42 else None}
    for flag, value in flags.items():
        if value is not None:
            parts += [flag, str(value)]
    if options.target_modules is not None:
        parts += ["--target-modules", *options.target_modules]
    if options.qlora:
        parts.append("--qlora")
    parts += ["--resume", "--steps", str(steps)]
    return shlex.join(parts)
