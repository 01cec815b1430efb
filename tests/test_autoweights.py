"""``cpu_weights = "auto"``: the candidates are timed once on this CPU and the choice is saved beside the model's
packed copies; a start on the same CPU reuses it, a changed CPU signature times them again, and the quality rule
keeps int4 out unless its measured perplexity change is within 0.5%.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.config import Settings, load_settings
from core.models import autoweights
from core.models.loader import load_model
from core.models.registry import resolve
from tests.fixtures_native import make_native_checkpoint


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama checkpoint (hidden 64)."""
    return make_native_checkpoint("llama", tmp_path_factory.mktemp("auto") / "tiny-llama")


def _load(model: Path, home: Path, notes: list[str] | None = None):  # noqa: ANN202
    settings = load_settings({"home": str(home), "model": str(model), "device": "cpu"})
    assert settings.cpu_weights == "auto"  # the default
    return load_model(resolve(str(model)), settings, notes.append if notes is not None else None)


def test_auto_is_the_default_and_accepted() -> None:
    """The setting defaults to auto; an unknown value names the accepted ones."""
    from core.errors import ConfigError

    assert Settings().cpu_weights == "auto"
    with pytest.raises(ConfigError, match="auto, int4, int8, bf16 or fp32"):
        load_settings({"cpu_weights": "int2"})


def test_choice_is_timed_once_saved_and_redone_on_another_cpu(
    tiny_llama: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first start times the candidates and saves the choice; the next start reuses it without timing;
    a different CPU signature (another CPU, flags or thread count) times them again."""
    timed: list[list[str]] = []
    real = autoweights.time_candidates

    def counting(shapes, candidates, steps=6):  # noqa: ANN001, ANN202
        timed.append(list(candidates))
        return real(shapes, candidates, steps)

    monkeypatch.setattr(autoweights, "time_candidates", counting)
    notes: list[str] = []
    first = _load(tiny_llama, tmp_path, notes)
    assert len(timed) == 1 and any("Timing the CPU weight choices" in n for n in notes)
    record = first.cpu_weights_auto
    assert record is not None and first.cpu_weights == record["choice"]
    assert set(record["ms_per_step"]) == set(timed[0]) and record["choice"] in record["ms_per_step"]
    assert record["choice"] == min(record["ms_per_step"], key=record["ms_per_step"].get)
    assert "int4" in record["excluded"] and "no measured perplexity" in record["excluded"]["int4"]
    saved = list((tmp_path / "cache" / "lowbit").glob("*.auto.json"))
    assert len(saved) == 1 and json.loads(saved[0].read_text())["choice"] == first.cpu_weights

    again = _load(tiny_llama, tmp_path)
    assert len(timed) == 1 and again.cpu_weights == first.cpu_weights  # read, not timed

    monkeypatch.setattr(autoweights, "cpu_signature", lambda: ("Another CPU", "0123456789abcdef"))
    _load(tiny_llama, tmp_path)
    assert len(timed) == 2
    assert json.loads(saved[0].read_text())["cpu"] == "Another CPU"


def test_quality_rule_leaves_out_a_candidate_that_fails_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """int4 with a declared perplexity change above 0.5% is never timed nor chosen; within 0.5% it competes."""
    shapes = [(256, 256, False)] * 4 + [(512, 256, True)]
    monkeypatch.setitem(autoweights.DECLARED_PPL_DELTA, ("some-model", "int4"), 0.8)
    made = autoweights.choose(tmp_path / "a.json", lambda: shapes, "some-model", lambda _k: True)
    assert "int4" not in made.ms_per_step and made.choice != "int4"
    assert "+0.80%" in made.excluded["int4"] and "0.5% rule" in made.excluded["int4"]
    assert set(made.ms_per_step) == {"int8", "bf16", "fp32"}
    monkeypatch.setitem(autoweights.DECLARED_PPL_DELTA, ("some-model", "int4"), 0.3)
    made = autoweights.choose(tmp_path / "b.json", lambda: shapes, "some-model", lambda _k: True)
    assert "int4" in made.ms_per_step and "int4" not in made.excluded
    assert "auto chose" in made.summary() and made.choice in made.summary()


def test_a_candidate_without_a_fast_kernel_is_left_out(tmp_path: Path) -> None:
    """A CPU without the int4/int8 kernels gets bf16 or fp32, saying why the others were left out."""
    made = autoweights.choose(tmp_path / "c.json", lambda: [(64, 64, True)], None, lambda k: k in ("bf16", "fp32"))
    assert made.choice in ("bf16", "fp32") and "no fast kernel" in made.excluded["int8"]


def test_gguf_shapes_match_the_model() -> None:
    """The Linear shapes read from the bundled SmolLM2 GGUF's tensor table: 30 layers x 7 and the tied head."""
    from core.models import bundled

    shapes = autoweights.gguf_shapes(bundled.source_for("smollm2-135m").parts[0])
    assert len(shapes) == 211 and shapes[-1] == (49152, 576, True)
    assert (1536, 576, False) in shapes and (576, 1536, False) in shapes and (192, 576, False) in shapes


def test_inspect_and_settings_page_show_the_choice(
    tiny_llama: Path, home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a start, ``model inspect`` lists the saved choice with each candidate's figure, and the Model &
    settings page says which weights were chosen and why."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from core.cli.model import main

    monkeypatch.setenv("INKSTONE_MODEL", str(tiny_llama))
    st.cache_resource.clear()
    try:
        at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=120)
        at.run()
        at.switch_page("ui/settings_page.py").run()
        assert not at.exception, at.exception
        text = " ".join(md.value for md in at.main.markdown)
        info = at.session_state["inkstone_engine"].backend.info()
        assert f"**CPU weights:** auto chose {info.cpu_weights} on " in text and " ms" in text
    finally:
        st.cache_resource.clear()
    assert main(["inspect", str(tiny_llama), "--json", "--home", str(home)]) == 0
    shown = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["cpu_weights_auto"]
    assert shown["choice"] == info.cpu_weights and shown["choice"] in shown["ms_per_step"]
    assert "auto chose" in shown["summary"]


def test_auto_leaves_out_weights_that_do_not_fit_in_memory() -> None:
    """A candidate whose weights alone exceed the RAM available is left out with the reason (a 6B model in fp32
    on a 16 GB machine), but never every candidate."""
    shapes = [(4096, 4096, False)] * 10 + [(65024, 4096, True)]  # ~0.43 B weights
    weights = sum(o * i for o, i, _ in shapes)
    out = autoweights.memory_exclusions(shapes, ["int8", "bf16", "fp32"], available=weights * 3)
    assert list(out) == ["fp32"] and "GiB of RAM available" in out["fp32"]
    assert autoweights.memory_exclusions(shapes, ["int8", "bf16", "fp32"], available=weights * 5) == {}
    assert autoweights.memory_exclusions(shapes, ["bf16", "fp32"], available=1) == {}
