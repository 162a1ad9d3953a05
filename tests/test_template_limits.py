"""A user-supplied prompt template cannot hang the process or build a huge value: each attack ends
in a ``PromptRenderError`` naming the template, within seconds, without the memory to show for it;
the packaged templates render exactly as in a plain Jinja2 sandbox."""

from __future__ import annotations

import importlib.util
import resource
import sys
import time
from pathlib import Path

import pytest

from dataflow.core.errors import PromptRenderError
from dataflow.prompts import PromptTemplate, _bounded, load_template

ROOT = Path(__file__).resolve().parents[1]


def template_with(body: str) -> str:
    return "{% macro system() %}You extract scenarios.{% endmacro %}\n{% macro user() %}" + body + "{% endmacro %}\n"


def peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024


ATTACKS = {
    # hangs while compiling (constant folding), then builds a 280-million-bit integer
    "power_at_compile_time": "{{ 7**(10**8) }}",
    "power_in_a_variable": "{% set e = 10**8 %}{{ 7**e }}",
    "squaring_in_a_loop": "{% set ns = namespace(x=3) %}{% for i in range(40) %}{% set ns.x = ns.x * ns.x %}"
                          "{% endfor %}{{ ns.x > 0 }}",
    # hours of loops
    "nested_ranges": "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    "one_range_reused": "{% set r = range(100000) %}{% for a in r %}{% for b in r %}{% endfor %}{% endfor %}",
    "exponential_macro": "{% macro f(n) %}{% if n > 0 %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}{% endmacro %}{{ f(60) }}",
    "exponential_blocks": "".join(
        f"{{% block b{i} %}}{{{{ self.b{i + 1}() }}}}{{{{ self.b{i + 1}() }}}}{{% endblock %}}" for i in range(40))
        + "{% block b40 %}x{% endblock %}",
    # 2 GB strings and lists, in one operation
    "repeat_string": "{{ 'a' * 2000000000 }}",
    "repeat_list": "{{ (['a'] * 2000000000)|length }}",
    "center_filter": "{{ 'a'|center(2000000000) }}",
    "ljust_method": "{{ 'a'.ljust(2000000000) }}",
    "format_width": "{{ '{:>2000000000}'.format(1) }}",
    "format_fields": "{{ ('{0}' * 1000).format('x' * 100000) }}",
    "printf_width": "{{ '%2000000000d' % 1 }}",
    "format_filter": "{{ '%2000000000d'|format(1) }}",
    "replace_empty": "{{ ('a' * 1000)|replace('', 'b' * 100000) }}",
    "join_filter": "{{ range(100000)|join('x' * 100000) }}",
    "join_method": "{{ ('x' * 100000).join(range(100000)|map('string')) }}",
    "join_filter_of_a_generator": "{{ range(100000)|map('string')|join('x' * 100000) }}",
    "batch_fill": "{{ ([1]|batch(2000000000, 'x')|list)|length }}",
    "indent_filter": "{{ ('\n' * 100000)|indent('x' * 100000) }}",
    "lipsum": "{{ lipsum(100000, max=100000) }}",
    "urlize_rel": "{{ ('a.com ' * 100000)|urlize(rel='r' * 100000) }}",
    "translate": "{{ ('a' * 100000).translate({97: 'b' * 100000}) }}",
    # 2 GB by doubling, a few dozen steps
    "doubling_with_tilde": "{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}"
                           "{% endfor %}{{ ns.s|length }}",
    "doubling_with_plus": "{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}"
                          "{% endfor %}{{ ns.s|length }}",
    "doubling_a_list_by_reference": "{% set ns = namespace(l=['x' * 1000]) %}{% for i in range(60) %}"
                                    "{% set ns.l = [ns.l, ns.l] %}{% endfor %}{{ ns.l|tojson|length }}",
    "sum_of_lists": "{{ ([range(100000)|list] * 30)|sum(start=[])|length }}",
    # a 2 GB output a piece at a time
    "printed_in_a_loop": "{% for i in range(100000) %}{{ 'a' * 30000 }}{% endfor %}",
    "literal_text_in_a_loop": "{% for i in range(100000) %}" + "A" * 30000 + "{% endfor %}",
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_template_attack_ends_in_a_clear_error(name, monkeypatch):
    monkeypatch.setattr(_bounded, "MAX_SECONDS", 3.0)  # the attacks that only time stops, stopped sooner
    before = peak_rss_mb()
    started = time.monotonic()
    with pytest.raises(PromptRenderError) as info:
        PromptTemplate("scenario_extractor", template_with(ATTACKS[name]), "<attack template>").render(chat="hi")
    elapsed = time.monotonic() - started
    message = str(info.value)
    assert "render limit" in message and "<attack template>" in message and "\n" not in message, message
    assert elapsed < 6, elapsed
    assert peak_rss_mb() - before < 400  # no 2 GB value was ever built


def test_limits_count_per_render_and_leave_ordinary_templates_alone():
    body = ("{% for i in range(600) %}{% for j in range(1000) %}{% endfor %}{% endfor %}"  # 600,600 steps
            "{{ tools|tojson }}|{{ '%5d' % 3 }}|{{ '{:>4}'.format('x') }}|{{ 2**64 }}|{{ [1, 2]|sum }}"
            "|{{ 'ab' * 3 }}|{{ name ~ '!' }}|{{ [[1], [2]]|sum(start=[]) }}|{{ (text * 2)|length }}"
            "|{{ tools[:3]|map(attribute='type')|join(',') }}|{{ '-'.join(tools[:2]|map(attribute='type')) }}")
    template = PromptTemplate("t", template_with(body), "<t>")
    tools = [{"type": "function", "function": {"name": f"f{i}", "parameters": {}}} for i in range(2000)]
    for _ in range(2):  # a second render starts from zero
        _, user = template.render(tools=tools, name="n", text="x" * 1_000_000)
    assert user.endswith("|    3|   x|18446744073709551616|3|ababab|n!|[1, 2]|2000000"
                         "|function,function,function|function-function")
    assert len(user) > 100_000


def test_a_huge_template_file_is_refused(tmp_path):
    path = tmp_path / "big.j2"
    path.write_text(template_with("x" * 2_000_000))
    with pytest.raises(PromptRenderError, match="longer than"):
        load_template("scenario_extractor", str(path)).render(chat="hi")


def test_scenario_extractor_with_a_hanging_template_fails_before_any_llm_call(tmp_path, monkeypatch):
    import json

    from dataflow.operators.conversations import ScenarioExtractor
    from dataflow.serving import FakeLLMServing
    from dataflow.utils.storage import FileStorage

    monkeypatch.setattr(_bounded, "MAX_SECONDS", 3.0)
    data = tmp_path / "chat.jsonl"
    data.write_text(json.dumps({"chat": "USER: hi\nASSISTANT: hello"}) + "\n")
    calls = []
    serving = FakeLLMServing(lambda m, s: calls.append(m) or "x")
    storage = FileStorage(str(data), cache_path=str(tmp_path / "cache"))
    with pytest.raises(PromptRenderError, match="scenario_extractor prompt_template argument"):
        ScenarioExtractor(llm_serving=serving, prompt_template=template_with(ATTACKS["power_at_compile_time"])).run(
            storage.step(), input_chat_key="chat")
    assert calls == []


# == the packaged templates render as before ======================================================
def plain_render(template: PromptTemplate, variables: dict) -> tuple[str, str]:
    """What ``render`` returned before the limits: a plain immutable sandbox."""
    import json

    from jinja2 import StrictUndefined
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                                        autoescape=False)
    env.filters["tojson_compact"] = lambda v: json.dumps(v, ensure_ascii=False)
    module = env.from_string(template.source).make_module(variables)
    system = str(module.system()).strip() if hasattr(module, "system") else ""
    return system, str(module.user()).strip()


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"_script_{name}", ROOT / "api_pipelines" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.timeout(600)
def test_packaged_templates_render_exactly_as_in_a_plain_sandbox(tmp_path, monkeypatch):
    from dataflow.operators.apigen.testing import apigen_responder
    from dataflow.serving import FakeLLMServing
    from dataflow.serving.fake_responders import button_responder

    renders: list[tuple[PromptTemplate, dict, tuple[str, str]]] = []
    original = PromptTemplate.render

    def recording(self, **variables):
        result = original(self, **variables)
        renders.append((self, variables, result))
        return result

    monkeypatch.setattr(PromptTemplate, "render", recording)
    func_call = load_script("func_call_synthesis")
    head = func_call.first_rows_file(func_call.DEFAULT_INPUT, 2, tmp_path / "fc")
    func_call.FuncCallPipeline(str(head), str(tmp_path / "fc"), FakeLLMServing(button_responder),
                               evaluate=True, expand=True, parallel=True).run()
    apigen = load_script("apigen_synthesis")
    monkeypatch.setattr(apigen, "serving_from_env", lambda: FakeLLMServing(apigen_responder))
    head = apigen.first_rows(apigen.DATA / "function_definitions.json", 4, tmp_path / "ag")
    apigen.APIGenPipeline(cache_path=tmp_path / "ag", input_file=head, out_dir=tmp_path / "ag_out").run()

    names = {template.name for template, _, _ in renders}
    assert len(names) >= 10, names
    for template, variables, result in renders:
        assert result == plain_render(template, variables), template.name
