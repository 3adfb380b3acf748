"""A whole-model checkpoint checked before mmengine loads it."""
from mmengine.config import Config


def check_checkpoint(path: str, cfg: Config, what: str) -> None:
    """Check a whole-model checkpoint before mmengine loads it: that it is a
    readable checkpoint (one-line error otherwise, :mod:`mmswift.fileio`)
    and, for a SwiftFormer config, one of the config's variant."""
    from ..fileio import read_checkpoint
    from ..models import SwiftFormer
    from ..models.pretrained import check_checkpoint_variant
    model = cfg.get('model', {})
    model = model.get('module', model) if 'backbone' not in model else model  # --tta
    backbone = model.get('backbone', {})
    arch = backbone.get('arch')
    if str(backbone.get('type', '')).endswith('SwiftFormer') and isinstance(arch, str) \
            and arch.lower() in SwiftFormer.arch_settings:
        check_checkpoint_variant(path, arch.lower(), SwiftFormer.arch_settings, what=what)
    else:
        read_checkpoint(path, what=what, mmap=True)
