"""Prompt templates: one Jinja2 file per operator, shipped in ``templates/``, overridable.

A template file defines two macros, ``system()`` and ``user()``; the operator renders both with its
row's variables. Users override a template by passing ``prompt_template=`` (a path to a ``.j2``
file or the template text itself) to an operator, or by pointing ``DF_PROMPTS_DIR`` at a folder
holding files of the same names. Every template renders in Jinja2's sandbox, so a template cannot
reach Python internals, with bounded steps, time and sizes (``_bounded.py``): a template that
would hang or build a huge string fails with a ``PromptRenderError`` naming it.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..core.errors import ConfigError, PromptRenderError

TEMPLATES_DIR = Path(__file__).with_name("templates")
MAX_TEMPLATE_CHARS = 1_000_000  # a template file larger than this is refused before it compiles


@lru_cache(maxsize=1)
def _environment():
    from jinja2 import StrictUndefined

    from ._bounded import BoundedSandboxedEnvironment

    env = BoundedSandboxedEnvironment(
        undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True, autoescape=False
    )
    env.add_filter("tojson_compact", lambda v: __import__("json").dumps(v, ensure_ascii=False))
    return env


@dataclass(frozen=True)
class PromptTemplate:
    """A loaded template: its source, where it came from, and a hash of its text."""

    name: str
    source: str
    origin: str

    @property
    def hash(self) -> str:
        return hashlib.sha256(self.source.encode("utf-8")).hexdigest()[:16]

    def render(self, **variables: Any) -> tuple[str, str]:
        """Render to ``(system_prompt, user_prompt)``."""
        from jinja2 import TemplateError
        from jinja2.exceptions import SecurityError

        from . import _bounded

        try:
            if len(self.source) > MAX_TEMPLATE_CHARS:
                raise PromptRenderError(f"prompt template is longer than {MAX_TEMPLATE_CHARS} characters "
                                        f"({self.origin})")
            with _bounded.render_budget():
                template = _compile(self.source)
                module = template.make_module(variables)
                system = str(module.system()).strip() if hasattr(module, "system") else ""
                if not hasattr(module, "user"):
                    raise PromptRenderError(f"prompt template {self.origin} defines no user() macro")
                user = str(module.user()).strip()
        except _bounded.TemplateLimitError as exc:
            raise PromptRenderError(
                f"prompt template exceeds a render limit: {exc} ({self.origin}) — a render may run "
                f"{_bounded.MAX_STEPS} loop iterations and macro calls in {_bounded.MAX_SECONDS:g}s and build "
                f"{_bounded.MAX_CHARS} characters"
            ) from None
        except SecurityError as exc:
            raise PromptRenderError(
                f"prompt template tried an unsafe operation: {exc} ({self.origin}) — "
                "templates may only read the variables they are given"
            ) from None
        except PromptRenderError as exc:
            if self.origin in str(exc):
                raise
            raise PromptRenderError(f"{exc} ({self.origin})") from None
        except TemplateError as exc:
            raise PromptRenderError(f"prompt template failed to render: {exc} ({self.origin})") from None
        except (RecursionError, MemoryError, ArithmeticError, TypeError, ValueError, LookupError,
                AttributeError) as exc:  # the template's own expression failed
            raise PromptRenderError(
                f"prompt template failed to render: {type(exc).__name__}: {exc} ({self.origin})"
            ) from None
        return system, user


@lru_cache(maxsize=256)
def _compile(source: str):
    from jinja2 import TemplateSyntaxError

    try:
        return _environment().from_string(source)
    except TemplateSyntaxError as exc:
        raise PromptRenderError(f"prompt template syntax error at line {exc.lineno}: {exc.message}") from None


def load_template(name: str, override: str | os.PathLike | None = None) -> PromptTemplate:
    """The template ``name`` (e.g. ``"scenario_extractor"``).

    ``override`` may be a path to a template file or the template text itself. Otherwise
    ``$DF_PROMPTS_DIR/<name>.j2`` is used when it exists, then the packaged template.
    """
    if override is not None:
        text = str(override)
        if "{%" in text or "{{" in text:
            return PromptTemplate(name, text, f"<{name} prompt_template argument>")
        path = Path(text)
        if not path.is_file():
            raise ConfigError(
                f"prompt_template {text!r} is neither a template (no '{{%' in it) nor an existing file"
            )
        return PromptTemplate(name, path.read_text(encoding="utf-8"), str(path))
    user_dir = os.environ.get("DF_PROMPTS_DIR")
    if user_dir:
        candidate = Path(user_dir) / f"{name}.j2"
        if candidate.is_file():
            return PromptTemplate(name, candidate.read_text(encoding="utf-8"), str(candidate))
    path = TEMPLATES_DIR / f"{name}.j2"
    if not path.is_file():
        raise ConfigError(f"no packaged prompt template named {name!r} (looked for {path})")
    return PromptTemplate(name, path.read_text(encoding="utf-8"), f"dataflow/prompts/templates/{name}.j2")
