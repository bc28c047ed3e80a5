"""hccrad: reproducible multi-center HCC radiomics and deep-learning workflow."""

__version__ = "0.1.0"
