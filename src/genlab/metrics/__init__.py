"""Metrics per modality: text.py (distinct-n; loss/bpc/ppl come from the sequence evaluator),
and image, code and music metrics beside it."""
