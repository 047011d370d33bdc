"""Torch modules of Auscult's models. Each takes a ``(batch, n_mels, frames)`` dB log-mel window,
does all its normalisation inside, and returns ``score (batch,)`` (anomaly) or ``probs (batch, K)``
(classifier), so that one ``torch.onnx`` path exports every model with the same contract."""

from ml.models.anomaly import DenseAutoencoder, GMMScorer, KNNScorer, LogMelStats, MahalanobisScorer, ScoreAndEmbedding
from ml.models.classifier import ConvClassifier

__all__ = ["ConvClassifier", "DenseAutoencoder", "GMMScorer", "KNNScorer", "LogMelStats", "MahalanobisScorer",
           "ScoreAndEmbedding"]
