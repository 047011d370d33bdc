"""The log-mel front-end options that several verbs share (convert, train), defined once."""

from __future__ import annotations

import argparse

from audioclassifier.argtypes import int_at_least

__all__ = ["add_frontend_options", "frontend_params"]


def add_frontend_options(p: argparse.ArgumentParser) -> None:
    """``--sample-rate --n-fft --hop-length --n-mels --fmin --fmax`` with the module's defaults."""
    g = p.add_argument_group("log-mel front end (defaults: the module's)")
    g.add_argument("--sample-rate", type=int_at_least(1), default=16000, help="Hz (default 16000)")
    g.add_argument("--n-fft", type=int_at_least(16), default=1024, help="FFT length (default 1024)")
    g.add_argument("--hop-length", type=int_at_least(1), default=512, help="samples between frames (default 512)")
    g.add_argument("--n-mels", type=int_at_least(1), default=128, help="mel bands (default 128)")
    g.add_argument("--fmin", type=float, default=0.0, help="lowest band edge in Hz (default 0)")
    g.add_argument("--fmax", type=float, default=None, help="highest band edge in Hz (default: Nyquist)")


def frontend_params(args: argparse.Namespace):  # -> LogMelParams (imported lazily: numpy/scipy)
    """The validated :class:`~audioclassifier.features.LogMelParams`; raises ValueError."""
    from audioclassifier.features import LogMelParams

    return LogMelParams(sample_rate=args.sample_rate, n_fft=args.n_fft, hop_length=args.hop_length,
                        n_mels=args.n_mels, fmin=args.fmin, fmax=args.fmax)
