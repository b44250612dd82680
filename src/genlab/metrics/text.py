"""How generated text compares with real text beyond its loss: distinct-n (Li et al. 2016), the share of unique
word n-grams; the repetition rate, how much of a text repeats itself; and a classifier two-sample test, how easily
a fresh classifier tells samples from held-out text.

scikit-learn is imported by the two-sample test alone.
"""

from __future__ import annotations

import numpy as np


def distinct_n(texts: list[str], n: int) -> float:
    """Unique n-grams of whitespace-separated words over all n-grams in `texts` (0 when there are none)."""
    grams = []
    for text in texts:
        words = text.split()
        grams.extend(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
    return len(set(grams)) / len(grams) if grams else 0.0


def repetition_rate(texts: list[str], n: int = 4) -> float:
    """The share of word n-grams that already occurred earlier in the same text (0: none repeats; a model stuck
    in a loop approaches 1)."""
    repeated = total = 0
    for text in texts:
        words, seen = text.split(), set()
        for i in range(len(words) - n + 1):
            gram = tuple(words[i: i + n])
            repeated += gram in seen
            seen.add(gram)
            total += 1
    return repeated / total if total else 0.0


def two_sample_test(real: list[str], generated: list[str], seed: int = 0) -> dict:
    """A classifier two-sample test (Lopez-Paz and Oquab, 2017): a fresh classifier (logistic regression on
    character 1-4-gram TF-IDF features) learns to tell real texts from generated ones on half of each, and its
    accuracy on the other half is the figure: 0.5 means it cannot tell them apart, 1.0 that every text gives
    itself away. The interval is the accuracy's 95 % binomial (Wilson) interval over the held-out texts."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    n = min(len(real), len(generated))
    if n < 10:
        raise ValueError("a two-sample test needs at least 10 texts of each kind")
    rng = np.random.default_rng(seed)
    texts = np.asarray(real[:n] + generated[:n], dtype=object)
    labels = np.asarray([0] * n + [1] * n)
    order = rng.permutation(2 * n)
    fit, held = order[: n], order[n:]
    features = TfidfVectorizer(analyzer="char", ngram_range=(1, 4), sublinear_tf=True, min_df=2)
    classifier = LogisticRegression(max_iter=2000, C=1.0)
    classifier.fit(features.fit_transform(texts[fit]), labels[fit])
    correct = int((classifier.predict(features.transform(texts[held])) == labels[held]).sum())
    accuracy, m, z = correct / len(held), len(held), 1.96
    centre = (accuracy + z * z / (2 * m)) / (1 + z * z / m)
    half = z * np.sqrt(accuracy * (1 - accuracy) / m + z * z / (4 * m * m)) / (1 + z * z / m)
    return {"c2st_accuracy": accuracy, "c2st_interval": [round(float(centre - half), 4), round(float(centre + half), 4)],
            "c2st_texts": m}
