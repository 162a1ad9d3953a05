"""Multi-turn data verified by execution (APIGen-MT, tau-bench): stateful tool environments run
in the execution sandbox (``PythonEnvironment``) or reached over MCP (``environments.mcp``),
task blueprints validated by running their calls (``TaskBlueprintGenerator``), and conversations
kept only when the environment ends in the blueprint's state (``EnvironmentConversationGenerator``).

Pipeline: ``api_pipelines/environment_synthesis.py``; example environment:
``example_data/ShopEnvironment``. The MCP client is imported from ``environments.mcp`` only when
used (it needs ``pip install ".[mcp]"``).
"""

from .blueprints import TaskBlueprintGenerator, blueprint_problem
from .environment import (
    EnvironmentSession, PythonEnvironment, PythonSession, StateUnavailable, ToolOutcome, run_calls, state_difference,
)
from .trajectories import EnvironmentConversationGenerator, pass_hat_k

__all__ = [
    "PythonEnvironment", "PythonSession", "EnvironmentSession", "ToolOutcome", "StateUnavailable", "run_calls",
    "state_difference", "TaskBlueprintGenerator", "blueprint_problem", "EnvironmentConversationGenerator", "pass_hat_k",
]
