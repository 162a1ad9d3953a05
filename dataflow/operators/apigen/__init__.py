"""Single-turn synthesis and verification (APIGen): sampler, generator, novelty filter, format
(and grounding) / execution / semantic checkers, and the stage table."""

from .checkers import FormatChecker, SemanticChecker
from .execution import ExecutionChecker, Sandbox
from .generator import APIGenGenerator, load_generator_config
from .novelty import NoveltyFilter, copied_example
from .report import format_stage_table, stage_table, write_stage_table
from .sampler import DataSampler, load_seed_examples

__all__ = [
    "DataSampler", "APIGenGenerator", "NoveltyFilter", "copied_example", "FormatChecker", "ExecutionChecker", "SemanticChecker", "Sandbox",
    "load_generator_config", "load_seed_examples", "stage_table", "format_stage_table", "write_stage_table",
]
