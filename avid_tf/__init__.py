"""avid_tf: self-supervised audio-visual representation learning in TF/Keras."""

__version__ = "0.1.0"
