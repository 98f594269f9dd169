"""The market simulation: data loading and validation, resampling, causal features.

Nothing in this package imports Ray; it is the bottom layer every other package uses.
"""
