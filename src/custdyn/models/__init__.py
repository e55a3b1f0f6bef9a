"""Customer-base models: the buy-till-you-die family, spend, lifetime value and checking.

Models follow the scikit-learn convention (settings in ``__init__``, ``fit(...) -> self``,
fitted attributes end in ``_``). See docs/models.md.
"""

from custdyn.models import metrics
from custdyn.models.beta_geo import BetaGeo
from custdyn.models.beta_geo_beta_binom import BetaGeoBetaBinom
from custdyn.models.checking import (
    compare_models,
    cumulative_tracking,
    holdout_comparison,
    p_alive_matrix,
)
from custdyn.models.churn import (
    BacktestResult,
    DefectionModel,
    Reason,
    Snapshot,
    backtest,
    plot_calibration,
    plot_roc,
)
from custdyn.models.clv import clv
from custdyn.models.gamma_gamma import GammaGamma
from custdyn.models.health import (
    ATTENTION_COMPONENTS,
    LOYALTY_COMPONENTS,
    QUADRANTS,
    Component,
    LearnedScorecard,
    Quadrants,
    RelationshipScores,
    Scorecard,
    quadrants,
    relationship_scores,
)
from custdyn.models.modified_beta_geo import ModifiedBetaGeo
from custdyn.models.pareto_nbd import ParetoNBD
from custdyn.models.plotting import plot_holdout_comparison, plot_p_alive, plot_tracking
from custdyn.models.rfm import rfm_summary
from custdyn.models.shifted_beta_geo import ShiftedBetaGeo
from custdyn.models.survival import CoxPH, ProcedureEffect, concordance_index, procedure_effects

__all__ = [
    "ATTENTION_COMPONENTS",
    "LOYALTY_COMPONENTS",
    "QUADRANTS",
    "BacktestResult",
    "Component",
    "CoxPH",
    "DefectionModel",
    "LearnedScorecard",
    "ProcedureEffect",
    "Quadrants",
    "Reason",
    "RelationshipScores",
    "Scorecard",
    "Snapshot",
    "backtest",
    "concordance_index",
    "metrics",
    "plot_calibration",
    "plot_roc",
    "procedure_effects",
    "quadrants",
    "relationship_scores",
    "BetaGeo",
    "BetaGeoBetaBinom",
    "GammaGamma",
    "ModifiedBetaGeo",
    "ParetoNBD",
    "ShiftedBetaGeo",
    "clv",
    "compare_models",
    "cumulative_tracking",
    "holdout_comparison",
    "p_alive_matrix",
    "plot_holdout_comparison",
    "plot_p_alive",
    "plot_tracking",
    "rfm_summary",
]
