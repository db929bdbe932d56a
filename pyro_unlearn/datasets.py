"""Data that ship with scikit-learn, prepared for the models here (nothing is downloaded)."""

from __future__ import annotations

import torch


def _standardise(X: torch.Tensor) -> torch.Tensor:
    return (X - X.mean(0)) / X.std(0)


def breast_cancer(intercept: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's breast cancer data: 569 x 30 standardised features (+ a ones column), 0/1 labels."""
    from sklearn.datasets import load_breast_cancer

    X, y = load_breast_cancer(return_X_y=True)
    X = _standardise(torch.as_tensor(X, dtype=torch.get_default_dtype()))
    if intercept:
        X = torch.cat([X, torch.ones(len(X), 1, dtype=X.dtype)], -1)
    return X, torch.as_tensor(y, dtype=X.dtype)


def diabetes() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's diabetes data: 442 x 10 standardised features, standardised target."""
    from sklearn.datasets import load_diabetes

    X, y = load_diabetes(return_X_y=True)
    X = torch.as_tensor(X, dtype=torch.get_default_dtype())
    y = torch.as_tensor(y, dtype=X.dtype)
    return _standardise(X), (y - y.mean()) / y.std()


def digits(seed: int = 0, test_fraction: float = 0.2) -> dict[str, torch.Tensor]:
    """scikit-learn's digits (1797 8x8 images, 10 classes), pixels scaled to [0, 1].

    A stratified train/test split by ``seed``: keys ``x_train, y_train, x_test, y_test``.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        X / 16.0, y, test_size=test_fraction, random_state=seed, stratify=y
    )
    as_x = lambda a: torch.as_tensor(a, dtype=torch.float32)  # noqa: E731
    as_y = lambda a: torch.as_tensor(a, dtype=torch.long)  # noqa: E731
    return {
        "x_train": as_x(x_train),
        "y_train": as_y(y_train),
        "x_test": as_x(x_test),
        "y_test": as_y(y_test),
    }
