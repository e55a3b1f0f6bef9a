"""Text signals, offline and multilingual: language, sentiment, Plutchik's eight emotions,
competitor mentions with intent to switch, and feedback themes.

>>> from custdyn.text import TextAnalyzer, CompetitorMatcher
>>> TextAnalyzer(engine="bulk").version.startswith("bulk:")
True
"""

from __future__ import annotations

from custdyn.text._langid import canonical_language, language_shares
from custdyn.text._langid import detect as detect_language
from custdyn.text._langid import detect_many as detect_languages
from custdyn.text.analyzer import ANALYSIS_SCHEMA, TextAnalyzer
from custdyn.text.competitors import CompetitorMatcher, intent_to_switch
from custdyn.text.distil import distil_bulk
from custdyn.text.engines import make_engine
from custdyn.text.evaluation import (
    eval_text_main,
    evaluate_sentiment,
    read_labelled,
    render_report,
    report_to_json,
)
from custdyn.text.labelled import label_scheme, read_label_rows
from custdyn.text.signals import enrich_batches, score_interactions
from custdyn.text.themes import ThemeModel, adjusted_rand_index, evaluate_themes, purity
from custdyn.text.workspace_models import WorkspaceEngine, bulk_engine_name, default_engine_name

__all__ = [
    "ANALYSIS_SCHEMA",
    "CompetitorMatcher",
    "TextAnalyzer",
    "ThemeModel",
    "WorkspaceEngine",
    "adjusted_rand_index",
    "bulk_engine_name",
    "canonical_language",
    "default_engine_name",
    "detect_language",
    "detect_languages",
    "distil_bulk",
    "enrich_batches",
    "eval_text_main",
    "evaluate_sentiment",
    "evaluate_themes",
    "intent_to_switch",
    "language_shares",
    "label_scheme",
    "make_engine",
    "purity",
    "read_label_rows",
    "read_labelled",
    "render_report",
    "report_to_json",
    "score_interactions",
]
