"""Neutral helpers every layer may use: text normalisation, atomic files, shipped-asset lookup, plots."""
