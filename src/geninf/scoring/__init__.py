"""Data scoring: training-example scores for queries, self-influence, top-k, writers.

The sign and scale convention is stated once, in :mod:`geninf.scoring.api`: ``score[q, i]``
estimates the change of query q's loss when training example i is removed — positive means
helpful, negative harmful.
"""

from .api import score, self_influence
from .gradients import GradientStrategy, per_example_gradients
from .ranking import TopK, top_k
from .report import plot_query_top_examples, write_scores_csv, write_scores_json
from .storage import load_scores
from .vectors import InfluenceVectors, ScoreMethod

__all__ = [
    "GradientStrategy",
    "InfluenceVectors",
    "ScoreMethod",
    "TopK",
    "load_scores",
    "per_example_gradients",
    "plot_query_top_examples",
    "score",
    "self_influence",
    "top_k",
    "write_scores_csv",
    "write_scores_json",
]
