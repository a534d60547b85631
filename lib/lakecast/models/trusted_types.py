"""The types a scikit-learn artifact may ask skops to build, beyond skops's own defaults.

This list is ours and is never read from an artifact: ``skops.io.get_untrusted_types`` only
tells us what an artifact asks for, and anything not listed here is refused before loading.
"""

from __future__ import annotations

# Trusted for any artifact: plain data types and scikit-learn internals that hold no code.
TRUSTED_TYPES: frozenset[str] = frozenset(
    {
        "numpy.dtype",
        "sklearn.calibration._CalibratedClassifier",
        "sklearn.calibration._SigmoidCalibration",
        # A dict with attribute access (stacking and voting ensembles' named_estimators_);
        # the tree check walks into it as into any dict.
        "sklearn.utils._bunch.Bunch",
    }
)

# Trusted only for an artifact whose sha256 the registry recorded, and only after their node
# arrays pass the bounds check in lakecast.models.flavors.tree_bounds: their Cython predict
# does not check child or feature indices, so a crafted file could read out of bounds.
VERIFIED_ONLY_TYPES: frozenset[str] = frozenset(
    {
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
        "sklearn.tree._tree.Tree",
    }
)
