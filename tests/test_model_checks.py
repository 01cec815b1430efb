"""A broken or odd model directory gives one clear error (never a traceback) in ``chat --model`` and ``model inspect``;
the memory check names the setting that fits; ``--model`` values that are blank or a file are refused; a remote-repo
``auto_map`` is refused without naming a local file that does not exist; free RAM comes from psutil.

Broken copies are made from a tiny native Qwen2 checkpoint (``tests/fixtures_native.py``) and from the ChatGLM3
test checkpoint; each case is run through the real CLI.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from core.cli import main
from core.errors import ModelError, RemoteCodeRefused
from core.models import modelinfo
from core.models.checkpoint import check_remote_code, read_config
from core.models.registry import resolve
from tests.chatglm3_fixture import FIXTURE
from tests.fixtures_native import make_native_checkpoint


@pytest.fixture(scope="module")
def qwen(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_native_checkpoint("qwen2", tmp_path_factory.mktemp("native") / "qwen2")


def _broken(src: Path, dst: Path, change: Callable[[Path], None]) -> Path:
    shutil.copytree(src, dst)
    change(dst)
    return dst


def _write(name: str, data: bytes) -> Callable[[Path], None]:
    return lambda d: (d / name).write_bytes(data)


def _remove(*names: str) -> Callable[[Path], None]:
    return lambda d: [(d / n).unlink() for n in names]


def _truncate(name: str) -> Callable[[Path], None]:
    def cut(d: Path) -> None:
        data = (d / name).read_bytes()
        (d / name).write_bytes(data[: len(data) // 2])

    return cut


def _config_dir(d: Path) -> None:
    (d / "config.json").unlink()
    (d / "config.json").mkdir()


def _bad_field(d: Path) -> None:
    cfg = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps(cfg | {"hidden_size": "big", "num_attention_heads": [4]}))


# case -> (how to break the directory, text the error must contain, also refused by `model inspect`)
BROKEN = {
    "config_random_bytes": (_write("config.json", b"\xff\xfe\x00\x9c garbage \x81"), "is not text", True),
    "config_truncated": (_truncate("config.json"), "is not valid JSON", True),
    "config_array": (_write("config.json", b"[1, 2, 3]"), "JSON list", True),
    "config_empty": (_write("config.json", b""), "is not valid JSON", True),
    "config_is_a_directory": (_config_dir, "is a directory", True),
    "config_bad_field": (_bad_field, "config.json", True),
    "config_unknown_type": (_write("config.json", b'{"model_type": "nonesuch"}'), "'nonesuch'", True),
    "no_tokenizer": (_remove("tokenizer.json", "tokenizer_config.json"), "no tokenizer files", False),
    "tokenizer_garbage": (_write("tokenizer.json", b"\x00\x01 not json"), "tokenizer", False),
    "weights_missing": (_remove("model.safetensors"), "weights", False),
    "weights_garbage": (_write("model.safetensors", b"\x00" * 64), "safetensors", True),
    "weights_truncated": (_truncate("model.safetensors"), "weights", False),
}


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    rc = main(args)
    return rc, capsys.readouterr().err


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_native_directory_is_a_clear_error(case: str, qwen: Path, tmp_path: Path, home: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    change, expected, inspect_refuses = BROKEN[case]
    broken = _broken(qwen, tmp_path / case, change)
    rc, err = _run(["chat", "--model", str(broken), "--max-new-tokens", "4", "hello"], capsys)
    assert rc == 1 and "error: " in err and "Traceback" not in err and expected in err, err
    rc, err = _run(["model", "inspect", str(broken), "--json"], capsys)
    if inspect_refuses:
        assert rc == 1 and "error: " in err and "Traceback" not in err and expected in err, err
    else:  # inspect reads config.json and weight headers only: a tokenizer or weight-data fault does not stop it
        assert rc == 0, err


def _garbage_weights(d: Path) -> None:
    from core.chatglm3.weights import weight_files

    weight_files(d)[0].write_bytes(b"\x00" * 64)


def _no_weights(d: Path) -> None:
    from core.chatglm3.weights import weight_files

    for f in weight_files(d):
        f.unlink()
    for index in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        (d / index).unlink(missing_ok=True)


CHATGLM3_BROKEN = {
    "config_random_bytes": (_write("config.json", b"\xff\xfe\x00\x9c"), "is not text", True),
    "config_array": (_write("config.json", b'["chatglm"]'), "JSON list", True),
    "no_tokenizer_model": (_remove("tokenizer.model"), "tokenizer.model", False),
    "tokenizer_model_garbage": (_write("tokenizer.model", b"not a sentencepiece model"), "tokenizer.model", False),
    "weights_garbage": (_garbage_weights, "weight file", None),
    "weights_missing": (_no_weights, "no weights", False),
}
"""Weight cases work for any layout (single or sharded, safetensors or ``.bin``). ``None``: inspect refuses a
corrupt safetensors header (it reads dtypes there) and, for ``.bin`` weights, reads only config.json."""


@pytest.mark.parametrize("case", list(CHATGLM3_BROKEN))
def test_broken_chatglm3_directory_is_a_clear_error(case: str, tmp_path: Path, home: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    change, expected, inspect_refuses = CHATGLM3_BROKEN[case]
    broken = _broken(FIXTURE, tmp_path / case, change)
    rc, err = _run(["chat", "--model", str(broken), "--max-new-tokens", "4", "hello"], capsys)
    assert rc == 1 and "error: " in err and "Traceback" not in err and expected in err, err
    rc, err = _run(["model", "inspect", str(broken), "--json"], capsys)
    if inspect_refuses is None:
        inspect_refuses = any(broken.glob("model*.safetensors"))
        expected = "not a valid safetensors weight file"
    assert (rc == 1 and expected in err) if inspect_refuses else rc == 0, err


def test_read_config_names_the_problem(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        read_config(tmp_path)
    (tmp_path / "config.json").write_text('{"a": ')
    with pytest.raises(ModelError, match=r"not valid JSON .*line 1 column 7.*re-download"):
        read_config(tmp_path)


@pytest.mark.parametrize("blank", ["", "   ", "\t\n"])
def test_blank_model_is_refused_not_the_current_directory(blank: str, home: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ModelError, match="model is empty"):
        resolve(blank)
    rc, err = _run(["chat", "--model", blank, "hello"], capsys)
    assert rc == 1 and "model is empty" in err
    rc, err = _run(["model", "inspect", blank], capsys)
    assert rc == 1 and "model is empty" in err


def test_a_file_is_not_a_model_directory(qwen: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ModelError, match="is a file, not a directory"):
        resolve(str(qwen / "config.json"))


def test_remote_repo_auto_map_is_refused_without_inventing_a_local_file(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({
        "model_type": "chatglm_custom",
        "auto_map": {"AutoModelForCausalLM": "THUDM/chatglm3-6b--modeling_chatglm.ChatGLMForConditionalGeneration"},
    }))
    with pytest.raises(RemoteCodeRefused) as info:
        check_remote_code(tmp_path, trust_remote_code=False)
    message = str(info.value)
    assert "'THUDM/chatglm3-6b'" in message and "remote" in message and "modeling_chatglm" in message
    assert str(tmp_path / "modeling_chatglm.py") not in message and ".py" not in message


def test_local_auto_map_without_its_file_says_so(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({
        "model_type": "my_lm", "auto_map": {"AutoModelForCausalLM": ["modeling_my.MyForCausalLM", None]},
    }))
    with pytest.raises(RemoteCodeRefused, match=r"auto_map names modeling_my\.py, which is not in the directory"):
        check_remote_code(tmp_path, trust_remote_code=False)


SIX_B = modelinfo.ModelInfo(
    model="chatglm3-6b", architecture="GlmForCausalLM (from ChatGLM3)", family="chatglm3",
    parameters=6_243_584_000, output_parameters=266_338_304, context_window=8192, dtype_on_disk="float16",
    memory_gib=modelinfo.memory_estimate(6_243_584_000, 266_338_304),
)


def _free(monkeypatch: pytest.MonkeyPatch, gib: float) -> None:
    monkeypatch.setattr(modelinfo, "available_memory", lambda device: int(gib * modelinfo.GIB))


def test_cpu_refusal_names_the_dtype_that_fits(monkeypatch: pytest.MonkeyPatch) -> None:
    _free(monkeypatch, 22.5)
    with pytest.raises(ModelError) as info:
        modelinfo.check_fits(SIX_B, "cpu", "float32", None)
    message = str(info.value)
    assert "float32 needs about 24.0 GiB but only 22.5 GiB of RAM is free" in message
    assert 'dtype = "bfloat16" needs about 12.4 GiB and fits: set dtype = "bfloat16"' in message
    modelinfo.check_fits(SIX_B, "cpu", "bfloat16", None)  # the suggested setting passes the same check


def test_refusal_falls_back_to_quantization_then_to_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    _free(monkeypatch, 8.0)  # bf16 (12.4) does not fit, 8-bit (~6.8) does
    with pytest.raises(ModelError, match=r"with --quantize 8bit it needs about 6\.\d+ GiB and fits"):
        modelinfo.check_fits(SIX_B, "cpu", "float32", None)
    _free(monkeypatch, 4.5)
    with pytest.raises(ModelError, match=r"--quantize 8bit needs about .*with --quantize 4bit .* fits"):
        modelinfo.check_fits(SIX_B, "cuda", "bfloat16", "8bit")
    _free(monkeypatch, 1.0)
    with pytest.raises(ModelError, match="no smaller setting fits either: use a smaller model or free memory, or use"):
        modelinfo.check_fits(SIX_B, "cpu", "float32", None)


def test_free_ram_comes_from_psutil(monkeypatch: pytest.MonkeyPatch) -> None:
    import psutil

    class Fake:
        available = 123 * modelinfo.GIB

    monkeypatch.setattr(psutil, "virtual_memory", lambda: Fake())
    assert modelinfo.available_memory("cpu") == 123 * modelinfo.GIB


def test_the_real_load_path_runs_the_fit_check(qwen: Path, home: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    _free(monkeypatch, 0.01)
    rc, err = _run(["chat", "--model", str(qwen), "hello"], capsys)
    assert rc == 1 and "of RAM is free" in err


def test_model_debug_commands_refuse_a_backend_without_local_weights(home: Path, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    messages = tmp_path / "m.json"
    messages.write_text(json.dumps([{"role": "user", "content": "Hi"}]))
    for action in ("prompt", "generate"):
        rc, err = _run(["model", action, "fake", "--messages", str(messages)], capsys)
        assert rc == 1 and "runs on the 'fake' backend" in err, err


def test_model_generate_takes_the_dtype_the_fit_check_suggests(qwen: Path, home: Path, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    messages = tmp_path / "m.json"
    messages.write_text(json.dumps([{"role": "user", "content": "Hi"}]))
    assert main(["model", "generate", str(qwen), "--messages", str(messages), "--dtype", "bfloat16", "--greedy",
                 "--max-new-tokens", "3", "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 1 <= len(out["ids"]) <= 3


def test_deeply_nested_config_is_a_model_error(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ModelError, match="nested too deeply"):
        read_config(tmp_path)


def test_packed_cpu_weights_fit_where_bf16_does_not(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 16 GB laptop (about 11 GiB free) opens ChatGLM3-6B with int8 CPU weights, packed without a bf16 copy; the
    bf16 check on the same memory refuses."""
    from dataclasses import replace

    from core.models import lowbit

    config = type("C", (), {"vocab_size": 65024, "hidden_size": 4096})
    six_b = replace(SIX_B, cpu_weights_gib=lowbit.memory_gib(SIX_B.parameters, SIX_B.output_parameters, config))
    _free(monkeypatch, 11.0)
    modelinfo.check_fits(six_b, "cpu", "int8", None)
    with pytest.raises(ModelError, match="bfloat16 needs about 12.4 GiB but only 11.0 GiB"):
        modelinfo.check_fits(six_b, "cpu", "bfloat16", None)
    _free(monkeypatch, 7.0)
    with pytest.raises(ModelError, match=r"int8 needs about 7\.\d GiB but only 7\.0 GiB of RAM is free"):
        modelinfo.check_fits(six_b, "cpu", "int8", None)
