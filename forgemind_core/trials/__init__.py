"""The Trial Grounds: tiered evaluation, scorers, adversarial cases, comparisons.

- :mod:`.tiers`: the canary, full and adversarial tiers of one checkpoint, and their metrics.
- :mod:`.stage`: the evaluate stage of an iteration (its tiers and adversarial cases).
- :mod:`.scorers` (with :mod:`.jsonscorers`, :mod:`.astscorer`, :mod:`.scoring`), :mod:`.adversary`:
  the built-in scorers and the offline adversary (its code perturbations in :mod:`.codeperturb`).
- :mod:`.compare`: checkpoints side by side (``forge compare``).
- ``metrics/distinct_n.py``: distinct-n as an offline ``evaluate`` metric module (loaded by path).
"""
