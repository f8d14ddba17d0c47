"""Import of the official AVID-CMA PyTorch checkpoints into avid_tf.

`official_layout` knows the official checkpoint's keys and how each maps
onto an avid_tf variable (no PyTorch needed); `pytorch_checkpoint` reads a
checkpoint and writes a model_dir that the rest of avid_tf accepts;
`torch_reference` is the official architecture rebuilt in PyTorch, used to
verify a conversion. Only the last two need PyTorch, the optional extra of
requirements-convert.txt, and they import it only when called.
"""
