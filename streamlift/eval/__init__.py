"""Scoring lifters against 3D ground truth (`evaluate`) and looking inside them (`diagnose`)."""

from streamlift.eval.diagnose import decomposition
from streamlift.eval.evaluate import action_group, evaluate, format_table

__all__ = ["decomposition", "action_group", "evaluate", "format_table"]
