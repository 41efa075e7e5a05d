"""Study harness for breast-ultrasound deep learning (classification-first vs segmentation-first)."""

__version__ = "0.1.0"

CLASS_NAMES: tuple[str, ...] = ("Benign", "Malignant", "Normal")
"""Label encoding of the paper: 0=Benign, 1=Malignant, 2=Normal."""

BENIGN, MALIGNANT, NORMAL = 0, 1, 2
