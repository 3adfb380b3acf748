"""mmswift's errors: each message says what is wrong, which file or value,
and what to do. The tools print them as one ``error:`` line (no traceback)
and exit non-zero; anything else keeps its traceback."""


class MMSwiftError(Exception):
    """Base of the errors the tools report in one line."""


class ConfigError(MMSwiftError, ValueError):
    """A config value that cannot work (unknown variant, bad index...)."""


class ConfigNotFoundError(MMSwiftError, FileNotFoundError):
    """The config file does not exist."""


class CheckpointError(MMSwiftError, RuntimeError):
    """A checkpoint that cannot be used: truncated, foreign, wrong variant,
    or holding types that weights_only loading refuses."""


class CheckpointNotFoundError(MMSwiftError, FileNotFoundError):
    """The checkpoint path does not exist."""


class DatasetError(MMSwiftError, ValueError):
    """A dataset that cannot be trained or tested on."""


class DatasetExistsError(DatasetError, FileExistsError):
    """A demo dataset's folder holds something other than a generated set."""


class NonFiniteLossError(MMSwiftError, FloatingPointError):
    """Training stopped because the loss or the weights became NaN/inf."""


class CheckpointWriteError(MMSwiftError, OSError):
    """A checkpoint could not be written (disk full, I/O error, permission
    lost); the previous complete checkpoint is intact."""


class WorkDirBusyError(MMSwiftError, RuntimeError):
    """Another live training job is writing into the work dir."""


class PreemptedError(MMSwiftError):
    """Training stopped on a scheduler's signal after writing a complete
    checkpoint; ``--resume`` continues it."""


# exit status of the tools (tools/*.py, through mmswift.engine.launch.run_tool)
EXIT_BAD_INPUT = 2      # config, checkpoint, dataset, arguments, a busy work dir
EXIT_FAILED = 1         # training diverged, a checkpoint could not be written, a crash
EXIT_PREEMPTED = 3      # stopped on SIGTERM (or the configured signal) with a checkpoint: requeue
