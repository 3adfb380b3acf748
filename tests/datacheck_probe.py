"""Imported by a test config (``custom_imports``): every process that runs
the dataset check writes ``check.<pid>`` into ``$MMSWIFT_TEST_CHECK_MARKERS``,
so a test counts the checks of a multi-process job."""
import os

from mmswift.engine import datacheck

_check_dataset = datacheck.check_dataset


def _counted(*args, **kwargs):
    # a test process that parsed the config imports this module too: there,
    # without the variable, the check runs uncounted
    folder = os.environ.get('MMSWIFT_TEST_CHECK_MARKERS')
    if folder:
        with open(os.path.join(folder, f'check.{os.getpid()}'), 'a') as f:
            f.write(f'{args[1]}\n')  # the dataset's config label
    return _check_dataset(*args, **kwargs)


if getattr(datacheck.check_dataset, '__name__', '') != '_counted':
    datacheck.check_dataset = _counted
