"""Customer-base models: the buy-till-you-die family, spend, and lifetime value."""

from custdyn.models.beta_geo import BetaGeo
from custdyn.models.beta_geo_beta_binom import BetaGeoBetaBinom
from custdyn.models.clv import clv
from custdyn.models.gamma_gamma import GammaGamma
from custdyn.models.modified_beta_geo import ModifiedBetaGeo
from custdyn.models.pareto_nbd import ParetoNBD
from custdyn.models.rfm import rfm_summary
from custdyn.models.shifted_beta_geo import ShiftedBetaGeo

__all__ = ["BetaGeo", "BetaGeoBetaBinom", "GammaGamma", "ModifiedBetaGeo", "ParetoNBD", "ShiftedBetaGeo", "clv", "rfm_summary"]
