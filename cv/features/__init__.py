"""Handwriting feature families: a prepared ink image in, a fixed-length float32 histogram out.

Each module implements one family from the writer-identification literature:

- :mod:`cv.features.hinge`: contour-direction (f1), contour-hinge (f2) and direction
  co-occurrence (f3h/f3v) distributions (Bulacu & Schomaker 2007, TPAMI 29(4)).
- :mod:`cv.features.texture`: run-length histograms of ink and background (Bulacu &
  Schomaker 2007, f5) and local binary patterns (Ojala et al. 2002) on the ink.
- :mod:`cv.features.local`: RootSIFT (Arandjelovic & Zisserman 2012) at handwriting
  keypoints, aggregated by VLAD with power and intra normalisation (Jegou et al. 2012;
  Christlein et al. 2017).
- :mod:`cv.features.style`: global size, pen width and ink darkness (Srihari et al. 2002),
  which stroke-width normalisation removes from the other families.
- :mod:`cv.features.obif`: oriented Basic Image Feature columns of the grey crop (Crosier &
  Griffin 2010; Newell & Griffin 2014): local symmetry type and orientation at two scales.

All functions are pure: numpy in, numpy out, deterministic.
"""
