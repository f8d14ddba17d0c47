"""What a training run tells the callbacks of its objective."""

import dataclasses
from typing import Any, Optional

import numpy as np


@dataclasses.dataclass(frozen=True)
class RunInfo:
  """Facts about a training run, given to `Objective.callbacks`.

  Attributes:
    model_dir: the run's folder.
    num_data: N, rows of the memory banks (training videos).
    steps_per_epoch: optimizer steps per epoch.
    strategy: the run's `tf.distribute.Strategy`.
    is_chief: whether this process writes the run's files.
    log_dir: TensorBoard folder of the run's scalars; None on workers that
      write no files.
    instance_labels: int64 [N], the class of each memory row (-1 unknown),
      or None when the dataset has no labels.
    instance_faulty: int64 [N], 1 for a video whose audio is known to be
      faulty (controlled studies), or None when the dataset has no such
      flag.
    dataset: the dataset description (`avid_tf.data.schema.DatasetInfo`),
      or None in tests that need none.
  """

  model_dir: str
  num_data: int
  steps_per_epoch: int
  strategy: Any
  is_chief: bool = True
  log_dir: Optional[str] = None
  instance_labels: Optional[np.ndarray] = None
  instance_faulty: Optional[np.ndarray] = None
  dataset: Any = None
