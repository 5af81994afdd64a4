"""Optional dense-CRF refinement, with the original project's settings.

Uses the `pydensecrf` module, built by the maintained `pydensecrf2` package
(`pip install "handseg[crf]"`): the 2018 `pydensecrf` no longer builds.
"""

from __future__ import annotations

import numpy as np

INSTALL_HINT = 'dense-CRF refinement needs pydensecrf2: pip install "handseg[crf]" (or pip install pydensecrf2)'


class CRFUnavailableError(ImportError):
    """Raised when CRF refinement is requested but pydensecrf2 is not installed."""


def crf_available() -> bool:
    try:
        import pydensecrf.densecrf  # noqa: F401
    except ImportError:
        return False
    return True


def refine_with_crf(
    rgb: np.ndarray, probability: np.ndarray, iterations: int = 5, pixel_scale: float = 1.0
) -> np.ndarray:
    """Refine a hand-probability map (H, W) with a fully connected CRF over `rgb` (H, W, 3 uint8).

    Settings as in the original: Gaussian sxy=20, compat=3; bilateral sxy=30,
    srgb=20, compat=10; 5 mean-field iterations. `pixel_scale` < 1 says the
    image is a down-scaled copy: the spatial kernels shrink with it, so they
    cover the same part of the scene as at full size. Returns the refined hand
    probability (float32, H, W).
    """
    try:
        import pydensecrf.densecrf as dcrf
    except ImportError:
        raise CRFUnavailableError(INSTALL_HINT) from None
    if rgb.shape[:2] != probability.shape:
        raise ValueError(f"image {rgb.shape[:2]} and probability {probability.shape} differ in size")
    height, width = probability.shape
    p = np.clip(probability.astype(np.float32), 1e-6, 1 - 1e-6)
    unary = -np.log(np.stack([1 - p, p]).reshape(2, -1))
    crf = dcrf.DenseCRF2D(width, height, 2)
    crf.setUnaryEnergy(np.ascontiguousarray(unary, dtype=np.float32))
    crf.addPairwiseGaussian(sxy=20 * pixel_scale, compat=3)
    rgbim = np.ascontiguousarray(rgb, dtype=np.uint8)
    crf.addPairwiseBilateral(sxy=30 * pixel_scale, srgb=20, rgbim=rgbim, compat=10)
    q = np.asarray(crf.inference(iterations), dtype=np.float32)
    return q[1].reshape(height, width)
