"""Shared test doubles (like ``optuna.testing``): fakes for tests and benchmarks, never for studies.

- :mod:`harness.testing.images`: the one synthetic image (speckle + elliptic lesion) and ``write_png``.
- :mod:`harness.testing.datasets`: tiny paper-format datasets (``make_dataset``) and BUSI trees.
- :mod:`harness.testing.runs`: fake RUN_DIRs as ``harness run`` writes them (``make_run``).
- :mod:`harness.testing.artifacts`: a Grad-CAM stand-in with a random tiny classifier.
- :mod:`harness.testing.studies`: a fake Optuna study database (``make_study_db``).

Import from the submodules; this package imports nothing, so ``import harness`` stays light and a
test only pays for the fakes it uses. Realistic synthetic data for users is
:mod:`harness.data.synth`, a product feature, not a test double.
"""
