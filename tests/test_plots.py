"""The PNG plots: written, and quiet when there is nothing to label."""

import warnings

from avid_tf.eval import plots


def test_loss_curve_without_steps_is_written_without_a_legend_warning(
    tmp_path):
  path = tmp_path / "loss.png"
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    plots.plot_loss_curve([], str(path))
    plots.plot_loss_curve([(1, {"loss": 2.0}), (2, {"loss": 1.5})],
                          str(tmp_path / "two.png"))
  assert path.stat().st_size > 0
  assert (tmp_path / "two.png").stat().st_size > 0
