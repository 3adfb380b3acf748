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
