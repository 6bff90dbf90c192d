"""distinct-n as a Hugging Face ``evaluate`` metric module, loadable offline from this file.

``evaluate.load("<path to this file>")`` works without the Hub (the Hub is unreachable on the
machines ForgeMind is built for). The numbers equal :func:`forgemind_core.trials.tiers.distinct_n`, the
plain computation the kernel uses when ``evaluate`` is not installed (a test holds the two equal).

The loader parses this file's imports: keep one import per line.
"""

import datasets
import evaluate

_DESCRIPTION = """distinct-n: the number of distinct n-grams divided by the number of n-grams over all
predictions (whitespace tokens). 1.0 = no n-gram repeats; near 0 = the texts repeat themselves."""

_KWARGS = """Args:
    predictions: list of texts.
    max_n: compute distinct-1 .. distinct-max_n (default 2).
Returns:
    distinct_1, distinct_2, ...: floats in [0, 1] (0.0 when there are no n-grams)."""


class DistinctN(evaluate.Metric):
    """distinct-1 / distinct-2 of a list of texts (lexical diversity of model or data outputs)."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="Li et al., 2016, A Diversity-Promoting Objective Function for Neural Conversation Models",
            inputs_description=_KWARGS,
            features=datasets.Features({"predictions": datasets.Value("string")}),
        )

    def _compute(self, predictions, max_n=2):
        scores = {}
        for n in range(1, max_n + 1):
            grams = []
            for text in predictions:
                tokens = text.split()
                grams.extend(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
            scores[f"distinct_{n}"] = len(set(grams)) / len(grams) if grams else 0.0
        return scores
