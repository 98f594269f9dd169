"""Causal features: one specification, one set of kernels, batch and streaming alike."""

from raytrade.envs.features.normalizer import Normalizer
from raytrade.envs.features.pipeline import FeatureMatrix, FeaturePipeline, StreamingFeatures
from raytrade.envs.features.spec import FeatureSpec

__all__ = ["FeatureMatrix", "FeaturePipeline", "FeatureSpec", "Normalizer", "StreamingFeatures"]
