"""A process pool with a progress bar, for the per-file work of ingest and
the synthetic generator."""

import multiprocessing

import tqdm


def map_with_progress(function, tasks, num_workers, description, unit="item",
                      show_progress=True, done=0, chunksize=1):
  """Yields function(task) for every task, with a progress bar.

  Results come in completion order when `num_workers` > 1. Workers are
  spawned, not forked: the parent may hold TensorFlow threads, which a
  forked child must not inherit.

  Args:
    function: a picklable function of one task.
    tasks: list of picklable tasks.
    num_workers: processes; <= 1 runs in this process.
    description: label of the progress bar.
    unit: what one task is, for the bar.
    show_progress: draw the bar.
    done: tasks already finished before these (the bar starts there).
    chunksize: tasks sent to a worker at a time.

  Yields:
    The results.
  """
  bar = tqdm.tqdm(total=done + len(tasks), initial=done, desc=description,
                  unit=unit, disable=not show_progress)
  try:
    if num_workers <= 1 or len(tasks) <= 1:
      for task in tasks:
        yield function(task)
        bar.update()
    else:
      context = multiprocessing.get_context("spawn")
      with context.Pool(min(num_workers, len(tasks))) as pool:
        for result in pool.imap_unordered(function, tasks,
                                          chunksize=chunksize):
          yield result
          bar.update()
  finally:
    bar.close()
