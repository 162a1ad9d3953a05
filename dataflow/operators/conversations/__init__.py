"""Multi-turn function-calling synthesis (BUTTON): scenarios -> tasks -> functions -> conversations.

Pipeline order (see ``api_pipelines/func_call_synthesis.py``)::

    ScenarioExtractor -> ScenarioExpander -> AtomTaskGenerator -> SequentialTaskGenerator
    -> ParaSeqTaskGenerator -> CompositionTaskFilter -> FunctionGenerator
    -> MultiTurnConversationGenerator -> ConversationQualityEvaluator (optional)

Importing this package is cheap (no pandas, no jsonschema until a check runs).
"""

from .composition_filter import CompositionTaskFilter
from .functions import FunctionGenerator, openai_tools
from .multi_turn import MultiTurnConversationGenerator
from .quality import ConversationQualityEvaluator
from .scenario import ScenarioExpander, ScenarioExtractor
from .structure import check_conversation
from .tasks import AtomTaskGenerator, ParaSeqTaskGenerator, SequentialTaskGenerator
from .transcript import chat_to_transcript

__all__ = [
    "ScenarioExtractor",
    "ScenarioExpander",
    "AtomTaskGenerator",
    "SequentialTaskGenerator",
    "ParaSeqTaskGenerator",
    "CompositionTaskFilter",
    "FunctionGenerator",
    "MultiTurnConversationGenerator",
    "ConversationQualityEvaluator",
    "check_conversation",
    "chat_to_transcript",
    "openai_tools",
]
