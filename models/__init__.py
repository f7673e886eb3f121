"""River models: the online fraud and delinquency models, their training and evaluation.

Filled by the online-learning work (issue 4). Until then the fraud score of a
transaction comes from the rules that hit it, weighted by severity
(``duoli.scoring.rules_score``), and every score record names the rule-set version.
"""

from __future__ import annotations

__all__: list[str] = []
