"""Attacks, first-order vulnerability, regularised training and the papers' experiments.

Imported as ``pathstats.robust``.
"""
