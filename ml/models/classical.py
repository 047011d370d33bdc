"""The classical classifier as torch modules: an MFCC front end and a fitted scikit-learn model
(scaler + logistic regression or SVM) whose arithmetic is written out with standard tensor ops.

Everything runs inside the exported graph on the module's ``logmel`` input, so the edge module
needs nothing new. The scikit-learn model's own ONNX form (skl2onnx) uses the ``ai.onnx.ml``
operators (``Scaler``, ``LinearClassifier``, ``SVMClassifier``), which OpenVINO's ONNX reader does
not convert (2026.4: "No conversion rule found for operations: ai.onnx.ml.LinearClassifier"), and
OpenVINO is the module's first backend; hence these few formulas, checked against scikit-learn's
``predict_proba`` by the tests.

* :class:`MfccStats`: MFCCs as the DCT-II (orthonormal) of the log-mel dB columns, exactly
  ``librosa.feature.mfcc(S=logmel, n_mfcc=n, norm="ortho")``; then per coefficient the mean over
  time, the spread over time and the spread of the frame-to-frame change (the textbook "MFCC
  mean/std + deltas" vector). ``level=False`` leaves out the mean of c0 (the window's overall level,
  i.e. microphone gain and distance), keeping its spread.
* :class:`LinearHead`: softmax of an affine map: a multinomial logistic regression; a binary one as
  ``softmax([-z/2, z/2])``, which is ``[1 - sigmoid(z), sigmoid(z)]``.
* :class:`SVCHead`: an SVC's decision values (RBF kernel: over its support vectors; linear: folded
  into one weight matrix) and the sigmoid calibration of
  ``CalibratedClassifierCV(method="sigmoid", ensemble=False)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["ClassicalClassifier", "LinearHead", "MfccStats", "SVCHead", "dct_matrix"]


def _buf(x: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x, dtype=np.float32))


def dct_matrix(n_mfcc: int, n_mels: int) -> np.ndarray:
    """``(n_mfcc, n_mels)`` orthonormal DCT-II rows (scipy's ``dct(type=2, norm="ortho")``)."""
    from scipy.fft import dct

    return dct(np.eye(n_mels), type=2, norm="ortho", axis=0)[:n_mfcc]


class MfccStats(nn.Module):
    """``(B, n_mels, T)`` dB → ``(B, D)``: MFCC mean, spread and delta spread per coefficient."""

    def __init__(self, n_mels: int, *, n_mfcc: int = 20, level: bool = False) -> None:
        super().__init__()
        if not 1 <= n_mfcc <= n_mels:
            raise ValueError(f"n_mfcc must be in 1..n_mels ({n_mels}), got {n_mfcc}")
        self.n_mfcc, self.level = n_mfcc, level
        self.register_buffer("dct", _buf(dct_matrix(n_mfcc, n_mels)))
        self.dim = 3 * n_mfcc - (0 if level else 1)

    def mfcc(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, n_mfcc, T)`` MFCCs of ``(B, n_mels, T)`` dB."""
        return torch.matmul(self.dct, x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.mfcc(x)
        mean = c.mean(dim=2)
        std = torch.sqrt(((c - mean.unsqueeze(2)) ** 2).mean(dim=2) + 1e-8)
        if c.shape[2] > 1:
            d = c[:, :, 1:] - c[:, :, :-1]
            dstd = torch.sqrt(((d - d.mean(dim=2, keepdim=True)) ** 2).mean(dim=2) + 1e-8)
        else:
            dstd = torch.zeros_like(mean)
        if not self.level:
            mean = mean[:, 1:]
        return torch.cat([mean, std, dstd], dim=1)


class LinearHead(nn.Module):
    """Probabilities of a fitted scikit-learn ``LogisticRegression`` (``coef_``, ``intercept_``)."""

    def __init__(self, coef: np.ndarray, intercept: np.ndarray) -> None:
        super().__init__()
        coef, intercept = np.asarray(coef, np.float64), np.asarray(intercept, np.float64)
        if coef.shape[0] == 1:  # binary: z for class 1; softmax([-z/2, z/2]) = [1 - s(z), s(z)]
            coef, intercept = np.vstack([-coef / 2, coef / 2]), np.array([-intercept[0] / 2, intercept[0] / 2])
        self.register_buffer("w", _buf(coef.T))
        self.register_buffer("b", _buf(intercept))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.softmax(torch.matmul(z, self.w) + self.b, dim=1)


class SVCHead(nn.Module):
    """Probabilities of a fitted scikit-learn SVC (RBF or linear kernel) calibrated by
    ``CalibratedClassifierCV(SVC(...), method="sigmoid", ensemble=False)``, the form scikit-learn
    1.9 recommends over the deprecated ``SVC(probability=True)``.

    Pair ``p`` = (i, j), i < j in libsvm's order, has the decision value ``f_p`` (positive for
    class i). Two classes: scikit-learn's decision is ``-f`` and Platt's sigmoid gives p(class 1).
    More: scikit-learn's one-vs-rest decision (votes of the pairs plus their summed confidences
    squashed into (-1/3, 1/3)), a sigmoid per class, then normalised to sum to one.
    """

    def __init__(self, svc: Any, calibrators: Sequence[Any]) -> None:
        super().__init__()
        k = len(svc.classes_)
        if svc.kernel not in ("rbf", "linear"):
            raise ValueError(f"SVC kernel {svc.kernel!r}: only rbf and linear are exported")
        if len(calibrators) != (1 if k == 2 else k):
            raise ValueError(f"{len(calibrators)} calibrators for {k} classes")
        sv = np.asarray(svc.support_vectors_, np.float64)
        n_sv = np.asarray(svc.n_support_)
        sign = -1.0 if k == 2 else 1.0  # scikit-learn flips a binary SVC's public coefficients
        dual = sign * np.asarray(svc.dual_coef_, np.float64)
        icpt = sign * np.asarray(svc.intercept_, np.float64)
        start = np.concatenate([[0], np.cumsum(n_sv)])
        pairs = [(i, j) for i in range(k) for j in range(i + 1, k)]
        w = np.zeros((len(sv), len(pairs)))
        for p, (i, j) in enumerate(pairs):
            w[start[i]:start[i + 1], p] = dual[j - 1, start[i]:start[i + 1]]
            w[start[j]:start[j + 1], p] = dual[i, start[j]:start[j + 1]]
        # votes and confidences of the one-vs-rest decision: class i gains +f_p, class j gains -f_p
        to_class = np.zeros((len(pairs), k))
        for p, (i, j) in enumerate(pairs):
            to_class[p, i], to_class[p, j] = 1.0, -1.0
        gamma = svc.gamma
        if svc.kernel == "rbf" and (isinstance(gamma, str) or not gamma > 0):
            raise ValueError(f"SVC gamma must be a positive number to export, got {gamma!r}")
        self.k, self.kernel, self.gamma = k, svc.kernel, float(gamma) if svc.kernel == "rbf" else 0.0
        if svc.kernel == "linear":  # sum_s coef_s <z, sv_s> = <z, sum_s coef_s sv_s>: one (D, P) matrix
            self.register_buffer("w", _buf(sv.T @ w))
        else:
            self.register_buffer("sv", _buf(sv))
            self.register_buffer("sv_sq", _buf((sv * sv).sum(axis=1)))
            self.register_buffer("w", _buf(w))
        self.register_buffer("b", _buf(icpt))
        self.register_buffer("to_class", _buf(to_class))
        self.register_buffer("vote_j", _buf(np.maximum(-to_class, 0)))
        self.register_buffer("cal_a", _buf([c.a_ for c in calibrators]))
        self.register_buffer("cal_b", _buf([c.b_ for c in calibrators]))

    def decision(self, z: torch.Tensor) -> torch.Tensor:
        """libsvm's one-vs-one decision values ``(B, K(K-1)/2)``."""
        if self.kernel == "linear":
            return torch.matmul(z, self.w) + self.b
        dot = torch.matmul(z, self.sv.T)
        d2 = torch.clamp((z * z).sum(dim=1, keepdim=True) + self.sv_sq - 2 * dot, min=0.0)
        return torch.matmul(torch.exp(-self.gamma * d2), self.w) + self.b

    def ovr(self, f: torch.Tensor) -> torch.Tensor:
        """scikit-learn's one-vs-rest decision ``(B, K)`` from the pairs' values (more than two classes)."""
        neg = (f < 0).to(f.dtype)  # the pair votes for j
        votes = torch.matmul(1 - neg, torch.clamp(self.to_class, min=0.0)) + torch.matmul(neg, self.vote_j)
        conf = torch.matmul(f, self.to_class)
        return votes + conf / (3 * (torch.abs(conf) + 1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        f = self.decision(z)
        if self.k == 2:
            p1 = torch.sigmoid(-(self.cal_a * -f + self.cal_b))
            return torch.cat([1 - p1, p1], dim=1)
        p = torch.sigmoid(-(self.cal_a * self.ovr(f) + self.cal_b))
        total = p.sum(dim=1, keepdim=True)
        return torch.where(total > 0, p / torch.clamp(total, min=1e-30), torch.full_like(p, 1.0 / self.k))


class ClassicalClassifier(nn.Module):
    """``(B, n_mels, T)`` dB → ``(B, K)`` probabilities: :class:`MfccStats`, the fitted scaler, a head."""

    def __init__(self, features: MfccStats, mean: np.ndarray, scale: np.ndarray, head: nn.Module) -> None:
        super().__init__()
        self.features, self.head = features, head
        self.register_buffer("mean", _buf(mean))
        self.register_buffer("scale", _buf(scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head((self.features(x) - self.mean) / self.scale)
